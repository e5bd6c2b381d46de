// Plans compiled into power-on steps: chains per VM, strict tiers behind
// barriers, dependency-driven chains after exactly what they depend on.
#include "engine/plan_compiler.h"

#include <gtest/gtest.h>

#include <algorithm>

namespace evac::engine {
namespace {

RecoveryPlan shop(PlanOrdering ordering) {
  RecoveryPlan p;
  p.name = "shop-dr";
  p.groups = {"shop"};
  p.ordering = ordering;
  PlanVm db{.vm = "db01", .priority = 1};
  db.checks = {AppCheck{.kind = AppCheck::Kind::kTcp, .port = 5432}};
  db.before_power_on = {PlanAction{.kind = PlanAction::Kind::kPrompt, .message = "Licence server up?"}};
  PlanVm app{.vm = "app01", .priority = 2, .depends_on = {"db01"}};
  app.wait_for_guest.reset();
  PlanVm web{.vm = "web01", .priority = 3, .depends_on = {"app01"}};
  PlanVm batch{.vm = "batch01", .priority = 2, .startup = StartupAction::kLeaveOff};
  p.vms = {db, app, web, batch};
  return p;
}

const std::vector<RecoveryVm> kVms = {{"db01", "shop"}, {"app01", "shop"}, {"web01", "shop"}, {"batch01", "shop"},
                                      {"cache01", "shop"}};

int index_of(const std::vector<StepSpec>& steps, const std::string& name) {
  for (std::size_t i = 0; i < steps.size(); ++i)
    if (steps[i].name == name) return static_cast<int>(i);
  ADD_FAILURE() << "no step named " << name;
  return -1;
}

// Whether `later` waits (directly or not) for `earlier`.
bool waits_for(const std::vector<StepSpec>& steps, int later, int earlier) {
  if (later == earlier) return true;
  for (int a : steps[static_cast<std::size_t>(later)].after)
    if (waits_for(steps, a, earlier)) return true;
  return false;
}

void expect_topological(const std::vector<StepSpec>& steps) {
  for (std::size_t i = 0; i < steps.size(); ++i)
    for (int a : steps[i].after) EXPECT_LT(a, static_cast<int>(i)) << steps[i].name;
}

TEST(PlanCompilerTest, StrictTiersChainEachVmAndWaitForTheWholeTierBefore) {
  std::vector<StepSpec> first = {{"Create writable copies of the newest PIT: shop", StepKind::kCreateTestCopy, {}, 0}};
  auto steps = compile_power_on(shop(PlanOrdering::kStrictTiers), kVms, first);
  ASSERT_TRUE(steps.is_ok()) << steps.status().to_string();
  expect_topological(*steps);
  const auto& s = *steps;
  int prompt = index_of(s, "Prompt (db01): Licence server up?");
  int db_on = index_of(s, "Power on priority 1 VM: db01");
  int db_wait = index_of(s, "Wait for guest heartbeat: db01");
  int db_check = index_of(s, "Check TCP port 5432: db01");
  int tier1 = index_of(s, "Priority 1 VMs are up");
  int app_on = index_of(s, "Power on priority 2 VM: app01");
  int cache_on = index_of(s, "Power on priority 3 VM: cache01");  // no entry: tier 3 defaults
  int tier2 = index_of(s, "Priority 2 VMs are up");
  int web_on = index_of(s, "Power on priority 3 VM: web01");
  EXPECT_TRUE(waits_for(s, prompt, 0)) << "after the storage step";
  EXPECT_EQ(s[static_cast<std::size_t>(db_on)].after, std::vector<int>{prompt});
  EXPECT_TRUE(waits_for(s, db_check, db_wait));
  EXPECT_TRUE(waits_for(s, tier1, db_check)) << "a tier is up when its checks passed";
  EXPECT_TRUE(waits_for(s, app_on, tier1));
  EXPECT_TRUE(waits_for(s, cache_on, tier2)) << "strict: tier 3 waits for tier 2 even without a dependency";
  EXPECT_TRUE(waits_for(s, web_on, tier2));
  EXPECT_EQ(std::count_if(s.begin(), s.end(), [](const StepSpec& x) { return x.name.find("app01") != std::string::npos && x.kind == engine::StepKind::kWaitForGuest; }), 0)
      << "app01 is not waited for";
  EXPECT_EQ(std::count_if(s.begin(), s.end(), [](const StepSpec& x) { return x.name.find("batch01") != std::string::npos; }), 0)
      << "a VM left off has no steps";
  EXPECT_EQ(s[static_cast<std::size_t>(db_on)].params["vm"], "db01");
  EXPECT_EQ(s[static_cast<std::size_t>(db_on)].params["group"], "shop");
}

TEST(PlanCompilerTest, DependencyOrderingStartsEachVmAfterExactlyWhatItNeeds) {
  auto steps = compile_power_on(shop(PlanOrdering::kDependencies), kVms);
  ASSERT_TRUE(steps.is_ok()) << steps.status().to_string();
  expect_topological(*steps);
  const auto& s = *steps;
  EXPECT_EQ(std::count_if(s.begin(), s.end(), [](const StepSpec& x) { return x.kind == engine::StepKind::kBarrier; }), 0);
  int cache_on = index_of(s, "Power on priority 3 VM: cache01");
  int db_check = index_of(s, "Check TCP port 5432: db01");
  int app_on = index_of(s, "Power on priority 2 VM: app01");
  int web_on = index_of(s, "Power on priority 3 VM: web01");
  EXPECT_TRUE(s[static_cast<std::size_t>(cache_on)].after.empty()) << "nothing to wait for: it starts at once";
  EXPECT_EQ(s[static_cast<std::size_t>(app_on)].after, std::vector<int>{db_check});
  EXPECT_TRUE(waits_for(s, web_on, app_on));
  EXPECT_FALSE(waits_for(s, web_on, cache_on));
  EXPECT_EQ(s[static_cast<std::size_t>(cache_on)].tier, 3) << "tiers still set priority";
}

TEST(PlanCompilerTest, AnInvalidPlanCompilesToNothing) {
  RecoveryPlan p = shop(PlanOrdering::kDependencies);
  p.vms[0].depends_on = {"web01"};
  auto steps = compile_power_on(p, kVms);
  ASSERT_FALSE(steps.is_ok());
  EXPECT_NE(steps.status().message().find("dependency cycle"), std::string::npos);
}

TEST(PlanCompilerTest, TestChecksThenCopiesThenRegistersBeforeAnyPowerOn) {
  RecoveryPlan plan = shop(PlanOrdering::kDependencies);
  plan.groups = {"shop", "ops"};
  std::vector<RecoveryVm> vms = kVms;
  vms.push_back({"mon01", "ops"});
  auto steps = compile_test(plan, vms);
  ASSERT_TRUE(steps.is_ok()) << steps.status().to_string();
  expect_topological(*steps);
  const auto& s = *steps;
  EXPECT_EQ(s[0].kind, engine::StepKind::kReadiness);
  EXPECT_EQ(s[0].name, "Check readiness");
  int shop_copy = index_of(s, "Create test copy: shop");
  int ops_copy = index_of(s, "Create test copy: ops");
  int db_reg = index_of(s, "Register test VM: db01");
  int mon_reg = index_of(s, "Register test VM: mon01");
  int batch_reg = index_of(s, "Register test VM: batch01");
  int registered = index_of(s, "Test VMs are registered");
  EXPECT_TRUE(waits_for(s, shop_copy, 0));
  EXPECT_TRUE(waits_for(s, db_reg, shop_copy));
  EXPECT_FALSE(waits_for(s, mon_reg, shop_copy)) << "a group's VMs wait for their own group's copy only";
  EXPECT_TRUE(waits_for(s, mon_reg, ops_copy));
  EXPECT_TRUE(waits_for(s, registered, batch_reg)) << "a VM left off is still registered for the test";
  for (const auto& name : {"Power on priority 1 VM: db01", "Power on priority 3 VM: mon01"})
    EXPECT_TRUE(waits_for(s, index_of(s, name), registered)) << name;
  EXPECT_EQ(s[static_cast<std::size_t>(mon_reg)].params["group"], "ops");
}

TEST(PlanCompilerTest, CleanupRemovesEveryVmThenDiscardsEachGroupsCopies) {
  auto steps = compile_cleanup(shop(PlanOrdering::kStrictTiers), kVms);
  ASSERT_TRUE(steps.is_ok()) << steps.status().to_string();
  expect_topological(*steps);
  const auto& s = *steps;
  ASSERT_EQ(s.size(), kVms.size() + 1);
  int drop = index_of(s, "Discard test copies: shop");
  for (const auto& vm : kVms) {
    int removed = index_of(s, "Remove test VM: " + vm.name);
    EXPECT_EQ(s[static_cast<std::size_t>(removed)].kind, engine::StepKind::kRemoveTestVm);
    EXPECT_TRUE(s[static_cast<std::size_t>(removed)].after.empty()) << "removals run side by side";
    EXPECT_TRUE(waits_for(s, drop, removed)) << vm.name;
  }
}

TEST(PlanCompilerTest, MigrationFencesTheOldCopyBeforeAnyVmIsRecovered) {
  auto steps = compile_migrate(shop(PlanOrdering::kStrictTiers), kVms);
  ASSERT_TRUE(steps.is_ok()) << steps.status().to_string();
  expect_topological(*steps);
  const auto& s = *steps;
  int sync = index_of(s, "Synchronize storage: shop");
  int shutdown = index_of(s, "Shut down VMs at protected site: shop");
  int final_sync = index_of(s, "Synchronize storage after shutdown: shop");
  int handover = index_of(s, "Hand over at protected site: shop");
  int promote = index_of(s, "Promote replicas: shop");
  int own = index_of(s, "Take ownership: shop");
  EXPECT_TRUE(waits_for(s, shutdown, sync));
  EXPECT_TRUE(waits_for(s, final_sync, shutdown)) << "the final sync reads disks nothing writes any more";
  EXPECT_TRUE(waits_for(s, promote, handover)) << "the old copy is fenced before the new one exists";
  EXPECT_FALSE(s[static_cast<std::size_t>(shutdown)].params.value("best_effort", true));
  for (const auto& vm : {"db01", "web01", "batch01"})
    EXPECT_TRUE(waits_for(s, index_of(s, std::string("Recover VM: ") + vm), own)) << vm;
  EXPECT_TRUE(waits_for(s, index_of(s, "Power on priority 1 VM: db01"), index_of(s, "Recovered VMs are registered")));
}

TEST(PlanCompilerTest, FailoverTriesTheProtectedSiteOnlyAsBestEffort) {
  RecoveryPlan plan = shop(PlanOrdering::kDependencies);
  plan.groups = {"shop", "ops"};
  std::vector<RecoveryVm> vms = kVms;
  vms.push_back({"mon01", "ops"});
  auto steps = compile_failover(plan, vms);
  ASSERT_TRUE(steps.is_ok()) << steps.status().to_string();
  expect_topological(*steps);
  const auto& s = *steps;
  for (const auto& st : s) {
    EXPECT_NE(st.kind, engine::StepKind::kSyncProtected) << "nothing waits for the lost site";
    EXPECT_NE(st.kind, engine::StepKind::kHandover);
    if (st.kind == engine::StepKind::kShutdownProtected) {
      EXPECT_TRUE(st.params.value("best_effort", false));
    }
  }
  EXPECT_FALSE(waits_for(s, index_of(s, "Promote replicas: ops"), index_of(s, "Promote replicas: shop")))
      << "groups recover side by side";
  EXPECT_TRUE(waits_for(s, index_of(s, "Recover VM: mon01"), index_of(s, "Take ownership: ops")));
}

TEST(PlanCompilerTest, ReprotectMakesPlaceholdersThereBeforeProtectingHereThenSyncsBack) {
  RecoveryPlan plan = shop(PlanOrdering::kStrictTiers);
  plan.groups = {"shop", "ops"};
  std::vector<RecoveryVm> vms = kVms;
  vms.push_back({"mon01", "ops"});
  auto steps = compile_reprotect(plan, vms);
  ASSERT_TRUE(steps.is_ok()) << steps.status().to_string();
  expect_topological(*steps);
  const auto& s = *steps;
  EXPECT_EQ(s[0].kind, engine::StepKind::kReadiness);
  for (const auto& st : s) {
    EXPECT_NE(st.kind, engine::StepKind::kPowerOn) << "a reprotect starts no VM";
    EXPECT_NE(st.kind, engine::StepKind::kPromote);
  }
  for (const std::string g : {"shop", "ops"}) {
    const int peer = index_of(s, "Make placeholders at former protected site: " + g);
    const int here = index_of(s, "Protect from this site: " + g);
    const int sync = index_of(s, "Synchronize storage back (delta resync): " + g);
    const int release = index_of(s, "Release replicas here: " + g);
    EXPECT_TRUE(waits_for(s, peer, 0));
    EXPECT_TRUE(waits_for(s, peer, release)) << "nothing replicates from here before the VMs stand alone";
    EXPECT_TRUE(waits_for(s, here, peer)) << "the old site stops protecting before this one starts";
    EXPECT_TRUE(waits_for(s, sync, here));
  }
  for (const std::string vm : {"db01", "web01", "batch01"})
    EXPECT_TRUE(waits_for(s, index_of(s, "Release replicas here: shop"), index_of(s, "Consolidate disks: " + vm)))
        << "no PIT goes while " << vm << " reads through it";
  EXPECT_TRUE(waits_for(s, index_of(s, "Release replicas here: ops"), index_of(s, "Consolidate disks: mon01")));
  EXPECT_FALSE(waits_for(s, index_of(s, "Consolidate disks: web01"), index_of(s, "Consolidate disks: db01")))
      << "a group's VMs consolidate side by side";
  EXPECT_FALSE(waits_for(s, index_of(s, "Protect from this site: ops"), index_of(s, "Protect from this site: shop")));
}

TEST(PlanCompilerTest, FailbackIsAMigrationThenAReprotect) {
  RecoveryPlan plan = shop(PlanOrdering::kDependencies);
  auto steps = compile_failback(plan, kVms);
  ASSERT_TRUE(steps.is_ok()) << steps.status().to_string();
  expect_topological(*steps);
  const auto& s = *steps;
  const int peer = index_of(s, "Make placeholders at former protected site: shop");
  EXPECT_TRUE(waits_for(s, peer, index_of(s, "Hand over at protected site: shop")));
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i].kind == engine::StepKind::kReprotectPeer || s[i].kind == engine::StepKind::kProtectHere || s[i].kind == engine::StepKind::kSyncReverse) continue;
    EXPECT_TRUE(waits_for(s, peer, static_cast<int>(i))) << "the reprotect waits for the whole migration: " << s[i].name;
  }
}

TEST(PlanCompilerTest, StepTimeoutsBoundHangsNotTheWorkOfSyncsOrThePlansOwnWaits) {
  EXPECT_EQ(default_step_timeout_s(StepSpec{"Recover VM: db01", engine::StepKind::kRecoverVm, {}, 1}), 600);
  EXPECT_EQ(default_step_timeout_s(StepSpec{"Wait for guest heartbeat: db01", engine::StepKind::kWaitForGuest, {}, 1, nlohmann::json{{"timeout_s", 120}}}),
            180)
      << "the heartbeat's own timeout, and a margin";
  EXPECT_EQ(default_step_timeout_s(StepSpec{"Synchronize storage: shop", engine::StepKind::kSyncProtected, {}, 0}), 0)
      << "a first sync of a large group takes as long as it takes";
  EXPECT_EQ(default_step_timeout_s(StepSpec{"Consolidate disks: db01", engine::StepKind::kFlattenDisks, {}, 0}), 0)
      << "a block pull copies the whole disk";
  EXPECT_EQ(default_step_timeout_s(StepSpec{"Check tcp:5432: db01", engine::StepKind::kCheck, {}, 1}), 0) << "bound by the plan's check timeout";
}

TEST(PlanCompilerTest, IpRulesAddACustomizeStepAfterTheHeartbeat) {
  RecoveryPlan plan = shop(PlanOrdering::kStrictTiers);
  auto without = compile_power_on(plan, kVms);
  ASSERT_TRUE(without.is_ok());
  for (const auto& s : *without) EXPECT_NE(s.kind, engine::StepKind::kCustomizeIp);
  plan.ip_rules = {IpRule{"prod", "10.0.0.0/24", "10.1.0.0/24", "", {}}};
  auto steps = compile_power_on(plan, kVms);
  ASSERT_TRUE(steps.is_ok()) << steps.status().to_string();
  const auto& s = *steps;
  int wait = index_of(s, "Wait for guest heartbeat: db01");
  int ip = index_of(s, "Customize IP: db01");
  EXPECT_TRUE(waits_for(s, ip, wait));
  EXPECT_TRUE(waits_for(s, index_of(s, "Check TCP port 5432: db01"), ip)) << "checks see the new address";
  for (const auto& st : s) EXPECT_NE(st.name, "Customize IP: app01") << "app01 is not waited for: no agent to re-address it with";
}

}  // namespace
}  // namespace evac::engine
