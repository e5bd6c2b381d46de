// Test runs and their cleanup through RunService, between two in-process
// sites (run_sites.h): what a test sets up at the recovery site, what a
// cleanup takes away, and how a test run fails, resumes, waits at a prompt
// and is cancelled.
#include <algorithm>

#include "unit/service/runs/run_sites.h"

namespace evac::testing {
namespace {

using engine::StepState;
using nlohmann::json;

class TestRunsTest : public RunSitesTest {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(RunSitesTest::SetUp());
    pit_ = sync_shop();
    ASSERT_FALSE(pit_.id.empty());
    ASSERT_NO_FATAL_FAILURE(create_plan(b_, drill_plan()));
  }
  // db01 first (a host callout before its power-on, a check and a guest
  // command after), then web01.
  static json drill_plan() {
    return {{"name", "shop-drill"},
            {"groups", {"shop"}},
            {"ordering", "strict-tiers"},
            {"vms",
             {{{"vm", "db01"},
               {"priority", 1},
               {"wait_for_guest", "30s"},
               {"before_power_on", {{{"host", {"sh", "-c", "echo callout for $EVAC_VM as $EVAC_TEST_VM"}}}}},
               {"checks", {{{"command", {"pg_isready"}}, {"timeout", "30s"}, {"interval", "1s"}}}},
               {"after_power_on", {{{"guest", {"systemctl", "start", "shop-db"}}}}}},
              {{"vm", "web01"}, {"priority", 2}, {"depends_on", {"db01"}}}}}};
  }
  // The test copies site-b holds of "shop" (live ones are recoveries').
  std::vector<TestCopy> test_copies() {
    auto copies = runs_b_.replication->test_copies_held_here("shop");
    EXPECT_TRUE(copies.is_ok()) << copies.status().to_string();
    std::vector<TestCopy> out;
    if (copies.is_ok())
      for (auto& c : *copies)
        if (!c.live) out.push_back(c);
    return out;
  }
  std::vector<std::string> test_vm_names() {
    auto vms = b_.provider->list_test_vms();
    EXPECT_TRUE(vms.is_ok());
    std::vector<std::string> out;
    if (vms.is_ok())
      for (const auto& t : *vms) out.push_back(t.name);
    std::sort(out.begin(), out.end());
    return out;
  }

  // A test of the drill with a prompt before web01's power-on, started
  // and waited for until it waits at the prompt.
  std::string start_test_prompting(const std::string& message) {
    json plan = drill_plan();
    plan["name"] = "shop-prompted";
    plan["vms"][1]["before_power_on"] = {{{"prompt", message}}};
    create_plan(b_, plan);
    const std::string id = start(runs_b_, "shop-prompted", "test");
    EXPECT_EQ(wait_for(runs_b_, id).state, "waiting");
    return id;
  }

  PointInTime pit_;
};

// A test: a writable copy of the PIT, test VMs on it attached to the test
// network, powered on by tier with the plan's callout, check and guest
// command; production at both sites untouched.
TEST_F(TestRunsTest, ATestRecoversCopiesOfThePitOnTheTestNetworkAndLeavesProductionAlone) {
  const int calls_to_a = b_.transport->calls();
  auto [id, steps] = run_ok(runs_b_, "shop-drill", "test", kTestRunKinds);

  // One copy of the PIT the run started with, owned by the run.
  auto copies = test_copies();
  ASSERT_EQ(copies.size(), 1u);
  EXPECT_EQ(copies[0].owner, id);
  EXPECT_EQ(copies[0].pit_id, pit_.id);
  EXPECT_EQ(step_named(steps, "Create test copy: shop").result["test_copy"], copies[0].id);
  // Test VMs on the copy's disks and the test network, never production's.
  EXPECT_EQ(test_vm_names(), (std::vector<std::string>{"db01-test", "web01-test"}));
  auto spec = b_.provider->test_vm_spec("db01-test");
  ASSERT_TRUE(spec.has_value());
  EXPECT_EQ(spec->run, id);
  EXPECT_EQ(spec->networks, (std::map<std::string, std::string>{{"recovery-prod", "test-isolated"}}));
  ASSERT_EQ(spec->disks.size(), 2u) << "vda and vdb";
  for (const auto& [target, path] : spec->disks) {
    bool in_copy = false;
    for (const auto& d : copies[0].disks) in_copy |= d.path == path;
    EXPECT_TRUE(in_copy) << target << " is on " << path << ", not on the test copy";
    EXPECT_TRUE(std::filesystem::exists(path)) << path;
  }
  // Powered on by tier, each after its callout; checked, then commanded.
  EXPECT_EQ(b_.provider->calls_starting("power_on"), (std::vector<std::string>{"power_on db01-test", "power_on web01-test"}));
  EXPECT_EQ(step_named(steps, "Run on the evacd host (db01): sh").result["output"], "callout for db01 as db01-test\n");
  auto commands = b_.provider->guest_commands();
  ASSERT_EQ(commands.size(), 2u);
  EXPECT_EQ(commands[0], (std::vector<std::string>{"db01-test", "pg_isready"}));
  EXPECT_EQ(commands[1], (std::vector<std::string>{"db01-test", "systemctl", "start", "shop-db"}));
  // Production untouched: the placeholders stay placeholders, off;
  // site-a's VMs run, and site-a was not asked anything beyond readiness.
  for (const char* vm : {"db01", "web01"}) {
    auto placeholder = b_.provider->get_vm(vm);
    ASSERT_TRUE(placeholder.is_ok());
    EXPECT_TRUE(placeholder->is_placeholder) << vm;
    EXPECT_EQ(placeholder->state, PowerState::kShutOff) << vm;
    EXPECT_EQ(a_.provider->get_vm(vm)->state, PowerState::kRunning) << vm;
  }
  EXPECT_TRUE(a_.provider->calls().empty());
  EXPECT_GT(b_.transport->calls(), calls_to_a) << "readiness asks site-a";
  auto owner = b_.service->ownership("shop", "site-a", 1);
  ASSERT_TRUE(owner.is_ok());
  EXPECT_EQ(owner->owner, "site-a") << "a test takes nothing over";
}

// A test that was not cleaned up stays in the way of the next one; a
// cleanup removes its test VMs and copies, whichever run made them, and
// then a test may run again.
TEST_F(TestRunsTest, ACleanupRemovesTheTestVmsAndCopiesSoTheNextTestCanRun) {
  const std::string test = run_ok(runs_b_, "shop-drill", "test").id;
  auto again = runs_b_.runs->start(RunRequest{"shop-drill", "test", "admin", "", ""});
  ASSERT_FALSE(again.is_ok());
  EXPECT_EQ(again.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_TRUE(contains(again.status().message(), "an earlier test is still set up")) << again.status().message();
  EXPECT_TRUE(contains(again.status().message(), "db01-test (run " + test + ")")) << again.status().message();

  auto steps = run_ok(runs_b_, "shop-drill", "cleanup", kCleanupRunKinds).steps;
  EXPECT_EQ(step_named(steps, "Remove test VM: db01").result["removed"][0]["run"], test);
  const std::string copy = step_named(steps_of(runs_b_, test), "Create test copy: shop").result["test_copy"];
  EXPECT_EQ(step_named(steps, "Discard test copies: shop").result["dropped"], json::array({copy}));
  EXPECT_TRUE(test_vm_names().empty());
  EXPECT_TRUE(test_copies().empty());
  EXPECT_EQ(b_.provider->calls_starting("remove_test_vm").size(), 2u);
  // Cleanup only undoes the test: the placeholders are there still.
  EXPECT_TRUE(b_.provider->get_vm("db01")->is_placeholder);

  run_ok(runs_b_, "shop-drill", "test");
}

// A step that fails stops the run with its error; what it comes after is
// not done again on resume, and the run goes on from the failed step.
TEST_F(TestRunsTest, AFailedPowerOnFailsTheRunAndAResumeGoesOnFromIt) {
  b_.provider->refuse_power_on("db01-test", failed_precondition("host kvm-b has no room for db01-test"));
  const std::string id = start(runs_b_, "shop-drill", "test");
  RunRow run = wait_for(runs_b_, id);
  EXPECT_EQ(run.state, "failed");
  EXPECT_TRUE(contains(run.error, "(Power on priority 1 VM: db01) failed: host kvm-b has no room for db01-test")) << run.error;
  auto steps = steps_of(runs_b_, id);
  EXPECT_EQ(names_in(steps, StepState::kFailed), std::vector<std::string>{"Power on priority 1 VM: db01"});
  EXPECT_EQ(step_named(steps, "Power on priority 1 VM: db01").error, "host kvm-b has no room for db01-test");
  EXPECT_EQ(step_named(steps, "Power on priority 1 VM: db01").attempts, 1) << "not an error worth retrying";
  EXPECT_EQ(state_of(steps, "Wait for guest heartbeat: db01"), "pending");
  EXPECT_EQ(state_of(steps, "Power on priority 2 VM: web01"), "pending");
  EXPECT_TRUE(b_.provider->calls_starting("power_on").empty());
  // A failed test holds its group: no other run over it meanwhile.
  auto other = runs_b_.runs->start(RunRequest{"shop-drill", "migrate", "admin", "shop-drill", ""});
  EXPECT_EQ(other.status().code(), StatusCode::kFailedPrecondition) << other.status().to_string();
  EXPECT_TRUE(contains(other.status().message(), "run " + id + " (test of plan 'shop-drill') over group 'shop' is failed"))
      << other.status().message();

  b_.provider->refuse_power_on("db01-test", std::nullopt);
  ASSERT_TRUE(runs_b_.runs->resume(id).is_ok());
  run = wait_for(runs_b_, id);
  EXPECT_EQ(run.state, "succeeded") << run.error;
  EXPECT_EQ(run.error, "");
  steps = steps_of(runs_b_, id);
  expect_all_succeeded(steps);
  EXPECT_EQ(step_named(steps, "Power on priority 1 VM: db01").attempts, 2);
  // Done once each: the copy, the test VMs, the callout before power-on.
  EXPECT_EQ(step_named(steps, "Create test copy: shop").attempts, 1);
  EXPECT_EQ(b_.provider->calls_starting("define_test_vm").size(), 2u);
  EXPECT_EQ(step_named(steps, "Run on the evacd host (db01): sh").attempts, 1);
  EXPECT_EQ(test_copies().size(), 1u);
  EXPECT_EQ(b_.provider->calls_starting("power_on"), (std::vector<std::string>{"power_on db01-test", "power_on web01-test"}));
}

// A prompt holds the run (waiting) until an operator acknowledges it; the
// steps after it wait with it, others go on.
TEST_F(TestRunsTest, APromptHoldsItsVmUntilAcknowledged) {
  const std::string id = start_test_prompting("Tell the web team web01 is coming up");
  ASSERT_FALSE(HasFailure());
  auto steps = steps_of(runs_b_, id);
  const std::string prompt = "Prompt (web01): Tell the web team web01 is coming up";
  EXPECT_EQ(names_in(steps, StepState::kWaiting), std::vector<std::string>{prompt});
  EXPECT_EQ(state_of(steps, "Priority 1 VMs are up"), "succeeded") << "db01's tier went on";
  EXPECT_EQ(state_of(steps, "Power on priority 2 VM: web01"), "pending");
  EXPECT_EQ(b_.provider->calls_starting("power_on"), std::vector<std::string>{"power_on db01-test"});

  ASSERT_TRUE(runs_b_.runs->ack(id).is_ok());
  RunRow run = wait_for(runs_b_, id);
  EXPECT_EQ(run.state, "succeeded") << run.error;
  steps = steps_of(runs_b_, id);
  expect_all_succeeded(steps);
  expect_ran_kinds(steps, kPromptKinds);
  EXPECT_EQ(b_.provider->calls_starting("power_on"), (std::vector<std::string>{"power_on db01-test", "power_on web01-test"}));
  EXPECT_FALSE(runs_b_.runs->ack(id).is_ok()) << "nothing waits any more";
}

// A cancelled run starts nothing more: the steps not started are skipped.
// What it set up stays for a cleanup, which then runs.
TEST_F(TestRunsTest, ACancelledRunSkipsWhatItHadNotStarted) {
  const std::string id = start_test_prompting("Go on with web01?");
  ASSERT_FALSE(HasFailure());
  ASSERT_TRUE(runs_b_.runs->cancel(id).is_ok());
  RunRow run = wait_for(runs_b_, id);
  EXPECT_EQ(run.state, "cancelled");
  auto steps = steps_of(runs_b_, id);
  EXPECT_EQ(names_in(steps, StepState::kSkipped),
            (std::vector<std::string>{"Prompt (web01): Go on with web01?", "Power on priority 2 VM: web01",
                                      "Wait for guest heartbeat: web01", "Priority 2 VMs are up"}));
  EXPECT_TRUE(names_in(steps, StepState::kPending).empty());
  EXPECT_FALSE(runs_b_.runs->ack(id).is_ok()) << "a cancelled run has no prompt to acknowledge";
  EXPECT_EQ(b_.provider->calls_starting("power_on"), std::vector<std::string>{"power_on db01-test"});
  EXPECT_EQ(test_vm_names(), (std::vector<std::string>{"db01-test", "web01-test"})) << "left for the cleanup";

  run_ok(runs_b_, "shop-prompted", "cleanup");
  EXPECT_TRUE(test_vm_names().empty());
  EXPECT_TRUE(test_copies().empty());
}

}  // namespace
}  // namespace evac::testing
