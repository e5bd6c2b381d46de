#include "service/runs/steps/test_steps.h"

namespace evac {

using engine::Step;
using nlohmann::json;

Result<json> create_test_copy(StepEnv& env, const RunRow& run, const RunContext& ctx, const std::string& group_name) {
  if (!env.replication) return unsupported("this site does not replicate: no points in time to test");
  auto g = ctx.group(group_name);
  if (!g) return g.status();
  if ((*g)->pit.empty())
    return failed_precondition("group '" + group_name + "' had no point in time here when the run started",
                               "replicate it at '" + (*g)->protected_site + "', then start a new test");
  auto copy = env.replication->create_test_copy(group_name, (*g)->pit, run.id);
  if (!copy) return copy.status();
  return json{{"test_copy", copy->id}, {"pit", copy->pit_id}, {"disks", copy->disks.size()}};
}

Result<json> register_test_vm(StepEnv& env, const RunRow& run, const RunContext& ctx, const RunVm& vm) {
  if (!env.replication) return unsupported("this site does not replicate: no points in time to test");
  auto g = ctx.group(vm.group);
  if (!g) return g.status();
  if (vm.placeholder_uuid.empty())
    return failed_precondition("VM '" + vm.name + "' has no placeholder here", "protect it again at '" + (*g)->protected_site + "'");
  // Asking again returns the run's own copy (made by the step before).
  auto copy = env.replication->create_test_copy(vm.group, (*g)->pit, run.id);
  if (!copy) return copy.status();
  TestVmSpec spec;
  spec.name = test_vm_name(vm.name);
  spec.placeholder_uuid = vm.placeholder_uuid;
  spec.run = run.id;
  spec.group = vm.group;
  spec.source_site = (*g)->protected_site;
  spec.source_uuid = vm.source_uuid;
  spec.networks = (*g)->test_networks;
  spec.disks = disks_of(vm, *copy);
  auto provider = env.site.provider(vm.provider);
  if (!provider) return provider.status();
  auto made = (*provider)->define_test_vm(spec);
  if (!made) return made.status();
  return json{{"test_vm", made->name}, {"uuid", made->uuid}, {"provider", made->provider}, {"disks", spec.disks}};
}

Result<json> remove_test_vm(StepEnv& env, const RunVm& vm) {
  auto provider = env.site.provider(vm.provider);
  if (!provider) return provider.status();
  auto test_vms = (*provider)->list_test_vms();
  if (!test_vms) return test_vms.status();
  json removed = json::array();
  for (const auto& t : *test_vms) {
    if (t.group != vm.group || t.source_uuid != vm.source_uuid) continue;
    EVAC_RETURN_IF_ERROR((*provider)->remove_test_vm(t.uuid));
    removed.push_back(json{{"name", t.name}, {"uuid", t.uuid}, {"run", t.run}});
  }
  return json{{"removed", removed}};
}

Result<json> drop_test_copies(StepEnv& env, const std::string& group_name) {
  if (!env.replication) return json{{"dropped", json::array()}};
  auto copies = env.replication->test_copies_held_here(group_name);
  if (!copies) {
    if (copies.status().code() == StatusCode::kNotFound) return json{{"dropped", json::array()}};  // no PITs at all
    return copies.status();
  }
  json dropped = json::array();
  for (const auto& c : *copies) {
    if (c.live) continue;  // a recovered VM's disks, not a test's
    EVAC_RETURN_IF_ERROR(env.replication->drop_test_copy(group_name, c.id));
    dropped.push_back(c.id);
  }
  return json{{"dropped", dropped}};
}

}  // namespace evac
