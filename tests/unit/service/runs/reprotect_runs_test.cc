// Reprotect and failback through RunService, between two in-process sites
// (run_sites.h): after a migration to site-b, a reprotect makes site-b
// protect the group back to site-a; a failback at site-a then migrates it
// home and reprotects it toward site-b again.
#include "unit/service/runs/run_sites.h"

namespace evac::testing {
namespace {

using nlohmann::json;

// "shop" is web01 alone here: a failback's nine cycles, three disks each,
// would take seconds.
class ReprotectRunsTest : public RunSitesTest {
 protected:
  ReprotectRunsTest() { shop_vms_ = {"web01"}; }
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(RunSitesTest::SetUp());
    ASSERT_FALSE(sync_shop().id.empty());
    ASSERT_NO_FATAL_FAILURE(create_plan(b_, {{"name", "shop-dr"}, {"groups", {"shop"}}}));
    run_ok(runs_b_, "shop-dr", "migrate");
    ASSERT_FALSE(HasFailure()) << "the migration every case starts from";
    ASSERT_NO_FATAL_FAILURE(map_back());
  }
  std::optional<GroupRecord> group_at(TestSite& site) {
    auto g = site.store->find_group("shop");
    EXPECT_TRUE(g.is_ok()) << g.status().to_string();
    return g.is_ok() ? *g : std::nullopt;
  }
  std::size_t pits_held_at(SiteRuns& r) {
    auto pits = r.replication->pits_held_here("shop");
    EXPECT_TRUE(pits.is_ok()) << pits.status().to_string();
    return pits.is_ok() ? pits->size() : 0;
  }
};

// The recovered VMs stop reading through the PITs they were recovered
// from, those PITs are released, site-a's stale copies become the
// placeholders of site-b's VMs (their disks the seeds), site-b protects
// the group toward site-a and its first cycle back lands there.
TEST_F(ReprotectRunsTest, AReprotectMakesTheFormerProtectedSitesCopiesThePlaceholders) {
  const std::string live_web01 = placeholder_uuid("web01");
  auto steps = run_ok(runs_b_, "shop-dr", "reprotect", kReprotectRunKinds).steps;

  // At site-b: consolidated (the VMs run: the hypervisor pulls), the
  // replicas released, the group protected from here with site-a's
  // settings, one cycle back.
  EXPECT_EQ(b_.provider->calls_starting("flatten"), std::vector<std::string>{"flatten web01"});
  const json released = step_named(steps, "Release replicas here: shop").result;
  EXPECT_EQ(released["released_copies"].size(), 1u) << released.dump();
  EXPECT_EQ(released["removed_pits"].size(), 3u) << released.dump();
  EXPECT_EQ(pits_held_at(runs_b_), 0u);
  auto here = group_at(b_);
  ASSERT_TRUE(here.has_value());
  EXPECT_EQ(here->protected_site, "site-b");
  EXPECT_EQ(here->recovery_site, "site-a");
  EXPECT_EQ(here->epoch, 2);
  EXPECT_EQ(here->keep_pits, 24);
  EXPECT_EQ(fake_b_.reverse_calls(), 1);
  EXPECT_EQ(step_named(steps, "Synchronize storage back (delta resync): shop").result["pit"], fake_b_.pits("shop").back().id);
  // At site-a: no group of its own any more; its VMs, off, are site-b's
  // placeholders; it holds the cycle back.
  EXPECT_FALSE(group_at(a_).has_value());
  auto adopted = a_.provider->adopted_as("web01");
  ASSERT_TRUE(adopted.has_value());
  EXPECT_EQ(adopted->source_site, "site-b");
  EXPECT_EQ(adopted->source_uuid, live_web01);
  EXPECT_EQ(a_.provider->get_vm("web01")->state, PowerState::kShutOff);
  EXPECT_TRUE(a_.provider->get_vm("web01")->is_placeholder);
  EXPECT_EQ(pits_held_at(runs_a_), 1u);
  EXPECT_EQ(events(a_, "reprotected").size(), 1u);
  // Reprotected once: a second is refused before it starts.
  auto again = runs_b_.runs->start(RunRequest{"shop-dr", "reprotect", "admin", "", ""});
  EXPECT_TRUE(contains(again.status().message(), "is protected from here to 'site-a' already")) << again.status().to_string();
}

// A failback, at site-a after the reprotect: a migration home (site-b
// syncs, shuts down and is fenced; site-a recovers onto its own former
// VMs), then a reprotect back toward site-b.
TEST_F(ReprotectRunsTest, AFailbackBringsTheVmsHomeAndProtectsThemAgain) {
  run_ok(runs_b_, "shop-dr", "reprotect");
  ASSERT_FALSE(HasFailure());
  std::set<StepKind> both = kMigrateRunKinds;
  both.insert(kReprotectRunKinds.begin(), kReprotectRunKinds.end());
  const std::string id = run_ok(runs_a_, "shop-dr", "failback", both).id;

  // Home: site-a owns the group at a third epoch, runs its VMs again on
  // disks recovered from site-b's final sync, and protects it to site-b.
  for (TestSite* site : {&a_, &b_}) {
    auto owner = site->service->ownership("shop", "site-a", 1);
    ASSERT_TRUE(owner.is_ok());
    EXPECT_EQ(owner->owner, "site-a");
    EXPECT_EQ(owner->epoch, 3);
  }
  auto web01 = a_.provider->get_vm("web01");
  ASSERT_TRUE(web01.is_ok());
  EXPECT_EQ(web01->state, PowerState::kRunning);
  EXPECT_FALSE(web01->is_placeholder);
  EXPECT_EQ(a_.provider->recovered_by("web01"), id);
  ASSERT_EQ(web01->disks.size(), 1u);
  EXPECT_TRUE(contains(web01->disks[0].path, (dir_ / "a-images-back").string())) << web01->disks[0].path;
  // Its old disk, made read-only by the migration's fence, was released.
  EXPECT_EQ(fake_a_.released(), std::vector<std::string>{"shop:web01:/a/images/web01.qcow2"});
  auto home = group_at(a_);
  ASSERT_TRUE(home.has_value());
  EXPECT_EQ(home->recovery_site, "site-b");
  EXPECT_EQ(home->epoch, 3);
  // Site-b: shut down gracefully, fenced, its VMs placeholders of site-a's.
  EXPECT_EQ(b_.provider->calls_starting("shutdown"), std::vector<std::string>{"shutdown web01"});
  ASSERT_EQ(fake_b_.made_read_only().size(), 1u);
  EXPECT_TRUE(contains(fake_b_.made_read_only()[0], "shop:web01:" + (dir_ / "b-images").string()))
      << fake_b_.made_read_only()[0];
  EXPECT_FALSE(group_at(b_).has_value());
  auto adopted = b_.provider->adopted_as("web01");
  ASSERT_TRUE(adopted.has_value());
  EXPECT_EQ(adopted->source_site, "site-a");
  EXPECT_EQ(adopted->source_uuid, "u-web01");
  EXPECT_EQ(pits_held_at(runs_b_), 1u) << "site-a's first cycle back";
  EXPECT_EQ(fake_a_.reverse_calls(), 1);
}

}  // namespace
}  // namespace evac::testing
