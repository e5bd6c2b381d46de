#include "core/compute_provider.h"
#include "core/model.h"

#include <algorithm>

namespace evac {

std::string_view power_state_name(PowerState s) {
  switch (s) {
    case PowerState::kRunning: return "running";
    case PowerState::kPaused: return "paused";
    case PowerState::kShutOff: return "shut off";
    case PowerState::kCrashed: return "crashed";
    case PowerState::kOther: break;
  }
  return "other";
}

std::string DiskSource::describe() const {
  if (type == "file") return "image file " + path;
  if (type == "block") return "block device " + path;
  if (type == "network") return "network disk " + protocol + " " + name;
  return type + " disk " + (path.empty() ? name : path);
}

DiskSource source_of(const DiskInfo& d) {
  DiskSource s = d.source;
  if ((s.type == "file" || s.type == "block") && s.path.empty()) s.path = d.path;
  return s;
}

std::string Attachment::key() const { return type == "network" || type.empty() ? name : type + ":" + name; }

Attachment attachment_of(const NicInfo& nic) {
  if (nic.type == "bridge" || nic.type == "direct") return {nic.type, nic.network};
  return {"network", nic.network};
}

Attachment parse_attachment(const std::string& key) {
  for (const char* type : {"bridge", "direct"}) {
    const std::string prefix = std::string(type) + ":";
    if (key.rfind(prefix, 0) == 0 && key.size() > prefix.size()) return {type, key.substr(prefix.size())};
  }
  return {"network", key};
}

Result<std::optional<std::string>> resolve_attachment(const std::vector<std::string>& keys, const std::string& given) {
  auto has = [&](const std::string& k) { return std::find(keys.begin(), keys.end(), k) != keys.end(); };
  if (has(given)) return std::optional<std::string>(given);
  if (parse_attachment(given).type != "network") return std::optional<std::string>();  // qualified, and absent
  std::vector<std::string> fits;
  for (const char* type : {"bridge", "direct"})
    if (has(Attachment{type, given}.key())) fits.push_back(Attachment{type, given}.key());
  if (fits.size() > 1)
    return invalid_argument("'" + given + "' is both " + fits[0] + " and " + fits[1], "name one of them with its prefix");
  if (fits.empty()) return std::optional<std::string>();
  return std::optional<std::string>(fits.front());
}

namespace {
Status not_supported_by(const ComputeProvider& p, const std::string& what) {
  return unsupported("compute provider '" + p.name() + "' (" + p.kind() + ") cannot " + what,
                     "recover onto a provider that can, e.g. libvirt");
}
}  // namespace

Result<TestVmInfo> ComputeProvider::define_test_vm(const TestVmSpec& spec) {
  return not_supported_by(*this, "register test VM " + spec.name);
}
Result<std::vector<TestVmInfo>> ComputeProvider::list_test_vms() { return not_supported_by(*this, "list test VMs"); }
Status ComputeProvider::remove_test_vm(const std::string& uuid) { return not_supported_by(*this, "remove test VM " + uuid); }
Result<VmInfo> ComputeProvider::recover_placeholder(const std::string& uuid, const std::map<std::string, std::string>&,
                                                   const std::string&) {
  return not_supported_by(*this, "recover onto placeholder " + uuid);
}
Result<PlaceholderInfo> ComputeProvider::adopt_as_placeholder(const std::string& uuid, const PlaceholderInfo&) {
  return not_supported_by(*this, "make VM " + uuid + " a placeholder");
}
Result<std::vector<std::string>> ComputeProvider::flatten_disks(const std::string& uuid) {
  return not_supported_by(*this, "flatten the disks of VM " + uuid + " while it runs");
}
Status ComputeProvider::power_on(const std::string& uuid) { return not_supported_by(*this, "power on VM " + uuid); }
Result<std::vector<std::string>> ComputeProvider::start_problems(const std::string& uuid) {
  return not_supported_by(*this, "tell whether VM " + uuid + " would start");
}
Result<ComputeProvider::HostCapacity> ComputeProvider::host_capacity() {
  return not_supported_by(*this, "report its host's capacity");
}
Status ComputeProvider::power_off(const std::string& uuid, bool, std::chrono::seconds) {
  return not_supported_by(*this, "power off VM " + uuid);
}
Status ComputeProvider::guest_ping(const std::string& uuid) { return not_supported_by(*this, "reach the guest agent of VM " + uuid); }
Result<GuestCommandResult> ComputeProvider::guest_exec(const std::string& uuid, const std::vector<std::string>&,
                                                       std::chrono::seconds) {
  return not_supported_by(*this, "run commands in the guest of VM " + uuid);
}
Result<std::vector<GuestInterface>> ComputeProvider::guest_interfaces(const std::string& uuid) {
  return not_supported_by(*this, "read the network interfaces in the guest of VM " + uuid);
}
Result<std::vector<std::string>> ComputeProvider::guest_addresses(const std::string& uuid) {
  return not_supported_by(*this, "read the addresses of VM " + uuid);
}

ProviderRegistry& ProviderRegistry::instance() {
  static ProviderRegistry registry;
  return registry;
}

void ProviderRegistry::add(const std::string& kind, ProviderFactory factory) {
  factories_[kind] = std::move(factory);
}

Result<std::unique_ptr<ComputeProvider>> ProviderRegistry::create(const ProviderConfig& config) const {
  auto it = factories_.find(config.kind);
  if (it == factories_.end()) {
    std::string known;
    for (const auto& [k, _] : factories_) known += (known.empty() ? "" : ", ") + k;
    return invalid_argument("compute provider '" + config.name + "' has unknown kind '" + config.kind + "'",
                            "use one of: " + known);
  }
  return it->second(config);
}

std::vector<std::string> ProviderRegistry::kinds() const {
  std::vector<std::string> out;
  for (const auto& [k, _] : factories_) out.push_back(k);
  return out;
}

}  // namespace evac
