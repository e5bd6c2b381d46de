#include "core/model_json.h"

#include <cstdint>
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
}
void from_json(const json& j, DiskInfo& d) {
  j.at("target").get_to(d.target);
  j.at("path").get_to(d.path);
  get_opt(j, "format", d.format);
  get_opt(j, "bus", d.bus);
  get_opt(j, "device", d.device);
  if (auto it = j.find("storage_pool"); it != j.end() && it->is_string()) d.storage_pool = it->get<std::string>();
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
