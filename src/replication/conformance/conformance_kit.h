// The conformance kit: drives one replication engine through the whole
// life of a protection group on a real backend, both sites' halves in one
// process, and checks each answer against what really happened to the
// data (SRM certifies SRAs with a test kit alike).
//
// discover → sync → list → test copy → drop → sync → verify → prepare
// failover → failover → reverse → release. Disk contents are written and
// compared with qemu-io and qemu-img, so an engine that says a PIT holds
// what it does not is caught by the bytes, not by its own word.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "config/daemon_config.h"
#include "core/replication_adapter.h"
#include "core/status.h"

namespace evac::conformance {

// A cycle's link to the same engine of another site in this process: a
// call is matched against the routes that engine serves (peer_routes), as
// evacd's router would, without the network and the pairing's checks.
class InProcessPeerLink : public ReplicationPeerLink {
 public:
  InProcessPeerLink(std::string site, std::vector<ReplicationPeerRoute> routes)
      : site_(std::move(site)), routes_(std::move(routes)) {}
  std::string site() const override { return site_; }
  bool stopping() const override { return false; }
  Result<nlohmann::json> call(const std::string& method, const std::string& path,
                              const std::optional<nlohmann::json>& body) override;
  Result<std::string> call_bytes(const std::string& method, const std::string& path, const std::string& body) override;

 private:
  Result<nlohmann::json> dispatch(const std::string& method, const std::string& path, const std::string& body);
  std::string site_;
  std::vector<ReplicationPeerRoute> routes_;
};

struct KitSite {
  std::string name;
  std::string state_dir;  // the engine's own state at this site
  std::string storage;    // the folder this site's file disks and the built-in's replicas live in
  std::vector<ReplicationAdapterConfig> adapters;  // external engines configured at this site
  // Appended to an rbd disk's name for qemu-img/qemu-io ("conf=/etc/ceph/a.conf:id=admin").
  std::string rbd_options;
};

struct KitDisk {
  std::string target;         // "vda"
  DiskSource source;          // empty path for a file: the kit creates one in the protected site's storage
  std::string format = "raw";
  std::uint64_t size_bytes = 64u << 20;  // of a disk the kit creates
};

struct KitConfig {
  std::string kind;
  KitSite protected_site, recovery_site;
  std::vector<KitDisk> disks;
  std::string work_dir;  // the kit's own files (expected contents)
};

struct Check {
  std::string operation;
  enum class Outcome { kPassed, kFailed, kUnsupported } outcome = Outcome::kFailed;
  std::string asked;                 // what the engine was asked
  std::string answered;              // what came back
  std::vector<std::string> checked;  // what the kit verified, each a sentence
  std::string failure;               // why it failed
};
std::string_view outcome_name(Check::Outcome o);

struct KitReport {
  std::vector<Check> checks;
  bool passed() const;
};

// Runs the sequence; `on_check` sees each check as it ends. A failed step
// that later steps need ends the run there (what follows is not checked).
KitReport run_kit(const KitConfig& config, const std::function<void(const Check&)>& on_check = nullptr);

}  // namespace evac::conformance
