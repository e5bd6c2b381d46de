#include "providers/libvirt/libvirt_change_tracking.h"

#include <libvirt/libvirt.h>
#include <grp.h>
#include <libvirt/virterror.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cerrno>
#include <optional>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
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

Result<std::string> live_xml(virDomainPtr dom) {
  LibvirtString xml(virDomainGetXMLDesc(dom, 0));
  if (xml == nullptr) return last_error_described([&] { return "reading the definition of VM " + name_of(dom); });
  return std::string(xml.get());
}

// Guest targets of the VM's disks as it runs now (cdroms and floppies are
// never part of a backup or checkpoint).
Result<std::vector<std::string>> disk_targets(const std::string& xml) {
  auto described = parse_domain_xml(xml);
  if (!described) return described.status();
  std::vector<std::string> out;
  for (const auto& d : described->vm.disks)
    if (d.device != "cdrom" && d.device != "floppy") out.push_back(d.target);
  return out;
}

// The uid and gid a DAC label names ("+64055" or a name), resolved on this
// host: the one the VM runs on (begin_backup checks that first).
struct ProcessOwner {
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;  // its primary and supplementary groups, as libvirt gives QEMU
  std::string label;          // "user:group" as libvirt wrote it, for messages
};

// A DAC label's "+N": the number N; nullopt for a name or anything else.
std::optional<unsigned long> numeric_id(const std::string& part) {
  if (part.size() < 2 || part.front() != '+') return std::nullopt;
  char* end = nullptr;
  errno = 0;
  unsigned long id = std::strtoul(part.c_str() + 1, &end, 10);
  if (*end != '\0' || errno != 0 || id > 0x7fffffffUL) return std::nullopt;
  return id;
}

Result<ProcessOwner> resolve_owner(const DacLabel& label) {
  ProcessOwner o;
  o.label = label.user + ":" + label.group;
  const passwd* pw = nullptr;
  if (label.user.front() == '+') {
    auto uid = numeric_id(label.user);
    if (!uid) return invalid_argument("the DAC label '" + o.label + "' has no valid uid");
    o.uid = static_cast<uid_t>(*uid);
    pw = ::getpwuid(o.uid);
  } else {
    pw = ::getpwnam(label.user.c_str());
    if (pw == nullptr)
      return failed_precondition("QEMU runs as user '" + label.user + "', which this host does not know",
                                 "run evacd on the VM's own host, where libvirt's QEMU user exists");
    o.uid = pw->pw_uid;
  }
  if (label.group.front() == '+') {
    auto gid = numeric_id(label.group);
    if (!gid) return invalid_argument("the DAC label '" + o.label + "' has no valid gid");
    o.gid = static_cast<gid_t>(*gid);
  } else {
    const group* gr = ::getgrnam(label.group.c_str());
    if (gr == nullptr)
      return failed_precondition("QEMU runs as group '" + label.group + "', which this host does not know",
                                 "run evacd on the VM's own host, where libvirt's QEMU group exists");
    o.gid = gr->gr_gid;
  }
  o.groups.push_back(o.gid);
  if (pw != nullptr) {
    int n = 64;
    std::vector<gid_t> list(static_cast<std::size_t>(n));
    if (::getgrouplist(pw->pw_name, o.gid, list.data(), &n) < 0) {
      list.resize(static_cast<std::size_t>(n));
      if (::getgrouplist(pw->pw_name, o.gid, list.data(), &n) < 0) n = 0;
    }
    list.resize(static_cast<std::size_t>(std::max(n, 0)));
    o.groups.insert(o.groups.end(), list.begin(), list.end());
  }
  return o;
}

// Every folder above `dir` must let QEMU's user pass (search permission):
// otherwise QEMU fails with a bare "Permission denied" on the scratch file.
Status check_reachable(const std::string& dir, const ProcessOwner& owner, const std::string& vm) {
  std::filesystem::path p = std::filesystem::path(dir).parent_path();
  for (; !p.empty(); p = p.parent_path()) {
    struct stat st {};
    if (::stat(p.c_str(), &st) != 0)
      return unavailable("cannot read folder " + p.string() + ": " + std::strerror(errno));
    bool may = false;
    if (owner.uid == 0 || st.st_uid == owner.uid) {
      may = owner.uid == 0 || (st.st_mode & S_IXUSR) != 0;
    } else if (std::find(owner.groups.begin(), owner.groups.end(), st.st_gid) != owner.groups.end()) {
      may = (st.st_mode & S_IXGRP) != 0;
    } else {
      may = (st.st_mode & S_IXOTH) != 0;
    }
    if (!may) {
      char mode[8];
      std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
      return failed_precondition(
          "QEMU of VM '" + vm + "' runs as " + owner.label + " (uid " + std::to_string(owner.uid) +
              "), which cannot reach the backup folder " + dir + ": " + p.string() + " is mode " + mode +
              " and owned by uid " + std::to_string(st.st_uid),
          "let QEMU's user pass through every folder above evacd's state_dir (for example `chmod o+x " + p.string() +
              "`), or give evacd a state_dir under a folder it can pass; evacd keeps state_dir itself at mode 0711 "
              "with everything in it private");
    }
    if (p == p.root_path()) break;
  }
  return Status::ok();
}

// Hands the backup's work folder to the VM's QEMU, which creates the export
// socket in it and opens the scratch files libvirt makes there.
Status prepare_work_dir(virDomainPtr dom, const std::string& live_xml, const std::string& work_dir) {
  auto label = qemu_dac_label(live_xml);
  if (!label) return label.status();
  if (!label->has_value()) return Status::ok();  // QEMU opens what root can
  auto owner = resolve_owner(**label);
  if (!owner) return owner.status();
  EVAC_RETURN_IF_ERROR(check_reachable(work_dir, *owner, name_of(dom)));
  if (::chown(work_dir.c_str(), owner->uid, owner->gid) != 0)
    return unavailable("cannot hand the backup folder " + work_dir + " to QEMU's user " + owner->label + ": " +
                           std::strerror(errno),
                       "evacd must run as root on the VM's host");
  return Status::ok();
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
  auto xml = live_xml(dom->get());
  if (!xml) return xml.status();
  auto targets = disk_targets(*xml);
  if (!targets) return targets.status();
  for (const auto& d : request.disks)
    if (std::find(targets->begin(), targets->end(), d.disk) == targets->end())
      return not_found("VM '" + vm + "' has no disk " + d.disk, "its disks changed; the next cycle rereads them");
  EVAC_RETURN_IF_ERROR(prepare_work_dir(dom->get(), *xml, request.work_dir));
  std::string backup = backup_xml(request, *targets);
  bool tracked = std::any_of(request.disks.begin(), request.disks.end(), [](const auto& d) { return d.track; });
  std::string checkpoint = tracked ? checkpoint_xml(request, *targets) : std::string();
  if (virDomainBackupBegin(dom->get(), backup.c_str(), tracked ? checkpoint.c_str() : nullptr, 0) < 0) {
    Status s = last_error("starting a backup of VM '" + vm + "'");
    if (s.code() == StatusCode::kUnavailable) return s.with_context("libvirt at " + connection_.uri());
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
