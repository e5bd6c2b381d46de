// The built-in replicator's protocol between its two halves: the routes
// its recovery-site half serves (mounted by evacd under
// /api/v1/peer/replication/builtin/), the bodies of their calls, and the
// ReplicaChannel the protected site's half reaches them through.
//
//   POST   {group}/cycles                     begin: CycleBeginRequest            (writes)
//   GET    {group}/manifests/{vm}/{disk}       the disk's manifest in the newest PIT (raw; empty: none)
//   POST   {group}/cycles/{cycle}/blocks       a batch of blocks (raw, bulk)
//   POST   {group}/cycles/{cycle}/commit       commit: CycleCommitRequest -> the new PIT (writes)
//   DELETE {group}/cycles/{cycle}              abort
//   GET    {group}/pits                        the PITs held (a cycle's retention check)
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/replication_adapter.h"
#include "core/replication_registry.h"
#include "replication/builtin/builtin_replicator.h"

namespace evac::builtin {

// The bodies of a cycle's begin and commit calls: to_json as the protected
// site sends them, *_from_json as the recovery site reads them (strict:
// every field typed and ranged, unknown keys refused).
struct CycleBeginRequest {
  std::string cycle_id;
  std::vector<ReplicatedDevice> disks;  // their source stays at the protected site
};
struct CycleCommitRequest {
  std::vector<DiskDigest> digests;
  std::int64_t created_at_ms = 0;  // travels as created_at (seconds) too, for sites older than the milliseconds
  std::uint64_t bytes_sent = 0;
  RetentionPolicy retention;
};
nlohmann::json to_json(const CycleBeginRequest& r);
Result<CycleBeginRequest> cycle_begin_from_json(const nlohmann::json& j);
nlohmann::json to_json(const CycleCommitRequest& r);
Result<CycleCommitRequest> cycle_commit_from_json(const nlohmann::json& j);

// The recovery site's engine as the protected site's cycle sees it, over
// a link to the paired site.
std::unique_ptr<ReplicaChannel> link_channel(ReplicationPeerLink& link);

// The routes of the receiving half, served from `receiver`. `site` names
// this site and its storage pools: a begin naming a replica folder that is
// not one of them is refused.
std::vector<ReplicationPeerRoute> receiver_routes(ReplicaReceiver& receiver, const ReplicationSiteContext& site);

}  // namespace evac::builtin
