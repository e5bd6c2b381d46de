// Replication for one site: syncing the groups it protects (through the
// built-in replicator, over the paired channel) and, as a recovery site,
// receiving cycles into its points in time.
#pragma once

#include <memory>
#include <mutex>
#include <set>
#include <string>

#include <nlohmann/json.hpp>

#include "replication/builtin/builtin_replicator.h"
#include "service/site_service.h"

namespace evac {

class ReplicationService {
 public:
  // PITs' index lives under state_dir/replication.
  ReplicationService(SiteService& site, PeerTransport& transport, const std::string& state_dir);
  ~ReplicationService();

  // Protected site: one cycle of a group now; returns the new PIT.
  Result<PointInTime> sync_group(const std::string& group);
  // Protected site: the group's PITs, as the recovery site holds them.
  Result<std::vector<PointInTime>> group_pits(const std::string& group);
  // Protected site: how far behind the recovery site is — the newest PIT,
  // its age (the data a failover now would lose) and whether that is within
  // the group's RPO. Never fails: an unreachable recovery site is reported.
  nlohmann::json group_replication_status(const GroupRecord& group);

  // Recovery site: the receiving half, called by the peer routes after the
  // router authenticated the caller; each checks the caller protects `group`
  // to this site.
  Result<nlohmann::json> handle_begin(const PeerRecord& caller, const std::string& group, const nlohmann::json& body);
  Result<nlohmann::json> handle_manifest(const PeerRecord& caller, const std::string& group, const std::string& key);
  Result<nlohmann::json> handle_batch(const PeerRecord& caller, const std::string& group, const std::string& cycle,
                                      const std::string& bytes);
  Result<nlohmann::json> handle_commit(const PeerRecord& caller, const std::string& group, const std::string& cycle,
                                       const nlohmann::json& body);
  Result<nlohmann::json> handle_abort(const PeerRecord& caller, const std::string& group, const std::string& cycle);
  Result<nlohmann::json> handle_pits(const PeerRecord& caller, const std::string& group);

 private:
  class PeerChannel;
  Result<ReplicationGroupSpec> group_spec(const GroupRecord& group, const PeerRecord& peer);
  Status check_caller_protects(const PeerRecord& caller, const std::string& group);
  // Running VMs' change tracking, from the provider each VM runs on.
  builtin::ChangeTrackingLookup change_tracking_lookup();

  SiteService& site_;
  PeerTransport& transport_;
  std::unique_ptr<builtin::PitStore> pits_;
  std::unique_ptr<builtin::ReplicaReceiver> receiver_;
  std::string backup_dir_;  // running VMs' backup exports and the journal of cycles in progress
  std::mutex syncing_mu_;
  std::set<std::string> syncing_;  // groups with a cycle in progress here
};

nlohmann::json to_json(const PointInTime& pit);
Result<PointInTime> pit_from_json(const nlohmann::json& j);

}  // namespace evac
