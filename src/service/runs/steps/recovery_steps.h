// A migration's and a failover's steps: the protected site's half (sync, shutdown, handover),
// then this site's (promote the PIT, take ownership, recover each VM).
//
// Step handlers: each is called by the run's StepRunner (service/runs/run_steps.h) for one
// step and must be idempotent (service/runs/step_support.h).
#pragma once

#include <chrono>
#include <string>

#include <nlohmann/json.hpp>

#include "service/runs/step_support.h"

namespace evac {

// The protected site's cycle, followed in bounded waits (peer_cycle.h);
// the step's own deadline (if it has one) ends the wait. Each answer's
// progress is kept for the step's view while it runs.
Result<nlohmann::json> sync_protected(StepEnv& env, const RunRow& run, const engine::Step& step, const RunGroup& g);

// The group's VMs stopped at the protected site: a migration's graceful
// shutdown must work; a failover's (best_effort) is a short hard try whose
// failure ends the step "unreached" (the site fences them when it is back).
Result<nlohmann::json> shutdown_protected(StepEnv& env, const engine::Step& step, const RunGroup& g, bool best_effort);

// The protected site fences its copy of the group for this site's new
// epoch. best_effort: a site that does not answer ends it "unreached".
Result<nlohmann::json> handover(StepEnv& env, const RunRow& run, const RunContext& ctx, const RunGroup& g, bool best_effort);

// The PIT to recover (the run's, or the newest once the final sync made
// it) made the group's live disks, owned by the run; asked again, the
// run's live copy is found even if a newer PIT arrived meanwhile.
Result<nlohmann::json> promote(StepEnv& env, const RunRow& run, const RunGroup& g);

// This site owns the group at the run's epoch (recorded, and the
// configuration version bumped so the old site learns it); a failover also
// tells the old site if it answers.
Result<nlohmann::json> take_ownership(StepEnv& env, const RunRow& run, const RunContext& ctx, const RunGroup& g);

// The VM's placeholder redefined on the run's live disks; disks it held
// before (a failback's fenced copy) are released first.
Result<nlohmann::json> recover_vm(StepEnv& env, const RunRow& run, const RunContext& ctx, const RunVm& vm);

}  // namespace evac
