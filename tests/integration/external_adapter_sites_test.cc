// Two real evacd processes whose protection group replicates through an
// external adapter: the fake copy adapter (tests/adapters/), a program that
// speaks the adapter protocol over two folders standing for the sites'
// storage arrays. Cycles, the peer routes they call and the runs that
// recover from its points in time all go through real processes.
#include <fstream>
#include <thread>

#include <gtest/gtest.h>

#include "test_driver_sites.h"

namespace evac::testing {
namespace {

using nlohmann::json;

class ExternalAdapterSitesTest : public TwoEvacdTest {
 protected:
  void SetUp() override {
    make_root("evac-ext-");
    write_test_driver_sites(root_);
    make_sites("test://" + (root_ / "site-a.xml").string(), "test://" + (root_ / "site-b.xml").string());
    for (auto [site, mine, peer] : {std::tuple{a_.get(), "a", "b"}, std::tuple{b_.get(), "b", "a"}})
      std::ofstream(site->config_path(), std::ios::app)
          << "replication_adapters:\n"
          << "  - kind: fake-copy\n"
          << "    command: [" << EVAC_SOURCE_DIR << "/tests/adapters/fake_copy_adapter.py]\n"
          << "    timeout: 60s\n"
          << "    settings: {store: " << (root_ / (std::string("array-") + mine)).string()
          << ", peer_store: " << (root_ / (std::string("array-") + peer)).string() << "}\n";
    start_sites();
    auto token = evac_at("b", {"site", "pairing-token", "-o", "json"});
    ASSERT_EQ(token.exit_code, 0) << token.err;
    ASSERT_EQ(evac_at("a", {"site", "pair", token.json()["token"]}).exit_code, 0);
    for (auto args : std::vector<std::vector<std::string>>{
             {"mapping", "create", "compute", "kvm-a", "kvm-b"},
             {"mapping", "create", "network", "prod", "recovery-prod", "--test-network", "test-isolated"},
             {"mapping", "create", "storage", "images", "replicas"}}) {
      auto r = evac_at("a", args);
      ASSERT_EQ(r.exit_code, 0) << r.err;
    }
  }
  void apply_plan() {
    std::ofstream(root_ / "plan.yaml") << "kind: RecoveryPlan\nname: shop-dr\ngroups: [shop]\nvms:\n"
                                          "  - {vm: db01, priority: 1, wait_for_guest: false}\n"
                                          "  - {vm: web01, priority: 2, wait_for_guest: false}\n";
    for (int i = 0; i < 100; ++i) {
      auto applied = evac_at("b", {"apply", "-f", (root_ / "plan.yaml").string()});
      if (applied.exit_code == 0) return;
      ASSERT_TRUE(i < 99 && applied.err.find("not known at this site") != std::string::npos) << applied.err;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
};

TEST_F(ExternalAdapterSitesTest, AGroupReplicatesAndRecoversThroughTheAdapter) {
  auto created = evac_at("a", {"group", "create", "shop", "--vm", "db01", "--vm", "web01", "--adapter", "fake-copy",
                               "-o", "json"});
  ASSERT_EQ(created.exit_code, 0) << created.err;
  EXPECT_EQ(created.json()["replication_engine"], "fake-copy");
  auto unknown = evac_at("a", {"group", "create", "other", "--vm", "db01", "--adapter", "rbd"});
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_NE(unknown.err.find("fake-copy"), std::string::npos) << "names the kinds it has: " << unknown.err;

  // A cycle: snapshot at site-a, shipped into site-b's array, awaited by
  // site-b's adapter through the peer route.
  auto sync = evac_at("a", {"group", "sync", "shop", "-o", "json"});
  ASSERT_EQ(sync.exit_code, 0) << sync.err;
  auto pits = evac_at("a", {"group", "pits", "shop", "-o", "json"});
  ASSERT_EQ(pits.exit_code, 0) << pits.err;
  ASSERT_EQ(pits.json().size(), 1u) << pits.out;
  const json pit = pits.json()[0];
  ASSERT_EQ(pit["disks"].size(), 2u);
  for (const auto& d : pit["disks"])
    EXPECT_EQ(d["path"].get<std::string>().rfind((root_ / "array-b").string(), 0), 0u) << d;

  // A test recovery runs on copies the adapter made, and its cleanup drops them.
  apply_plan();
  auto test = evac_at("b", {"plan", "test", "shop-dr", "--follow"});
  ASSERT_EQ(test.exit_code, 0) << test.out << test.err;
  EXPECT_NE(test.out.find("Create test copy: shop"), std::string::npos) << test.out;
  auto copies_dir = root_ / "array-b/groups/shop/copies";
  int copies = 0;
  for (const auto& e : fs::directory_iterator(copies_dir)) copies += fs::exists(e.path() / "copy.json");
  EXPECT_EQ(copies, 1) << "one test copy for the group";
  auto cleanup = evac_at("b", {"plan", "cleanup", "shop-dr", "--follow"});
  ASSERT_EQ(cleanup.exit_code, 0) << cleanup.out << cleanup.err;
  copies = 0;
  for (const auto& e : fs::directory_iterator(copies_dir)) copies += fs::exists(e.path() / "copy.json");
  EXPECT_EQ(copies, 0) << "cleanup dropped the test copy";

  // A planned migration: final cycle, the old copy fenced by the adapter
  // (immutable files), the VMs live at site-b on the adapter's live copy.
  auto migrate = evac_at("b", {"plan", "migrate", "shop-dr", "--confirm", "shop-dr", "--follow"});
  ASSERT_EQ(migrate.exit_code, 0) << migrate.out << migrate.err;
  auto vms = evac_at("b", {"inventory", "vms", "-o", "json"});
  int live_on_copies = 0;
  for (const auto& vm : vms.json())
    for (const auto& d : vm["disks"])
      live_on_copies += d["path"].get<std::string>().find("/array-b/groups/shop/copies/live-") != std::string::npos;
  EXPECT_EQ(live_on_copies, 2) << vms.out;
  auto write_old = run_command({"qemu-io", "-f", "qcow2", "-c", "write 0 4k", (root_ / "a/images/db01.qcow2").string()});
  EXPECT_NE(write_old.exit_code == 0 && write_old.out.find("wrote") != std::string::npos, true)
      << "the old copy at site-a is fenced: " << write_old.out;
}

}  // namespace
}  // namespace evac::testing
