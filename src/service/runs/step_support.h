// What every step handler of a run shares: the services it acts through,
// the VM a VM step acts on, and bounded waits within a step's deadline.
//
// Handlers (service/runs/steps/) are free functions of a StepEnv and a
// StepCall. Each must be idempotent: the engine runs a step again when
// evacd died while it ran (engine/run_engine.h), so a handler detects what
// is already done and converges instead of doing it twice.
#pragma once

#include <chrono>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <utility>

#include <nlohmann/json.hpp>

#include "core/compute_provider.h"
#include "core/status.h"
#include "engine/run_engine.h"
#include "service/plan_service.h"
#include "service/replication_service.h"
#include "service/runs/run_context.h"
#include "service/site_service.h"

namespace evac {

// How far each running "Synchronize storage" step has got, as the
// protected site's last answer said: shown while the step runs.
class PeerProgress {
 public:
  void set(const std::string& run, int step, nlohmann::json progress);
  void erase(const std::string& run, int step);
  nlohmann::json get(const std::string& run, int step) const;  // null if none

 private:
  mutable std::mutex mu_;
  std::map<std::pair<std::string, int>, nlohmann::json> by_step_;
};

struct StepEnv {
  SiteService& site;
  PlanService& plans;
  ReplicationService* replication;  // null: this site does not replicate (unit tests)
  PeerProgress& peer_progress;
};

// One call of a handler: the step, its run and the run's context.
struct StepCall {
  const RunRow& run;
  const engine::Step& step;
  const RunContext& ctx;
  const nlohmann::json& params() const { return step.spec.params; }
};

// The VM a VM step acts on: a test run's test VM, a recovery's recovered
// placeholder.
struct Target {
  ComputeProvider* provider = nullptr;
  std::string id;  // name or UUID the provider knows it by
  std::string name;
};
Result<Target> target_of(SiteService& site, const RunContext& ctx, const RunVm& vm);

// The test VM a test run makes of `vm`.
std::string test_vm_name(const std::string& vm);

// A VM's disks in a copy of its group's PIT: guest target -> image (the
// copy's disks are keyed "<source VM uuid>/<target>").
std::map<std::string, std::string> disks_of(const RunVm& vm, const TestCopy& copy);

// What is left of `own` before the step's deadline, in whole seconds (a
// started second counts); an error once the step's time is up.
Result<std::chrono::seconds> within(const engine::Step& step, std::chrono::seconds own);

// A step following a long operation at the peer asks how it goes this often,
// and gives the peer this long over the wait it asked for to answer.
inline constexpr std::chrono::seconds kPeerFollowWait{20};
inline constexpr std::chrono::seconds kPeerAnswerMargin{15};

// Waits for `attempt` to succeed: kUnavailable means "not yet", anything
// else ends the wait. Past `timeout`, the last "not yet" is the answer.
template <typename Attempt>
Status poll_until(std::chrono::seconds timeout, std::chrono::milliseconds interval, Attempt attempt) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    Status st = attempt();
    if (st.is_ok() || st.code() != StatusCode::kUnavailable) return st;
    if (std::chrono::steady_clock::now() + interval > deadline)
      return failed_precondition(st.message() + " (gave up after " + std::to_string(timeout.count()) + " s)", st.hint());
    std::this_thread::sleep_for(interval);
  }
}

// ---- consolidation: shared by reprotect's steps and a lost site's unpair ----

// A recovered VM runs on overlays of the PIT it was recovered from. While
// it runs, only the hypervisor can copy the chain into them (a block
// pull); where it cannot (a VM that is off, libvirt's test driver), the
// replication engine flattens the images offline when it releases them.
Result<nlohmann::json> flatten_vm_disks(ComputeProvider& provider, const std::string& uuid);
nlohmann::json released_json(const ReleasedReplicas& released);

}  // namespace evac
