// Turning libvirt's thread-local "last error" into evac's Status.
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <thread>

#include "core/status.h"

namespace evac::libvirt {

// Initialises libvirt for use from many threads and stops it from printing
// every error to stderr: evac reports errors as Status values, and evacd's
// log must not carry each one twice. Starts libvirt's event loop on a thread
// of its own, which connection keepalive needs. Safe to call any number of
// times; call it before opening any connection.
void initialise_libvirt();

// Starts `body` on a thread that blocks every signal (a thread inherits its
// creator's mask), so SIGTERM still reaches the one thread evacd waits for
// it on, whichever thread starts the provider's own threads.
std::thread thread_without_signals(std::function<void()> body);

// The calling thread's last libvirt error as a Status whose message starts
// with `doing` ("listing domains: <libvirt's message>"). Call it right after
// the failing libvirt call: the next libvirt call resets the error.
Status last_error(std::string_view doing);

// last_error for a message that needs libvirt to build (a VM's name): every
// libvirt call, virDomainGetName included, resets the last error, so the
// error is taken first and `describe()` runs after.
template <typename Describe>
Status last_error_described(Describe describe) {
  Status taken = last_error("");
  return Status(taken.code(), describe() + taken.message());
}

// The libvirt error number behind the calling thread's last error, or 0.
int last_error_number();

}  // namespace evac::libvirt
