// The run engine with a fake step runner and a real SQLite store: order,
// parallelism, failures and resume, retries, prompts, cancel, and a crash
// in the middle of a step followed by a restart.
#include "engine/run_engine.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <map>
#include <mutex>
#include <set>

namespace evac::engine {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// Records what ran, in order; each step's side effect is a set entry, so a
// step run twice shows whether it repeated its effect (it must not).
class FakeRunner : public StepRunner {
 public:
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::string> order;
  std::map<std::string, int> effects;          // step name -> times its effect was applied
  std::map<std::string, int> calls;            // step name -> times run
  std::map<std::string, Status> fail;          // step name -> error to answer (once per entry in fail_times)
  std::map<std::string, int> fail_times;
  std::map<std::string, std::string> unreachable;  // step name -> why its target cannot be reached (best effort)
  std::string throws;                          // this step throws (as a step with a bug would)
  std::string block_on;                        // this step waits for release()
  bool released = false;
  Status release_with;
  int running = 0, max_running = 0;

  Result<json> run(const RunRow&, const Step& step) override {
    std::unique_lock lock(mu);
    ++calls[step.spec.name];
    ++running;
    max_running = std::max(max_running, running);
    order.push_back(step.spec.name);
    if (step.spec.name == block_on) {
      cv.notify_all();
      cv.wait(lock, [&] { return released; });
      --running;
      if (!release_with.is_ok()) return release_with;
    } else {
      lock.unlock();
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
      lock.lock();
      --running;
    }
    if (auto f = fail_times.find(step.spec.name); f != fail_times.end() && f->second > 0) {
      --f->second;
      return fail[step.spec.name];
    }
    if (step.spec.name == throws) throw json::type_error::create(302, "type must be number, but is string", nullptr);
    if (auto u = unreachable.find(step.spec.name); u != unreachable.end())
      return unreached_outcome(u->second, json{{"tried", step.spec.name}});
    // Idempotent: the effect is applied once however often the step runs.
    if (effects[step.spec.name] == 0) effects[step.spec.name] = 1;
    return json{{"did", step.spec.name}};
  }
  void wait_blocked() {
    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return calls[block_on] > 0; });
  }
  void release(Status with) {
    std::lock_guard lock(mu);
    released = true;
    release_with = std::move(with);
    cv.notify_all();
  }
};

class RunEngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("evac-engine-" + std::to_string(::getpid()) + "-" + ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    auto s = Store::open((dir_ / "evac.db").string());
    ASSERT_TRUE(s.is_ok()) << s.status().to_string();
    store_ = std::move(*s);
  }
  void TearDown() override {
    store_.reset();
    fs::remove_all(dir_);
  }
  std::unique_ptr<RunEngine> engine(int parallel = 4) {
    return std::make_unique<RunEngine>(*store_, runner_, EngineOptions{parallel, 3, std::chrono::milliseconds(1)});
  }
  static RunRow run(const std::string& id) {
    RunRow r;
    r.id = id;
    r.plan = "shop-dr";
    r.operation = "test";
    r.started_by = "admin";
    r.created_at = 1000;
    r.plan_document = "{}";
    r.groups = "[]";
    return r;
  }
  // db (tier 1) -> app, cache (tier 2) -> web (tier 3), as strict tiers compile.
  static std::vector<StepSpec> tiers() {
    return {{"power on db", StepKind::kPowerOn, {}, 1},
            {"power on app", StepKind::kPowerOn, {0}, 2},
            {"power on cache", StepKind::kPowerOn, {0}, 2},
            {"power on web", StepKind::kPowerOn, {1, 2}, 3}};
  }
  std::string state_of(const std::string& id) { return (*store_->find_run(id))->state; }
  std::map<std::string, std::string> step_states(RunEngine& e, const std::string& id) {
    std::map<std::string, std::string> out;
    auto steps = e.steps(id);  // kept: a range-for over *e.steps(id) would outlive the Result
    for (const auto& s : *steps) out[s.spec.name] = std::string(step_state_name(s.state));
    return out;
  }

  fs::path dir_;
  std::unique_ptr<Store> store_;
  FakeRunner runner_;
};

TEST(StepRowTest, ASpecReadsBackAsItWasWritten) {
  Step s;
  s.idx = 4;
  s.spec.name = "Power on priority 1 VMs: \"db01\"";
  s.spec.kind = engine::StepKind::kPowerOn;
  s.spec.after = {1, 3};
  s.spec.tier = 2;
  s.spec.params = {{"vm", "db\n01"}, {"nested", {{"list", {1, 2}}}}};
  s.spec.resource = "provider:kvm \"b\"";
  s.spec.timeout_s = 600;
  s.spec.expected_ms = 1234;
  const StepRow row = to_row("r1", s);
  // The text is the JSON object nlohmann would write for the same spec.
  const nlohmann::json expected = {{"after", {1, 3}},         {"tier", 2},         {"params", s.spec.params},
                                   {"resource", s.spec.resource}, {"timeout_s", 600}, {"expected_ms", 1234}};
  EXPECT_EQ(row.spec, expected.dump());
  auto back = from_row(row);
  ASSERT_TRUE(back.is_ok());
  EXPECT_EQ(back->spec.after, s.spec.after);
  EXPECT_EQ(back->spec.params, s.spec.params);
  EXPECT_EQ(back->spec.resource, s.spec.resource);
  EXPECT_EQ(back->spec.timeout_s, 600);
  EXPECT_EQ(back->spec.expected_ms, 1234);
  // Unset fields are left out, as before.
  Step plain;
  plain.spec.kind = engine::StepKind::kBarrier;
  EXPECT_EQ(to_row("r1", plain).spec, R"({"after":[],"params":{},"tier":0})");
}

TEST_F(RunEngineTest, StepsRunAfterWhatTheyDependOnAndTheRunSucceeds) {
  auto e = engine();
  ASSERT_TRUE(e->start(run("r1"), tiers()).is_ok());
  e->wait_idle("r1");
  EXPECT_EQ(state_of("r1"), "succeeded");
  ASSERT_EQ(runner_.order.size(), 4u);
  EXPECT_EQ(runner_.order.front(), "power on db");
  EXPECT_EQ(runner_.order.back(), "power on web");
  auto steps = e->steps("r1");
  ASSERT_TRUE(steps.is_ok());
  for (const auto& s : *steps) {
    EXPECT_EQ(s.state, StepState::kSucceeded) << s.spec.name;
    EXPECT_EQ(s.attempts, 1);
    ASSERT_TRUE(s.started_at_ms && s.ended_at_ms);
    EXPECT_EQ(s.result["did"], s.spec.name);
  }
  EXPECT_TRUE((*store_->find_run("r1"))->ended_at.has_value());
}

TEST_F(RunEngineTest, ParallelismIsBoundedAndLowerTiersGoFirst) {
  std::vector<StepSpec> wide;
  for (int i = 0; i < 12; ++i) wide.push_back({"vm" + std::to_string(i), StepKind::kPowerOn, {}, i % 2 == 0 ? 2 : 1});
  auto e = engine(3);
  ASSERT_TRUE(e->start(run("r1"), wide).is_ok());
  e->wait_idle("r1");
  EXPECT_EQ(state_of("r1"), "succeeded");
  EXPECT_LE(runner_.max_running, 3);
  EXPECT_GE(runner_.max_running, 2) << "ready steps run side by side";
  // The first three started are tier-1 steps (odd numbers).
  for (int i = 0; i < 3; ++i) EXPECT_EQ(std::stoi(runner_.order[i].substr(2)) % 2, 1) << runner_.order[i];
}

TEST_F(RunEngineTest, AResourceLimitBoundsItsStepsButNotTheOthers) {
  // 8 power-ons on one provider limited to 2 at once, 4 host commands free.
  std::vector<StepSpec> steps;
  for (int i = 0; i < 8; ++i) {
    StepSpec s{"on" + std::to_string(i), StepKind::kPowerOn, {}, 1};
    s.resource = "provider:kvm-b";
    steps.push_back(s);
  }
  for (int i = 0; i < 4; ++i) steps.push_back({"cmd" + std::to_string(i), StepKind::kHostCommand, {}, 2});
  struct Counting : FakeRunner {
    int provider_running = 0, provider_max = 0;
    Result<json> run(const RunRow& r, const Step& step) override {
      const bool on_provider = !step.spec.resource.empty();
      {
        std::lock_guard lock(mu);
        if (on_provider) provider_max = std::max(provider_max, ++provider_running);
      }
      auto out = FakeRunner::run(r, step);
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
      std::lock_guard lock(mu);
      if (on_provider) --provider_running;
      return out;
    }
  } counting;
  RunEngine e(*store_, counting, EngineOptions{6, 3, std::chrono::milliseconds(1), 2});
  ASSERT_TRUE(e.start(run("r1"), steps).is_ok());
  e.wait_idle("r1");
  EXPECT_EQ(state_of("r1"), "succeeded");
  EXPECT_LE(counting.provider_max, 2);
  EXPECT_EQ(counting.provider_max, 2) << "the limit is used, not just respected";
  EXPECT_GE(counting.max_running, 3) << "steps of no resource run beside the limited ones";
  // The resource is kept with the step: a resumed run is limited the same.
  EXPECT_EQ((*e.steps("r1"))[0].spec.resource, "provider:kvm-b");
}

TEST_F(RunEngineTest, AFailureStopsTheRunAndResumeRetriesOnlyWhatFailed) {
  runner_.fail["power on app"] = failed_precondition("no placeholder for app");
  runner_.fail_times["power on app"] = 1;
  auto e = engine(1);
  ASSERT_TRUE(e->start(run("r1"), tiers()).is_ok());
  e->wait_idle("r1");
  EXPECT_EQ(state_of("r1"), "failed");
  auto states = step_states(*e, "r1");
  EXPECT_EQ(states["power on db"], "succeeded");
  EXPECT_EQ(states["power on app"], "failed");
  EXPECT_EQ(states["power on web"], "pending") << "nothing after a failure starts";
  EXPECT_NE((*store_->find_run("r1"))->error.find("no placeholder for app"), std::string::npos);

  ASSERT_TRUE(e->resume("r1").is_ok());
  e->wait_idle("r1");
  EXPECT_EQ(state_of("r1"), "succeeded");
  EXPECT_EQ(runner_.calls["power on db"], 1) << "done steps are not run again";
  EXPECT_EQ(runner_.calls["power on app"], 2);
  EXPECT_EQ(e->resume("r1").code(), StatusCode::kFailedPrecondition);
}

// A best-effort step that could not reach its target (the protected site in
// a disaster) is not shown as done: it ends "unreached" with the reason,
// what comes after it still runs, and a resume does not try it again.
TEST_F(RunEngineTest, ABestEffortStepThatCouldNotReachItsTargetIsUnreachedNotSucceeded) {
  runner_.unreachable["power on app"] = "site-a did not answer";
  auto e = engine(1);
  ASSERT_TRUE(e->start(run("r1"), tiers()).is_ok());
  e->wait_idle("r1");
  EXPECT_EQ(state_of("r1"), "succeeded") << "the run went on";
  auto states = step_states(*e, "r1");
  EXPECT_EQ(states["power on app"], "unreached");
  EXPECT_EQ(states["power on web"], "succeeded") << "its dependents ran";
  auto steps = e->steps("r1");
  ASSERT_TRUE(steps.is_ok());
  const Step& app = (*steps)[1];
  EXPECT_EQ(app.error, "not reached: site-a did not answer");
  EXPECT_EQ(app.result["tried"], "power on app");
  EXPECT_EQ(unreached_reason(app.result), "site-a did not answer");
  EXPECT_EQ(unreached_reason(json{{"did", "x"}}), std::nullopt);
  EXPECT_EQ(step_state_from_name("unreached"), StepState::kUnreached);
}

TEST_F(RunEngineTest, TransientErrorsAreRetriedWithBackoff) {
  runner_.fail["power on db"] = unavailable("libvirtd did not answer");
  runner_.fail_times["power on db"] = 2;
  auto e = engine();
  ASSERT_TRUE(e->start(run("r1"), tiers()).is_ok());
  e->wait_idle("r1");
  EXPECT_EQ(state_of("r1"), "succeeded");
  EXPECT_EQ((*e->steps("r1"))[0].attempts, 3);

  runner_.fail_times["power on db"] = 3;  // more than max_attempts
  ASSERT_TRUE(e->start(run("r2"), tiers()).is_ok());
  e->wait_idle("r2");
  EXPECT_EQ(state_of("r2"), "failed");
}

// A step that throws fails the run saying so; the engine (and evacd) go
// on, and other runs are untouched.
TEST_F(RunEngineTest, AStepThatThrowsFailsItsRunNotTheProcess) {
  runner_.throws = "power on app";
  auto e = engine();
  ASSERT_TRUE(e->start(run("r1"), tiers()).is_ok());
  e->wait_idle("r1");
  EXPECT_EQ(state_of("r1"), "failed");
  auto steps = e->steps("r1");
  ASSERT_TRUE(steps.is_ok());
  const Step& app = (*steps)[1];
  EXPECT_EQ(app.state, StepState::kFailed);
  EXPECT_NE(app.error.find("unexpected error"), std::string::npos) << app.error;
  EXPECT_NE(app.error.find("type must be number"), std::string::npos) << app.error;
  runner_.throws.clear();
  ASSERT_TRUE(e->start(run("r2"), tiers()).is_ok());
  e->wait_idle("r2");
  EXPECT_EQ(state_of("r2"), "succeeded") << "the engine goes on after a step threw";
}

// A step that keeps answering "not yet" stops being retried once its
// timeout is up, and fails saying so; the runner sees its deadline.
TEST_F(RunEngineTest, AStepPastItsTimeoutFailsForGood) {
  runner_.fail["power on db"] = unavailable("libvirtd did not answer");
  runner_.fail_times["power on db"] = 1000;
  std::atomic<std::int64_t> now{1'000'000};
  // Every reading of the clock is 400 ms later: no test waits on real time.
  RunEngine e(*store_, runner_, EngineOptions{4, 1000, std::chrono::milliseconds(1)}, [&] { return now += 400; });
  auto steps = tiers();
  steps[0].timeout_s = 2;
  ASSERT_TRUE(e.start(run("r1"), steps).is_ok());
  e.wait_idle("r1");
  EXPECT_EQ(state_of("r1"), "failed");
  auto done = e.steps("r1");
  ASSERT_TRUE(done.is_ok());
  const Step& db = (*done)[0];
  EXPECT_EQ(db.state, StepState::kFailed);
  EXPECT_NE(db.error.find("timed out after 2 s: libvirtd did not answer"), std::string::npos) << db.error;
  EXPECT_LT(db.attempts, 10) << "retries stop at the deadline, not at max_attempts";
  EXPECT_EQ(db.spec.timeout_s, 2) << "the timeout is kept with the step";
}

TEST(StepTimeLeft, IsTheSmallerOfItsOwnAndWhatTheDeadlineLeaves) {
  Step s;
  EXPECT_EQ(time_left(s, std::chrono::seconds(30), 5000), std::chrono::seconds(30)) << "no deadline";
  s.deadline_ms = 15'000;
  EXPECT_EQ(time_left(s, std::chrono::seconds(30), 5000), std::chrono::seconds(10));
  EXPECT_EQ(time_left(s, std::chrono::seconds(3), 5000), std::chrono::seconds(3));
  EXPECT_EQ(time_left(s, std::chrono::seconds(3), 20'000), std::chrono::milliseconds(0));
}

// Known durations (from earlier runs): among ready steps of one tier, the
// one heading the longest expected work goes first; tiers still come first.
TEST_F(RunEngineTest, TheLongestExpectedChainOfATierStartsFirst) {
  std::vector<StepSpec> steps = {{"power on short", StepKind::kPowerOn, {}, 1},
                                 {"power on long", StepKind::kPowerOn, {}, 1},
                                 {"heartbeat short", StepKind::kWaitForGuest, {0}, 1},
                                 {"power on tier 2", StepKind::kPowerOn, {}, 2},
                                 {"power on unknown", StepKind::kPowerOn, {}, 1}};
  steps[0].expected_ms = 10;
  steps[1].expected_ms = 100;
  steps[2].expected_ms = 200;  // "short" heads 210 ms of work, "long" 100 ms
  steps[3].expected_ms = 5000;
  auto e = engine(1);
  ASSERT_TRUE(e->start(run("r1"), steps).is_ok());
  e->wait_idle("r1");
  ASSERT_EQ(state_of("r1"), "succeeded");
  std::vector<std::string> expected = {"power on short", "heartbeat short", "power on long", "power on unknown",
                                       "power on tier 2"};
  EXPECT_EQ(runner_.order, expected);
  auto stored = e->steps("r1");
  ASSERT_TRUE(stored.is_ok());
  EXPECT_EQ((*stored)[1].spec.expected_ms, 100) << "kept with the step, so a resumed run orders the same";
}

// A plan's first run knows no durations: each step counts the same, so the
// steps heading the most steps go first — every power-on of a tier before
// the heartbeats, so that the tier ends on single steps, not on whole
// chains started last.
TEST_F(RunEngineTest, WithoutDurationsTheLongestChainOfStepsStartsFirst) {
  std::vector<StepSpec> steps = {{"power on a", StepKind::kPowerOn, {}, 1},      {"heartbeat a", StepKind::kWaitForGuest, {0}, 1},
                                 {"power on b", StepKind::kPowerOn, {}, 1},      {"heartbeat b", StepKind::kWaitForGuest, {2}, 1},
                                 {"power on c", StepKind::kPowerOn, {}, 1},      {"heartbeat c", StepKind::kWaitForGuest, {4}, 1},
                                 {"check c", StepKind::kCheck, {5}, 1},           {"power on tier 2", StepKind::kPowerOn, {}, 2}};
  auto e = engine(1);
  ASSERT_TRUE(e->start(run("r1"), steps).is_ok());
  e->wait_idle("r1");
  ASSERT_EQ(state_of("r1"), "succeeded");
  // c heads three steps, a and b two each (then by their place in the plan).
  std::vector<std::string> expected = {"power on c",  "power on a",  "power on b", "heartbeat c",
                                       "heartbeat a", "heartbeat b", "check c",    "power on tier 2"};
  EXPECT_EQ(runner_.order, expected);
}

TEST_F(RunEngineTest, APromptWaitsForItsAcknowledgement) {
  std::vector<StepSpec> steps = {{"power on db", StepKind::kPowerOn, {}, 1},
                                 {"Is the licence server up?", StepKind::kPrompt, {0}, 2},
                                 {"power on app", StepKind::kPowerOn, {1}, 2}};
  auto e = engine();
  ASSERT_TRUE(e->start(run("r1"), steps).is_ok());
  e->wait_idle("r1");
  EXPECT_EQ(state_of("r1"), "waiting");
  EXPECT_EQ(runner_.calls.count("power on app"), 0u);
  EXPECT_EQ(step_states(*e, "r1")["Is the licence server up?"], "waiting");
  EXPECT_EQ(e->ack("r1", 2).code(), StatusCode::kFailedPrecondition) << "step 2 is not the prompt";
  ASSERT_TRUE(e->ack("r1").is_ok());
  e->wait_idle("r1");
  EXPECT_EQ(state_of("r1"), "succeeded");
  EXPECT_EQ(runner_.calls["power on app"], 1);
}

TEST_F(RunEngineTest, CancelSkipsWhatHasNotStarted) {
  runner_.block_on = "power on db";
  auto e = engine();
  ASSERT_TRUE(e->start(run("r1"), tiers()).is_ok());
  runner_.wait_blocked();
  ASSERT_TRUE(e->cancel("r1").is_ok());
  runner_.release(Status::ok());
  e->wait_idle("r1");
  EXPECT_EQ(state_of("r1"), "cancelled");
  auto states = step_states(*e, "r1");
  EXPECT_EQ(states["power on db"], "succeeded") << "the step in flight finishes";
  EXPECT_EQ(states["power on app"], "skipped");
  EXPECT_EQ(states["power on web"], "skipped");
}

TEST_F(RunEngineTest, ACrashMidStepIsResumedWithoutRepeatingAnyEffect) {
  runner_.block_on = "power on app";
  {
    auto e = engine(1);
    ASSERT_TRUE(e->start(run("r1"), tiers()).is_ok());
    runner_.wait_blocked();
    // The process dies while "power on app" is in its side effect: the
    // engine goes away and the step never reports back.
    std::thread stopper([&] { e.reset(); });
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    runner_.release(unavailable("killed"));
    stopper.join();
  }
  EXPECT_EQ(state_of("r1"), "running");
  EXPECT_EQ((*store_->run_steps("r1"))[1].state, "running") << "recorded as started before its effect";
  const std::int64_t first_started_at = *(*store_->run_steps("r1"))[1].started_at_ms;

  runner_.block_on.clear();
  auto restarted = engine(1);
  ASSERT_TRUE(restarted->resume_interrupted().is_ok());
  restarted->wait_idle("r1");
  EXPECT_EQ(state_of("r1"), "succeeded");
  EXPECT_EQ(runner_.calls["power on db"], 1);
  EXPECT_EQ(runner_.calls["power on app"], 2) << "the interrupted step runs again";
  for (const auto& [name, times] : runner_.effects) EXPECT_EQ(times, 1) << name << " applied twice";
  EXPECT_EQ(runner_.effects.size(), 4u);
  // Its record says the outcome is a second attempt's, and when the first began.
  auto steps = restarted->steps("r1");
  ASSERT_TRUE(steps.is_ok());
  const json& result = (*steps)[1].result;
  ASSERT_TRUE(result.contains("interrupted_attempt")) << result.dump();
  EXPECT_EQ(result["interrupted_attempt"]["started_at_ms"], first_started_at);
  EXPECT_EQ((*steps)[1].attempts, 2);
  EXPECT_FALSE((*steps)[0].result.contains("interrupted_attempt")) << "a step the restart found done is not marked";
}

TEST_F(RunEngineTest, StepsMustComeAfterEarlierSteps) {
  auto e = engine();
  Status s = e->start(run("r1"), {{"a", StepKind::kPowerOn, {1}, 1}, {"b", StepKind::kPowerOn, {}, 1}});
  EXPECT_EQ(s.code(), StatusCode::kInternal);
  EXPECT_FALSE(store_->find_run("r1")->has_value()) << "nothing stored";
}

}  // namespace
}  // namespace evac::engine
