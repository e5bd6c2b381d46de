#include "service/runs/step_support.h"

namespace evac {

using nlohmann::json;

void PeerProgress::set(const std::string& run, int step, json progress) {
  std::lock_guard lock(mu_);
  by_step_[{run, step}] = std::move(progress);
}

void PeerProgress::erase(const std::string& run, int step) {
  std::lock_guard lock(mu_);
  by_step_.erase({run, step});
}

json PeerProgress::get(const std::string& run, int step) const {
  std::lock_guard lock(mu_);
  auto it = by_step_.find({run, step});
  return it == by_step_.end() ? json() : it->second;
}

std::string test_vm_name(const std::string& vm) { return vm + "-test"; }

Result<Target> target_of(SiteService& site, const RunContext& ctx, const RunVm& vm) {
  if (vm.provider.empty())
    return failed_precondition("VM '" + vm.name + "' has no placeholder here", "protect it again at its protected site");
  EVAC_ASSIGN_OR_RETURN(ComputeProvider * provider, site.provider(vm.provider));
  if (ctx.operation == "test") return Target{provider, test_vm_name(vm.name), test_vm_name(vm.name)};
  // A recovery starts the placeholder it turned into the recovered VM.
  return Target{provider, vm.placeholder_uuid, vm.name};
}

std::map<std::string, std::string> disks_of(const RunVm& vm, const TestCopy& copy) {
  std::map<std::string, std::string> out;
  const std::string prefix = vm.source_uuid + "/";
  for (const auto& d : copy.disks)
    if (d.key.rfind(prefix, 0) == 0) out[d.key.substr(prefix.size())] = d.path;
  return out;
}

Result<std::chrono::seconds> within(const engine::Step& step, std::chrono::seconds own) {
  auto left = engine::time_left(step, own, engine::system_millis());
  if (left.count() <= 0)
    return failed_precondition("step '" + step.spec.name + "' ran out of its " + std::to_string(step.spec.timeout_s) + " s",
                               "resume the run to try again");
  return std::chrono::ceil<std::chrono::seconds>(left);
}

Result<json> flatten_vm_disks(ComputeProvider& provider, const std::string& uuid) {
  auto flattened = provider.flatten_disks(uuid);
  if (!flattened) {
    if (flattened.status().code() == StatusCode::kUnsupported)
      return json{{"flattened", json::array()}, {"left_to_the_release", flattened.status().message()}};
    return flattened.status();
  }
  return json{{"flattened", *flattened}};
}

json released_json(const ReleasedReplicas& released) {
  json out{{"flattened", released.flattened},
           {"released_copies", released.released_copies},
           {"removed_pits", released.removed_pits},
           {"kept_pits", released.kept_pits}};
  if (!released.kept_because.empty()) out["kept_because"] = released.kept_because;
  return out;
}

}  // namespace evac
