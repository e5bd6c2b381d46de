// The replication engines a site was built with, by kind: the counterpart
// of ProviderRegistry for storage replication. The composition root (evacd)
// registers each engine it links; ReplicationService makes one adapter of
// each kind when it starts and reaches engines only through them, so a new
// engine plugs in with a registration, not an edit of the service.
//
// A protection group names its engine (GroupRecord::replication, "builtin"
// by default); a group whose kind this site was not built with is refused
// with the kinds it has.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/change_tracking.h"
#include "core/replication_adapter.h"
#include "core/status.h"

namespace evac {

// What a site offers the engines it makes.
struct ReplicationSiteContext {
  std::string site_name;  // this site's, for messages
  // The site's private state folder (evacd's state_dir). An engine keeps
  // its own state in a folder of it named after its kind, or in the ones
  // it has always used.
  std::string state_dir;
  // Running VMs' change tracking, from the compute provider each runs on.
  ChangeTrackingLookup change_tracking;
  // The folders of this site's storage pools: the only places a paired
  // site may ask an engine to put replicas (a trust boundary, not a
  // parameter the peer chooses).
  std::function<Result<std::vector<std::string>>()> storage_pool_folders;
};

using ReplicationAdapterFactory =
    std::function<Result<std::unique_ptr<ReplicationAdapter>>(const ReplicationSiteContext& site)>;

class ReplicationRegistry {
 public:
  // A second registration of a kind replaces the first.
  void add(const std::string& kind, ReplicationAdapterFactory factory);
  // kInvalidArgument naming the known kinds when `kind` is not registered;
  // the factory's own error otherwise.
  Result<std::unique_ptr<ReplicationAdapter>> create(const std::string& kind, const ReplicationSiteContext& site) const;
  std::vector<std::string> kinds() const;
  bool has(const std::string& kind) const { return factories_.count(kind) != 0; }

 private:
  std::map<std::string, ReplicationAdapterFactory> factories_;
};

// The engine a group names when it names none: the built-in host-based replicator.
inline constexpr const char* kDefaultReplicationKind = "builtin";

}  // namespace evac
