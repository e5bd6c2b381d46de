// Change tracking for running libvirt/QEMU VMs: checkpoints (persistent
// dirty bitmaps inside the qcow2 images) and pull-mode backups, whose NBD
// export shows the disks frozen at the backup's instant and lists the blocks
// written since a checkpoint.
//
// Internal to the libvirt provider (LibvirtProvider::change_tracking()).
// Needs QEMU (the test:/// driver has no backups: its calls answer
// kUnsupported), and evacd on the host whose libvirtd runs the VM, because
// the export is a unix socket in a local folder.
#pragma once

#include <string>
#include <vector>

#include "core/change_tracking.h"

namespace evac::libvirt {

class Connection;

class LibvirtChangeTracking : public ChangeTracking {
 public:
  explicit LibvirtChangeTracking(Connection& connection) : connection_(connection) {}

  Status pause(const std::string& vm_uuid) override;
  Status resume(const std::string& vm_uuid) override;
  Result<bool> is_paused(const std::string& vm_uuid) override;
  Result<BackupExport> begin_backup(const BackupRequest& request) override;
  Status end_backup(const std::string& vm_uuid, const std::string& work_dir) override;
  Result<std::vector<std::string>> list_checkpoints(const std::string& vm_uuid) override;
  Status delete_checkpoint(const std::string& vm_uuid, const std::string& name) override;

 private:
  Connection& connection_;
};

// The <domainbackup> and <domaincheckpoint> documents for a request, given
// the guest targets of all the VM's disks (those not requested are left out
// of both explicitly). Exposed for unit tests.
std::string backup_xml(const BackupRequest& request, const std::vector<std::string>& all_disks);
std::string checkpoint_xml(const BackupRequest& request, const std::vector<std::string>& all_disks);

// Whether the hypervisor's host (as libvirt names it) is this one: host names
// compared up to their first dot, as one side may give the fully qualified
// name and the other not. Exposed for unit tests.
bool same_host(const std::string& hypervisor_host, const std::string& this_host);

}  // namespace evac::libvirt
