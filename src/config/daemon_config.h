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
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "core/compute_provider.h"
#include "core/status.h"

namespace evac {

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
