// One lazily opened, self-healing connection to a libvirt URI.
//
// evacd must start while a hypervisor is down, so nothing connects until the
// first call. A connection that died (libvirtd restarted, ssh tunnel
// dropped) is replaced on the next call, and a call that failed because the
// connection died underneath it is retried once on a fresh one.
//
// No call waits on libvirtd forever, so a step's timeout and an API request
// end even when the hypervisor manager hangs or its host vanishes without
// closing the socket: opening is bounded by `open_timeout` (libvirt's own
// open waits for the daemon's answer without limit), and an open connection
// carries libvirt's keepalive, which closes it, failing the calls waiting
// on it, once the daemon stops answering for interval × count seconds.
//
// Opens through a daemon run on one thread per connection, kept for the
// connection's life, so what libvirt allocates while opening stays in that
// thread's malloc arena and a re-open reuses it (a fresh thread per open
// left each copy in whatever arena the engine's workers took over next).
// libvirt's test driver runs in this process, with no daemon to wait on:
// it opens inline, its node in the caller's memory as before.
#pragma once

#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <type_traits>

#include "core/status.h"
#include "providers/libvirt/libvirt_handles.h"

namespace evac::libvirt {

// evacd takes them from the provider's `connect_timeout` and `keepalive`.
struct ConnectionLimits {
  // A local libvirtd answers an open in milliseconds and a remote one over
  // ssh in a second or two; a daemon silent for this long is hung.
  std::chrono::milliseconds open_timeout{15000};
  int keepalive_interval_s = 5;
  unsigned keepalive_count = 3;
};

class Connection {
 public:
  explicit Connection(std::string uri, ConnectionLimits limits = {});
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  const std::string& uri() const { return uri_; }

  // A counted reference to the open connection, opening it first when there
  // is none or the cached one is dead. Each caller holds its own reference,
  // so a re-open by one thread never frees a connection another still uses.
  // An open that outlasts `open_timeout` fails as unavailable and goes on in
  // the background: callers until it ends wait on that one open rather than
  // start more against a daemon that is not answering.
  Result<ConnectHandle> acquire();

  // Runs `operation(virConnectPtr)`, which returns a Status or a Result<T>.
  // Operations passed here must be safe to repeat: when one fails because
  // its connection died, it runs once more on a new connection.
  template <typename Operation>
  auto run(Operation&& operation) -> std::invoke_result_t<Operation&, virConnectPtr> {
    for (int attempt = 0;; ++attempt) {
      auto conn = acquire();
      if (!conn.is_ok()) return conn.status();
      auto outcome = operation(conn->get());
      if (outcome.is_ok() || attempt > 0 || !forget_if_dead(conn->get())) return outcome;
    }
  }

 private:
  struct PendingOpen;
  struct Opener;

  // Drops the cached connection when it is `used` and no longer alive, so
  // that the next acquire opens a new one. Says whether it was dead.
  bool forget_if_dead(virConnectPtr used);
  std::shared_ptr<PendingOpen> start_open();

  const std::string uri_;
  const ConnectionLimits limits_;
  std::mutex mu_;  // guards cached_ and pending_, not the calls made on them
  ConnectHandle cached_;
  std::shared_ptr<PendingOpen> pending_;  // an open under way on the opener's thread
  std::shared_ptr<Opener> opener_;        // started with the first open
};

}  // namespace evac::libvirt
