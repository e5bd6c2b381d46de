// After a recovery: replicas released, the former protected site's copies made placeholders,
// the group protected from here and its first cycle back.
//
// Step handlers: each is called by the run's StepRunner (service/runs/run_steps.h) for one
// step and must be idempotent (service/runs/step_support.h).
#pragma once

#include <chrono>
#include <string>

#include <nlohmann/json.hpp>

#include "service/runs/step_support.h"

namespace evac {

// The former protected site makes its stale copies the placeholders of
// the VMs live here, keeps their disks as seeds and stops protecting the
// group. It answers the same when asked again.
Result<nlohmann::json> reprotect_peer(StepEnv& env, const engine::Step& step, const RunRow& run, const RunContext& ctx, const RunGroup& g);

// This site protects the group from now on, toward the former protected
// site, with the group's settings; the VMs' placeholders there are their
// old copies (same UUIDs as the VMs had there).
Result<nlohmann::json> protect_here(StepEnv& env, const RunContext& ctx, const RunGroup& g);

// This site's PITs of the group are history once its VMs stand on their
// own disks: the space goes back, and retention never has to work around
// a recovered VM's chain again.
Result<nlohmann::json> release_replicas(StepEnv& env, const RunGroup& g);

// The first cycle back: the former protected site starts each disk from
// its seed, so only blocks written since (here, or lost there) travel.
Result<nlohmann::json> sync_reverse(StepEnv& env, const RunGroup& g);

// The recovered VM's disks pulled off their PIT chain while it runs (see
// flatten_vm_disks).
Result<nlohmann::json> flatten_disks(const Target& t);

}  // namespace evac
