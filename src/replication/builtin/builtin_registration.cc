#include "replication/builtin/builtin_registration.h"

#include <filesystem>

namespace evac::builtin {

namespace {

// The replicator owning the replica store and receiver it serves from: one
// per site, alive as long as the site's ReplicationService.
struct ReplicaHome {
  std::unique_ptr<PitStore> pits;
  std::unique_ptr<ReplicaReceiver> receiver;
};
class SiteReplicator : private ReplicaHome, public BuiltinReplicator {
 public:
  SiteReplicator(ReplicaHome home, const ReplicationSiteContext& site, SyncOptions options)
      : ReplicaHome(std::move(home)),
        BuiltinReplicator(ReplicaHome::receiver.get(), site.change_tracking, std::move(options), site) {}
};

}  // namespace

void register_builtin_replicator(ReplicationRegistry& registry, SyncOptions options) {
  registry.add("builtin", [options](const ReplicationSiteContext& site) -> Result<std::unique_ptr<ReplicationAdapter>> {
    const std::string replicas = site.state_dir + "/" + kReplicaFolder;
    std::error_code ec;
    std::filesystem::create_directories(replicas, ec);
    if (ec)
      return failed_precondition("cannot create " + replicas + ": " + ec.message(),
                                 "check that evacd's state_dir is writable");
    SyncOptions sync = options;
    sync.work_dir = site.state_dir + "/" + kBackupFolder;
    // A cycle of running VMs cut short by a crash may have left them paused:
    // resume them now rather than at the group's next cycle. A hypervisor
    // that is down now gets the same treatment at that next cycle.
    (void)recover_interrupted_cycles(sync.work_dir, "", site.change_tracking);
    ReplicaHome home;
    home.pits = std::make_unique<PitStore>(replicas);
    home.receiver = std::make_unique<ReplicaReceiver>(*home.pits, replicas);
    return std::unique_ptr<ReplicationAdapter>(std::make_unique<SiteReplicator>(std::move(home), site, std::move(sync)));
  });
}

}  // namespace evac::builtin
