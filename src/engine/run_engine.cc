#include "engine/run_engine.h"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <tuple>

#include "core/json_decode.h"

namespace evac::engine {

using nlohmann::json;

namespace {

constexpr std::pair<StepState, std::string_view> kStepStates[] = {
    {StepState::kPending, "pending"},     {StepState::kRunning, "running"}, {StepState::kWaiting, "waiting"},
    {StepState::kSucceeded, "succeeded"}, {StepState::kFailed, "failed"},   {StepState::kSkipped, "skipped"},
    {StepState::kUnreached, "unreached"}};
constexpr std::pair<RunState, std::string_view> kRunStates[] = {{RunState::kRunning, "running"},
                                                                {RunState::kWaiting, "waiting"},
                                                                {RunState::kFailed, "failed"},
                                                                {RunState::kSucceeded, "succeeded"},
                                                                {RunState::kCancelled, "cancelled"}};

// A step whose dependents may start: it did its work, or (best effort) it
// tried and its target could not be reached.
bool went_on(StepState s) { return s == StepState::kSucceeded || s == StepState::kUnreached; }
bool done(StepState s) { return went_on(s) || s == StepState::kSkipped; }

constexpr const char* kUnreachedKey = "unreached";

template <typename E, std::size_t N>
std::string_view name_in(const std::pair<E, std::string_view> (&table)[N], E value) {
  for (auto [v, n] : table)
    if (v == value) return n;
  return table[0].second;
}
template <typename E, std::size_t N>
std::optional<E> value_in(const std::pair<E, std::string_view> (&table)[N], std::string_view name) {
  for (auto [v, n] : table)
    if (n == name) return v;
  return std::nullopt;
}

}  // namespace

json unreached_outcome(const std::string& why, json details) {
  if (!details.is_object()) details = json{{"details", std::move(details)}};
  details[kUnreachedKey] = why;
  return details;
}

std::optional<std::string> unreached_reason(const json& result) {
  if (!result.is_object()) return std::nullopt;
  auto it = result.find(kUnreachedKey);
  if (it == result.end() || !it->is_string()) return std::nullopt;
  return it->get<std::string>();
}

std::int64_t system_millis() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::chrono::milliseconds time_left(const Step& step, std::chrono::milliseconds own, std::int64_t now_ms) {
  if (step.deadline_ms <= 0) return own;
  return std::max(std::chrono::milliseconds(0), std::min(own, std::chrono::milliseconds(step.deadline_ms - now_ms)));
}

std::string_view step_state_name(StepState s) { return name_in(kStepStates, s); }
std::optional<StepState> step_state_from_name(std::string_view s) { return value_in(kStepStates, s); }
std::string_view run_state_name(RunState s) { return name_in(kRunStates, s); }
std::optional<RunState> run_state_from_name(std::string_view s) { return value_in(kRunStates, s); }

namespace {
// A step's spec as the JSON object from_row reads, written straight to text:
// a run's start serializes every step before the first one may begin, so
// this is on the path of every run's first step.
std::string spec_text(const StepSpec& spec) {
  std::string out = "{\"after\":[";
  for (std::size_t i = 0; i < spec.after.size(); ++i) {
    if (i > 0) out += ',';
    out += std::to_string(spec.after[i]);
  }
  out += ']';
  if (spec.expected_ms > 0) out += ",\"expected_ms\":" + std::to_string(spec.expected_ms);
  out += ",\"params\":";
  out += spec.params.dump();
  if (!spec.resource.empty()) out += ",\"resource\":" + json(spec.resource).dump();
  out += ",\"tier\":" + std::to_string(spec.tier);
  if (spec.timeout_s > 0) out += ",\"timeout_s\":" + std::to_string(spec.timeout_s);
  out += '}';
  return out;
}
}  // namespace

StepRow to_row(const std::string& run_id, const Step& s) {
  return StepRow{run_id,
                 s.idx,
                 s.spec.name,
                 std::string(step_kind_name(s.spec.kind)),
                 spec_text(s.spec),
                 std::string(step_state_name(s.state)),
                 s.attempts,
                 s.started_at_ms,
                 s.ended_at_ms,
                 s.error,
                 s.result.is_null() ? std::string() : s.result.dump()};
}

Result<Step> from_row(const StepRow& r) {
  Step s;
  s.idx = r.idx;
  s.spec.name = r.name;
  auto kind = step_kind_from_name(r.kind);
  if (!kind)
    return internal_error("step " + std::to_string(r.idx) + " of run " + r.run_id + " has kind '" + r.kind +
                              "', which this evac does not know",
                          "a newer evac wrote this run: run that version, or cancel the run");
  s.spec.kind = *kind;
  auto spec = parse_json_or_discarded(r.spec);
  auto state = step_state_from_name(r.state);
  if (!spec.is_object() || !state)
    return internal_error("step " + std::to_string(r.idx) + " of run " + r.run_id + " is unreadable in the store");
  s.spec.after = spec.value("after", std::vector<int>{});
  s.spec.tier = spec.value("tier", 0);
  s.spec.params = spec.value("params", json::object());
  s.spec.resource = spec.value("resource", "");
  s.spec.timeout_s = spec.value("timeout_s", 0);
  s.spec.expected_ms = spec.value("expected_ms", 0);
  s.state = *state;
  s.attempts = r.attempts;
  s.started_at_ms = r.started_at_ms;
  s.ended_at_ms = r.ended_at_ms;
  s.error = r.error;
  if (!r.result.empty()) s.result = parse_json_or_discarded(r.result);
  return s;
}

namespace {

// Whether one more step of `resource` may start: fewer than `limit` of its
// steps are in flight (limit 0, or no resource: always).
bool has_room(const std::map<std::string, int>& busy, const std::string& resource, int limit) {
  if (limit <= 0 || resource.empty()) return true;
  auto b = busy.find(resource);
  return b == busy.end() || b->second < limit;
}

// Ready pending steps, kept per resource, each best first (tier, then the
// longest expected work still ahead of it, then idx), so picking the best
// step whose resource has a free slot looks at one head per resource
// rather than at every ready step.
class ReadyQueue {
 public:
  using Key = std::tuple<int, std::int64_t, int>;  // (tier, -expected work ahead in ms, idx)
  bool empty() const { return size_ == 0; }
  void insert(const std::string& resource, Key key) {
    if (by_resource_[resource].insert(key).second) ++size_;
  }
  // The best ready step whose resource is below `limit` in `busy` (limit 0:
  // no limit), with its resource.
  std::optional<std::pair<std::string, Key>> pick(const std::map<std::string, int>& busy, int limit) const {
    std::optional<std::pair<std::string, Key>> best;
    for (const auto& [resource, keys] : by_resource_) {
      if (keys.empty()) continue;
      if (!has_room(busy, resource, limit)) continue;
      if (!best || *keys.begin() < best->second) best = std::make_pair(resource, *keys.begin());
    }
    return best;
  }
  void erase(const std::string& resource, Key key) {
    auto it = by_resource_.find(resource);
    if (it != by_resource_.end() && it->second.erase(key)) --size_;
  }

 private:
  std::map<std::string, std::set<Key>> by_resource_;
  std::size_t size_ = 0;
};

}  // namespace

// One run being executed: its steps, what is ready, and its worker threads.
struct RunEngine::Active {
  RunRow run;
  std::vector<Step> steps;
  std::vector<std::vector<int>> dependents;  // idx -> steps that come after it
  std::vector<int> waiting_on;               // idx -> how many of its `after` are not done
  // idx -> expected milliseconds from its start to the end of the longest
  // path of steps after it (StepSpec::expected_ms): among ready steps of a
  // tier, the one heading the most work starts first, so a tier (or the
  // run) does not end with its slowest chain started last.
  std::vector<std::int64_t> work_ahead;
  ReadyQueue ready;
  ReadyQueue::Key key(int idx) const {
    const auto i = static_cast<std::size_t>(idx);
    return {steps[i].spec.tier, -work_ahead[i], idx};
  }
  std::map<std::string, int> busy;  // resource -> its steps in flight
  int in_flight = 0;
  bool failed = false;     // a step failed: start nothing new
  bool cancelled = false;  // the operator cancelled
  bool stopping = false;   // the engine shuts down
  bool finished = false;   // no longer running (succeeded, failed, cancelled, waiting)
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::thread> workers;

  // Step `idx` is done: what waited only for it becomes ready, and as many
  // idle workers as there are new ready steps beyond one (the caller, a
  // worker about to look for its next step, takes one) are woken: waking
  // them all for every step made hundreds of workers fight for one lock.
  // With mu held.
  void release_dependents(int idx) {
    int woken = 0;
    for (int d : dependents[static_cast<std::size_t>(idx)]) {
      auto& n = waiting_on[static_cast<std::size_t>(d)];
      if (--n == 0 && steps[static_cast<std::size_t>(d)].state == StepState::kPending) {
        ready.insert(steps[static_cast<std::size_t>(d)].spec.resource, key(d));
        if (woken++ > 0) cv.notify_one();
      }
    }
  }
};

RunEngine::RunEngine(Store& store, StepRunner& runner, EngineOptions options, MillisClock clock)
    : store_(store), runner_(runner), options_(options), clock_(clock ? std::move(clock) : MillisClock(system_millis)) {
  options_.max_parallel = std::max(1, options_.max_parallel);
  options_.max_attempts = std::max(1, options_.max_attempts);
}

RunEngine::~RunEngine() {
  std::map<std::string, std::shared_ptr<Active>> active;
  {
    std::lock_guard lock(mu_);
    active.swap(active_);
  }
  for (auto& [id, a] : active) {
    {
      std::lock_guard lock(a->mu);
      a->stopping = true;
    }
    a->cv.notify_all();
    for (auto& t : a->workers) t.join();
  }
}

namespace {
// Only the state columns change after a step is written: its spec is not
// serialized again.
StepRow state_row(const std::string& run_id, const Step& s) {
  return StepRow{run_id,        s.idx,           {}, {}, {}, std::string(step_state_name(s.state)), s.attempts, s.started_at_ms,
                 s.ended_at_ms, s.error, s.result.is_null() ? std::string() : s.result.dump()};
}
}  // namespace

Status RunEngine::persist(const std::string& run_id, const Step& s) { return store_.update_steps({state_row(run_id, s)}); }

std::shared_ptr<RunEngine::Active> RunEngine::find_active(const std::string& run_id) {
  std::lock_guard lock(mu_);
  auto it = active_.find(run_id);
  return it == active_.end() ? nullptr : it->second;
}

Status RunEngine::start(RunRow run, std::vector<StepSpec> specs) {
  // Everything here is on the way to the run's first step: the specs are
  // moved into the steps, not copied, and each is serialized once.
  std::vector<Step> steps;
  std::vector<StepRow> rows;
  steps.reserve(specs.size());
  rows.reserve(specs.size());
  for (std::size_t i = 0; i < specs.size(); ++i) {
    for (int a : specs[i].after)
      if (a < 0 || a >= static_cast<int>(i))
        return internal_error("step " + std::to_string(i) + " (" + specs[i].name + ") comes after step " +
                              std::to_string(a) + ", which is not an earlier step");
    Step s;
    s.idx = static_cast<int>(i);
    s.spec = std::move(specs[i]);
    rows.push_back(to_row(run.id, s));
    steps.push_back(std::move(s));
  }
  run.state = std::string(run_state_name(RunState::kRunning));
  run.ended_at.reset();
  EVAC_RETURN_IF_ERROR(store_.add_run(run, rows));
  return launch(run, std::move(steps));
}

Status RunEngine::resume_interrupted() {
  auto runs = store_.runs_in_state({"running", "waiting"});
  if (!runs) return runs.status();
  for (const auto& run : *runs) {
    auto loaded = steps(run.id);
    if (!loaded) return loaded.status();
    // A step that ran when the process died runs again (runners are idempotent).
    for (auto& s : *loaded)
      if (s.state == StepState::kRunning) {
        s.state = StepState::kPending;
        s.interrupted_started_at_ms = s.started_at_ms.value_or(0);
      }
    EVAC_RETURN_IF_ERROR(launch(run, std::move(*loaded)));
  }
  return Status::ok();
}

Status RunEngine::resume(const std::string& run_id) {
  {
    std::lock_guard lock(mu_);
    if (auto it = active_.find(run_id); it != active_.end()) {
      std::lock_guard run_lock(it->second->mu);
      if (!it->second->finished) return failed_precondition("run " + run_id + " is still going", "follow it with `evac run show " + run_id + " --follow`");
    }
  }
  auto run = store_.find_run(run_id);
  if (!run) return run.status();
  if (!run->has_value()) return not_found("no run " + run_id, "list runs with `evac run list`");
  if ((*run)->state != "failed")
    return failed_precondition("run " + run_id + " is " + (*run)->state + "; only a failed run can be resumed");
  auto loaded = steps(run_id);
  if (!loaded) return loaded.status();
  for (auto& s : *loaded) {
    if (s.state == StepState::kFailed || s.state == StepState::kRunning) {
      s.state = StepState::kPending;
      s.error.clear();
      EVAC_RETURN_IF_ERROR(persist(run_id, s));
    }
  }
  RunRow r = **run;
  r.state = "running";
  r.ended_at.reset();
  r.error.clear();
  EVAC_RETURN_IF_ERROR(store_.update_run(run_id, r.state, std::nullopt, ""));
  return launch(r, std::move(*loaded));
}

Status RunEngine::launch(const RunRow& run, std::vector<Step> steps) {
  auto a = std::make_shared<Active>();
  a->run = run;
  a->steps = std::move(steps);
  const std::size_t n = a->steps.size();
  a->dependents.assign(n, {});
  a->waiting_on.assign(n, 0);
  for (const auto& s : a->steps) {
    for (int d : s.spec.after) {
      if (d < 0 || static_cast<std::size_t>(d) >= n) return internal_error("run " + run.id + " has a step after a missing one");
      a->dependents[static_cast<std::size_t>(d)].push_back(s.idx);
      if (!done(a->steps[static_cast<std::size_t>(d)].state)) ++a->waiting_on[static_cast<std::size_t>(s.idx)];
    }
  }
  // Steps come after the steps they wait for: from the last one back, each
  // one's work ahead is its own and the most of what comes after it. A step
  // of unknown duration (a plan's first run) counts 1 ms, so that without
  // durations the longest chain of steps still goes first: a VM's power-on
  // before another's heartbeat, and a tier ends on short single steps
  // rather than on whole chains started last.
  a->work_ahead.assign(n, 0);
  for (std::size_t i = n; i-- > 0;) {
    std::int64_t after = 0;
    for (int d : a->dependents[i]) after = std::max(after, a->work_ahead[static_cast<std::size_t>(d)]);
    a->work_ahead[i] = std::max(1, a->steps[i].spec.expected_ms) + after;
  }
  for (const auto& s : a->steps)
    if (s.state == StepState::kPending && a->waiting_on[static_cast<std::size_t>(s.idx)] == 0)
      a->ready.insert(s.spec.resource, a->key(s.idx));
  {
    std::lock_guard lock(mu_);
    if (auto it = active_.find(run.id); it != active_.end()) {
      // A finished earlier execution of this run (resumed): retire its threads.
      auto old = it->second;
      {
        std::lock_guard run_lock(old->mu);
        old->stopping = true;
      }
      old->cv.notify_all();
      for (auto& t : old->workers) t.join();
    }
    active_[run.id] = a;
  }
  {
    std::lock_guard lock(a->mu);
    finish_if_done(*a);  // nothing to do (every step done, or only prompts waiting)
    if (a->finished) return Status::ok();
    for (int i = 0; i < options_.max_parallel; ++i) a->workers.emplace_back([this, a] { worker(a); });
  }
  return Status::ok();
}

// Decides, with a.mu held, whether the run has stopped moving and records
// how: every step done (succeeded), a failure (failed), a cancel
// (cancelled), or only prompts left to acknowledge (waiting).
void RunEngine::finish_if_done(Active& a) {
  if (a.in_flight > 0 || a.finished) return;
  bool any_waiting = false, all_done = true;
  for (const auto& s : a.steps) {
    if (s.state == StepState::kWaiting) any_waiting = true;
    if (!done(s.state)) all_done = false;
  }
  RunState state;
  if (all_done) state = RunState::kSucceeded;
  else if (a.cancelled) state = RunState::kCancelled;
  else if (a.failed) state = RunState::kFailed;
  else if (a.ready.empty() && any_waiting) state = RunState::kWaiting;
  else if (a.ready.empty()) state = RunState::kFailed;  // nothing can start: a dependency can never be met
  else return;
  if (a.cancelled) {
    for (auto& s : a.steps) {
      if (s.state == StepState::kPending || s.state == StepState::kWaiting) {
        s.state = StepState::kSkipped;
        (void)persist(a.run.id, s);
      }
    }
  }
  std::string error;
  for (const auto& s : a.steps)
    if (s.state == StepState::kFailed && error.empty()) error = "step " + std::to_string(s.idx) + " (" + s.spec.name + ") failed: " + s.error;
  a.run.state = std::string(run_state_name(state));
  std::optional<std::int64_t> ended;
  if (state != RunState::kWaiting) ended = clock_() / 1000;
  a.run.ended_at = ended;
  a.run.error = error;
  (void)store_.update_run(a.run.id, a.run.state, ended, error);
  a.finished = true;
  a.cv.notify_all();
}

// A worker takes the best ready step, runs it, and records its outcome in
// the same transaction as the start of the next step it takes: one write
// per step instead of two. Writes happen without the run's lock, so other
// workers go on picking and ending steps meanwhile, and a step gives its
// resource slot back as soon as its side effect ends. A step's dependents
// are released only once its outcome is in the store.
void RunEngine::worker(std::shared_ptr<Active> a) {
  std::unique_lock lock(a->mu);
  int ended = -1;  // the step this worker just ran: its outcome is set in memory, not yet stored
  std::vector<StepRow> rows;
  while (true) {
    if (ended < 0) {
      a->cv.wait(lock, [&] {
        return a->stopping || a->finished ||
               (!a->failed && !a->cancelled && a->ready.pick(a->busy, options_.per_resource_limit)) ||
               ((a->failed || a->cancelled) && a->in_flight == 0);
      });
      if (a->stopping || a->finished) return;
      if (a->failed || a->cancelled) {
        finish_if_done(*a);
        return;
      }
    }
    const int next = a->stopping || a->failed || a->cancelled ? -1 : pick_next(*a, ended);
    if (next >= 0) take(*a, a->steps[static_cast<std::size_t>(next)]);
    rows.clear();
    if (ended >= 0) rows.push_back(state_row(a->run.id, a->steps[static_cast<std::size_t>(ended)]));
    // Recorded before the side effect: a crash from here on finds it running.
    if (next >= 0) rows.push_back(state_row(a->run.id, a->steps[static_cast<std::size_t>(next)]));
    lock.unlock();
    const Status written = store_.update_steps(rows);
    lock.lock();
    if (ended >= 0) {
      --a->in_flight;
      if (!written.is_ok()) {
        // The outcome could not be recorded: stop here rather than go on from
        // a state the store does not know (a restart re-runs the step).
        a->failed = true;
        a->cv.notify_all();
      } else if (went_on(a->steps[static_cast<std::size_t>(ended)].state)) {
        a->release_dependents(ended);
      } else {
        a->cv.notify_all();  // every worker must see the failure
      }
      ended = -1;
    }
    if (next < 0) {
      finish_if_done(*a);
      continue;
    }
    Step& step = a->steps[static_cast<std::size_t>(next)];
    if (step.spec.kind == StepKind::kBarrier || step.spec.kind == StepKind::kPrompt) {
      --a->in_flight;
      if (!written.is_ok()) {
        a->failed = true;
        a->cv.notify_all();
      } else if (step.spec.kind == StepKind::kBarrier) {
        a->release_dependents(step.idx);
      }
      finish_if_done(*a);
      continue;
    }
    Result<json> result = written.is_ok() ? attempt(*a, step, lock) : Result<json>(written.with_context("recording the step's start"));
    if (!step.spec.resource.empty()) --a->busy[step.spec.resource];
    if (a->stopping && !result.is_ok()) {
      --a->in_flight;
      return;  // shutting down: the step stays "running", resumed later
    }
    step.ended_at_ms = clock_();
    if (result.is_ok()) {
      auto why_unreached = unreached_reason(*result);
      step.state = why_unreached ? StepState::kUnreached : StepState::kSucceeded;
      step.error = why_unreached ? "not reached: " + *why_unreached : "";
      step.result = std::move(*result);
    } else {
      step.state = StepState::kFailed;
      step.error = result.status().message() + (result.status().hint().empty() ? "" : " (hint: " + result.status().hint() + ")");
      a->failed = true;
    }
    if (step.interrupted_started_at_ms) {
      // The run's record must show that this outcome is a later attempt's:
      // the one a restart cut short left no outcome of its own.
      if (went_on(step.state)) {
        if (!step.result.is_object()) step.result = json{{"outcome", std::move(step.result)}};
        step.result["interrupted_attempt"] = {{"started_at_ms", *step.interrupted_started_at_ms},
                                              {"by", "evacd stopped while it ran; it ran again after the restart"}};
      } else {
        step.error += " (an earlier attempt, started at " + std::to_string(*step.interrupted_started_at_ms) +
                      " ms, was cut short by an evacd restart)";
      }
      step.interrupted_started_at_ms.reset();
    }
    ended = step.idx;
  }
}

// The best step to start next, with a.mu held, or -1: the best ready one,
// or a step that waits only for `ended` (just succeeded, its outcome not
// yet stored) when that one is better — its start is then stored in the
// same transaction as `ended`'s outcome, so it still starts only once that
// is recorded, and a chain's next step is not passed over for a lesser one.
int RunEngine::pick_next(Active& a, int ended) {
  auto picked = a.ready.pick(a.busy, options_.per_resource_limit);
  std::optional<ReadyQueue::Key> best;
  if (picked) best = picked->second;
  int successor = -1;
  if (ended >= 0 && went_on(a.steps[static_cast<std::size_t>(ended)].state)) {
    for (int d : a.dependents[static_cast<std::size_t>(ended)]) {
      const Step& s = a.steps[static_cast<std::size_t>(d)];
      if (a.waiting_on[static_cast<std::size_t>(d)] != 1 || s.state != StepState::kPending) continue;
      if (!has_room(a.busy, s.spec.resource, options_.per_resource_limit)) continue;
      if (!best || a.key(d) < *best) {
        best = a.key(d);
        successor = d;
      }
    }
  }
  if (successor >= 0) return successor;  // release_dependents finds it taken and leaves it
  if (!picked) return -1;
  a.ready.erase(picked->first, picked->second);
  return std::get<2>(picked->second);
}

// Marks a step picked to start, with a.mu held: a barrier ("Priority 1 VMs
// are up") is done at once, a prompt starts waiting for its ack, any other
// step is running and holds its resource. Each counts as in flight until
// its state is stored.
void RunEngine::take(Active& a, Step& step) {
  ++a.in_flight;
  step.started_at_ms = clock_();
  if (step.spec.kind == StepKind::kBarrier) {
    step.state = StepState::kSucceeded;
    step.ended_at_ms = step.started_at_ms;
    return;
  }
  if (step.spec.kind == StepKind::kPrompt) {
    step.state = StepState::kWaiting;
    return;
  }
  step.state = StepState::kRunning;
  step.ended_at_ms.reset();
  step.deadline_ms = step.spec.timeout_s > 0 ? *step.started_at_ms + std::int64_t{step.spec.timeout_s} * 1000 : 0;
  ++step.attempts;
  if (!step.spec.resource.empty()) ++a.busy[step.spec.resource];
}

// Runs a taken step's side effect, retrying transient errors with backoff
// within its deadline. Called and returns with `lock` (a.mu) held; the
// runner itself runs without it.
Result<json> RunEngine::attempt(Active& a, Step& step, std::unique_lock<std::mutex>& lock) {
  Result<json> result = json();
  for (int attempt = 0;; ++attempt) {
    // The runner reads the step without the lock: while it runs, only this
    // worker changes it (cancel and ack touch pending and waiting steps).
    lock.unlock();
    // A step that throws (a bug, or input no decoder caught) fails, with
    // what it threw; it must not end evacd and every other run with it.
    try {
      result = runner_.run(a.run, step);
    } catch (const std::exception& e) {
      result = internal_error("step " + step.spec.name + " stopped on an unexpected error: " + e.what(),
                              "this is a bug in evac: report it with evacd's log; `evac run resume` tries the step again");
    } catch (...) {
      result = internal_error("step " + step.spec.name + " stopped on an unexpected error",
                              "this is a bug in evac: report it with evacd's log; `evac run resume` tries the step again");
    }
    if (options_.exit_after_steps > 0 && result.is_ok() && ++steps_done_ >= options_.exit_after_steps) {
      std::fprintf(stderr, "fault injection: exiting after step %d (%s) of run %s, before recording it\n", step.idx,
                   step.spec.name.c_str(), a.run.id.c_str());
      std::fflush(stderr);
      std::_Exit(137);
    }
    lock.lock();
    const bool out_of_time = step.deadline_ms > 0 && clock_() >= step.deadline_ms;
    if (!result.is_ok() && out_of_time)
      result = Status(result.status().code() == StatusCode::kUnavailable ? StatusCode::kFailedPrecondition
                                                                         : result.status().code(),
                      "timed out after " + std::to_string(step.spec.timeout_s) + " s: " + result.status().message(),
                      result.status().hint());
    if (result.is_ok() || result.status().code() != StatusCode::kUnavailable || attempt + 1 >= options_.max_attempts ||
        a.stopping || a.cancelled)
      return result;
    // Transient (a provider or peer that did not answer): wait, then again.
    auto delay = std::chrono::duration_cast<std::chrono::milliseconds>(options_.backoff * (1 << std::min(attempt, 10)));
    if (step.deadline_ms > 0) delay = std::min(delay, std::chrono::milliseconds(std::max<std::int64_t>(0, step.deadline_ms - clock_())));
    a.cv.wait_for(lock, delay, [&] { return a.stopping || a.cancelled; });
    if (a.stopping || a.cancelled) return result;
    ++step.attempts;
    if (Status s = persist(a.run.id, step); !s.is_ok()) return s.with_context("recording the step's attempt");
  }
}

Status RunEngine::ack(const std::string& run_id, int idx) {
  std::shared_ptr<Active> a = find_active(run_id);
  if (!a) return failed_precondition("run " + run_id + " is not waiting for anyone", "see it with `evac run show " + run_id + "`");
  std::unique_lock lock(a->mu);
  Step* prompt = nullptr;
  for (auto& s : a->steps)
    if (s.state == StepState::kWaiting && (idx < 0 || s.idx == idx)) {
      prompt = &s;
      break;
    }
  if (!prompt) return failed_precondition("run " + run_id + " has no prompt waiting" + (idx >= 0 ? " at step " + std::to_string(idx) : ""));
  prompt->state = StepState::kSucceeded;
  prompt->ended_at_ms = clock_();
  EVAC_RETURN_IF_ERROR(persist(run_id, *prompt));
  a->release_dependents(prompt->idx);
  if (a->finished) {
    // It was waiting, its workers gone (or leaving): it moves again on fresh ones.
    std::vector<std::thread> old;
    old.swap(a->workers);
    lock.unlock();
    for (auto& t : old) t.join();
    lock.lock();
    a->finished = false;
    a->run.state = "running";
    EVAC_RETURN_IF_ERROR(store_.update_run(run_id, "running", std::nullopt, ""));
    finish_if_done(*a);
    if (!a->finished)
      for (int i = 0; i < options_.max_parallel; ++i) a->workers.emplace_back([this, a] { worker(a); });
  }
  a->cv.notify_all();
  return Status::ok();
}

Status RunEngine::cancel(const std::string& run_id) {
  std::shared_ptr<Active> a = find_active(run_id);
  if (!a) {
    auto run = store_.find_run(run_id);
    if (!run) return run.status();
    if (!run->has_value()) return not_found("no run " + run_id, "list runs with `evac run list`");
    if ((*run)->state != "failed") return failed_precondition("run " + run_id + " is " + (*run)->state + " and cannot be cancelled");
    return store_.update_run(run_id, "cancelled", (*run)->ended_at, (*run)->error);
  }
  std::lock_guard lock(a->mu);
  if (a->finished && a->run.state != "waiting" && a->run.state != "failed")
    return failed_precondition("run " + run_id + " is " + a->run.state + " and cannot be cancelled");
  a->cancelled = true;
  a->finished = false;
  finish_if_done(*a);
  a->cv.notify_all();
  return Status::ok();
}

void RunEngine::wait_idle(const std::string& run_id) {
  std::shared_ptr<Active> a = find_active(run_id);
  if (!a) return;
  std::unique_lock lock(a->mu);
  a->cv.wait(lock, [&] { return a->finished || a->stopping; });
}

Result<std::vector<Step>> RunEngine::steps(const std::string& run_id) {
  auto rows = store_.run_steps(run_id);
  if (!rows) return rows.status();
  std::vector<Step> out;
  for (const auto& r : *rows) {
    auto s = from_row(r);
    if (!s) return s.status();
    out.push_back(std::move(*s));
  }
  return out;
}

}  // namespace evac::engine
