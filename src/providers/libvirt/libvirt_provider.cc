#include "providers/libvirt/libvirt_provider.h"

#include <libvirt/libvirt-qemu.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <openssl/evp.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <optional>
#include <string_view>
#include <thread>

#include <nlohmann/json.hpp>

#include "core/json_decode.h"
#include "core/provider_registry.h"
#include "providers/libvirt/domain_xml.h"
#include "providers/libvirt/libvirt_change_tracking.h"
#include "providers/libvirt/libvirt_connection.h"
#include "providers/libvirt/libvirt_errors.h"
#include "providers/libvirt/libvirt_handles.h"

namespace evac {
namespace {

using libvirt::ConnectHandle;
using libvirt::DomainDescription;
using libvirt::DomainHandle;
using libvirt::last_error;
using libvirt::last_error_described;
using libvirt::last_error_number;
using libvirt::LibvirtString;

constexpr const char* kListInventoryHint = "list what the site holds with `evac inventory vms`";

// ------------------------------------------------------------ domains

PowerState power_state_of(virDomainPtr dom) {
  int state = 0;
  int reason = 0;
  if (virDomainGetState(dom, &state, &reason, 0) < 0) return PowerState::kOther;
  switch (state) {
    case VIR_DOMAIN_RUNNING:
    case VIR_DOMAIN_BLOCKED:   // running, its vCPUs idle
    case VIR_DOMAIN_SHUTDOWN:  // still running while the guest shuts down
      return PowerState::kRunning;
    case VIR_DOMAIN_PAUSED:
      return PowerState::kPaused;
    case VIR_DOMAIN_SHUTOFF:
      return PowerState::kShutOff;
    case VIR_DOMAIN_CRASHED:
      return PowerState::kCrashed;
    default:
      return PowerState::kOther;
  }
}

std::string domain_name(virDomainPtr dom) {
  const char* name = virDomainGetName(dom);
  return name == nullptr ? "?" : name;
}

// The persistent definition, secrets included: it is what the other site
// needs to reproduce the VM, and what the inventory describes.
Result<DomainDescription> read_domain(virDomainPtr dom) {
  LibvirtString xml(virDomainGetXMLDesc(dom, VIR_DOMAIN_XML_INACTIVE | VIR_DOMAIN_XML_SECURE));
  if (xml == nullptr) return last_error_described([&] { return "reading the definition of VM " + domain_name(dom); });
  auto described = libvirt::parse_domain_xml(xml.get());
  if (!described.is_ok()) return described.status().with_context("VM " + domain_name(dom));
  described->vm.native = NativeDefinition{"libvirt", xml.get()};
  return described;
}

Result<std::vector<DomainHandle>> all_domains(virConnectPtr conn) {
  virDomainPtr* raw = nullptr;
  int count = virConnectListAllDomains(conn, &raw, 0);  // flags 0: active and inactive
  if (count < 0) return last_error("listing VMs");
  return libvirt::adopt_list<DomainHandle>(raw, count);
}

// Missing is a normal answer here (nullopt), not an error.
Result<std::optional<DomainHandle>> domain_by_name(virConnectPtr conn, const std::string& name) {
  DomainHandle dom(virDomainLookupByName(conn, name.c_str()));
  if (dom != nullptr) return std::optional<DomainHandle>(std::move(dom));
  if (last_error_number() == VIR_ERR_NO_DOMAIN) return std::optional<DomainHandle>();
  return last_error("looking up VM " + name);
}

Result<std::optional<DomainHandle>> domain_by_uuid(virConnectPtr conn, const std::string& uuid) {
  DomainHandle dom(virDomainLookupByUUIDString(conn, uuid.c_str()));
  if (dom != nullptr) return std::optional<DomainHandle>(std::move(dom));
  if (last_error_number() == VIR_ERR_NO_DOMAIN) return std::optional<DomainHandle>();
  return last_error("looking up VM " + uuid);  // kInvalidArgument when it is no UUID at all
}

// libvirt's own spelling (8-4-4-4-12 hex digits) or the same without dashes.
bool looks_like_uuid(std::string_view s) {
  std::size_t digits = 0;
  for (char c : s) {
    if (std::isxdigit(static_cast<unsigned char>(c))) {
      ++digits;
    } else if (c != '-') {
      return false;
    }
  }
  return digits == 32 && (s.size() == 32 || s.size() == 36);
}

Result<DomainHandle> find_domain(virConnectPtr conn, const std::string& name_or_uuid, const std::string& provider) {
  if (looks_like_uuid(name_or_uuid)) {
    auto by_uuid = domain_by_uuid(conn, name_or_uuid);
    if (!by_uuid.is_ok()) return by_uuid.status();
    if (by_uuid->has_value()) return std::move(**by_uuid);
  }
  auto by_name = domain_by_name(conn, name_or_uuid);
  if (!by_name.is_ok()) return by_name.status();
  if (by_name->has_value()) return std::move(**by_name);
  return not_found("compute provider " + provider + " has no VM named or with UUID '" + name_or_uuid + "'",
                   kListInventoryHint);
}

Status ensure_autostart_off(virDomainPtr dom) {
  int autostart = 0;
  if (virDomainGetAutostart(dom, &autostart) < 0)
    return last_error_described(
        [&] { return "reading autostart of VM " + domain_name(dom); });
  if (autostart != 0 && virDomainSetAutostart(dom, 0) < 0) {
    return last_error_described([&] { return "turning off autostart of placeholder " + domain_name(dom); });
  }
  return Status::ok();
}

Status undefine(virDomainPtr dom) {
  // The most thorough clean-up first; a driver that refuses a flag (the test
  // driver knows neither NVRAM nor checkpoints) gets the next smaller set.
  const unsigned attempts[] = {
      VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA |
          VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA | VIR_DOMAIN_UNDEFINE_NVRAM,
      VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA,
      0,
  };
  for (unsigned flags : attempts) {
    if (virDomainUndefineFlags(dom, flags) == 0) return Status::ok();
    int code = last_error_number();
    if (code == VIR_ERR_NO_DOMAIN) return Status::ok();  // someone else removed it meanwhile
    bool flag_refused = code == VIR_ERR_INVALID_ARG || code == VIR_ERR_NO_SUPPORT;
    if (!flag_refused || flags == 0)
      return last_error_described(
          [&] { return "removing placeholder " + domain_name(dom); });
  }
  return Status::ok();
}

// ------------------------------------------------------- networks and bridges

// The host-side taps of every running VM's NICs.
Result<std::vector<std::string>> guest_taps(virConnectPtr conn) {
  virDomainPtr* raw = nullptr;
  int count = virConnectListAllDomains(conn, &raw, VIR_CONNECT_LIST_DOMAINS_ACTIVE);
  if (count < 0) return last_error("listing running VMs");
  std::vector<std::string> taps;
  for (const auto& dom : libvirt::adopt_list<libvirt::DomainHandle>(raw, count)) {
    LibvirtString xml(virDomainGetXMLDesc(dom.get(), 0));
    if (xml == nullptr) continue;  // it stopped meanwhile: no taps
    auto devs = libvirt::nic_target_devices(xml.get());
    if (devs.is_ok()) taps.insert(taps.end(), devs->begin(), devs->end());
  }
  return taps;
}

// The ports of a host bridge, through libvirt's interface driver (so it
// works for a remote host too).
Result<std::vector<std::string>> host_bridge_ports(virConnectPtr conn, const std::string& bridge) {
  libvirt::InterfaceHandle iface(virInterfaceLookupByName(conn, bridge.c_str()));
  if (iface == nullptr) return last_error("looking up host bridge '" + bridge + "'");
  LibvirtString xml(virInterfaceGetXMLDesc(iface.get(), 0));
  if (xml == nullptr) return last_error("reading host bridge '" + bridge + "'");
  return libvirt::bridge_ports(xml.get());
}

// Host bridges ("bridge:NAME") and host devices ("direct:NAME") as
// attachments, from libvirt's interface driver; none where the host has no
// such driver (its NICs on bridges then cannot be checked from here).
Result<std::vector<NetworkInfo>> host_attachments(virConnectPtr conn, const std::vector<std::string>& taps,
                                                  const std::string& provider) {
  virInterfacePtr* raw = nullptr;
  // All of them: a bridge with no port yet has no carrier, which the udev
  // backend reports as inactive, and is still where NICs attach.
  int count = virConnectListAllInterfaces(conn, &raw, 0);
  if (count < 0) {
    int err = last_error_number();
    if (err == VIR_ERR_NO_SUPPORT || err == VIR_ERR_NO_CONNECT) return std::vector<NetworkInfo>{};
    return last_error("listing host interfaces");
  }
  std::vector<NetworkInfo> out;
  for (const auto& iface : libvirt::adopt_list<libvirt::InterfaceHandle>(raw, count)) {
    LibvirtString xml(virInterfaceGetXMLDesc(iface.get(), 0));
    if (xml == nullptr) continue;  // gone meanwhile
    auto host = libvirt::parse_host_interface(xml.get());
    if (!host.is_ok() || host->name.empty() || host->name == "lo") continue;
    if (std::find(taps.begin(), taps.end(), host->name) != taps.end()) continue;  // a guest's own tap
    NetworkInfo n;
    n.provider = provider;
    n.active = true;  // it exists: libvirt starts a NIC on it whatever its carrier
    if (host->type == "bridge") {
      n.kind = "bridge";
      n.bridge = host->name;
      libvirt::judge_isolation(n, {}, host->ports, "", taps);
    } else if (host->type == "ethernet" || host->type == "bond" || host->type == "vlan") {
      n.kind = "direct";
      libvirt::judge_isolation(n, {}, std::nullopt, "", taps);
    } else {
      continue;
    }
    n.name = Attachment{n.kind, host->name}.key();
    out.push_back(std::move(n));
  }
  return out;
}

// ------------------------------------------------------- storage pools

Result<std::vector<StoragePoolInfo>> read_storage_pools(virConnectPtr conn, const std::string& provider) {
  virStoragePoolPtr* raw = nullptr;
  int count = virConnectListAllStoragePools(conn, &raw, 0);
  if (count < 0) return last_error("listing storage pools");
  std::vector<StoragePoolInfo> pools;
  for (const auto& pool : libvirt::adopt_list<libvirt::StoragePoolHandle>(raw, count)) {
    LibvirtString xml(virStoragePoolGetXMLDesc(pool.get(), 0));
    if (xml == nullptr) return last_error("reading a storage pool's definition");
    auto info = libvirt::parse_storage_pool_xml(xml.get());
    if (!info.is_ok()) return info.status();
    info->provider = provider;
    info->active = virStoragePoolIsActive(pool.get()) == 1;
    virStoragePoolInfo sizes{};
    if (virStoragePoolGetInfo(pool.get(), &sizes) == 0) {
      info->capacity_bytes = sizes.capacity;
      info->available_bytes = sizes.available;
    }
    pools.push_back(std::move(*info));
  }
  return pools;
}

// Pools as far as they help to place disks: a hypervisor without a storage
// driver still has VMs to list.
Result<std::vector<StoragePoolInfo>> pools_for_placing_disks(virConnectPtr conn, const std::string& provider) {
  auto pools = read_storage_pools(conn, provider);
  if (!pools.is_ok() && pools.status().code() == StatusCode::kUnsupported) return std::vector<StoragePoolInfo>{};
  return pools;
}

// The pool whose folder holds `path`, the deepest one when pools nest.
std::optional<std::string> pool_holding(const std::string& path, const std::vector<StoragePoolInfo>& pools) {
  std::optional<std::string> best;
  std::size_t best_length = 0;
  for (const StoragePoolInfo& pool : pools) {
    std::string folder = pool.path;
    while (folder.size() > 1 && folder.back() == '/') folder.pop_back();
    if (folder.empty()) continue;
    std::string prefix = folder == "/" ? folder : folder + "/";
    if (path.rfind(prefix, 0) == 0 && folder.size() > best_length) {
      best = pool.name;
      best_length = folder.size();
    }
  }
  return best;
}

std::string volume_path(virConnectPtr conn, const libvirt::VolumeSource& source) {
  libvirt::StoragePoolHandle pool(virStoragePoolLookupByName(conn, source.pool.c_str()));
  if (pool == nullptr) return {};
  libvirt::StorageVolHandle volume(virStorageVolLookupByName(pool.get(), source.volume.c_str()));
  if (volume == nullptr) return {};
  LibvirtString path(virStorageVolGetPath(volume.get()));
  return path == nullptr ? std::string() : std::string(path.get());
}

void place_disks(virConnectPtr conn, DomainDescription& described, const std::vector<StoragePoolInfo>& pools) {
  std::vector<DiskInfo>& disks = described.vm.disks;
  for (DiskInfo& disk : disks) {
    if (!disk.path.empty()) disk.storage_pool = pool_holding(disk.path, pools);
  }
  // A disk given as pool + volume names its pool outright; its path is
  // best effort, as an inactive pool cannot tell it.
  for (const libvirt::VolumeSource& source : described.volume_sources) {
    DiskInfo& disk = disks[source.disk_index];
    disk.storage_pool = source.pool;
    disk.path = volume_path(conn, source);
  }
}

Result<VmInfo> describe_vm(virConnectPtr conn, virDomainPtr dom, const std::vector<StoragePoolInfo>& pools,
                           const std::string& provider) {
  auto described = read_domain(dom);
  if (!described.is_ok()) return described.status();
  place_disks(conn, *described, pools);
  VmInfo vm = std::move(described->vm);
  vm.provider = provider;
  vm.state = power_state_of(dom);
  return vm;
}

// --------------------------------------------------------- placeholders

PlaceholderInfo placeholder_info(const std::string& provider, const DomainDescription& described) {
  const libvirt::PlaceholderMarker& marker = *described.placeholder;
  return PlaceholderInfo{provider, described.vm.name, described.vm.uuid, marker.group, marker.source_site,
                         marker.source_uuid};
}

// The placeholder already registered for `spec`, so that defining twice
// converges; any other VM holding the name is a conflict.
Result<std::optional<PlaceholderInfo>> existing_placeholder(virConnectPtr conn, const PlaceholderSpec& spec,
                                                            const std::string& provider) {
  auto found = domain_by_name(conn, spec.vm.name);
  if (!found.is_ok()) return found.status();
  if (!found->has_value()) return std::optional<PlaceholderInfo>();
  virDomainPtr dom = (*found)->get();
  auto described = read_domain(dom);
  if (!described.is_ok()) return described.status();

  if (!described->placeholder) {
    return already_exists("compute provider " + provider + " already has a VM named " + spec.vm.name +
                              ", and it is not an evac placeholder",
                          "rename or remove that VM at the recovery site, then protect " + spec.vm.name + " again");
  }
  const libvirt::PlaceholderMarker& marker = *described->placeholder;
  if (marker.source_uuid != spec.source_uuid) {
    return already_exists("VM " + spec.vm.name + " at compute provider " + provider +
                              " is already the placeholder of another VM (" + marker.source_site + "/" +
                              marker.source_uuid + ", group " + marker.group + ")",
                          "remove the protection of that VM first, or rename one of them");
  }
  EVAC_RETURN_IF_ERROR(ensure_autostart_off(dom));
  return std::optional<PlaceholderInfo>(placeholder_info(provider, *described));
}

Result<PlaceholderInfo> define_domain(virConnectPtr conn, const PlaceholderSpec& spec, const std::string& xml,
                                     const std::string& provider) {
  // virDomainDefineXML only registers the VM; it never starts it.
  DomainHandle dom(virDomainDefineXML(conn, xml.c_str()));
  if (dom == nullptr) {
    Status failed = last_error("defining placeholder " + spec.vm.name + " at compute provider " + provider);
    // A concurrent caller may have defined the same placeholder first.
    auto raced = existing_placeholder(conn, spec, provider);
    if (raced.is_ok() && raced->has_value()) return std::move(**raced);
    return failed;
  }
  EVAC_RETURN_IF_ERROR(ensure_autostart_off(dom.get()));
  auto described = read_domain(dom.get());
  if (!described.is_ok()) return described.status();
  if (!described->placeholder) {
    return internal_error("placeholder " + spec.vm.name + " was defined but lost evac's metadata",
                          "check that the hypervisor driver keeps domain <metadata>");
  }
  return placeholder_info(provider, *described);
}

// ------------------------------------------------------------ test VMs

TestVmInfo test_vm_info(const std::string& provider, const DomainDescription& described, PowerState state) {
  const libvirt::TestVmMarker& m = *described.test_vm;
  return TestVmInfo{provider, described.vm.name, described.vm.uuid, state, m.run, m.group, m.source_site, m.source_uuid};
}

// Which test VM holds `name`: none, the one `spec` asks for (defining again
// converges), or a conflict.
Result<std::optional<TestVmInfo>> existing_test_vm(virConnectPtr conn, const TestVmSpec& spec, const std::string& provider) {
  auto found = domain_by_name(conn, spec.name);
  if (!found.is_ok()) return found.status();
  if (!found->has_value()) return std::optional<TestVmInfo>();
  auto described = read_domain((*found)->get());
  if (!described.is_ok()) return described.status();
  const auto& m = described->test_vm;
  if (!m || m->run != spec.run || m->source_uuid != spec.source_uuid)
    return already_exists("compute provider " + provider + " already has a VM named " + spec.name +
                              (m ? " (a test VM of run " + m->run + ")" : ", and it is not this test's VM"),
                          m ? "clean up the earlier test first: `evac plan cleanup`"
                            : "rename or remove that VM at the recovery site, then run the test again");
  return std::optional<TestVmInfo>(test_vm_info(provider, *described, power_state_of((*found)->get())));
}

// Waits for a domain to stop after a shutdown request.
bool wait_shut_off(virDomainPtr dom, std::chrono::seconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (virDomainIsActive(dom) == 1) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  return true;
}

// ------------------------------------------------------------ guest agent

Result<std::string> base64_decode(const std::string& text) {
  if (text.empty()) return std::string();
  std::string out(text.size() / 4 * 3 + 3, '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()), reinterpret_cast<const unsigned char*>(text.data()),
                          static_cast<int>(text.size()));
  if (n < 0) return internal_error("the guest agent returned output that is not base64");
  std::size_t pad = 0;
  for (auto it = text.rbegin(); it != text.rend() && *it == '='; ++it) ++pad;
  out.resize(static_cast<std::size_t>(n) - std::min<std::size_t>(pad, static_cast<std::size_t>(n)));
  return out;
}

// One agent command; kUnavailable while the agent does not answer (booting,
// not installed yet), kUnsupported where the driver has no agent channel.
Result<nlohmann::json> agent_command(virDomainPtr dom, const nlohmann::json& command, int timeout_s) {
  LibvirtString reply(virDomainQemuAgentCommand(dom, command.dump().c_str(), timeout_s, 0));
  if (reply == nullptr) {
    int code = last_error_number();
    Status st = last_error("asking the guest agent of VM " + domain_name(dom) + " to " + command.value("execute", "?"));
    if (code == VIR_ERR_NO_SUPPORT) return unsupported(st.message(), "guest agent commands need QEMU under libvirtd");
    if (code == VIR_ERR_NO_DOMAIN) return st;
    return unavailable(st.message(), "the guest may still be booting, or lack qemu-guest-agent and its channel");
  }
  auto j = parse_json_or_discarded(reply.get());
  if (j.is_discarded() || !j.is_object())
    return internal_error("the guest agent of VM " + domain_name(dom) + " answered with no JSON object");
  if (j.contains("error"))
    return failed_precondition("the guest agent of VM " + domain_name(dom) + " refused " + command.value("execute", "?") +
                               ": " + j["error"].value("desc", j["error"].dump()));
  return j.value("return", nlohmann::json());
}

}  // namespace

// ------------------------------------------------------- LibvirtProvider

LibvirtProvider::LibvirtProvider(ProviderConfig config)
    : config_(std::move(config)),
      connection_(std::make_unique<libvirt::Connection>(
          config_.uri, libvirt::ConnectionLimits{.open_timeout = config_.connect_timeout,
                                                 .keepalive_interval_s = static_cast<int>(config_.keepalive.count())})),
      tracking_(std::make_unique<libvirt::LibvirtChangeTracking>(*connection_)) {}

LibvirtProvider::~LibvirtProvider() = default;

ChangeTracking* LibvirtProvider::change_tracking() { return tracking_.get(); }

Status LibvirtProvider::ping() {
  return connection_->run([&](virConnectPtr conn) {
    // A round trip to the daemon: a cached connection can look alive locally.
    unsigned long version = 0;
    if (virConnectGetLibVersion(conn, &version) < 0) {
      return last_error("asking libvirt at " + config_.uri + " for its version");
    }
    return Status::ok();
  });
}

Result<std::vector<VmInfo>> LibvirtProvider::list_vms() {
  return connection_->run([&](virConnectPtr conn) -> Result<std::vector<VmInfo>> {
    auto pools = pools_for_placing_disks(conn, config_.name);
    if (!pools.is_ok()) return pools.status();
    auto domains = all_domains(conn);
    if (!domains.is_ok()) return domains.status();
    std::vector<VmInfo> vms;
    for (const DomainHandle& dom : *domains) {
      auto vm = describe_vm(conn, dom.get(), *pools, config_.name);
      if (vm.is_ok()) {
        vms.push_back(std::move(*vm));
      } else if (vm.status().code() != StatusCode::kNotFound) {  // undefined since listed: not an error
        return vm.status();
      }
    }
    return vms;
  });
}

Result<VmInfo> LibvirtProvider::get_vm(const std::string& name_or_uuid) {
  return connection_->run([&](virConnectPtr conn) -> Result<VmInfo> {
    auto dom = find_domain(conn, name_or_uuid, config_.name);
    if (!dom.is_ok()) return dom.status();
    auto pools = pools_for_placing_disks(conn, config_.name);
    if (!pools.is_ok()) return pools.status();
    return describe_vm(conn, dom->get(), *pools, config_.name);
  });
}

Result<std::vector<std::string>> LibvirtProvider::start_problems(const std::string& uuid) {
  auto attachments = list_networks();
  if (!attachments.is_ok()) return attachments.status();
  auto pools = list_storage_pools();
  if (!pools.is_ok()) return pools.status();
  return connection_->run([&](virConnectPtr conn) -> Result<std::vector<std::string>> {
    auto dom = find_domain(conn, uuid, config_.name);
    if (!dom.is_ok()) return dom.status();
    LibvirtString xml(virDomainGetXMLDesc(dom->get(), VIR_DOMAIN_XML_INACTIVE));
    if (xml == nullptr) return last_error("reading the definition of VM " + uuid);
    auto described = libvirt::parse_domain_xml(xml.get());
    if (!described.is_ok()) return described.status();
    std::vector<std::string> problems;
    // What its NICs attach to, by the same keys the inventory lists. Hosts
    // without libvirt's interface driver list no bridges or devices: those
    // NICs cannot be checked from here and are left out.
    bool host_interfaces_known = std::any_of(attachments->begin(), attachments->end(),
                                             [](const NetworkInfo& n) { return n.kind != "network"; });
    for (const auto& nic : described->vm.nics) {
      const Attachment a = attachment_of(nic);
      if (a.type != "network" && !host_interfaces_known) continue;
      auto it = std::find_if(attachments->begin(), attachments->end(), [&](const NetworkInfo& n) { return n.name == a.key(); });
      const std::string what = a.type == "network" ? "network '" + a.name + "'"
                               : a.type == "bridge" ? "host bridge '" + a.name + "'"
                                                    : "host device '" + a.name + "'";
      if (it == attachments->end())
        problems.push_back("NIC " + nic.mac + " is on " + what + ", which does not exist here");
      else if (!it->active)
        problems.push_back("NIC " + nic.mac + " is on " + what + ", which is not active");
    }
    for (const auto& d : described->vm.disks) {
      if (d.device == "cdrom" || d.device == "floppy" || d.path.empty()) continue;
      auto folder = std::filesystem::path(d.path).parent_path().string();
      auto pool = std::find_if(pools->begin(), pools->end(), [&](const StoragePoolInfo& p) { return p.path == folder; });
      if (pool != pools->end() && !pool->active)
        problems.push_back("disk " + d.target + " is in storage pool '" + pool->name + "', which is not active");
    }
    // Files on the hypervisor's host: checked where that is this host, and
    // the driver runs real VMs (libvirt's test driver opens no files).
    const char* driver = virConnectGetType(conn);
    const bool real_vms = driver != nullptr && std::string_view(driver) != "TEST";
    if (char* theirs = real_vms ? virConnectGetHostname(conn) : nullptr) {
      const std::string hypervisor(theirs);
      std::free(theirs);
      char mine[256] = {};
      if (::gethostname(mine, sizeof mine - 1) == 0 && libvirt::same_host(hypervisor, mine)) {
        auto files = libvirt::host_files(xml.get());
        if (!files.is_ok()) return files.status();
        for (const auto& [what, path] : files->files)
          if (::access(path.c_str(), R_OK) != 0)
            problems.push_back("its " + what + " " + path + " is missing (" + std::strerror(errno) + ")");
        for (const auto& d : described->vm.disks) {
          if (d.device == "cdrom" || d.device == "floppy" || d.path.empty()) continue;
          auto folder = std::filesystem::path(d.path).parent_path();
          if (!std::filesystem::is_directory(folder))
            problems.push_back("disk " + d.target + "'s folder " + folder.string() + " is missing");
        }
      }
    }
    return problems;
  });
}

Result<ComputeProvider::HostCapacity> LibvirtProvider::host_capacity() {
  return connection_->run([&](virConnectPtr conn) -> Result<HostCapacity> {
    virNodeInfo info{};
    if (virNodeGetInfo(conn, &info) < 0) return last_error("reading the host's memory and CPUs");
    unsigned long long free_bytes = virNodeGetFreeMemory(conn);
    if (free_bytes == 0 && last_error_number() != 0) return last_error("reading the host's free memory");
    return HostCapacity{info.memory, free_bytes / 1024, info.cpus};
  });
}

Result<std::vector<NetworkInfo>> LibvirtProvider::list_networks() {
  return connection_->run([&](virConnectPtr conn) -> Result<std::vector<NetworkInfo>> {
    virNetworkPtr* raw = nullptr;
    int count = virConnectListAllNetworks(conn, &raw, 0);
    if (count < 0) return last_error("listing networks");
    auto owned = libvirt::adopt_list<libvirt::NetworkHandle>(raw, count);
    std::optional<std::vector<std::string>> taps;  // read once, when a bridge needs judging
    std::vector<NetworkInfo> networks;
    for (const auto& net : owned) {
      LibvirtString xml(virNetworkGetXMLDesc(net.get(), 0));
      if (xml == nullptr) return last_error("reading a network's definition");
      std::vector<std::string> forward_devices;
      auto info = libvirt::parse_network_xml(xml.get(), &forward_devices);
      if (!info.is_ok()) return info.status();
      info->provider = config_.name;
      info->active = virNetworkIsActive(net.get()) == 1;
      // Isolation is judged by what is there: the bridge's ports, told
      // apart into guests' taps and uplinks.
      std::optional<std::vector<std::string>> ports;
      std::string ports_error;
      if (!info->bridge.empty() && forward_devices.empty() &&
          (info->forward_mode.empty() || info->forward_mode == "bridge")) {
        if (!taps) {
          auto read = guest_taps(conn);
          if (!read.is_ok()) return read.status();
          taps = std::move(*read);
        }
        auto read = host_bridge_ports(conn, info->bridge);
        if (read.is_ok()) ports = std::move(*read);
        else ports_error = read.status().message();
      }
      libvirt::judge_isolation(*info, forward_devices, ports, ports_error, taps.value_or(std::vector<std::string>{}));
      networks.push_back(std::move(*info));
    }
    // What NICs attach to outside libvirt networks: host bridges and the
    // devices macvtap NICs sit on.
    if (!taps) {
      auto read = guest_taps(conn);
      if (!read.is_ok()) return read.status();
      taps = std::move(*read);
    }
    auto host = host_attachments(conn, *taps, config_.name);
    if (!host.is_ok()) return host.status();
    networks.insert(networks.end(), host->begin(), host->end());
    return networks;
  });
}

Result<std::vector<StoragePoolInfo>> LibvirtProvider::list_storage_pools() {
  return connection_->run([&](virConnectPtr conn) { return read_storage_pools(conn, config_.name); });
}

Result<PlaceholderInfo> LibvirtProvider::define_placeholder(const PlaceholderSpec& spec) {
  auto xml = libvirt::placeholder_domain_xml(spec);
  if (!xml.is_ok()) return xml.status().with_context("placeholder " + spec.vm.name);
  // Safe to repeat after a lost connection: a second run finds the first.
  return connection_->run([&](virConnectPtr conn) -> Result<PlaceholderInfo> {
    auto existing = existing_placeholder(conn, spec, config_.name);
    if (!existing.is_ok()) return existing.status();
    if (existing->has_value()) return std::move(**existing);
    return define_domain(conn, spec, *xml, config_.name);
  });
}

Status LibvirtProvider::remove_placeholder(const std::string& uuid) {
  return connection_->run([&](virConnectPtr conn) -> Status {
    auto found = domain_by_uuid(conn, uuid);
    if (!found.is_ok()) return found.status();
    if (!found->has_value()) return Status::ok();  // already gone: a retried clean-up converges
    virDomainPtr dom = (*found)->get();
    auto described = read_domain(dom);
    if (!described.is_ok()) return described.status();
    const std::string& name = described->vm.name;
    if (!described->placeholder) {
      return failed_precondition("refusing to remove VM " + name + ": it is not an evac placeholder",
                                 "evac only removes the placeholders it registered; remove other VMs yourself");
    }
    if (virDomainIsActive(dom) == 1) {
      return failed_precondition("refusing to remove placeholder " + name + ": it is " +
                                     std::string(power_state_name(power_state_of(dom))),
                                 "a running placeholder is a recovered VM; power it off first if it must go");
    }
    return undefine(dom);
  });
}

Result<std::vector<PlaceholderInfo>> LibvirtProvider::list_placeholders() {
  return connection_->run([&](virConnectPtr conn) -> Result<std::vector<PlaceholderInfo>> {
    auto domains = all_domains(conn);
    if (!domains.is_ok()) return domains.status();
    std::vector<PlaceholderInfo> placeholders;
    for (const DomainHandle& dom : *domains) {
      auto described = read_domain(dom.get());
      if (!described.is_ok()) {
        if (described.status().code() == StatusCode::kNotFound) continue;  // undefined since listed
        return described.status();
      }
      if (described->placeholder) placeholders.push_back(placeholder_info(config_.name, *described));
    }
    return placeholders;
  });
}

// ------------------------------------------------------- recoveries

Result<TestVmInfo> LibvirtProvider::define_test_vm(const TestVmSpec& spec) {
  return connection_->run([&](virConnectPtr conn) -> Result<TestVmInfo> {
    auto existing = existing_test_vm(conn, spec, config_.name);
    if (!existing.is_ok()) return existing.status();
    if (existing->has_value()) return std::move(**existing);
    auto placeholder = domain_by_uuid(conn, spec.placeholder_uuid);
    if (!placeholder.is_ok()) return placeholder.status();
    if (!placeholder->has_value())
      return not_found("the placeholder " + spec.placeholder_uuid + " of test VM " + spec.name + " is not defined in " +
                           config_.name,
                       "protect the VM again at its protected site");
    LibvirtString xml(virDomainGetXMLDesc((*placeholder)->get(), VIR_DOMAIN_XML_INACTIVE | VIR_DOMAIN_XML_SECURE));
    if (xml == nullptr) return last_error("reading placeholder " + spec.placeholder_uuid);
    auto test_xml = libvirt::test_vm_domain_xml(xml.get(), spec);
    if (!test_xml.is_ok()) return test_xml.status();
    DomainHandle dom(virDomainDefineXML(conn, test_xml->c_str()));
    if (dom == nullptr) return last_error("defining test VM " + spec.name + " at compute provider " + config_.name);
    EVAC_RETURN_IF_ERROR(ensure_autostart_off(dom.get()));
    auto described = read_domain(dom.get());
    if (!described.is_ok()) return described.status();
    if (!described->test_vm)
      return internal_error("test VM " + spec.name + " was defined but lost evac's metadata",
                            "check that the hypervisor driver keeps domain <metadata>");
    return test_vm_info(config_.name, *described, power_state_of(dom.get()));
  });
}

Result<std::vector<TestVmInfo>> LibvirtProvider::list_test_vms() {
  return connection_->run([&](virConnectPtr conn) -> Result<std::vector<TestVmInfo>> {
    auto domains = all_domains(conn);
    if (!domains.is_ok()) return domains.status();
    std::vector<TestVmInfo> out;
    for (const DomainHandle& dom : *domains) {
      auto described = read_domain(dom.get());
      if (!described.is_ok()) {
        if (described.status().code() == StatusCode::kNotFound) continue;
        return described.status();
      }
      if (described->test_vm) out.push_back(test_vm_info(config_.name, *described, power_state_of(dom.get())));
    }
    return out;
  });
}

Status LibvirtProvider::remove_test_vm(const std::string& uuid) {
  return connection_->run([&](virConnectPtr conn) -> Status {
    auto found = domain_by_uuid(conn, uuid);
    if (!found.is_ok()) return found.status();
    if (!found->has_value()) return Status::ok();
    virDomainPtr dom = (*found)->get();
    auto described = read_domain(dom);
    if (!described.is_ok()) return described.status();
    if (!described->test_vm)
      return failed_precondition("refusing to remove VM " + described->vm.name + ": it is not an evac test VM",
                                 "evac only removes the test VMs it made");
    // A test VM is a disposable copy on an overlay: pulling its plug loses
    // nothing anyone keeps.
    if (virDomainIsActive(dom) == 1 && virDomainDestroy(dom) < 0 && virDomainIsActive(dom) == 1)
      return last_error("powering off test VM " + described->vm.name);
    return undefine(dom);
  });
}

Result<VmInfo> LibvirtProvider::recover_placeholder(const std::string& uuid, const std::map<std::string, std::string>& disks,
                                                   const std::string& run) {
  return connection_->run([&](virConnectPtr conn) -> Result<VmInfo> {
    auto found = domain_by_uuid(conn, uuid);
    if (!found.is_ok()) return found.status();
    if (!found->has_value())
      return not_found("placeholder " + uuid + " is not defined in compute provider " + config_.name,
                       "protect the VM again at its protected site");
    virDomainPtr dom = (*found)->get();
    auto described = read_domain(dom);
    if (!described.is_ok()) return described.status();
    auto pools = pools_for_placing_disks(conn, config_.name);
    if (!pools.is_ok()) return pools.status();
    if (described->recovered) {
      if (described->recovered->run != run)
        return failed_precondition("VM " + described->vm.name + " was already recovered by run " + described->recovered->run,
                                   "it is live here: reprotect the group rather than recovering it again");
      return describe_vm(conn, dom, *pools, config_.name);
    }
    LibvirtString xml(virDomainGetXMLDesc(dom, VIR_DOMAIN_XML_INACTIVE | VIR_DOMAIN_XML_SECURE));
    if (xml == nullptr) return last_error("reading placeholder " + described->vm.name);
    auto recovered = libvirt::recovered_domain_xml(xml.get(), disks, run);
    if (!recovered.is_ok()) return recovered.status().with_context("recovering onto placeholder " + described->vm.name);
    // Defining a domain of the same name and UUID replaces its definition.
    DomainHandle redefined(virDomainDefineXML(conn, recovered->c_str()));
    if (redefined == nullptr) return last_error("redefining placeholder " + described->vm.name + " as the recovered VM");
    return describe_vm(conn, redefined.get(), *pools, config_.name);
  });
}

Result<PlaceholderInfo> LibvirtProvider::adopt_as_placeholder(const std::string& uuid, const PlaceholderInfo& marker) {
  auto adopted = connection_->run([&](virConnectPtr conn) -> Result<PlaceholderInfo> {
    auto dom = find_domain(conn, uuid, config_.name);
    if (!dom.is_ok()) return dom.status();
    auto described = read_domain(dom->get());
    if (!described.is_ok()) return described.status();
    const std::string& name = described->vm.name;
    if (described->placeholder) {
      const libvirt::PlaceholderMarker& m = *described->placeholder;
      if (m.source_site == marker.source_site && m.source_uuid == marker.source_uuid && m.group == marker.group) {
        EVAC_RETURN_IF_ERROR(ensure_autostart_off(dom->get()));
        return placeholder_info(config_.name, *described);
      }
      return failed_precondition("VM " + name + " is already the placeholder of " + m.source_site + "/" + m.source_uuid,
                                 "reprotect only VMs a recovery at the other site made stale");
    }
    if (virDomainIsActive(dom->get()) == 1)
      return failed_precondition("VM " + name + " is running: a placeholder never runs",
                                 "it should have been fenced (powered off) when the other site took it over; power it off");
    LibvirtString xml(virDomainGetXMLDesc(dom->get(), VIR_DOMAIN_XML_INACTIVE | VIR_DOMAIN_XML_SECURE));
    if (xml == nullptr) return last_error("reading VM " + name);
    auto redefined_xml = libvirt::adopted_placeholder_xml(
        xml.get(), libvirt::PlaceholderMarker{marker.group, marker.source_site, marker.source_uuid});
    if (!redefined_xml.is_ok()) return redefined_xml.status();
    DomainHandle redefined(virDomainDefineXML(conn, redefined_xml->c_str()));
    if (redefined == nullptr) return last_error("redefining VM " + name + " as a placeholder");
    EVAC_RETURN_IF_ERROR(ensure_autostart_off(redefined.get()));
    auto again = read_domain(redefined.get());
    if (!again.is_ok()) return again.status();
    if (!again->placeholder)
      return internal_error("VM " + name + " was redefined but lost evac's metadata",
                            "check that the hypervisor driver keeps domain <metadata>");
    return placeholder_info(config_.name, *again);
  });
  if (!adopted.is_ok()) return adopted;
  // Checkpoints of the replication from here: a later protection of this
  // VM starts afresh rather than trusting bitmaps of disks it no longer has.
  if (tracking_) {
    auto names = tracking_->list_checkpoints(adopted->uuid);
    if (names.is_ok()) {
      for (const auto& n : *names)
        if (n.rfind(kEvacCheckpointPrefix, 0) == 0) {
          Status st = tracking_->delete_checkpoint(adopted->uuid, n);
          if (!st.is_ok()) return st.with_context("dropping checkpoint " + n + " of placeholder " + adopted->name);
        }
    } else if (names.status().code() != StatusCode::kUnsupported) {
      return names.status().with_context("listing checkpoints of placeholder " + adopted->name);
    }
  }
  return adopted;
}

Result<std::vector<std::string>> LibvirtProvider::flatten_disks(const std::string& uuid) {
  return connection_->run([&](virConnectPtr conn) -> Result<std::vector<std::string>> {
    auto dom = find_domain(conn, uuid, config_.name);
    if (!dom.is_ok()) return dom.status();
    virDomainPtr d = dom->get();
    const std::string name = domain_name(d);
    if (const char* type = virConnectGetType(conn); type && std::string_view(type) == "TEST")
      return unsupported("compute provider " + config_.name + " is libvirt's test driver: no QEMU runs VM " + name +
                         " to pull its disks' backing images into them");
    if (virDomainIsActive(d) != 1)
      return unsupported("VM " + name + " does not run, so there is no block pull to flatten its disks with",
                         "its images can be flattened offline (qemu-img rebase -b '')");
    auto with_backing = [&]() -> Result<std::vector<std::string>> {
      LibvirtString xml(virDomainGetXMLDesc(d, 0));
      if (xml == nullptr) return last_error("reading the running definition of VM " + name);
      return libvirt::disks_with_backing_images(xml.get());
    };
    auto targets = with_backing();
    if (!targets.is_ok()) return targets.status();
    // One pull per disk, all at once: QEMU streams them side by side. A
    // pull an earlier attempt started (evacd restarted meanwhile) is
    // still running and is waited for rather than started again.
    for (const auto& target : *targets) {
      virDomainBlockJobInfo info{};
      if (virDomainGetBlockJobInfo(d, target.c_str(), &info, 0) == 1) continue;
      if (virDomainBlockPull(d, target.c_str(), 0, 0) < 0)
        return last_error("starting a block pull of disk " + target + " of VM " + name);
    }
    for (const auto& target : *targets) {
      virDomainBlockJobInfo info{};
      int r = 0;
      while ((r = virDomainGetBlockJobInfo(d, target.c_str(), &info, 0)) == 1)
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
      if (r < 0) return last_error("following the block pull of disk " + target + " of VM " + name);
    }
    // A job also ends when it fails: only the definition says whether the
    // chain is gone.
    auto left = with_backing();
    if (!left.is_ok()) return left.status();
    if (!left->empty())
      return internal_error("the block pull of disk " + left->front() + " of VM " + name +
                                " ended before its backing images were dropped",
                            "see libvirtd's log for QEMU's reason (a full disk?), then run the step again");
    return *targets;
  });
}

Status LibvirtProvider::power_on(const std::string& uuid) {
  return connection_->run([&](virConnectPtr conn) -> Status {
    auto dom = find_domain(conn, uuid, config_.name);
    if (!dom.is_ok()) return dom.status();
    if (virDomainIsActive(dom->get()) == 1) return Status::ok();
    if (virDomainCreate(dom->get()) < 0) {
      if (virDomainIsActive(dom->get()) == 1) return Status::ok();  // started meanwhile
      return last_error("powering on VM " + domain_name(dom->get()) + " at compute provider " + config_.name);
    }
    return Status::ok();
  });
}

Status LibvirtProvider::power_off(const std::string& uuid, bool graceful, std::chrono::seconds timeout) {
  return connection_->run([&](virConnectPtr conn) -> Status {
    auto dom = find_domain(conn, uuid, config_.name);
    if (!dom.is_ok()) return dom.status();
    virDomainPtr d = dom->get();
    if (virDomainIsActive(d) != 1) return Status::ok();
    if (!graceful) {
      if (virDomainDestroy(d) < 0 && virDomainIsActive(d) == 1) return last_error("powering off VM " + domain_name(d));
      return Status::ok();
    }
    // The guest agent when the guest has one (it works without acpid),
    // else the ACPI power button; drivers that know neither flag choose.
    if (virDomainShutdownFlags(d, VIR_DOMAIN_SHUTDOWN_GUEST_AGENT | VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN) < 0 &&
        virDomainShutdown(d) < 0 && virDomainIsActive(d) == 1)
      return last_error("asking VM " + domain_name(d) + " to shut down");
    if (!wait_shut_off(d, timeout))
      return unavailable("VM " + domain_name(d) + " did not shut down within " + std::to_string(timeout.count()) + " s",
                         "check the guest handles ACPI power buttons (acpid, systemd-logind), or give it longer");
    return Status::ok();
  });
}

Status LibvirtProvider::guest_ping(const std::string& uuid) {
  return connection_->run([&](virConnectPtr conn) -> Status {
    auto dom = find_domain(conn, uuid, config_.name);
    if (!dom.is_ok()) return dom.status();
    if (virDomainIsActive(dom->get()) != 1)
      return failed_precondition("VM " + domain_name(dom->get()) + " is not running", "power it on first");
    auto r = agent_command(dom->get(), {{"execute", "guest-ping"}}, 5);
    return r.is_ok() ? Status::ok() : r.status();
  });
}

Result<GuestCommandResult> LibvirtProvider::guest_exec(const std::string& uuid, const std::vector<std::string>& argv,
                                                       std::chrono::seconds timeout) {
  if (argv.empty()) return invalid_argument("a guest command needs a program");
  auto dom = connection_->run([&](virConnectPtr conn) { return find_domain(conn, uuid, config_.name); });
  if (!dom.is_ok()) return dom.status();
  nlohmann::json args = {{"path", argv.front()}, {"arg", std::vector<std::string>(argv.begin() + 1, argv.end())},
                         {"capture-output", true}};
  auto started = agent_command(dom->get(), {{"execute", "guest-exec"}, {"arguments", args}}, 10);
  if (!started.is_ok()) return started.status();
  const long pid = started->value("pid", -1L);
  if (pid < 0) return internal_error("the guest agent started '" + argv.front() + "' but named no process");
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    auto status = agent_command(dom->get(), {{"execute", "guest-exec-status"}, {"arguments", {{"pid", pid}}}}, 10);
    if (!status.is_ok()) return status.status();
    if (status->value("exited", false)) {
      GuestCommandResult out;
      out.exit_code = status->value("exitcode", status->contains("signal") ? 128 + status->value("signal", 0) : -1);
      auto o = base64_decode(status->value("out-data", ""));
      auto e = base64_decode(status->value("err-data", ""));
      if (o.is_ok()) out.out = std::move(*o);
      if (e.is_ok()) out.err = std::move(*e);
      return out;
    }
    if (std::chrono::steady_clock::now() >= deadline)
      return unavailable("'" + argv.front() + "' in VM " + domain_name(dom->get()) + " did not finish within " +
                         std::to_string(timeout.count()) + " s");
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
}

Result<std::vector<GuestInterface>> LibvirtProvider::guest_interfaces(const std::string& uuid) {
  auto dom = connection_->run([&](virConnectPtr conn) { return find_domain(conn, uuid, config_.name); });
  if (!dom.is_ok()) return dom.status();
  auto r = agent_command(dom->get(), {{"execute", "guest-network-get-interfaces"}}, 10);
  if (!r.is_ok()) return r.status();
  std::vector<GuestInterface> out;
  if (!r->is_array()) return out;
  for (const auto& i : *r) {
    GuestInterface g;
    g.name = i.value("name", "");
    g.mac = i.value("hardware-address", "");
    std::transform(g.mac.begin(), g.mac.end(), g.mac.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    for (const auto& a : i.value("ip-addresses", nlohmann::json::array())) {
      const std::string type = a.value("ip-address-type", "");
      const std::string ip = a.value("ip-address", "");
      if (type == "ipv4") g.ipv4.push_back(ip + "/" + std::to_string(a.value("prefix", 32)));
      // Link-local addresses belong to the link, not to a subnet a rule moves.
      const bool link_local = ip.size() >= 4 && (ip.compare(0, 3, "fe8") == 0 || ip.compare(0, 3, "fe9") == 0 ||
                                                 ip.compare(0, 3, "fea") == 0 || ip.compare(0, 3, "feb") == 0);
      if (type == "ipv6" && !link_local) g.ipv6.push_back(ip + "/" + std::to_string(a.value("prefix", 128)));
    }
    out.push_back(std::move(g));
  }
  return out;
}

Result<std::vector<std::string>> LibvirtProvider::guest_addresses(const std::string& uuid) {
  return connection_->run([&](virConnectPtr conn) -> Result<std::vector<std::string>> {
    auto dom = find_domain(conn, uuid, config_.name);
    if (!dom.is_ok()) return dom.status();
    std::vector<std::string> out;
    // The agent knows static addresses too; DHCP leases are the fallback
    // for guests without one.
    for (unsigned source : {VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_AGENT, VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_LEASE}) {
      virDomainInterfacePtr* ifaces = nullptr;
      int n = virDomainInterfaceAddresses(dom->get(), &ifaces, source, 0);
      if (n < 0) continue;
      for (int i = 0; i < n; ++i) {
        for (unsigned a = 0; a < ifaces[i]->naddrs; ++a) {
          const auto& addr = ifaces[i]->addrs[a];
          std::string ip = addr.addr ? addr.addr : "";
          if (addr.type == VIR_IP_ADDR_TYPE_IPV4 && ip.rfind("127.", 0) != 0) out.push_back(ip);
        }
        virDomainInterfaceFree(ifaces[i]);
      }
      std::free(ifaces);
      if (!out.empty()) break;
    }
    return out;
  });
}

// ------------------------------------------------------- construction

Result<std::unique_ptr<ComputeProvider>> make_libvirt_provider(const ProviderConfig& config) {
  if (config.uri.empty()) {
    return invalid_argument("compute provider '" + config.name + "' of kind libvirt has no uri",
                            "set its uri, e.g. qemu:///system or qemu+ssh://host/system");
  }
  return std::unique_ptr<ComputeProvider>(std::make_unique<LibvirtProvider>(config));
}

void register_libvirt_provider() { ProviderRegistry::instance().add("libvirt", make_libvirt_provider); }

}  // namespace evac
