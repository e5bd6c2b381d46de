// Fuzz target: a recovery plan as the API receives it (JSON text), through
// the one JSON decoder and the plan decoder, then validated and compiled
// into steps, as a PUT /api/v1/plans/{name} does before it stores it.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "core/json_decode.h"
#include "core/plan.h"
#include "core/plan_json.h"
#include "engine/plan_compiler.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto j = evac::parse_json(text, "fuzz input");
  if (!j) return 0;
  auto plan = evac::plan_from_json(*j);
  if (!plan) return 0;
  std::vector<std::string> vms;
  std::vector<evac::engine::RecoveryVm> recovery;
  for (const auto& v : plan->vms) {
    vms.push_back(v.vm);
    recovery.push_back({v.vm, plan->groups.empty() ? "g" : plan->groups.front()});
  }
  (void)evac::plan_to_json(*plan).dump();
  if (!evac::validate_plan(*plan, vms).is_ok()) return 0;
  // A valid plan compiles for every operation.
  (void)evac::engine::compile_test(*plan, recovery);
  (void)evac::engine::compile_failover(*plan, recovery);
  (void)evac::engine::compile_migrate(*plan, recovery);
  (void)evac::engine::compile_failback(*plan, recovery);
  return 0;
}
