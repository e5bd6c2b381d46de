// The hypervisor-neutral inventory model.
//
// Everything above the providers speaks these types; libvirt XML (and later
// vSphere managed objects) stay inside their provider. A VM's native
// definition travels alongside as an opaque document so that a provider of
// the same kind can reproduce the VM exactly at the other site, while the
// neutral fields are what mappings, rules and a future cross-hypervisor
// recovery work from.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/status.h"

namespace evac {

enum class PowerState { kRunning, kPaused, kShutOff, kCrashed, kOther };
std::string_view power_state_name(PowerState s);

// Where a disk's data lives, as libvirt's <disk type=...><source .../>
// names it: an image file, a block device, or a network disk (an rbd
// pool/image, an iSCSI LUN, ...). Replication engines decide from it what
// they can read.
struct DiskSource {
  std::string type = "file";  // libvirt's disk type: "file", "block", "network", "dir", "volume"
  std::string path;           // file: the image; block: the device node; empty otherwise
  std::string protocol;       // network: "rbd", "iscsi", "nbd", ...
  std::string name;           // network: the protocol's name of the disk ("pool/image" for rbd)
  // For messages: "image file /x.qcow2", "block device /dev/sdb", "network disk rbd pool/image".
  std::string describe() const;
};

struct DiskInfo {
  std::string target;   // guest-visible name, e.g. "vda"
  std::string path;     // backing file or device at the site (qemu's spelling for network disks: "rbd:pool/image")
  std::string format;   // "qcow2", "raw", ...
  std::string bus;      // "virtio", "sata", ...
  std::string device;   // "disk" or "cdrom"
  std::optional<std::string> storage_pool;  // pool whose folder holds `path`, when known
  DiskSource source;  // what `path` is (its path equals `path` for files and block devices)
};
// `d.source` with its path filled from `d.path` for files and block devices
// (a DiskInfo built by hand may name the path only).
DiskSource source_of(const DiskInfo& d);

struct NicInfo {
  std::string mac;      // lower case, as guests' agents report them too
  std::string network;  // libvirt network name; the bridge's (type "bridge"); the host device's (type "direct")
  std::string type;     // "network", "bridge" or "direct" (macvtap)
  std::string model;    // "virtio", ...
};

// What a NIC attaches to, as inventories and mappings name it: a libvirt
// network by its name, a host bridge as "bridge:NAME", a host device a
// macvtap NIC sits on as "direct:NAME". One name space for all three, so
// that a mapping may lead from any kind to any kind and a network and a
// bridge of the same name are never confused.
struct Attachment {
  std::string type = "network";  // "network", "bridge" or "direct"
  std::string name;
  std::string key() const;  // "prod", "bridge:br0", "direct:eth1"
};
Attachment attachment_of(const NicInfo& nic);
// Reads a key back; a name without a known "kind:" prefix is a network.
Attachment parse_attachment(const std::string& key);
// The key `given` names among an inventory's `keys`: itself when it is one;
// a bare name that is no network but a bridge or a device ("br0" for
// "bridge:br0"); nullopt when none. kInvalidArgument when a bare name fits
// both a bridge and a device.
Result<std::optional<std::string>> resolve_attachment(const std::vector<std::string>& keys, const std::string& given);

struct NativeDefinition {
  std::string provider_kind;  // e.g. "libvirt"
  std::string document;       // e.g. the domain XML (inactive, secure)
};

struct VmInfo {
  std::string provider;  // compute provider name at the site
  std::string name;
  std::string uuid;
  PowerState state = PowerState::kOther;
  unsigned vcpus = 0;
  std::uint64_t memory_kib = 0;
  std::string firmware;  // "bios", "efi", "direct-kernel"
  std::vector<DiskInfo> disks;
  std::vector<NicInfo> nics;
  bool is_placeholder = false;  // registered by evac as a recovery placeholder
  NativeDefinition native;
};

// Something VMs' NICs attach to at a site: a libvirt network, a host bridge
// or a host device for macvtap NICs.
struct NetworkInfo {
  std::string provider;
  std::string name;  // its attachment key: "prod", "bridge:br0", "direct:eth1"
  std::string kind = "network";  // "network", "bridge" or "direct"
  std::string uuid;
  std::string bridge;
  bool active = false;
  std::string forward_mode;  // "" (none), "nat", "route", "bridge", "open", ...
  // Its traffic cannot leave the host: judged by what is there (no forward
  // mode, or a bridge with no uplink port), as `isolation` says.
  bool isolated = false;
  std::string isolation;  // what isolation was judged from, in words for operators
};

struct StoragePoolInfo {
  std::string provider;
  std::string name;
  std::string uuid;
  std::string type;  // "dir", "logical", ...
  std::string path;  // target folder for dir pools
  bool active = false;
  std::uint64_t capacity_bytes = 0;
  std::uint64_t available_bytes = 0;
};

// What a recovery site needs to register a placeholder: the protected VM
// with every resource already translated through the inventory mappings.
struct PlaceholderSpec {
  std::string group;           // protection group the VM belongs to
  std::string source_site;     // protected site
  std::string source_uuid;     // VM's UUID at the protected site
  VmInfo vm;                   // name, sizes, disks and NICs as they must be at this site
};

struct PlaceholderInfo {
  std::string provider;
  std::string name;
  std::string uuid;  // the placeholder's own UUID at the recovery site
  std::string group;
  std::string source_site;
  std::string source_uuid;
};

// A test recovery's copy of a protected VM at the recovery site: its
// placeholder's definition, renamed, on writable test copies of a point in
// time and attached only to test networks, marked as evac's test VM so that
// cleanup finds (and only ever removes) it.
struct TestVmSpec {
  std::string name;              // the test VM's own name, e.g. "web01-test"
  std::string placeholder_uuid;  // the placeholder whose definition it copies (same provider)
  std::string run;               // id of the test run that makes it
  std::string group;
  std::string source_site;
  std::string source_uuid;
  std::map<std::string, std::string> disks;     // guest target ("vda") -> writable qcow2 test copy
  // Every network a placeholder NIC is on -> the test network it gets
  // instead. A NIC on a network missing here is refused, never left on a
  // production network.
  std::map<std::string, std::string> networks;
};

struct TestVmInfo {
  std::string provider;
  std::string name;
  std::string uuid;
  PowerState state = PowerState::kOther;
  std::string run;
  std::string group;
  std::string source_site;
  std::string source_uuid;
};

// A network interface as the guest's agent reports it.
struct GuestInterface {
  std::string name;               // "eth0"
  std::string mac;                // lower case
  std::vector<std::string> ipv4;  // "10.0.0.7/24"
  std::vector<std::string> ipv6;  // "2001:db8::7/64"; link-local (fe80::/10) left out
};

// What a command run in a guest by its agent did.
struct GuestCommandResult {
  int exit_code = 0;
  std::string out;  // stdout, as the agent returned it (may be truncated by the agent)
  std::string err;
};

}  // namespace evac
