// A test's and a cleanup's steps: copies of a PIT, test VMs on them, and their removal.
//
// Step handlers: each is called by the run's StepRunner (service/runs/run_steps.h) for one
// step and must be idempotent (service/runs/step_support.h).
#pragma once

#include <chrono>
#include <string>

#include <nlohmann/json.hpp>

#include "service/runs/step_support.h"

namespace evac {

// A writable copy of the group's PIT chosen at the run's start, owned by
// the run (asked again, the run's own copy is returned).
Result<nlohmann::json> create_test_copy(StepEnv& env, const RunRow& run, const RunContext& ctx, const std::string& group_name);

// "<vm>-test" defined on the run's copy and the test networks, from the
// VM's placeholder.
Result<nlohmann::json> register_test_vm(StepEnv& env, const RunRow& run, const RunContext& ctx, const RunVm& vm);

// Every test VM of the VM, whichever run made it (a cleanup closes failed
// and interrupted tests too).
Result<nlohmann::json> remove_test_vm(StepEnv& env, const RunVm& vm);

// Every test copy of the group; a recovered VM's live copy is kept.
Result<nlohmann::json> drop_test_copies(StepEnv& env, const std::string& group_name);

}  // namespace evac
