// The power-on phase's steps on a VM: guest heartbeat, re-addressing, application checks, callouts.
//
// Step handlers: each is called by the run's StepRunner (service/runs/run_steps.h) for one
// step and must be idempotent (service/runs/step_support.h).
#pragma once

#include <chrono>
#include <string>

#include <nlohmann/json.hpp>

#include "service/runs/step_support.h"

namespace evac {

// Starts the VM (a VM already running counts as started).
Result<nlohmann::json> power_on(const Target& t);

// Waits, at most `timeout`, for the guest agent to answer; {answered_after_ms}.
Result<nlohmann::json> wait_for_guest(const Target& t, std::chrono::seconds timeout);

// The plan's IP rules applied in the guest: each NIC (found by its MAC)
// on a network a rule names gets its address's host part in the rule's
// subnet, and the rule's gateway and DNS. Idempotent: an address already
// moved matches no rule's `from` any more.
Result<nlohmann::json> customize_ip(StepEnv& env, const engine::Step& step, const RunContext& ctx, const RunVm& vm, const Target& t);

// An application check (tcp, http or a command in the guest), polled at
// its interval until it passes or its timeout (within the step's) ends.
Result<nlohmann::json> check(const engine::Step& step, const Target& t, const AppCheck& c);

// A plan's callout on the evacd host, with the run described in EVAC_*
// variables; a non-zero exit fails the step with the end of its output.
Result<nlohmann::json> host_command(const RunRow& run, const RunContext& ctx, const RunVm& vm, const PlanAction& a,
                          std::chrono::seconds timeout);

// A plan's command in the guest, through its agent; a non-zero exit fails the step.
Result<nlohmann::json> guest_command(const Target& t, const PlanAction& a, std::chrono::seconds timeout);

}  // namespace evac
