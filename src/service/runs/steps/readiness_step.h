// The first step of every run: the plan's readiness check, for the run's operation.
//
// Step handlers: each is called by the run's StepRunner (service/runs/run_steps.h) for one
// step and must be idempotent (service/runs/step_support.h).
#pragma once

#include <chrono>
#include <string>

#include <nlohmann/json.hpp>

#include "service/runs/step_support.h"

namespace evac {

// The plan's readiness check for the run's operation: only what concerns
// it stops the run (a missing test network stops no failover, a lost
// protected site no test). A reprotect or failback also needs the former
// protected site answering and mappings back to it. {ok, warnings}; errors
// fail the step, saying what `evac plan check` lists.
Result<nlohmann::json> readiness(StepEnv& env, const RunContext& ctx);

}  // namespace evac
