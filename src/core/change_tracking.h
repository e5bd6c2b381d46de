// Change tracking on running VMs: what the built-in replicator needs from a
// hypervisor to copy live disks at one instant and, cycle after cycle, read
// only the blocks written since the previous one.
//
// libvirt implements it with checkpoints (QEMU persistent dirty bitmaps in
// the qcow2 image) and pull-mode backups: QEMU exports the disks frozen at
// the backup's instant over NBD, with the blocks changed since a checkpoint
// as an NBD metadata context, while the guest keeps running and writing.
// A provider without these answers nullptr from change_tracking().
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace evac {

// The names of the checkpoints evac makes start with this (the built-in
// replicator's, one per committed cycle); anything else is someone else's.
inline constexpr std::string_view kEvacCheckpointPrefix = "evac-";

struct DiskBackupRequest {
  std::string disk;              // guest target, e.g. "vda"
  std::string since_checkpoint;  // export the changes since this checkpoint; empty: the whole disk, no change map
  bool track = true;             // the new checkpoint tracks this disk (needs a qcow2 image)
};

struct BackupRequest {
  std::string vm_uuid;
  // Checkpoint created at the backup's instant, so the next cycle can ask
  // for exactly what changed after it. Empty when no disk is tracked.
  std::string checkpoint;
  std::vector<DiskBackupRequest> disks;
  // A local, empty folder the hypervisor can write: the NBD socket and the
  // scratch files (copy-before-write of blocks the guest overwrites while
  // the export is read) go there.
  std::string work_dir;
};

struct DiskExport {
  std::string disk;
  std::string export_name;
  std::string dirty_context;  // NBD meta context listing changed blocks; empty for a whole-disk export
};

struct BackupExport {
  std::string socket_path;  // the NBD server, on a unix socket
  std::vector<DiskExport> disks;
};

class ChangeTracking {
 public:
  virtual ~ChangeTracking() = default;

  // Pause and resume a VM's vCPUs. A group cycle pauses every VM, starts each
  // one's backup, and resumes them: one instant for the whole group, at the
  // cost of a pause of a few tens of milliseconds per VM.
  virtual Status pause(const std::string& vm_uuid) = 0;
  virtual Status resume(const std::string& vm_uuid) = 0;
  // True when the VM is paused (so a crashed cycle's pause can be undone).
  virtual Result<bool> is_paused(const std::string& vm_uuid) = 0;

  // Starts a pull-mode backup of the running VM and the new checkpoint at
  // the same instant. kFailedPrecondition if another backup job runs on it.
  virtual Result<BackupExport> begin_backup(const BackupRequest& request) = 0;
  // Ends the VM's backup job started with `work_dir` (the export closes and
  // the scratch files go). Ending one that is gone succeeds; a job started by
  // someone else is left alone.
  virtual Status end_backup(const std::string& vm_uuid, const std::string& work_dir) = 0;

  // The VM's checkpoints, oldest first.
  virtual Result<std::vector<std::string>> list_checkpoints(const std::string& vm_uuid) = 0;
  // Deletes one checkpoint. Its changes merge into its parent, so an older
  // checkpoint still covers every write since it was made. Deleting one that
  // is gone succeeds.
  virtual Status delete_checkpoint(const std::string& vm_uuid, const std::string& name) = 0;
};

// Finds the change tracking of the compute provider a VM runs on (by the
// provider's name, VmInfo::provider); nullptr when it has none.
using ChangeTrackingLookup = std::function<ChangeTracking*(const std::string& provider)>;

}  // namespace evac
