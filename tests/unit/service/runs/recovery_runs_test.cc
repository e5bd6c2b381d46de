// Recoveries through RunService, between two in-process sites
// (run_sites.h): a planned migration, a disaster failover with the
// protected site gone, and a migration whose protected site restarts while
// its storage is being synchronized.
#include "unit/service/runs/run_sites.h"

namespace evac::testing {
namespace {

using engine::StepState;
using nlohmann::json;

class RecoveryRunsTest : public RunSitesTest {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(RunSitesTest::SetUp());
    ASSERT_FALSE(sync_shop().id.empty());
    json vms = json::array();  // by tier in the group's order: db01, then web01
    for (std::size_t i = 0; i < shop_vms_.size(); ++i) vms.push_back({{"vm", shop_vms_[i]}, {"priority", i + 1}});
    ASSERT_NO_FATAL_FAILURE(create_plan(b_, {{"name", "shop-dr"}, {"groups", {"shop"}}, {"vms", vms}}));
  }
  std::vector<PointInTime> pits_at_b() {
    auto pits = runs_b_.replication->pits_held_here("shop");
    EXPECT_TRUE(pits.is_ok()) << pits.status().to_string();
    return pits.is_ok() ? *pits : std::vector<PointInTime>{};
  }
  // Each recovered VM runs at site-b on disks of the run's live copy.
  void expect_recovered_at_b(const std::string& run) {
    auto copies = runs_b_.replication->test_copies_held_here("shop");
    ASSERT_TRUE(copies.is_ok());
    ASSERT_EQ(copies->size(), 1u);
    const TestCopy& live = copies->front();
    EXPECT_TRUE(live.live);
    EXPECT_EQ(live.owner, run);
    for (const char* name : {"db01", "web01"}) {
      auto vm = b_.provider->get_vm(name);
      ASSERT_TRUE(vm.is_ok());
      EXPECT_FALSE(vm->is_placeholder) << name;
      EXPECT_EQ(vm->state, PowerState::kRunning) << name;
      EXPECT_EQ(b_.provider->recovered_by(name), run) << name;
      for (const auto& d : vm->disks) {
        bool on_live_copy = false;
        for (const auto& l : live.disks) on_live_copy |= l.path == d.path;
        EXPECT_TRUE(on_live_copy) << name << " " << d.target << " is on " << d.path;
      }
    }
    EXPECT_EQ(b_.provider->calls_starting("power_on"), (std::vector<std::string>{"power_on db01", "power_on web01"}));
  }
};

// A planned migration: synchronized, shut down gracefully at site-a, the
// final sync, site-a's copy fenced (off, its disks read-only), then the
// final PIT promoted and the VMs recovered and powered on at site-b, which
// owns the group at a new epoch.
TEST_F(RecoveryRunsTest, AMigrationRecoversTheFinalSyncAfterFencingTheProtectedSite) {
  auto [id, steps] = run_ok(runs_b_, "shop-dr", "migrate", kMigrateRunKinds);

  // Two cycles, before and after the shutdown; the second is recovered.
  EXPECT_EQ(fake_a_.sync_calls(), 3) << "the first sync, then the migration's two";
  auto pits = pits_at_b();
  ASSERT_EQ(pits.size(), 3u);
  EXPECT_EQ(step_named(steps, "Synchronize storage: shop").result["pit"], pits[1].id);
  EXPECT_EQ(step_named(steps, "Synchronize storage after shutdown: shop").result["pit"], pits[2].id);
  EXPECT_EQ(step_named(steps, "Promote replicas: shop").result["pit"], pits[2].id);
  // Site-a: shut down gracefully, then fenced: off, disks read-only.
  EXPECT_EQ(a_.provider->calls(), (std::vector<std::string>{"shutdown db01", "shutdown web01"}));
  EXPECT_EQ(fake_a_.made_read_only(),
            (std::vector<std::string>{"shop:db01:/a/images/db01.qcow2", "shop:db01:/a/fast/db01-data.raw",
                                      "shop:web01:/a/images/web01.qcow2"}));
  auto fenced = events(a_, "fenced");
  ASSERT_EQ(fenced.size(), 1u);
  EXPECT_TRUE(contains(fenced[0].message, "its disks are read-only")) << fenced[0].message;
  // Both sites agree who owns the group now.
  for (TestSite* site : {&a_, &b_}) {
    auto owner = site->service->ownership("shop", "site-a", 1);
    ASSERT_TRUE(owner.is_ok());
    EXPECT_EQ(owner->owner, "site-b");
    EXPECT_EQ(owner->epoch, 2);
    EXPECT_EQ(owner->run, id);
  }
  EXPECT_EQ(step_named(steps, "Take ownership: shop").result, (json{{"owner", "site-b"}, {"epoch", 2}}));
  ASSERT_NO_FATAL_FAILURE(expect_recovered_at_b(id));
  // Site-a's copy is stale now: it replicates no more.
  auto sync = runs_a_.replication->request_sync("shop");
  EXPECT_EQ(sync.status().code(), StatusCode::kFailedPrecondition) << sync.status().to_string();
  // Recovered here: nothing recovers it again.
  auto again = runs_b_.runs->start(RunRequest{"shop-dr", "test", "admin", "", ""});
  EXPECT_TRUE(contains(again.status().message(), "group 'shop' is already live here, recovered by run " + id))
      << again.status().to_string();
}

// A disaster: site-a does not answer. Its steps are recorded as not
// reached and the recovery goes on from the PIT named, re-addressing the
// guests by the plan's IP rules.
TEST_F(RecoveryRunsTest, AFailoverWithTheProtectedSiteGoneRecoversTheNamedPitAndReAddressesTheGuests) {
  json plan = {{"name", "shop-failover"},
               {"groups", {"shop"}},
               {"vms", {{{"vm", "db01"}, {"priority", 1}}, {{"vm", "web01"}, {"priority", 2}}}},
               {"ip_rules", {{{"network", "prod"}, {"from", "10.0.0.0/24"}, {"to", "10.1.0.0/24"}}}}};
  ASSERT_NO_FATAL_FAILURE(create_plan(b_, plan));
  ASSERT_FALSE(sync_shop().id.empty());
  auto pits = pits_at_b();
  ASSERT_EQ(pits.size(), 2u);
  b_.provider->set_guest_interfaces("db01", {{"eth0", "52:54:00:00:00:02", {"10.0.0.5/24"}, {}}});
  b_.provider->set_guest_interfaces("web01", {{"eth0", "52:54:00:00:00:01", {"10.0.0.6/24"}, {}}});
  b_.provider->answer_guest_command("/bin/sh", GuestCommandResult{0, "persisted /etc/network/interfaces\n", ""});
  b_.transport->cut(kUrlA);

  const std::string id = start(runs_b_, "shop-failover", "failover", pits[0].id);
  RunRow run = wait_for(runs_b_, id);
  EXPECT_EQ(run.state, "succeeded") << run.error;
  auto steps = steps_of(runs_b_, id);
  expect_ran_kinds(steps, kFailoverRunKinds);
  const engine::Step shutdown = step_named(steps, "Shut down VMs at protected site: shop");
  EXPECT_EQ(engine::step_state_name(shutdown.state), "unreached");
  EXPECT_TRUE(contains(shutdown.error, "protected site 'site-a' did not answer")) << shutdown.error;
  EXPECT_EQ(shutdown.attempts, 1) << "a lost site is not retried";
  EXPECT_EQ(names_in(steps, StepState::kUnreached), std::vector<std::string>{shutdown.spec.name});
  EXPECT_EQ(step_named(steps, "Take ownership: shop").result["protected_site"]["reached"], false);
  EXPECT_EQ(step_named(steps, "Promote replicas: shop").result["pit"], pits[0].id) << "the PIT named, not the newest";
  ASSERT_NO_FATAL_FAILURE(expect_recovered_at_b(id));
  // Nothing reached site-a; it still thinks it owns the group (it learns
  // otherwise when it is back).
  EXPECT_TRUE(a_.provider->calls().empty());
  EXPECT_TRUE(fake_a_.made_read_only().empty());
  EXPECT_EQ(a_.service->ownership("shop", "site-a", 1)->owner, "site-a");
  EXPECT_EQ(b_.service->ownership("shop", "site-a", 1)->epoch, 2);
  // Re-addressed: each guest's address moved into the recovery subnet.
  const json changed = step_named(steps, "Customize IP: db01").result;
  ASSERT_EQ(changed["changed"].size(), 1u) << changed.dump();
  EXPECT_EQ(changed["changed"][0]["from"], "10.0.0.5/24");
  EXPECT_EQ(changed["changed"][0]["to"], "10.1.0.5/24");
  EXPECT_EQ(changed["persisted"], json::array({"/etc/network/interfaces"}));
  EXPECT_EQ(step_named(steps, "Customize IP: web01").result["changed"][0]["to"], "10.1.0.6/24");
  bool moved = false;
  for (const auto& c : b_.provider->guest_commands())
    moved |= c.size() == 4 && c[0] == "db01" && c[1] == "/bin/sh" && contains(c[3], "ip addr add 10.1.0.5/24 dev eth0");
  EXPECT_TRUE(moved) << "the re-addressing script ran in db01";
}

// web01 alone: the cycles are what this is about, not the VMs.
class ForgottenCycleTest : public RecoveryRunsTest {
 protected:
  ForgottenCycleTest() { shop_vms_ = {"web01"}; }
};

// "Synchronize storage" follows site-a's cycle by its number. Site-a
// restarts meanwhile and no longer knows that number: the step asks for a
// new cycle, and the migration recovers what that one replicated.
TEST_F(ForgottenCycleTest, ASyncWhoseCycleTheRestartedProtectedSiteForgotStartsANewOne) {
  fake_a_.block();  // the migration's first cycle runs until site-a stops
  std::vector<json> sync_calls;
  const std::string sync_path = "/api/v1/peer/groups/shop/sync";
  b_.transport->before_each_call([&](const std::string&, const std::string& path, const std::string& body) {
    if (path != sync_path) return;
    sync_calls.push_back(json::parse(body));
    // The first call that follows a cycle finds site-a restarted.
    if (sync_calls.size() == 2 && sync_calls.back().contains("cycle")) {
      restart_site_a();  // stopping aborts the held cycle
      fake_a_.release();
    }
  });
  auto steps = run_ok(runs_b_, "shop-dr", "migrate", {StepKind::kSyncProtected}).steps;
  b_.transport->before_each_call(nullptr);

  ASSERT_GE(sync_calls.size(), 3u);
  EXPECT_FALSE(sync_calls[0].contains("cycle")) << "asks for a cycle";
  ASSERT_TRUE(sync_calls[1].contains("cycle")) << "then follows it: " << sync_calls[1].dump();
  EXPECT_FALSE(sync_calls[2].contains("cycle")) << "forgotten: asks for a new one, " << sync_calls[2].dump();
  const engine::Step sync = step_named(steps, "Synchronize storage: shop");
  EXPECT_EQ(sync.attempts, 1) << "the step itself asked again: no retry of the engine's";
  // The first sync, the aborted cycle, its replacement, the final sync;
  // the aborted one left no PIT at site-b.
  EXPECT_EQ(fake_a_.sync_calls(), 4);
  auto pits = pits_at_b();
  ASSERT_EQ(pits.size(), 3u);
  EXPECT_EQ(sync.result["pit"], pits[1].id);
  EXPECT_EQ(step_named(steps, "Promote replicas: shop").result["pit"], pits[2].id);
  EXPECT_EQ(b_.service->ownership("shop", "site-a", 1)->owner, "site-b");
}

}  // namespace
}  // namespace evac::testing
