#include "providers/libvirt/libvirt_change_tracking.h"

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <thread>
#include <pugixml.hpp>
#include <sstream>

#include "providers/libvirt/domain_xml.h"
#include "providers/libvirt/libvirt_connection.h"
#include "providers/libvirt/libvirt_errors.h"
#include "providers/libvirt/libvirt_handles.h"

namespace evac::libvirt {
namespace {

struct CheckpointRelease {
  void operator()(virDomainCheckpointPtr c) const { virDomainCheckpointFree(c); }
};
using CheckpointHandle = std::unique_ptr<std::remove_pointer_t<virDomainCheckpointPtr>, CheckpointRelease>;

constexpr const char* kSocketName = "nbd.sock";

Result<DomainHandle> find_domain(virConnectPtr conn, const std::string& uuid) {
  DomainHandle dom(virDomainLookupByUUIDString(conn, uuid.c_str()));
  if (dom == nullptr) return last_error("looking up VM " + uuid);
  return dom;
}

std::string name_of(virDomainPtr dom) {
  const char* n = virDomainGetName(dom);
  return n ? n : "?";
}

// Guest targets of the VM's disks as it runs now (cdroms and floppies are
// never part of a backup or checkpoint).
Result<std::vector<std::string>> disk_targets(virDomainPtr dom) {
  LibvirtString xml(virDomainGetXMLDesc(dom, 0));
  if (xml == nullptr) return last_error_described([&] { return "reading the definition of VM " + name_of(dom); });
  auto described = parse_domain_xml(xml.get());
  if (!described) return described.status();
  std::vector<std::string> out;
  for (const auto& d : described->vm.disks)
    if (d.device != "cdrom" && d.device != "floppy") out.push_back(d.target);
  return out;
}

const DiskBackupRequest* requested(const BackupRequest& r, const std::string& disk) {
  auto it = std::find_if(r.disks.begin(), r.disks.end(), [&](const DiskBackupRequest& d) { return d.disk == disk; });
  return it == r.disks.end() ? nullptr : &*it;
}

// Status of the VM's backup job: its <domainbackup> document, or empty when
// none runs.
Result<std::string> current_backup(virDomainPtr dom) {
  LibvirtString xml(virDomainBackupGetXMLDesc(dom, 0));
  if (xml != nullptr) return std::string(xml.get());
  int err = last_error_number();
  // No job, or a driver without backups (begin_backup then says so).
  if (err == 0 || err == VIR_ERR_NO_DOMAIN_BACKUP || err == VIR_ERR_OPERATION_INVALID || err == VIR_ERR_NO_SUPPORT)
    return std::string();
  return last_error_described([&] { return "reading the backup job of VM " + name_of(dom); });
}

std::string backup_socket(const std::string& backup_document) {
  pugi::xml_document doc;
  if (!doc.load_string(backup_document.c_str())) return "";
  return doc.child("domainbackup").child("server").attribute("socket").as_string();
}

}  // namespace

std::string backup_xml(const BackupRequest& request, const std::vector<std::string>& all_disks) {
  pugi::xml_document doc;
  auto root = doc.append_child("domainbackup");
  root.append_attribute("mode") = "pull";
  auto server = root.append_child("server");
  server.append_attribute("transport") = "unix";
  server.append_attribute("socket") = (request.work_dir + "/" + kSocketName).c_str();
  auto disks = root.append_child("disks");
  for (const auto& target : all_disks) {
    auto disk = disks.append_child("disk");
    disk.append_attribute("name") = target.c_str();
    const DiskBackupRequest* r = requested(request, target);
    if (r == nullptr) {
      disk.append_attribute("backup") = "no";
      continue;
    }
    disk.append_attribute("backup") = "yes";
    disk.append_attribute("type") = "file";
    // Per-disk modes: a disk newly added to the group (or a raw one) is
    // exported whole while the others export only their changes.
    if (r->since_checkpoint.empty()) {
      disk.append_attribute("backupmode") = "full";
    } else {
      disk.append_attribute("backupmode") = "incremental";
      disk.append_attribute("incremental") = r->since_checkpoint.c_str();
    }
    disk.append_attribute("exportname") = target.c_str();
    // The scratch image holds the old content of blocks the guest overwrites
    // while the export is read: the export stays the backup's instant.
    disk.append_child("driver").append_attribute("type") = "qcow2";
    disk.append_child("scratch").append_attribute("file") = (request.work_dir + "/" + target + ".scratch").c_str();
  }
  std::ostringstream out;
  doc.save(out, "", pugi::format_raw | pugi::format_no_declaration);
  return out.str();
}

std::string checkpoint_xml(const BackupRequest& request, const std::vector<std::string>& all_disks) {
  pugi::xml_document doc;
  auto root = doc.append_child("domaincheckpoint");
  root.append_child("name").text() = request.checkpoint.c_str();
  auto disks = root.append_child("disks");
  for (const auto& target : all_disks) {
    auto disk = disks.append_child("disk");
    disk.append_attribute("name") = target.c_str();
    const DiskBackupRequest* r = requested(request, target);
    disk.append_attribute("checkpoint") = (r != nullptr && r->track) ? "bitmap" : "no";
  }
  std::ostringstream out;
  doc.save(out, "", pugi::format_raw | pugi::format_no_declaration);
  return out.str();
}

Status LibvirtChangeTracking::pause(const std::string& vm_uuid) {
  return connection_.run([&](virConnectPtr conn) -> Status {
    auto dom = find_domain(conn, vm_uuid);
    if (!dom) return dom.status();
    if (virDomainSuspend(dom->get()) < 0)
      return last_error_described(
          [&] { return "pausing VM " + name_of(dom->get()); });
    return Status::ok();
  });
}

Status LibvirtChangeTracking::resume(const std::string& vm_uuid) {
  return connection_.run([&](virConnectPtr conn) -> Status {
    auto dom = find_domain(conn, vm_uuid);
    if (!dom) return dom.status();
    if (virDomainResume(dom->get()) < 0)
      return last_error_described(
          [&] { return "resuming VM " + name_of(dom->get()); });
    return Status::ok();
  });
}

Result<bool> LibvirtChangeTracking::is_paused(const std::string& vm_uuid) {
  return connection_.run([&](virConnectPtr conn) -> Result<bool> {
    auto dom = find_domain(conn, vm_uuid);
    if (!dom) return dom.status();
    int state = 0, reason = 0;
    if (virDomainGetState(dom->get(), &state, &reason, 0) < 0)
      return last_error_described([&] { return "reading the state of VM " + name_of(dom->get()); });
    return state == VIR_DOMAIN_PAUSED;
  });
}

bool same_host(const std::string& hypervisor_host, const std::string& this_host) {
  auto first_label = [](const std::string& name) { return name.substr(0, name.find('.')); };
  return !hypervisor_host.empty() && first_label(hypervisor_host) == first_label(this_host);
}

Result<BackupExport> LibvirtChangeTracking::begin_backup(const BackupRequest& request) {
  // Not retried on a fresh connection: a backup that started before the
  // connection died must not be started twice.
  auto conn = connection_.acquire();
  if (!conn) return conn.status();
  auto dom = find_domain(conn->get(), request.vm_uuid);
  if (!dom) return dom.status();
  const std::string vm = name_of(dom->get());
  // QEMU's export is a unix socket on the hypervisor's host: from any other
  // host the backup would start and then never be read.
  if (char* theirs = virConnectGetHostname(conn->get())) {
    const std::string hypervisor(theirs);
    std::free(theirs);
    char mine[256] = {};
    if (::gethostname(mine, sizeof mine - 1) == 0 && !same_host(hypervisor, mine))
      return failed_precondition(
          "VM '" + vm + "' runs on host '" + hypervisor + "', not on this evacd's host '" + mine +
              "': a running VM's disks are read from QEMU's backup export, a unix socket on its own host",
          "run this site's evacd on '" + hypervisor + "' with provider uri qemu:///system, or shut the VM down to "
          "replicate it by scanning its image files (they must be at the same paths here)");
  }
  auto running = current_backup(dom->get());
  if (!running) return running.status();
  if (!running->empty())
    return failed_precondition("VM '" + vm + "' already has a backup job (NBD socket " + backup_socket(*running) + ")",
                               "another backup tool may be running on it; wait for it, or end it with "
                               "`virsh domjobabort " + vm + "`");
  auto targets = disk_targets(dom->get());
  if (!targets) return targets.status();
  for (const auto& d : request.disks)
    if (std::find(targets->begin(), targets->end(), d.disk) == targets->end())
      return not_found("VM '" + vm + "' has no disk " + d.disk, "its disks changed; the next cycle rereads them");
  std::string backup = backup_xml(request, *targets);
  bool tracked = std::any_of(request.disks.begin(), request.disks.end(), [](const auto& d) { return d.track; });
  std::string checkpoint = tracked ? checkpoint_xml(request, *targets) : std::string();
  if (virDomainBackupBegin(dom->get(), backup.c_str(), tracked ? checkpoint.c_str() : nullptr, 0) < 0) {
    Status s = last_error("starting a backup of VM '" + vm + "'");
    if (s.code() == StatusCode::kUnsupported)
      return s.with_hint("this hypervisor has no incremental backup (it needs QEMU); shut the VM down to replicate "
                         "it by scanning its disks");
    return s;
  }
  BackupExport out;
  out.socket_path = request.work_dir + "/" + kSocketName;
  for (const auto& d : request.disks)
    out.disks.push_back(DiskExport{d.disk, d.disk, d.since_checkpoint.empty() ? "" : "qemu:dirty-bitmap:backup-" + d.disk});
  return out;
}

Status LibvirtChangeTracking::end_backup(const std::string& vm_uuid, const std::string& work_dir) {
  return connection_.run([&](virConnectPtr conn) -> Status {
    auto dom = find_domain(conn, vm_uuid);
    if (!dom) return dom.status().code() == StatusCode::kNotFound ? Status::ok() : dom.status();
    auto running = current_backup(dom->get());
    if (!running) return running.status();
    if (running->empty()) return Status::ok();
    // Only our own job: its export socket lies in the folder we gave it.
    std::string socket = backup_socket(*running);
    if (socket.rfind(work_dir + "/", 0) != 0) return Status::ok();
    if (virDomainAbortJob(dom->get()) < 0 && last_error_number() != VIR_ERR_OPERATION_INVALID)  // INVALID: it just ended
      return last_error_described([&] { return "ending the backup job of VM '" + name_of(dom->get()) + "'"; });
    // The abort is asynchronous: wait until the job is gone, so that the
    // next cycle's backup is not refused as "already has a backup job".
    for (int i = 0; i < 200; ++i) {
      auto still = current_backup(dom->get());
      if (!still) return still.status();
      if (still->empty()) return Status::ok();
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return unavailable("the backup job of VM '" + name_of(dom->get()) + "' did not end within 10 s of its abort",
                       "the next sync ends it again; check the VM with `virsh domjobinfo`");
  });
}

Result<std::vector<std::string>> LibvirtChangeTracking::list_checkpoints(const std::string& vm_uuid) {
  return connection_.run([&](virConnectPtr conn) -> Result<std::vector<std::string>> {
    auto dom = find_domain(conn, vm_uuid);
    if (!dom) return dom.status();
    virDomainCheckpointPtr* raw = nullptr;
    int n = virDomainListAllCheckpoints(dom->get(), &raw, VIR_DOMAIN_CHECKPOINT_LIST_TOPOLOGICAL);
    if (n < 0)
      return last_error_described(
          [&] { return "listing the checkpoints of VM '" + name_of(dom->get()) + "'"; });
    auto owned = adopt_list<CheckpointHandle>(raw, n);
    std::vector<std::string> names;
    for (const auto& c : owned) names.emplace_back(virDomainCheckpointGetName(c.get()));
    return names;
  });
}

Status LibvirtChangeTracking::delete_checkpoint(const std::string& vm_uuid, const std::string& name) {
  return connection_.run([&](virConnectPtr conn) -> Status {
    auto dom = find_domain(conn, vm_uuid);
    if (!dom) return dom.status();
    CheckpointHandle cp(virDomainCheckpointLookupByName(dom->get(), name.c_str(), 0));
    if (cp == nullptr) {
      if (last_error_number() == VIR_ERR_NO_DOMAIN_CHECKPOINT) return Status::ok();
      return last_error_described(
          [&] { return "looking up checkpoint " + name + " of VM '" + name_of(dom->get()) + "'"; });
    }
    if (virDomainCheckpointDelete(cp.get(), 0) < 0) {
      // A VM that is off may have lost the image holding the bitmap (a
      // reprotected VM's old disk); the checkpoint's record goes anyway.
      if (virDomainIsActive(dom->get()) == 0 &&
          virDomainCheckpointDelete(cp.get(), VIR_DOMAIN_CHECKPOINT_DELETE_METADATA_ONLY) == 0)
        return Status::ok();
      return last_error_described(
          [&] { return "deleting checkpoint " + name + " of VM '" + name_of(dom->get()) + "'"; });
    }
    return Status::ok();
  });
}

}  // namespace evac::libvirt
