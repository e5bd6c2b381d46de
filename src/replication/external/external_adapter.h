// A replication engine that is another program: evac's side of the external
// adapter protocol (docs/adapters.md). Each operation is one invocation of
// the adapter's command with one JSON request on stdin and one JSON answer
// on stdout (SRM's SRA model), bounded by a per-operation timeout past
// which the adapter's whole process group is killed.
//
// A cycle (sync_now, reverse) is evac's choreography around the adapter's
// operations: evac pauses the group's running VMs, the adapter takes its
// snapshot (one instant for the group), evac resumes them, the adapter
// ships the snapshot, and the recovery site's evac asks its own adapter
// to wait until the PIT is complete there; then the protected site expires
// the PITs the group's retention no longer keeps. Everything else maps one
// ReplicationAdapter call to one operation.
//
// The adapter owns the truth about its replicas (snapshots, clones): evac
// keeps no record of them, so a failed invocation changes nothing of
// evac's state.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "config/daemon_config.h"
#include "core/replication_registry.h"
#include "replication/external/adapter_protocol.h"

namespace evac::external {

using ExternalAdapterConfig = ReplicationAdapterConfig;

// The timeout of one invocation of `operation`.
std::chrono::seconds timeout_of(const ExternalAdapterConfig& config, const std::string& operation);
// What a configuration file cannot say alone: that each operation named in
// `timeouts` is one of the protocol's, and that the command is an
// executable file. evacd refuses to start otherwise.
Status check_adapter_config(const ExternalAdapterConfig& config);

// How long one await_pit invocation waits before answering "not yet".
inline constexpr std::chrono::seconds kAwaitRound{20};

class ExternalAdapter : public ReplicationAdapter {
 public:
  // Asks the adapter for its capabilities: a command that cannot run or
  // does not answer is refused here, so a site reports it when it starts.
  static Result<std::unique_ptr<ExternalAdapter>> start(ExternalAdapterConfig config, const ReplicationSiteContext& site);

  std::string kind() const override { return config_.kind; }
  ReplicationCapabilities capabilities() const override { return capabilities_; }

  Result<std::vector<ReplicatedDevice>> discover(const ReplicationGroupSpec& spec) override;
  Result<PointInTime> sync_now(const ReplicationGroupSpec& spec, ReplicationPeerLink& recovery_site,
                               const ProgressCallback& progress) override;
  std::vector<ReplicationPeerRoute> peer_routes() override;
  Result<std::vector<PointInTime>> list_pits(const std::string& group) override;
  Result<TestCopy> create_test_copy(const std::string& group, const std::string& pit_id,
                                    const std::string& owner = "") override;
  Status drop_test_copy(const std::string& group, const std::string& test_copy_id) override;
  Result<std::vector<TestCopy>> list_test_copies(const std::string& group) override;
  Status prepare_failover(const ReplicationGroupSpec& spec) override;
  Status release_source(const ReplicationGroupSpec& spec) override;
  Status check_read_only_source(const ReplicationGroupSpec& spec) override;
  Result<TestCopy> failover(const std::string& group, const std::string& pit_id, const std::string& owner = "") override;
  Result<PointInTime> reverse(const ReplicationGroupSpec& spec, ReplicationPeerLink& recovery_site,
                              const ProgressCallback& progress) override;
  Result<ReleasedReplicas> release_replicas(const std::string& group) override;
  Result<PitVerification> verify_pit(const std::string& group, const std::string& pit_id) override;

  // One invocation: the result object, or the adapter's error, or what
  // went wrong running it, each naming the adapter and the operation.
  // `progress` receives its progress lines; `link` (if any) stops it when
  // evacd shuts down.
  Result<nlohmann::json> invoke(const std::string& operation, nlohmann::json request,
                                const ProgressCallback& progress = nullptr, const ReplicationPeerLink* link = nullptr,
                                std::optional<std::chrono::seconds> timeout = std::nullopt);

 private:
  ExternalAdapter(ExternalAdapterConfig config, const ReplicationSiteContext& site);
  // "replication adapter 'KIND' (OPERATION)": how every message names a call.
  std::string named(const std::string& operation) const;
  Result<PointInTime> cycle(const ReplicationGroupSpec& spec, ReplicationPeerLink& recovery_site,
                            const ProgressCallback& progress, bool reverse);
  Result<PointInTime> await_at_recovery_site(const ReplicationGroupSpec& spec, const std::vector<ReplicatedDevice>& devices,
                                             const PointInTime& shipped, ReplicationPeerLink& recovery_site,
                                             const ProgressCallback& progress);
  // The recovery site's halves of a cycle, called by the paired site.
  Result<nlohmann::json> handle_await(const ReplicationPeerRequest& request);
  Result<nlohmann::json> handle_prepare_reverse(const ReplicationPeerRequest& request);
  Status expire(const ReplicationGroupSpec& spec, ReplicationPeerLink& recovery_site, const PointInTime& newest);
  Result<nlohmann::json> pits_with_pins(const std::string& group);

  ExternalAdapterConfig config_;
  ReplicationSiteContext site_;
  InvocationSite invocation_site_;
  ReplicationCapabilities capabilities_;
};

// Registers each configured adapter under its kind.
void register_external_adapters(ReplicationRegistry& registry, const std::vector<ExternalAdapterConfig>& adapters);

}  // namespace evac::external
