#include "providers/libvirt/libvirt_errors.h"

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include <pthread.h>
#include <signal.h>

#include <chrono>
#include <mutex>
#include <thread>

namespace evac::libvirt {
namespace {

void ignore_error(void* /*user_data*/, virErrorPtr /*error*/) {}

StatusCode status_code_for(const virError& err) {
  // A system call failing inside the RPC layer means the link to libvirtd
  // broke; elsewhere it is about the operation itself (a missing file, ...).
  if (err.code == VIR_ERR_SYSTEM_ERROR && err.domain == VIR_FROM_RPC) return StatusCode::kUnavailable;
  switch (err.code) {
    case VIR_ERR_NO_DOMAIN:
    case VIR_ERR_NO_NETWORK:
    case VIR_ERR_NO_STORAGE_POOL:
    case VIR_ERR_NO_STORAGE_VOL:
    case VIR_ERR_NO_DOMAIN_METADATA:
      return StatusCode::kNotFound;
    case VIR_ERR_DOM_EXIST:
      return StatusCode::kAlreadyExists;
    case VIR_ERR_OPERATION_INVALID:
      return StatusCode::kFailedPrecondition;
    case VIR_ERR_NO_SUPPORT:
      return StatusCode::kUnsupported;
    case VIR_ERR_INVALID_ARG:
    case VIR_ERR_XML_ERROR:
    case VIR_ERR_XML_DETAIL:
    case VIR_ERR_XML_INVALID_SCHEMA:
    case VIR_ERR_CONFIG_UNSUPPORTED:
      return StatusCode::kInvalidArgument;
    case VIR_ERR_AUTH_FAILED:
    case VIR_ERR_AUTH_CANCELLED:
    case VIR_ERR_AUTH_UNAVAILABLE:
      return StatusCode::kUnauthenticated;
    case VIR_ERR_OPERATION_DENIED:
    case VIR_ERR_ACCESS_DENIED:
      return StatusCode::kPermissionDenied;
    // Lost or refused connections: the hypervisor manager may come back.
    case VIR_ERR_NO_CONNECT:
    case VIR_ERR_INVALID_CONN:
    case VIR_ERR_RPC:
    case VIR_ERR_OPERATION_TIMEOUT:
      return StatusCode::kUnavailable;
    default:
      return StatusCode::kInternal;
  }
}

}  // namespace

std::thread thread_without_signals(std::function<void()> body) {
  sigset_t all, before;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, &before);
  std::thread started(std::move(body));
  pthread_sigmask(SIG_SETMASK, &before, nullptr);
  return started;
}

void initialise_libvirt() {
  static std::once_flag once;
  std::call_once(once, [] {
    virInitialize();
    virSetErrorFunc(nullptr, ignore_error);
    // Keepalive (a hung or vanished libvirtd noticed while a call waits on
    // it) needs an event loop, registered before the first connection opens
    // and run for the process's life. libvirt's own loop on a thread of its
    // own does: evac has no other use for one.
    if (virEventRegisterDefaultImpl() == 0)
      thread_without_signals([] {
        for (;;)
          if (virEventRunDefaultImpl() < 0) std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }).detach();
  });
}

Status last_error(std::string_view doing) {
  virErrorPtr err = virGetLastError();
  std::string message(doing);
  if (err == nullptr) return internal_error(message + ": libvirt failed without saying why");
  const std::string said = err->message != nullptr ? err->message : "";
  // libvirt reports a connection its keepalive gave up on as an internal
  // error; it is the daemon not answering (hung, overloaded, cut off), which
  // a retry or a new connection may get past, and the operator must hear so.
  if (err->domain == VIR_FROM_RPC && said.find("keepalive") != std::string::npos)
    return unavailable(message + ": libvirtd has not answered (" + said + ")",
                       "libvirtd there is hung, overloaded or cut off: check it (`virsh list`, its log); evac opens a "
                       "new connection once it answers");
  if (!said.empty()) message += ": " + said;
  return Status(status_code_for(*err), std::move(message));
}

int last_error_number() {
  virErrorPtr err = virGetLastError();
  return err == nullptr ? 0 : err->code;
}

}  // namespace evac::libvirt
