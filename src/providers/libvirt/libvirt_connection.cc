#include "providers/libvirt/libvirt_connection.h"

#include "providers/libvirt/libvirt_errors.h"

namespace evac::libvirt {
namespace {

// 0 means dead; -1 only comes from a driver that cannot tell, and treating
// that as dead would re-open the connection on every call.
bool is_alive(virConnectPtr conn) { return virConnectIsAlive(conn) != 0; }

}  // namespace

Connection::Connection(std::string uri) : uri_(std::move(uri)) { initialise_libvirt(); }

Result<ConnectHandle> Connection::acquire() {
  std::lock_guard lock(mu_);
  if (cached_ == nullptr || !is_alive(cached_.get())) {
    cached_.reset();
    auto opened = open();
    if (!opened.is_ok()) return opened.status();
    cached_ = std::move(*opened);
  }
  if (virConnectRef(cached_.get()) < 0) return last_error("taking a reference to the libvirt connection at " + uri_);
  return ConnectHandle(cached_.get());
}

bool Connection::forget_if_dead(virConnectPtr used) {
  if (is_alive(used)) return false;
  std::lock_guard lock(mu_);
  if (cached_.get() == used) cached_.reset();
  return true;
}

Result<ConnectHandle> Connection::open() {
  ConnectHandle conn(virConnectOpen(uri_.c_str()));
  if (conn == nullptr) {
    Status cause = last_error("cannot connect to libvirt at " + uri_);
    // Whatever libvirt's reason, from evac's side the hypervisor is not
    // reachable now; the operator fixes the daemon or the URI and retries.
    return unavailable(cause.message(), "check that libvirtd runs and the URI is right: " + uri_);
  }
  return conn;
}

}  // namespace evac::libvirt
