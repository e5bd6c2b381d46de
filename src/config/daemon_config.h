// evacd's configuration file (YAML). One file per site.
//
//   site: site-a
//   listen: 127.0.0.1:8441
//   advertise_url: https://127.0.0.1:8441     # how the peer and the CLI reach us
//   state_dir: /var/lib/evac/site-a
//   tls: { cert: /path/cert.pem, key: /path/key.pem }   # optional; self-signed if absent
//   heartbeat_interval: 5s
//   peer_timeout: 5s
//   log: { format: json, level: info }
//   replication: { schedules: true, check_interval: 5s, full_read_every: 7d, wait_limit: 5m }
//   runs: { max_parallel: 16, per_provider_limit: 8 }
//   compute_providers:
//     - { name: local, kind: libvirt, uri: "qemu:///system" }
//   replication_adapters:                      # external engines (docs/adapters.md)
//     - { kind: rbd, command: [/usr/lib/evac/evac-rbd-adapter], timeout: 300s, settings: {...} }
#pragma once

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/compute_provider.h"
#include "core/status.h"

namespace evac {

// An external replication engine: a program speaking evac's adapter
// protocol (docs/adapters.md), one invocation per operation.
struct ReplicationAdapterConfig {
  std::string kind;                  // what protection groups name (--adapter KIND)
  std::vector<std::string> command;  // argv; the operation's request arrives on stdin
  std::chrono::seconds timeout{300};  // of each invocation (SRM's default for an SRA's command)
  std::map<std::string, std::chrono::seconds> timeouts;  // per operation, overriding `timeout`
  // How long a cycle waits in all for its PIT to be complete at the
  // recovery site (the storage's own replication carrying it there).
  std::chrono::seconds await_limit{6 * 3600};
  nlohmann::json settings = nlohmann::json::object();  // handed to the adapter as they are
};

struct DaemonConfig {
  std::string site;
  std::string listen_host = "127.0.0.1";
  int listen_port = 8441;
  std::string advertise_url;  // defaults to https://listen_host:listen_port
  std::string state_dir;
  std::optional<std::string> tls_cert;
  std::optional<std::string> tls_key;
  std::chrono::seconds heartbeat_interval{5};
  std::chrono::seconds peer_timeout{5};
  std::string log_format = "text";  // "text" or "json"
  std::string log_level = "info";
  std::vector<ProviderConfig> compute_providers;
  std::vector<ReplicationAdapterConfig> replication_adapters;
  // Start replication cycles from each group's RPO; off leaves only manual
  // `evac group sync` (lag, alarms and metrics are kept either way).
  bool replication_schedules = true;
  // How often the scheduler checks lag and compliance.
  std::chrono::seconds replication_check_interval{5};
  // How often a cycle of running VMs reads every block rather than only what
  // change tracking reports (catches a replica drifted behind its back);
  // 0 ("off"): only the first cycle does.
  std::chrono::seconds replication_full_read_every{7 * 24 * 3600};
  // The longest an API call that follows a cycle is held before it answers
  // "still going" (ReplicationOptions::wait_limit): below the read timeout
  // of any proxy in front of the API, or a proxy cuts the call instead.
  std::chrono::seconds replication_wait_limit{5 * 60};
  // Steps of one run at once, and of those, steps calling one compute
  // provider at once (so a recovery does not flood a hypervisor manager).
  int runs_max_parallel = 16;
  int runs_per_provider_limit = 8;
  // Limits on API clients (ApiLimits): the largest operator request body,
  // how long a connection may send nothing, connections served at once.
  std::size_t api_max_request_body = 1024 * 1024;
  std::chrono::seconds api_read_timeout{10};
  std::size_t api_max_connections = 512;
};

// Loads and validates; every error names the file, the key and (for YAML
// syntax errors) the line, and says how to fix it.
Result<DaemonConfig> load_daemon_config(const std::string& path);
Result<DaemonConfig> parse_daemon_config(const std::string& yaml_text, const std::string& origin);

// Site names appear in URLs, file names and libvirt metadata.
Status validate_name(std::string_view kind, std::string_view name);

}  // namespace evac
