// One lazily opened, self-healing connection to a libvirt URI.
//
// evacd must start while a hypervisor is down, so nothing connects until the
// first call. A connection that died (libvirtd restarted, ssh tunnel
// dropped) is replaced on the next call, and a call that failed because the
// connection died underneath it is retried once on a fresh one.
#pragma once

#include <mutex>
#include <string>
#include <type_traits>

#include "core/status.h"
#include "providers/libvirt/libvirt_handles.h"

namespace evac::libvirt {

class Connection {
 public:
  explicit Connection(std::string uri);
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  const std::string& uri() const { return uri_; }

  // A counted reference to the open connection, opening it first when there
  // is none or the cached one is dead. Each caller holds its own reference,
  // so a re-open by one thread never frees a connection another still uses.
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
  // Drops the cached connection when it is `used` and no longer alive, so
  // that the next acquire opens a new one. Says whether it was dead.
  bool forget_if_dead(virConnectPtr used);
  Result<ConnectHandle> open();

  const std::string uri_;
  std::mutex mu_;  // guards cached_: opening and closing, not the calls made on it
  ConnectHandle cached_;
};

}  // namespace evac::libvirt
