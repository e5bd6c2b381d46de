// Translation between libvirt's XML documents and evac's neutral model.
//
// Pure functions over strings, with no libvirt connection, so the mapping
// rules can be read (and tested) in one place.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/model.h"
#include "core/status.h"

namespace evac::libvirt {

// evac marks its placeholders with domain metadata in its own namespace:
//   <metadata><evac:placeholder xmlns:evac="https://evac.dev/xmlns/placeholder/1"
//       group="..." source-site="..." source-uuid="..."/></metadata>
inline constexpr std::string_view kPlaceholderNamespace = "https://evac.dev/xmlns/placeholder/1";
inline constexpr std::string_view kPlaceholderPrefix = "evac";

struct PlaceholderMarker {
  std::string group;
  std::string source_site;
  std::string source_uuid;
};

// ... and its test VMs with another element, so a test VM is never taken
// for a placeholder (or a placeholder removed as a test VM):
//   <evac:test-vm xmlns:evac="https://evac.dev/xmlns/test-vm/1" run="..."
//       group="..." source-site="..." source-uuid="..."/>
inline constexpr std::string_view kTestVmNamespace = "https://evac.dev/xmlns/test-vm/1";

struct TestVmMarker {
  std::string run;
  std::string group;
  std::string source_site;
  std::string source_uuid;
};

// ... and a placeholder a recovery turned into the live VM with:
//   <evac:recovered xmlns:evac="https://evac.dev/xmlns/recovered/1" run="..."
//       group="..." source-site="..." source-uuid="..."/>
inline constexpr std::string_view kRecoveredNamespace = "https://evac.dev/xmlns/recovered/1";

// A disk whose source is a storage volume (<disk type='volume'>): its path
// is only known to the pool, so the provider resolves it.
struct VolumeSource {
  std::size_t disk_index = 0;  // into DomainDescription::vm.disks
  std::string pool;
  std::string volume;
};

struct DomainDescription {
  // Name, UUID, vCPUs, memory, firmware, disks and NICs. Provider, power
  // state, storage pools of file disks and the native document are the
  // caller's to fill: they are not in the XML.
  VmInfo vm;
  std::optional<PlaceholderMarker> placeholder;
  std::optional<TestVmMarker> test_vm;
  std::optional<TestVmMarker> recovered;  // same fields: the run that recovered it
  std::vector<VolumeSource> volume_sources;
};

Result<DomainDescription> parse_domain_xml(std::string_view xml);

// Name, UUID, bridge and forward mode; `active` and isolation (which needs
// the bridge's ports: judge_isolation) are the caller's to fill.
// `forward_devices`, if given, gets the host interfaces a forward names
// (<forward dev=...> and its <interface dev=...>): uplinks of their own.
Result<NetworkInfo> parse_network_xml(std::string_view xml, std::vector<std::string>* forward_devices = nullptr);

// A host interface as libvirt's interface driver describes it.
struct HostInterface {
  std::string name;
  std::string type;                // "bridge", "ethernet", "bond", "vlan"
  std::vector<std::string> ports;  // a bridge's
};
Result<HostInterface> parse_host_interface(std::string_view interface_xml);

// The ports of a host bridge from libvirt's interface XML
// (<interface type='bridge'><bridge><interface name='...'/>).
Result<std::vector<std::string>> bridge_ports(std::string_view interface_xml);

// The host-side devices of a running VM's NICs (<target dev='vnet3'/>): the
// taps that are guests', not uplinks, on a bridge.
Result<std::vector<std::string>> nic_target_devices(std::string_view live_domain_xml);

// Whether a network's traffic can leave the host, judged by what is there:
// no forward mode, or a bridge whose ports are only guests' taps (`ports`,
// nullopt when they could not be read, with `ports_error`: then only a
// network without a forward mode counts as isolated), means isolated;
// a forward mode that routes, NATs or names a host device, or any port that
// is not a guest's tap, does not. Sets net.isolated and net.isolation.
void judge_isolation(NetworkInfo& net, const std::vector<std::string>& forward_devices,
                     const std::optional<std::vector<std::string>>& ports, const std::string& ports_error,
                     const std::vector<std::string>& guest_taps);

// Name, UUID, type and target path; state and sizes are the caller's.
Result<StoragePoolInfo> parse_storage_pool_xml(std::string_view xml);

// The domain XML that registers `spec` as a placeholder: the protected VM's
// own libvirt definition when it has one, else a minimal one built from the
// neutral fields; renamed, without a UUID (libvirt assigns a new one), with
// the recovery site's disk paths and networks from the spec, without
// security labels, and marked with evac's placeholder metadata.
Result<std::string> placeholder_domain_xml(const PlaceholderSpec& spec);

// The domain XML of a test VM: `placeholder_xml` (the placeholder's
// definition at this site) renamed to spec.name, without UUID, its disks on
// the spec's test copies (qcow2), every NIC moved to its test network, and
// marked as evac's test VM instead of a placeholder. A disk or NIC the spec
// does not place is refused: a test copy must neither write to a replica nor
// reach a production network.
Result<std::string> test_vm_domain_xml(std::string_view placeholder_xml, const TestVmSpec& spec);

// The placeholder's definition made the recovered VM: same name and UUID,
// its disks on `disks` (guest target -> qcow2 image; every disk must have
// one), marked as recovered by `run` instead of as a placeholder.
Result<std::string> recovered_domain_xml(std::string_view placeholder_xml, const std::map<std::string, std::string>& disks,
                                         const std::string& run);

// A VM's own definition made the placeholder of the VM now live elsewhere
// (reprotect): unchanged but for its markers (any placeholder, test-VM or
// recovered marker replaced by `marker`) and its description.
Result<std::string> adopted_placeholder_xml(std::string_view domain_xml, const PlaceholderMarker& marker);

// Targets ("vda") of the disks whose live definition names a backing image
// (<backingStore> with a <source>): the disks a block pull would flatten.
Result<std::vector<std::string>> disks_with_backing_images(std::string_view live_domain_xml);

// The host files a VM's definition needs to start: its emulator, and the
// kernel, initrd and firmware (loader, NVRAM template) it boots from.
struct HostFiles {
  std::vector<std::pair<std::string, std::string>> files;  // what ("kernel"), path
};
Result<HostFiles> host_files(std::string_view domain_xml);

// Who QEMU runs as for a running VM, as its live definition's DAC label
// says (<seclabel model='dac'><label>+64055:+64055</label>, or user and
// group names): anything evac hands to that QEMU (a backup's scratch files
// and export socket) must be reachable by it. nullopt when no DAC driver
// relabels for this VM (QEMU as root with dynamic_ownership off,
// security_driver "none", or relabel='no'): QEMU then opens what root can.
struct DacLabel {
  std::string user;   // "+64055" (a uid) or a user name
  std::string group;  // "+64055" (a gid) or a group name
};
Result<std::optional<DacLabel>> qemu_dac_label(std::string_view live_domain_xml);

}  // namespace evac::libvirt
