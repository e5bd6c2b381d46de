#include "core/compute_provider.h"
#include "core/model.h"

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
