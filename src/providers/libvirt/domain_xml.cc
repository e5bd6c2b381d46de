#include "providers/libvirt/domain_xml.h"

#include <pugixml.hpp>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <set>
#include <sstream>

namespace evac::libvirt {
namespace {

// ---------------------------------------------------------------- helpers

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

Result<pugi::xml_node> load_root(pugi::xml_document& doc, std::string_view xml, const char* root,
                                 std::string_view what) {
  pugi::xml_parse_result parsed = doc.load_buffer(xml.data(), xml.size());
  if (!parsed) {
    return invalid_argument(std::string(what) + " is not well-formed XML: " + parsed.description() + " at offset " +
                            std::to_string(parsed.offset));
  }
  pugi::xml_node node = doc.child(root);
  if (!node) return invalid_argument(std::string(what) + " has no <" + root + "> element");
  return node;
}

std::string text_of(pugi::xml_node parent, const char* child) { return parent.child(child).text().as_string(); }

// pugixml does not resolve namespaces; libvirt writes each metadata element
// with its own xmlns declaration, but an ancestor may carry it as well.
std::string namespace_of(pugi::xml_node node) {
  std::string_view name = node.name();
  std::size_t colon = name.find(':');
  std::string declaration = colon == std::string_view::npos ? "xmlns" : "xmlns:" + std::string(name.substr(0, colon));
  for (pugi::xml_node n = node; n; n = n.parent()) {
    if (pugi::xml_attribute a = n.attribute(declaration.c_str())) return a.value();
  }
  return {};
}

std::string_view local_name(pugi::xml_node node) {
  std::string_view name = node.name();
  std::size_t colon = name.find(':');
  return colon == std::string_view::npos ? name : name.substr(colon + 1);
}

bool is_placeholder_element(pugi::xml_node node) {
  return node.type() == pugi::node_element && local_name(node) == "placeholder" &&
         namespace_of(node) == kPlaceholderNamespace;
}

bool is_test_vm_element(pugi::xml_node node) {
  return node.type() == pugi::node_element && local_name(node) == "test-vm" && namespace_of(node) == kTestVmNamespace;
}

bool is_recovered_element(pugi::xml_node node) {
  return node.type() == pugi::node_element && local_name(node) == "recovered" && namespace_of(node) == kRecoveredNamespace;
}

// Children are collected first because removing while iterating skips nodes.
std::vector<pugi::xml_node> children_named(pugi::xml_node parent, const char* name) {
  std::vector<pugi::xml_node> out;
  for (pugi::xml_node n : parent.children(name)) out.push_back(n);
  return out;
}

pugi::xml_node child_or_new(pugi::xml_node parent, const char* name) {
  pugi::xml_node n = parent.child(name);
  return n ? n : parent.append_child(name);
}

void set_attribute(pugi::xml_node node, const char* name, std::string_view value) {
  pugi::xml_attribute a = node.attribute(name);
  if (!a) a = node.append_attribute(name);
  a.set_value(std::string(value).c_str());
}

void set_child_text(pugi::xml_node parent, const char* name, std::string_view value) {
  child_or_new(parent, name).text().set(std::string(value).c_str());
}

void remove_all(pugi::xml_node parent, const char* name) {
  while (parent.remove_child(name)) {
  }
}

void remove_descendants(pugi::xml_node root, const char* name) {
  for (pugi::xpath_node found : root.select_nodes((std::string(".//") + name).c_str())) {
    found.node().parent().remove_child(found.node());
  }
}

// ------------------------------------------------------- domain → model

// libvirt accepts memory in many units (its virScaleInteger rules); the
// model counts KiB. "KB", "MB", ... are powers of 1000, everything else 1024.
std::uint64_t to_kib(std::uint64_t value, std::string_view unit_attr) {
  std::string unit = lower(unit_attr);
  if (unit.empty()) return value;  // libvirt's default is KiB
  if (unit == "b" || unit == "bytes") return value / 1024;
  static const std::string kPrefixes = "kmgtpe";
  std::size_t power = kPrefixes.find(unit[0]);
  if (power == std::string::npos) return value;
  bool decimal = unit.size() == 2 && unit[1] == 'b';
  long double bytes = static_cast<long double>(value);
  for (std::size_t i = 0; i <= power; ++i) bytes *= decimal ? 1000.0L : 1024.0L;
  return static_cast<std::uint64_t>(bytes / 1024.0L);
}

unsigned parse_vcpus(pugi::xml_node domain) {
  pugi::xml_node vcpu = domain.child("vcpu");
  // The guest boots with `current` vCPUs; the element's value is the
  // hot-plug maximum.
  if (pugi::xml_attribute current = vcpu.attribute("current")) return current.as_uint();
  return vcpu.text().as_uint();
}

std::string parse_firmware(pugi::xml_node os) {
  if (!text_of(os, "kernel").empty()) return "direct-kernel";
  if (std::string_view(os.attribute("firmware").as_string()) == "efi" || os.child("loader")) return "efi";
  return "bios";
}

// What <disk type=...><source .../> names. A type libvirt has beyond these
// five (nvme, vhostuser, ...) keeps its name, with no path.
DiskSource parse_disk_source(pugi::xml_node disk) {
  DiskSource out;
  out.type = disk.attribute("type").as_string("file");  // libvirt's default
  pugi::xml_node source = disk.child("source");
  if (out.type == "block") {
    out.path = source.attribute("dev").as_string();
  } else if (out.type == "dir") {
    out.path = source.attribute("dir").as_string();
  } else if (out.type == "network") {
    out.protocol = source.attribute("protocol").as_string();
    out.name = source.attribute("name").as_string();
  } else if (out.type == "volume") {
    out.name = std::string(source.attribute("pool").as_string()) + "/" + source.attribute("volume").as_string();
  } else {
    out.path = source.attribute("file").as_string();
  }
  return out;
}

// The model's one-string path of a disk: the file, device or folder; qemu's
// spelling of a network disk ("rbd:pool/image"); empty for a pool volume
// until its pool tells the path.
std::string disk_path(const DiskSource& source) {
  if (source.type == "network") return source.name.empty() ? "" : source.protocol + ":" + source.name;
  if (source.type == "volume") return "";
  return source.path;
}

DiskInfo parse_disk(pugi::xml_node disk) {
  DiskInfo info;
  info.target = disk.child("target").attribute("dev").as_string();
  info.bus = disk.child("target").attribute("bus").as_string();
  info.device = disk.attribute("device").as_string("disk");
  info.format = disk.child("driver").attribute("type").as_string();
  info.source = parse_disk_source(disk);
  info.path = disk_path(info.source);
  return info;
}

NicInfo parse_interface(pugi::xml_node iface) {
  NicInfo nic;
  nic.type = iface.attribute("type").as_string();
  nic.mac = lower(iface.child("mac").attribute("address").as_string());
  nic.model = iface.child("model").attribute("type").as_string();
  pugi::xml_node source = iface.child("source");
  if (nic.type == "network") {
    nic.network = source.attribute("network").as_string();
  } else if (nic.type == "bridge") {
    nic.network = source.attribute("bridge").as_string();
  } else {
    nic.network = source.attribute("dev").as_string();  // direct (macvtap) and friends
  }
  return nic;
}

std::optional<PlaceholderMarker> parse_marker(pugi::xml_node domain) {
  for (pugi::xml_node n : domain.child("metadata").children()) {
    if (!is_placeholder_element(n)) continue;
    return PlaceholderMarker{n.attribute("group").as_string(), n.attribute("source-site").as_string(),
                             n.attribute("source-uuid").as_string()};
  }
  return std::nullopt;
}

std::optional<TestVmMarker> parse_test_marker(pugi::xml_node domain, bool (*is_marker)(pugi::xml_node)) {
  for (pugi::xml_node n : domain.child("metadata").children()) {
    if (!is_marker(n)) continue;
    return TestVmMarker{n.attribute("run").as_string(), n.attribute("group").as_string(),
                        n.attribute("source-site").as_string(), n.attribute("source-uuid").as_string()};
  }
  return std::nullopt;
}

// ------------------------------------------------------- spec → domain

std::string describe_placeholder(const PlaceholderSpec& spec) {
  return "evac placeholder for " + spec.source_site + "/" + spec.vm.name + " (group " + spec.group +
         "): started only by an evac recovery";
}

Status check_spec(const PlaceholderSpec& spec) {
  if (spec.vm.name.empty()) return invalid_argument("a placeholder needs a VM name");
  if (spec.source_uuid.empty() || spec.group.empty() || spec.source_site.empty()) {
    return invalid_argument("placeholder for " + spec.vm.name + " lacks its group, source site or source UUID");
  }
  for (const DiskInfo& disk : spec.vm.disks) {
    if (disk.target.empty()) return invalid_argument("a disk of placeholder " + spec.vm.name + " has no target");
    // Network disks need their protocol's hosts and secrets too, which the
    // neutral model does not carry; such replicas arrive with their adapter.
    if (!disk.path.empty() && disk.path.front() != '/') {
      return unsupported("disk " + disk.target + " of placeholder " + spec.vm.name + " has path '" + disk.path +
                             "', which is not a file or device",
                         "map the disk to a file or block device at the recovery site");
    }
  }
  return Status::ok();
}

void point_disk_at(pugi::xml_node disk, const DiskInfo& wanted) {
  remove_all(disk, "source");
  // A backing chain describes the protected site's files, not the replica.
  remove_all(disk, "backingStore");
  if (!wanted.path.empty()) {
    bool block_device = wanted.path.rfind("/dev/", 0) == 0;
    set_attribute(disk, "type", block_device ? "block" : "file");
    set_attribute(disk.append_child("source"), block_device ? "dev" : "file", wanted.path);
  }
  if (!wanted.format.empty()) {
    pugi::xml_node driver = disk.child("driver");
    if (!driver) {
      driver = disk.prepend_child("driver");
      set_attribute(driver, "name", "qemu");
    }
    set_attribute(driver, "type", wanted.format);
  }
}

void append_disk(pugi::xml_node devices, const DiskInfo& wanted) {
  pugi::xml_node disk = devices.append_child("disk");
  set_attribute(disk, "type", "file");
  set_attribute(disk, "device", wanted.device.empty() ? "disk" : wanted.device);
  pugi::xml_node target = disk.append_child("target");
  set_attribute(target, "dev", wanted.target);
  if (!wanted.bus.empty()) set_attribute(target, "bus", wanted.bus);
  point_disk_at(disk, wanted);
}

bool is_removable_media(pugi::xml_node disk) {
  std::string_view device = disk.attribute("device").as_string();
  return device == "cdrom" || device == "floppy";
}

// The spec's disks are authoritative: they are what was replicated.
void rewrite_disks(pugi::xml_node devices, const std::vector<DiskInfo>& wanted) {
  std::set<std::string> placed;
  for (pugi::xml_node disk : children_named(devices, "disk")) {
    std::string target = disk.child("target").attribute("dev").as_string();
    auto match = std::find_if(wanted.begin(), wanted.end(), [&](const DiskInfo& d) { return d.target == target; });
    if (match != wanted.end()) {
      point_disk_at(disk, *match);
      placed.insert(target);
    } else if (is_removable_media(disk)) {
      // Keep the drive so the guest's device layout stays; its medium is a
      // file at the protected site, so eject it.
      remove_all(disk, "source");
    } else {
      // Not replicated: its path would name a protected-site file.
      devices.remove_child(disk);
    }
  }
  for (const DiskInfo& d : wanted) {
    if (!placed.count(d.target)) append_disk(devices, d);
  }
}

void connect_interface(pugi::xml_node iface, const NicInfo& wanted) {
  std::string old_type = iface.attribute("type").as_string();
  std::string type = wanted.type.empty() ? old_type : wanted.type;
  set_attribute(iface, "type", type);
  if (type == "network" || type == "bridge" || type == "direct") {
    std::string mode = iface.child("source").attribute("mode").as_string();
    remove_all(iface, "source");
    pugi::xml_node source = iface.append_child("source");
    set_attribute(source, type == "network" ? "network" : type == "bridge" ? "bridge" : "dev", wanted.network);
    if (type == "direct") set_attribute(source, "mode", mode.empty() ? "bridge" : mode);
  }
  if (type != old_type) remove_all(iface, "virtualport");  // port profiles belong to the old kind of link
  // Host-side device names are chosen per host; a copied one may clash.
  remove_all(iface, "target");
  if (!wanted.mac.empty()) set_attribute(child_or_new(iface, "mac"), "address", wanted.mac);
  if (!wanted.model.empty()) set_attribute(child_or_new(iface, "model"), "type", wanted.model);
}

void append_interface(pugi::xml_node devices, const NicInfo& wanted) {
  pugi::xml_node iface = devices.append_child("interface");
  set_attribute(iface, "type", wanted.type.empty() ? "network" : wanted.type);
  connect_interface(iface, wanted);
}

// Which of the spec's NICs an existing <interface> becomes: the one with its
// MAC, or, where MACs are missing, the one at the same position.
std::optional<std::size_t> matching_nic(pugi::xml_node iface, std::size_t position, const std::vector<NicInfo>& wanted,
                                        const std::vector<bool>& used) {
  std::string mac = lower(iface.child("mac").attribute("address").as_string());
  for (std::size_t i = 0; i < wanted.size(); ++i) {
    if (!used[i] && !mac.empty() && lower(wanted[i].mac) == mac) return i;
  }
  if (position < wanted.size() && !used[position] && (mac.empty() || wanted[position].mac.empty())) return position;
  return std::nullopt;
}

void rewrite_interfaces(pugi::xml_node devices, const std::vector<NicInfo>& wanted) {
  std::vector<bool> used(wanted.size(), false);
  std::size_t position = 0;
  for (pugi::xml_node iface : children_named(devices, "interface")) {
    if (auto match = matching_nic(iface, position++, wanted, used)) {
      connect_interface(iface, wanted[*match]);
      used[*match] = true;
    } else {
      devices.remove_child(iface);  // its network is a protected-site one
    }
  }
  for (std::size_t i = 0; i < wanted.size(); ++i) {
    if (!used[i]) append_interface(devices, wanted[i]);
  }
}

// Any earlier marker goes: a protected VM that was itself recovered (or a
// VM made a placeholder again at reprotect) carries evac:recovered, which
// would make its placeholder look recovered already.
void mark_as_placeholder(pugi::xml_node domain, const PlaceholderMarker& m) {
  pugi::xml_node metadata = child_or_new(domain, "metadata");
  std::vector<pugi::xml_node> stale;
  for (pugi::xml_node n : metadata.children()) {
    if (is_placeholder_element(n) || is_recovered_element(n)) stale.push_back(n);
  }
  for (pugi::xml_node n : stale) metadata.remove_child(n);

  std::string prefix(kPlaceholderPrefix);
  pugi::xml_node marker = metadata.append_child((prefix + ":placeholder").c_str());
  set_attribute(marker, ("xmlns:" + prefix).c_str(), kPlaceholderNamespace);
  set_attribute(marker, "group", m.group);
  set_attribute(marker, "source-site", m.source_site);
  set_attribute(marker, "source-uuid", m.source_uuid);
}

// Without a libvirt definition to copy (another kind of hypervisor), the
// neutral fields are all there is: a plain QEMU guest with ACPI, so that a
// graceful shutdown works.
Status build_minimal_domain(const VmInfo& vm, pugi::xml_document& doc) {
  if (vm.memory_kib == 0 || vm.vcpus == 0) {
    return invalid_argument("placeholder " + vm.name + " needs its memory size and vCPU count");
  }
  if (vm.firmware == "direct-kernel") {
    return unsupported("placeholder " + vm.name + " boots a kernel directly, which the neutral model cannot describe",
                       "protect it from a libvirt site, whose native definition carries the kernel");
  }
  pugi::xml_node domain = doc.append_child("domain");
  set_attribute(domain, "type", "qemu");
  set_child_text(domain, "name", vm.name);
  pugi::xml_node memory = domain.append_child("memory");
  set_attribute(memory, "unit", "KiB");
  memory.text().set(static_cast<unsigned long long>(vm.memory_kib));
  domain.append_child("vcpu").text().set(vm.vcpus);
  pugi::xml_node os = domain.append_child("os");
  if (vm.firmware == "efi") set_attribute(os, "firmware", "efi");
  os.append_child("type").text().set("hvm");
  pugi::xml_node features = domain.append_child("features");
  features.append_child("acpi");
  features.append_child("apic");
  domain.append_child("devices");
  return Status::ok();
}

std::string serialize(const pugi::xml_document& doc) {
  std::ostringstream out;
  doc.save(out, "  ", pugi::format_default | pugi::format_no_declaration);
  return out.str();
}

}  // namespace

Result<DomainDescription> parse_domain_xml(std::string_view xml) {
  pugi::xml_document doc;
  auto root = load_root(doc, xml, "domain", "domain definition");
  if (!root.is_ok()) return root.status();
  pugi::xml_node domain = *root;

  DomainDescription out;
  VmInfo& vm = out.vm;
  vm.name = text_of(domain, "name");
  vm.uuid = text_of(domain, "uuid");
  vm.vcpus = parse_vcpus(domain);
  pugi::xml_node memory = domain.child("memory");
  vm.memory_kib = to_kib(memory.text().as_ullong(), memory.attribute("unit").as_string());
  vm.firmware = parse_firmware(domain.child("os"));

  pugi::xml_node devices = domain.child("devices");
  for (pugi::xml_node disk : devices.children("disk")) {
    vm.disks.push_back(parse_disk(disk));
    if (std::string_view(disk.attribute("type").as_string()) == "volume") {
      pugi::xml_node source = disk.child("source");
      out.volume_sources.push_back(
          {vm.disks.size() - 1, source.attribute("pool").as_string(), source.attribute("volume").as_string()});
    }
  }
  for (pugi::xml_node iface : devices.children("interface")) vm.nics.push_back(parse_interface(iface));

  out.placeholder = parse_marker(domain);
  out.test_vm = parse_test_marker(domain, is_test_vm_element);
  out.recovered = parse_test_marker(domain, is_recovered_element);
  vm.is_placeholder = out.placeholder.has_value();
  return out;
}

Result<NetworkInfo> parse_network_xml(std::string_view xml, std::vector<std::string>* forward_devices) {
  pugi::xml_document doc;
  auto root = load_root(doc, xml, "network", "network definition");
  if (!root.is_ok()) return root.status();
  NetworkInfo net;
  net.name = text_of(*root, "name");
  net.uuid = text_of(*root, "uuid");
  net.bridge = root->child("bridge").attribute("name").as_string();
  if (pugi::xml_node forward = root->child("forward")) {
    net.forward_mode = forward.attribute("mode").as_string("nat");  // libvirt's default mode
    if (forward_devices != nullptr) {
      if (const char* dev = forward.attribute("dev").as_string(); *dev != '\0') forward_devices->emplace_back(dev);
      for (pugi::xml_node i : children_named(forward, "interface"))
        if (const char* dev = i.attribute("dev").as_string(); *dev != '\0') forward_devices->emplace_back(dev);
    }
  }
  return net;
}

Result<HostInterface> parse_host_interface(std::string_view interface_xml) {
  pugi::xml_document doc;
  auto root = load_root(doc, interface_xml, "interface", "host interface definition");
  if (!root.is_ok()) return root.status();
  HostInterface out;
  out.name = root->attribute("name").as_string();
  out.type = root->attribute("type").as_string();
  for (pugi::xml_node port : children_named(root->child("bridge"), "interface"))
    out.ports.emplace_back(port.attribute("name").as_string());
  return out;
}

Result<std::vector<std::string>> bridge_ports(std::string_view interface_xml) {
  auto host = parse_host_interface(interface_xml);
  if (!host.is_ok()) return host.status();
  return std::move(host->ports);
}

Result<std::vector<std::string>> nic_target_devices(std::string_view live_domain_xml) {
  pugi::xml_document doc;
  auto root = load_root(doc, live_domain_xml, "domain", "a running VM's definition");
  if (!root.is_ok()) return root.status();
  std::vector<std::string> out;
  for (pugi::xml_node iface : children_named(root->child("devices"), "interface"))
    if (const char* dev = iface.child("target").attribute("dev").as_string(); *dev != '\0') out.emplace_back(dev);
  return out;
}

void judge_isolation(NetworkInfo& net, const std::vector<std::string>& forward_devices,
                     const std::optional<std::vector<std::string>>& ports, const std::string& ports_error,
                     const std::vector<std::string>& guest_taps) {
  auto list = [](const std::vector<std::string>& names) {
    std::string out;
    for (const auto& n : names) out += (out.empty() ? "" : ", ") + n;
    return out;
  };
  const std::string mode = net.kind == "bridge"       ? "a host bridge VMs attach to directly"
                           : net.forward_mode.empty() ? "no forward mode"
                                                      : "forward mode '" + net.forward_mode + "'";
  net.isolated = false;
  if (net.kind == "direct") {
    net.isolation = "a host device (macvtap): traffic leaves the host";
    return;
  }
  if (!forward_devices.empty()) {
    net.isolation = mode + " through host device " + list(forward_devices) + ": traffic leaves the host";
    return;
  }
  if (!net.forward_mode.empty() && net.forward_mode != "bridge") {
    net.isolation = mode + ": libvirt sends its traffic off the host";
    return;
  }
  if (net.bridge.empty()) {
    net.isolated = net.forward_mode.empty();
    net.isolation = net.isolated ? "no forward mode and no bridge: nothing leaves the host"
                                 : mode + " without a bridge or device: cannot tell where it leads";
    return;
  }
  if (!ports) {
    // libvirt makes an isolated network's bridge itself and gives it no
    // uplink; one added by hand would show in its ports, unread here.
    net.isolated = net.kind == "network" && net.forward_mode.empty();
    net.isolation = mode + " on bridge '" + net.bridge + "', whose ports could not be read (" + ports_error + ")" +
                    (net.isolated ? ": libvirt gives it no uplink" : ": counted as reaching other networks");
    return;
  }
  // A bridge's own ports: guests' taps stay on the host; anything else (a
  // NIC, a veth, a bond, a VLAN) is an uplink. libvirt's "<bridge>-nic"
  // dummy tap, made by older versions, carries nothing.
  std::vector<std::string> taps, uplinks;
  for (const auto& p : *ports) {
    if (p == net.bridge + "-nic") continue;
    (std::find(guest_taps.begin(), guest_taps.end(), p) != guest_taps.end() ? taps : uplinks).push_back(p);
  }
  const std::string on = net.kind == "bridge" ? "host bridge '" + net.bridge + "'" : mode + " on bridge '" + net.bridge + "'";
  if (!uplinks.empty()) {
    net.isolation = on + ", which has uplink port(s) " + list(uplinks) + ": traffic reaches beyond the host";
    return;
  }
  net.isolated = true;
  net.isolation = on + ", which has no uplink" +
                  (taps.empty() ? std::string(": no ports yet") : ": its ports are guests' taps (" + list(taps) + ")");
}

Result<StoragePoolInfo> parse_storage_pool_xml(std::string_view xml) {
  pugi::xml_document doc;
  auto root = load_root(doc, xml, "pool", "storage pool definition");
  if (!root.is_ok()) return root.status();
  StoragePoolInfo pool;
  pool.name = text_of(*root, "name");
  pool.uuid = text_of(*root, "uuid");
  pool.type = root->attribute("type").as_string();
  pool.path = root->child("target").child("path").text().as_string();
  return pool;
}

Result<std::string> placeholder_domain_xml(const PlaceholderSpec& spec) {
  EVAC_RETURN_IF_ERROR(check_spec(spec));
  pugi::xml_document doc;
  if (spec.vm.native.provider_kind == "libvirt") {
    auto root = load_root(doc, spec.vm.native.document, "domain", "the native definition of " + spec.vm.name);
    if (!root.is_ok()) return root.status();
  } else {
    EVAC_RETURN_IF_ERROR(build_minimal_domain(spec.vm, doc));
  }
  pugi::xml_node domain = doc.child("domain");

  set_child_text(domain, "name", spec.vm.name);
  remove_all(domain, "uuid");  // libvirt assigns a fresh one: both sites' VMs exist at once
  domain.remove_attribute("id");
  pugi::xml_node devices = child_or_new(domain, "devices");
  rewrite_disks(devices, spec.vm.disks);
  rewrite_interfaces(devices, spec.vm.nics);
  // Labels name the protected site's security contexts; the recovery
  // site's libvirt picks its own.
  remove_descendants(domain, "seclabel");
  mark_as_placeholder(domain, PlaceholderMarker{spec.group, spec.source_site, spec.source_uuid});
  set_child_text(domain, "description", describe_placeholder(spec));
  return serialize(doc);
}

namespace {

// Points every disk of a placeholder at its copy (qcow2); a disk without
// one, or a copy without a disk, is an error: the VM would otherwise write
// to a replica, or miss a disk.
Status place_disks_on_copies(pugi::xml_node devices, const std::map<std::string, std::string>& copies, const std::string& vm) {
  std::set<std::string> placed;
  for (pugi::xml_node disk : children_named(devices, "disk")) {
    if (is_removable_media(disk)) {
      remove_all(disk, "source");
      continue;
    }
    std::string target = disk.child("target").attribute("dev").as_string();
    auto it = copies.find(target);
    if (it == copies.end())
      return failed_precondition("disk " + target + " of " + vm + " is not in the point in time",
                                 "the point in time must hold every disk of the VM; sync the group again");
    point_disk_at(disk, DiskInfo{target, it->second, "qcow2", "", "disk", std::nullopt});
    placed.insert(target);
  }
  for (const auto& [target, _] : copies)
    if (!placed.count(target))
      return failed_precondition("the point in time has disk " + target + ", which the placeholder of " + vm + " lacks",
                                 "protect the VM again so its placeholder matches its disks");
  return Status::ok();
}

void replace_markers(pugi::xml_node domain, const char* element, std::string_view ns, const TestVmMarker& m) {
  pugi::xml_node metadata = child_or_new(domain, "metadata");
  std::vector<pugi::xml_node> stale;
  for (pugi::xml_node n : metadata.children())
    if (is_placeholder_element(n) || is_test_vm_element(n) || is_recovered_element(n)) stale.push_back(n);
  for (pugi::xml_node n : stale) metadata.remove_child(n);
  std::string prefix(kPlaceholderPrefix);
  pugi::xml_node marker = metadata.append_child((prefix + ":" + element).c_str());
  set_attribute(marker, ("xmlns:" + prefix).c_str(), ns);
  set_attribute(marker, "run", m.run);
  set_attribute(marker, "group", m.group);
  set_attribute(marker, "source-site", m.source_site);
  set_attribute(marker, "source-uuid", m.source_uuid);
}

}  // namespace

Result<std::string> recovered_domain_xml(std::string_view placeholder_xml, const std::map<std::string, std::string>& disks,
                                         const std::string& run) {
  pugi::xml_document doc;
  auto root = load_root(doc, placeholder_xml, "domain", "a placeholder definition");
  if (!root.is_ok()) return root.status();
  pugi::xml_node domain = *root;
  auto marker = parse_marker(domain);
  if (!marker) return failed_precondition("VM " + text_of(domain, "name") + " is not an evac placeholder", "only placeholders are recovered onto");
  EVAC_RETURN_IF_ERROR(place_disks_on_copies(child_or_new(domain, "devices"), disks, text_of(domain, "name")));
  replace_markers(domain, "recovered", kRecoveredNamespace, TestVmMarker{run, marker->group, marker->source_site, marker->source_uuid});
  set_child_text(domain, "description",
                 "recovered by evac from " + marker->source_site + " (group " + marker->group + ", run " + run + ")");
  return serialize(doc);
}

Result<std::string> adopted_placeholder_xml(std::string_view domain_xml, const PlaceholderMarker& marker) {
  if (marker.group.empty() || marker.source_site.empty() || marker.source_uuid.empty())
    return invalid_argument("a placeholder needs its group, source site and source VM");
  pugi::xml_document doc;
  auto root = load_root(doc, domain_xml, "domain", "the definition of the VM to make a placeholder");
  if (!root.is_ok()) return root.status();
  pugi::xml_node domain = *root;
  if (auto test = parse_test_marker(domain, is_test_vm_element))
    return failed_precondition("VM " + text_of(domain, "name") + " is a test VM of run " + test->run,
                               "test VMs are removed by cleanup, never made placeholders");
  mark_as_placeholder(domain, marker);
  set_child_text(domain, "description",
                 "evac placeholder of " + marker.source_site + "/" + marker.source_uuid + " (group " + marker.group +
                     "), kept from this site's own copy at reprotect: never start it by hand");
  return serialize(doc);
}

Result<std::string> test_vm_domain_xml(std::string_view placeholder_xml, const TestVmSpec& spec) {
  if (spec.name.empty() || spec.run.empty() || spec.group.empty() || spec.source_uuid.empty())
    return invalid_argument("a test VM needs its name, run, group and source VM");
  pugi::xml_document doc;
  auto root = load_root(doc, placeholder_xml, "domain", "the placeholder definition for test VM " + spec.name);
  if (!root.is_ok()) return root.status();
  pugi::xml_node domain = *root;
  set_child_text(domain, "name", spec.name);
  remove_all(domain, "uuid");
  domain.remove_attribute("id");
  pugi::xml_node devices = child_or_new(domain, "devices");
  EVAC_RETURN_IF_ERROR(place_disks_on_copies(devices, spec.disks, spec.name));

  for (pugi::xml_node iface : children_named(devices, "interface")) {
    // Whatever kind it is on (a network, a bridge, a host device), it goes
    // to the test network its mapping names, of whatever kind that is.
    const NicInfo nic = parse_interface(iface);
    const std::string network = nic.network.empty() ? "" : attachment_of(nic).key();
    auto it = spec.networks.find(network);
    if (it == spec.networks.end())
      return failed_precondition("NIC " + std::string(iface.child("mac").attribute("address").as_string()) + " of " +
                                     spec.name + " is on '" + network + "', which has no test network",
                                 "map that network with --test-network at the protected site");
    const Attachment test = parse_attachment(it->second);
    connect_interface(iface, NicInfo{"", test.name, test.type, ""});
  }

  remove_descendants(domain, "seclabel");
  replace_markers(domain, "test-vm", kTestVmNamespace, TestVmMarker{spec.run, spec.group, spec.source_site, spec.source_uuid});
  set_child_text(domain, "description",
                 "evac test VM of " + spec.source_site + "/" + spec.source_uuid + " (group " + spec.group + ", run " +
                     spec.run + "): removed by `evac plan cleanup`");
  return serialize(doc);
}

Result<std::vector<std::string>> disks_with_backing_images(std::string_view live_domain_xml) {
  pugi::xml_document doc;
  auto root = load_root(doc, live_domain_xml, "domain", "a running VM's definition");
  if (!root.is_ok()) return root.status();
  std::vector<std::string> out;
  for (pugi::xml_node disk : children_named(root->child("devices"), "disk")) {
    if (std::string_view(disk.attribute("device").as_string("disk")) != "disk") continue;
    // The chain ends in an empty <backingStore/>; one with a source is an image below.
    if (disk.child("backingStore").child("source")) out.emplace_back(disk.child("target").attribute("dev").as_string());
  }
  return out;
}

Result<HostFiles> host_files(std::string_view domain_xml) {
  pugi::xml_document doc;
  auto root = load_root(doc, domain_xml, "domain", "a VM's definition");
  if (!root.is_ok()) return root.status();
  HostFiles out;
  auto add = [&](const char* what, const char* path) {
    if (path != nullptr && *path != '\0') out.files.emplace_back(what, path);
  };
  add("emulator", root->child("devices").child("emulator").text().as_string());
  pugi::xml_node os = root->child("os");
  add("kernel", os.child("kernel").text().as_string());
  add("initrd", os.child("initrd").text().as_string());
  add("firmware", os.child("loader").text().as_string());
  add("NVRAM template", os.child("nvram").attribute("template").as_string());
  return out;
}

Result<std::optional<DacLabel>> qemu_dac_label(std::string_view live_domain_xml) {
  pugi::xml_document doc;
  auto root = load_root(doc, live_domain_xml, "domain", "a running VM's definition");
  if (!root.is_ok()) return root.status();
  for (pugi::xml_node label : children_named(*root, "seclabel")) {
    if (std::string_view(label.attribute("model").as_string()) != "dac") continue;
    if (std::string_view(label.attribute("relabel").as_string("yes")) == "no") return std::optional<DacLabel>();
    std::string text = label.child("label").text().as_string();
    auto colon = text.find(':');
    if (colon == std::string::npos || colon == 0 || colon + 1 == text.size())
      return invalid_argument("the DAC label '" + text + "' of a running VM is not USER:GROUP",
                              "libvirt reported a label evac cannot read; check the VM with `virsh dumpxml`");
    return std::optional<DacLabel>(DacLabel{text.substr(0, colon), text.substr(colon + 1)});
  }
  return std::optional<DacLabel>();
}

}  // namespace evac::libvirt
