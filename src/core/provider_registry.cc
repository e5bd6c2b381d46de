#include "core/provider_registry.h"

namespace evac {

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
