#include "core/model_json.h"

#include <algorithm>
#include <cstdint>
#include <iterator>
#include <limits>
#include <stdexcept>
#include <type_traits>

namespace evac {
using nlohmann::json;

namespace {
PowerState power_state_from_name(const std::string& s) {
  for (auto p : {PowerState::kRunning, PowerState::kPaused, PowerState::kShutOff, PowerState::kCrashed})
    if (power_state_name(p) == s) return p;
  return PowerState::kOther;
}

template <typename T>
void get_opt(const json& j, const char* key, T& out) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return;
  if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
    // nlohmann narrows a number that does not fit silently: check first.
    constexpr auto kMax = static_cast<std::uint64_t>(std::numeric_limits<T>::max()) >
                                  static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())
                              ? std::numeric_limits<std::int64_t>::max()
                              : static_cast<std::int64_t>(std::numeric_limits<T>::max());
    auto v = checked_integer(*it, std::string("'") + key + "'", std::is_signed_v<T> ? std::numeric_limits<T>::min() : 0,
                             kMax);
    if (!v) throw std::out_of_range(v.status().message());
    out = static_cast<T>(*v);
  } else {
    it->get_to(out);
  }
}
}  // namespace

void to_json(json& j, const DiskInfo& d) {
  j = {{"target", d.target}, {"path", d.path}, {"format", d.format}, {"bus", d.bus}, {"device", d.device}};
  j["storage_pool"] = d.storage_pool ? json(*d.storage_pool) : json(nullptr);
  j["source"] = {{"type", d.source.type}, {"path", d.source.path}, {"protocol", d.source.protocol}, {"name", d.source.name}};
}
void from_json(const json& j, DiskInfo& d) {
  j.at("target").get_to(d.target);
  j.at("path").get_to(d.path);
  get_opt(j, "format", d.format);
  get_opt(j, "bus", d.bus);
  get_opt(j, "device", d.device);
  if (auto it = j.find("storage_pool"); it != j.end() && it->is_string()) d.storage_pool = it->get<std::string>();
  if (auto it = j.find("source"); it != j.end() && it->is_object()) {
    get_opt(*it, "type", d.source.type);
    get_opt(*it, "path", d.source.path);
    get_opt(*it, "protocol", d.source.protocol);
    get_opt(*it, "name", d.source.name);
  }
}

void to_json(json& j, const NicInfo& n) {
  j = {{"mac", n.mac}, {"network", n.network}, {"type", n.type}, {"model", n.model}};
}
void from_json(const json& j, NicInfo& n) {
  get_opt(j, "mac", n.mac);
  j.at("network").get_to(n.network);
  get_opt(j, "type", n.type);
  get_opt(j, "model", n.model);
}

void to_json(json& j, const VmInfo& v) {
  j = {{"provider", v.provider},     {"name", v.name},
       {"uuid", v.uuid},             {"state", power_state_name(v.state)},
       {"vcpus", v.vcpus},           {"memory_kib", v.memory_kib},
       {"firmware", v.firmware},     {"disks", v.disks},
       {"nics", v.nics},             {"is_placeholder", v.is_placeholder}};
  if (!v.native.provider_kind.empty())
    j["native"] = {{"provider_kind", v.native.provider_kind}, {"document", v.native.document}};
}
void from_json(const json& j, VmInfo& v) {
  get_opt(j, "provider", v.provider);
  j.at("name").get_to(v.name);
  get_opt(j, "uuid", v.uuid);
  std::string state;
  get_opt(j, "state", state);
  v.state = power_state_from_name(state);
  get_opt(j, "vcpus", v.vcpus);
  get_opt(j, "memory_kib", v.memory_kib);
  get_opt(j, "firmware", v.firmware);
  get_opt(j, "disks", v.disks);
  get_opt(j, "nics", v.nics);
  get_opt(j, "is_placeholder", v.is_placeholder);
  if (auto it = j.find("native"); it != j.end() && it->is_object()) {
    get_opt(*it, "provider_kind", v.native.provider_kind);
    get_opt(*it, "document", v.native.document);
  }
}

void to_json(json& j, const NetworkInfo& n) {
  j = {{"provider", n.provider},         {"name", n.name},         {"kind", n.kind},         {"uuid", n.uuid},
       {"bridge", n.bridge},             {"active", n.active},     {"forward_mode", n.forward_mode},
       {"isolated", n.isolated},         {"isolation", n.isolation}};
}
void from_json(const json& j, NetworkInfo& n) {
  get_opt(j, "provider", n.provider);
  j.at("name").get_to(n.name);
  get_opt(j, "kind", n.kind);
  get_opt(j, "uuid", n.uuid);
  get_opt(j, "bridge", n.bridge);
  get_opt(j, "active", n.active);
  get_opt(j, "forward_mode", n.forward_mode);
  get_opt(j, "isolated", n.isolated);
  get_opt(j, "isolation", n.isolation);
}

void to_json(json& j, const StoragePoolInfo& p) {
  j = {{"provider", p.provider},
       {"name", p.name},
       {"uuid", p.uuid},
       {"type", p.type},
       {"path", p.path},
       {"active", p.active},
       {"capacity_bytes", p.capacity_bytes},
       {"available_bytes", p.available_bytes}};
}
void from_json(const json& j, StoragePoolInfo& p) {
  get_opt(j, "provider", p.provider);
  j.at("name").get_to(p.name);
  get_opt(j, "uuid", p.uuid);
  get_opt(j, "type", p.type);
  get_opt(j, "path", p.path);
  get_opt(j, "active", p.active);
  get_opt(j, "capacity_bytes", p.capacity_bytes);
  get_opt(j, "available_bytes", p.available_bytes);
}

void to_json(json& j, const PlaceholderSpec& s) {
  j = {{"group", s.group}, {"source_site", s.source_site}, {"source_uuid", s.source_uuid}, {"vm", s.vm}};
}
void from_json(const json& j, PlaceholderSpec& s) {
  j.at("group").get_to(s.group);
  j.at("source_site").get_to(s.source_site);
  j.at("source_uuid").get_to(s.source_uuid);
  j.at("vm").get_to(s.vm);
}

namespace {

// Names and identifiers: VM and provider names, UUIDs, disk targets, MACs.
constexpr std::size_t kMaxIdLength = 256;
// A VM's native definition (libvirt's domain XML) travels whole.
constexpr std::size_t kMaxNativeDocument = 1024 * 1024;
// Far beyond any hypervisor's limits, far from narrowing or overflowing.
constexpr unsigned kMaxVcpus = 1u << 16;
constexpr std::uint64_t kMaxMemoryKib = std::uint64_t{1} << 52;  // 2^62 bytes

}  // namespace

Result<DiskSource> strict_disk_source(const json& j) {
  auto f = JsonFields::of(j, "the source of a disk of a placeholder's VM");
  if (!f) return f.status();
  auto type = f->text("type", 64);
  auto path = f->text("path");
  auto protocol = f->text("protocol", 64);
  auto name = f->text("name");  // a network disk's path is "protocol:name": bounded alike
  for (const Status& s : {type.status(), path.status(), protocol.status(), name.status(), f->finish()})
    if (!s) return s;
  DiskSource out;
  out.type = type->value_or(out.type);
  // libvirt grows disk types (nvme, vhostuser, ...): any name of its shape
  // passes, and the engines refuse what they cannot read, by name.
  const bool is_name = !out.type.empty() && std::all_of(out.type.begin(), out.type.end(), [](char ch) {
    return (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-' || ch == '_';
  });
  if (!is_name)
    return invalid_argument("field 'type' of " + f->what() + " is '" + excerpt(out.type, 64) +
                                "', not the name of a libvirt disk type",
                            "a disk type is libvirt's, in lower case: file, block, dir, network, volume, ...");
  out.path = path->value_or("");
  out.protocol = protocol->value_or("");
  out.name = name->value_or("");
  return out;
}

namespace {

Result<DiskInfo> strict_disk(const json& j) {
  auto f = JsonFields::of(j, "a disk of a placeholder's VM");
  if (!f) return f.status();
  auto target = f->required_text("target", kMaxIdLength);
  auto path = f->required(f->text("path"), "path");  // empty: a CD-ROM drive without media
  auto format = f->text("format", 64);
  auto bus = f->text("bus", 64);
  auto device = f->text("device", 64);
  auto pool = f->text("storage_pool", kMaxIdLength);
  const json* source_field = f->value("source");
  for (const Status& s :
       {target.status(), path.status(), format.status(), bus.status(), device.status(), pool.status(), f->finish()})
    if (!s) return s;
  DiskSource source;  // absent: a file, as a sender from before DiskSource wrote it
  if (source_field) {
    auto read = strict_disk_source(*source_field);
    if (!read) return read.status();
    source = std::move(*read);
  }
  return DiskInfo{*target, *path, format->value_or(""), bus->value_or(""), device->value_or(""), *pool, std::move(source)};
}

Result<NicInfo> strict_nic(const json& j) {
  auto f = JsonFields::of(j, "a NIC of a placeholder's VM");
  if (!f) return f.status();
  auto mac = f->text("mac", 64);
  auto network = f->required(f->text("network", kMaxIdLength), "network");
  auto type = f->text("type", 64);
  auto model = f->text("model", 64);
  for (const Status& s : {mac.status(), network.status(), type.status(), model.status(), f->finish()})
    if (!s) return s;
  return NicInfo{mac->value_or(""), *network, type->value_or(""), model->value_or("")};
}

template <typename T>
Status strict_list(JsonFields& f, std::string_view key, Result<T> (*read)(const json&), std::vector<T>& out) {
  auto list = f.list(key);
  if (!list) return list.status();
  if (!*list) return Status::ok();
  for (const json& item : **list) {
    auto v = read(item);
    if (!v) return v.status();
    out.push_back(std::move(*v));
  }
  return Status::ok();
}

Result<VmInfo> strict_vm(const json& j) {
  auto f = JsonFields::of(j, "a placeholder's VM");
  if (!f) return f.status();
  VmInfo vm;
  auto provider = f->text("provider", kMaxIdLength);
  auto name = f->required_text("name", kMaxIdLength);
  auto uuid = f->text("uuid", kMaxIdLength);
  auto state = f->text("state", 64);
  auto vcpus = f->integer_as<unsigned>("vcpus", 0, kMaxVcpus);
  auto memory = f->integer_as<std::uint64_t>("memory_kib", 0, kMaxMemoryKib);
  auto firmware = f->text("firmware", 64);
  Status disks = strict_list(*f, "disks", &strict_disk, vm.disks);
  Status nics = strict_list(*f, "nics", &strict_nic, vm.nics);
  auto is_placeholder = f->boolean("is_placeholder");
  const json* native = f->value("native");
  for (const Status& s : {provider.status(), name.status(), uuid.status(), state.status(), vcpus.status(),
                          memory.status(), firmware.status(), disks, nics, is_placeholder.status(), f->finish()})
    if (!s) return s;
  if (native) {
    auto n = JsonFields::of(*native, "the native definition of a placeholder's VM");
    if (!n) return n.status();
    auto kind = n->text("provider_kind", 64);
    auto document = n->text("document", kMaxNativeDocument);
    for (const Status& s : {kind.status(), document.status(), n->finish()})
      if (!s) return s;
    vm.native = NativeDefinition{kind->value_or(""), document->value_or("")};
  }
  vm.provider = provider->value_or("");
  vm.name = *name;
  vm.uuid = uuid->value_or("");
  vm.state = power_state_from_name(state->value_or(""));
  vm.vcpus = vcpus->value_or(0);
  vm.memory_kib = memory->value_or(0);
  vm.firmware = firmware->value_or("");
  vm.is_placeholder = is_placeholder->value_or(false);
  return vm;
}

}  // namespace

Result<PlaceholderSpec> placeholder_spec_from_json(const json& j) {
  auto f = JsonFields::of(j, "a placeholder request");
  if (!f) return f.status();
  auto group = f->required_text("group", 64);
  auto source_site = f->required_text("source_site", 64);
  auto source_uuid = f->required_text("source_uuid", kMaxIdLength);
  const json* vm_field = f->value("vm");
  for (const Status& s : {group.status(), source_site.status(), source_uuid.status(), f->finish()})
    if (!s) return s;
  if (!vm_field) return f->missing("vm");
  auto vm = strict_vm(*vm_field);
  if (!vm) return vm.status();
  return PlaceholderSpec{*group, *source_site, *source_uuid, std::move(*vm)};
}

void to_json(json& j, const PlaceholderInfo& p) {
  j = {{"provider", p.provider}, {"name", p.name},
       {"uuid", p.uuid},         {"group", p.group},
       {"source_site", p.source_site}, {"source_uuid", p.source_uuid}};
}
void from_json(const json& j, PlaceholderInfo& p) {
  get_opt(j, "provider", p.provider);
  j.at("name").get_to(p.name);
  j.at("uuid").get_to(p.uuid);
  get_opt(j, "group", p.group);
  get_opt(j, "source_site", p.source_site);
  get_opt(j, "source_uuid", p.source_uuid);
}

}  // namespace evac
