// The run engine's StepRunner for recovery plans: reads the run's context
// once per run, then hands each step to its kind's handler
// (service/runs/steps/).
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>

#include <nlohmann/json.hpp>

#include "engine/run_engine.h"
#include "service/runs/run_context.h"
#include "service/runs/step_support.h"

namespace evac {

class RunSteps : public engine::StepRunner {
 public:
  RunSteps(SiteService& site, PlanService& plans, ReplicationService* replication);

  Result<nlohmann::json> run(const RunRow& run, const engine::Step& step) override;

  // A running "Synchronize storage" step's cycle at the protected site, as
  // its last answer (at most kPeerFollowWait old) told it; null if none.
  nlohmann::json peer_progress(const std::string& run_id, int idx) const { return progress_.get(run_id, idx); }

 private:
  // The run's context, read once per run (and again after a restart): the
  // steps of a 10,000-VM run must not parse it 50,000 times.
  Result<std::shared_ptr<const RunContext>> context(const RunRow& run);
  Result<nlohmann::json> run_group_step(const RunRow& run, const engine::Step& step, const RunContext& ctx);
  Result<nlohmann::json> run_vm_step(const RunRow& run, const engine::Step& step, const RunContext& ctx);

  PeerProgress progress_;
  StepEnv env_;
  std::mutex mu_;
  std::map<std::string, std::shared_ptr<const RunContext>> contexts_;  // by run id
};

}  // namespace evac
