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

}  // namespace evac
