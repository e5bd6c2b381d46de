// The run engine: executes a run's steps as a DAG, durably.
//
//   pending ──► running ──► succeeded
//      │           │  ├───► unreached (best effort: its target could not be reached; the run goes on)
//      │           │  └───► failed ──(resume)──► pending
//      │           └─(retryable error, attempts left: backoff)──► running
//      └─(prompt)──► waiting ──(ack)──► succeeded
//   any not yet started ──(cancel)──► skipped
//
// A step starts once every step it comes after has succeeded (or was
// skipped as not needed); among ready steps the lower tier, then the lower
// index, goes first, with at most `max_parallel` at once and at most
// `per_resource_limit` of one resource (a compute provider) at once. Each step's state
// is written to SQLite before its side effect starts and after it ends, so
// a restarted evacd (`resume_interrupted`) continues every run that was
// going: a step found "running" ran when the process died and is run
// again, which is why every StepRunner must be idempotent (detect what is
// already done and converge instead of doing it twice).
//
// A failed step stops the run from starting new steps; those in flight
// finish, then the run is "failed" and can be resumed (the failed steps are
// retried) or cancelled. Prompts are the engine's own: a "prompt" step waits
// for `ack` with the run "waiting".
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/status.h"
#include "engine/step_kind.h"
#include "store/store.h"

namespace evac::engine {

enum class StepState { kPending, kRunning, kWaiting, kSucceeded, kFailed, kSkipped, kUnreached };
std::string_view step_state_name(StepState s);
std::optional<StepState> step_state_from_name(std::string_view s);

enum class RunState { kRunning, kWaiting, kFailed, kSucceeded, kCancelled };
std::string_view run_state_name(RunState s);
std::optional<RunState> run_state_from_name(std::string_view s);

// What a plan compiles to: one durable unit shown to the operator.
struct StepSpec {
  std::string name;  // "Power on priority 1 VMs: db01"
  // What the StepRunner does; kPrompt (wait for ack) and kBarrier (a
  // point in the graph, such as "Priority 1 VMs are up") are the engine's own.
  StepKind kind = StepKind::kBarrier;
  std::vector<int> after;  // indices of steps that must be done first
  int tier = 0;            // priority among ready steps (lower first)
  nlohmann::json params = nlohmann::json::object();
  // What the step holds while it runs (e.g. "provider:kvm-b"): at most
  // EngineOptions::per_resource_limit steps of one resource run at once.
  // Empty: only max_parallel bounds it.
  std::string resource;
  // How long the step may take, every attempt and retry included (0: no
  // bound of the engine's own). The runner bounds its waits by
  // Step::deadline_ms; a step still failing then fails for good, saying it
  // timed out. A step resumed after a restart starts its time again.
  int timeout_s = 0;
  // How long it is expected to take (from the plan's earlier runs); 0:
  // unknown. Among ready steps of one tier the engine starts first the one
  // with the longest expected path of steps ahead of it.
  int expected_ms = 0;
};

struct Step {
  int idx = 0;
  StepSpec spec;
  StepState state = StepState::kPending;
  int attempts = 0;
  std::optional<std::int64_t> started_at_ms, ended_at_ms;
  std::string error;
  nlohmann::json result;  // null until it ends
  std::int64_t deadline_ms = 0;  // while it runs: when its timeout ends (unix ms); 0: none. Not stored.
  // A restart found it running: when that attempt started. Told in the
  // step's outcome (a record of the attempt whose end nobody saw), not kept
  // as a field of its own.
  std::optional<std::int64_t> interrupted_started_at_ms;
};

// The engine's default clock, unix milliseconds: what a step's started_at_ms
// and deadline_ms are read against.
std::int64_t system_millis();

// How long a step's runner may still wait, at most `own`: what is left
// before the step's deadline (never below zero).
std::chrono::milliseconds time_left(const Step& step, std::chrono::milliseconds own, std::int64_t now_ms);

// What a best-effort step's runner returns when the target of its side
// effect could not be reached (the protected site, in a disaster): the step
// ends "unreached", not "succeeded", with `why` as its error; what comes
// after it goes on, and reports count it. `details` is kept as its result.
nlohmann::json unreached_outcome(const std::string& why, nlohmann::json details = nlohmann::json::object());
// The reason such a result carries; nullopt for any other result.
std::optional<std::string> unreached_reason(const nlohmann::json& result);

// Does the work of one step kind. Called on the engine's worker threads.
class StepRunner {
 public:
  virtual ~StepRunner() = default;
  // The step's result (kept with it: what it made, so cleanup can undo it).
  // kUnavailable is retried with backoff; any other error fails the step.
  // Must be idempotent: it may be called again for a step that was running
  // when evacd died.
  virtual Result<nlohmann::json> run(const RunRow& run, const Step& step) = 0;
};

struct EngineOptions {
  int max_parallel = 8;
  int max_attempts = 3;  // for retryable (kUnavailable) errors
  std::chrono::milliseconds backoff{1000};  // doubled after each retry
  int per_resource_limit = 0;  // steps of one resource at once (a provider's concurrency limit); 0: no limit
  // Fault injection for crash tests (evacd: EVAC_FAULT_EXIT_AFTER_STEPS):
  // once this many steps' side effects are done, the process ends at once
  // (_exit, as if killed) before the last one's outcome is recorded, so the
  // restarted process must run that step again. 0: never.
  int exit_after_steps = 0;
};

class RunEngine {
 public:
  using MillisClock = std::function<std::int64_t()>;  // unix milliseconds
  RunEngine(Store& store, StepRunner& runner, EngineOptions options = {}, MillisClock clock = nullptr);
  // Stops every run's threads where they are (steps in flight finish first);
  // the runs stay "running" in the store, as after a crash.
  ~RunEngine();
  RunEngine(const RunEngine&) = delete;
  RunEngine& operator=(const RunEngine&) = delete;

  // Writes the run and its steps, then executes it in the background.
  // `run.state` and timestamps are set here. Steps' `after` must point at
  // earlier indices (the compiler emits them in a topological order).
  Status start(RunRow run, std::vector<StepSpec> steps);
  // At evacd start: picks up every run left running or waiting.
  Status resume_interrupted();
  // A failed run: its failed steps go back to pending and it goes on.
  Status resume(const std::string& run_id);
  // Acknowledges the prompt the run waits at (idx < 0: whichever it is).
  Status ack(const std::string& run_id, int idx = -1);
  // Starts no more steps; those in flight finish. The rest are skipped.
  Status cancel(const std::string& run_id);

  // For tests and synchronous callers: blocks until the run is no longer
  // running (succeeded, failed, cancelled, or waiting at a prompt).
  void wait_idle(const std::string& run_id);

  // The run's steps as stored.
  Result<std::vector<Step>> steps(const std::string& run_id);

 private:
  struct Active;
  Status launch(const RunRow& run, std::vector<Step> steps);
  void worker(std::shared_ptr<Active> a);
  int pick_next(Active& a, int ended);  // with a.mu held
  void take(Active& a, Step& step);  // with a.mu held
  Result<nlohmann::json> attempt(Active& a, Step& step, std::unique_lock<std::mutex>& lock);
  void finish_if_done(Active& a);  // with a.mu held
  Status persist(const std::string& run_id, const Step& s);
  std::shared_ptr<Active> find_active(const std::string& run_id);

  Store& store_;
  StepRunner& runner_;
  EngineOptions options_;
  MillisClock clock_;
  std::atomic<int> steps_done_{0};  // for EngineOptions::exit_after_steps
  std::mutex mu_;
  std::map<std::string, std::shared_ptr<Active>> active_;
};

// Conversions between the engine's steps and the store's rows.
StepRow to_row(const std::string& run_id, const Step& s);
Result<Step> from_row(const StepRow& r);

}  // namespace evac::engine
