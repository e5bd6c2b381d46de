// The compute provider interface: evac's one narrow door to a hypervisor
// manager. libvirt implements it first; a vSphere provider comes later.
//
// Implementations must be safe to call from several threads at once (evacd
// serves requests on a thread pool). Operations a backend cannot do return
// StatusCode::kUnsupported rather than pretending.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/change_tracking.h"
#include "core/model.h"
#include "core/status.h"

namespace evac {

class ComputeProvider {
 public:
  virtual ~ComputeProvider() = default;

  virtual const std::string& name() const = 0;
  virtual std::string kind() const = 0;  // "libvirt"
  virtual std::string uri() const = 0;   // where it connects, for display

  // Checks that the hypervisor manager answers; the error says why not.
  virtual Status ping() = 0;

  virtual Result<std::vector<VmInfo>> list_vms() = 0;
  // By name or UUID.
  virtual Result<VmInfo> get_vm(const std::string& name_or_uuid) = 0;
  virtual Result<std::vector<NetworkInfo>> list_networks() = 0;
  virtual Result<std::vector<StoragePoolInfo>> list_storage_pools() = 0;

  // Registers a powered-off VM marked as evac's placeholder. Never starts it.
  virtual Result<PlaceholderInfo> define_placeholder(const PlaceholderSpec& spec) = 0;
  // Removes a placeholder; refuses (kFailedPrecondition) a VM that is not one
  // of evac's placeholders or that is running. Removing one that is already
  // gone succeeds, so a retried cleanup converges.
  virtual Status remove_placeholder(const std::string& uuid) = 0;
  virtual Result<std::vector<PlaceholderInfo>> list_placeholders() = 0;

  // ---- recoveries: VMs that runs start and stop ----------------------------
  // Defaults answer kUnsupported, so a backend grows into these one by one.

  // Registers a test VM (powered off). Defining the same run's test VM of
  // the same source again returns it; any other VM holding the name is a
  // conflict (kAlreadyExists).
  virtual Result<TestVmInfo> define_test_vm(const TestVmSpec& spec);
  virtual Result<std::vector<TestVmInfo>> list_test_vms();
  // Powers a test VM off (it is a disposable copy) and removes it; refuses a
  // VM that is not one of evac's test VMs. Gone already: succeeds.
  virtual Status remove_test_vm(const std::string& uuid);
  // Turns a placeholder into the recovered VM (a failover or migration):
  // same name and UUID, its disks on `disks` (guest target -> image), no
  // longer marked as a placeholder but as recovered by `run`. Never starts
  // it. Done already by the same run: returns the VM.
  virtual Result<VmInfo> recover_placeholder(const std::string& uuid, const std::map<std::string, std::string>& disks,
                                             const std::string& run);
  // Reprotect: turns a VM here that a recovery at `marker.source_site` made
  // stale (fenced, off) into the placeholder of the VM now live there. Its
  // definition and disks stay as they are (the disks seed the reverse
  // replication); it is marked as that VM's placeholder instead of as
  // recovered, autostart goes off, and evac's change-tracking checkpoints on
  // it are dropped: they describe a replication from here that has ended.
  // A running VM is refused. Done already: returns the placeholder.
  virtual Result<PlaceholderInfo> adopt_as_placeholder(const std::string& uuid, const PlaceholderInfo& marker);
  // Reprotect, before the group is protected from here: copies into each
  // disk of a running VM whatever its backing images hold and drops them
  // from its chain (a block pull), waiting until every disk stands alone, so
  // the recovered VM no longer reads through the PITs it was recovered from.
  // Returns the disks it flattened (none when none had a backing image).
  // kUnsupported when the VM does not run or the hypervisor cannot pull
  // (libvirt's test driver): whoever owns the images may flatten them
  // offline instead (the built-in replicator does). Idempotent: a pull
  // still running from an earlier call is waited for, not started again.
  virtual Result<std::vector<std::string>> flatten_disks(const std::string& uuid);
  // Starts a VM; one already running succeeds.
  virtual Status power_on(const std::string& uuid);
  // Stops a VM: with `graceful`, asks the guest (ACPI) and waits up to
  // `timeout` (kUnavailable if it is still up then); else pulls the plug.
  // One already off succeeds.
  virtual Status power_off(const std::string& uuid, bool graceful, std::chrono::seconds timeout);
  // One round trip to the guest agent: ok when it answers, kUnavailable
  // while it does not (yet).
  virtual Status guest_ping(const std::string& uuid);
  // Runs argv in the guest through its agent, waiting up to `timeout`.
  virtual Result<GuestCommandResult> guest_exec(const std::string& uuid, const std::vector<std::string>& argv,
                                                std::chrono::seconds timeout);
  // The guest's interfaces with their MACs and IPv4 addresses (its agent).
  virtual Result<std::vector<GuestInterface>> guest_interfaces(const std::string& uuid);
  // The guest's IPv4 addresses, as its agent (or else the network's DHCP
  // leases) reports them; empty while it has none.
  virtual Result<std::vector<std::string>> guest_addresses(const std::string& uuid);

  // ---- readiness: what a run would meet, asked without side effects ---------

  // What would keep a defined VM (a placeholder) from starting here now:
  // each thing its definition names that is not here or not usable (a
  // network not active, a bridge or host device missing, a kernel, initrd or
  // firmware file missing, a storage pool inactive, an emulator missing), in
  // words for operators. Empty: nothing found.
  virtual Result<std::vector<std::string>> start_problems(const std::string& uuid);
  // What the hypervisor host has: the most VMs it can hold, as a recovery
  // asks before powering them on.
  struct HostCapacity {
    std::uint64_t memory_total_kib = 0;
    std::uint64_t memory_free_kib = 0;
    unsigned cpus = 0;
  };
  virtual Result<HostCapacity> host_capacity();

  // Change tracking for replicating running VMs; nullptr where the backend
  // has none (the built-in replicator then refuses running VMs).
  virtual ChangeTracking* change_tracking() { return nullptr; }
};

struct ProviderConfig {
  std::string name;
  std::string kind;  // "libvirt"
  std::string uri;
  // How long opening a connection may wait for the hypervisor manager's
  // answer, and how often an open one checks it still answers (silent for
  // about 4 intervals: the connection closes and its calls fail). These
  // bound every call, so a hung manager fails a step instead of holding it.
  std::chrono::seconds connect_timeout{15};
  std::chrono::seconds keepalive{5};
};

}  // namespace evac
