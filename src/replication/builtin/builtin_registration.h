// How a site gets the built-in replicator: evacd (the composition root)
// registers it, and ReplicationService makes the site's one instance from
// the registry like any other engine.
#pragma once

#include "core/replication_registry.h"
#include "replication/builtin/builtin_replicator.h"

namespace evac::builtin {

// The folders of a site's state_dir the engine keeps: its PITs' index and
// staging (private), and where running VMs' backups are exported (the only
// folder of state_dir the VMs' QEMU must reach).
inline constexpr const char* kReplicaFolder = "replication";
inline constexpr const char* kBackupFolder = "backup";

// Makes kind "builtin" available from `registry`. Each instance made keeps
// its replicas' index under <state_dir>/replication, exports running VMs'
// backups under <state_dir>/backup (`options.work_dir` is set to it), and,
// as it starts, finishes what a cycle cut short by a crash left on running
// VMs (resumes those it paused) rather than waiting for their group's next
// cycle.
void register_builtin_replicator(ReplicationRegistry& registry, SyncOptions options = {});

}  // namespace evac::builtin
