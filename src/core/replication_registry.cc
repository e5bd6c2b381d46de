#include "core/replication_registry.h"

namespace evac {

void ReplicationRegistry::add(const std::string& kind, ReplicationAdapterFactory factory) {
  factories_[kind] = std::move(factory);
}

Result<std::unique_ptr<ReplicationAdapter>> ReplicationRegistry::create(const std::string& kind,
                                                                       const ReplicationSiteContext& site) const {
  auto it = factories_.find(kind);
  if (it == factories_.end()) {
    std::string known;
    for (const auto& [k, _] : factories_) known += (known.empty() ? "" : ", ") + k;
    return invalid_argument("replication engine '" + kind + "' is not built into this evacd",
                            known.empty() ? "this evacd was built without replication engines"
                                          : "use one of: " + known);
  }
  auto adapter = it->second(site);
  if (!adapter) return adapter.status().with_context("replication engine '" + kind + "'");
  return adapter;
}

std::vector<std::string> ReplicationRegistry::kinds() const {
  std::vector<std::string> out;
  for (const auto& [k, _] : factories_) out.push_back(k);
  return out;
}

}  // namespace evac
