// The conformance kit on real backends: the built-in replicator and the
// fake copy adapter (a real program over real files) pass it; broken
// variants of the adapter fail it, with the failure named. Also the
// retention an external adapter's cycles apply.
#include "replication/conformance/conformance_kit.h"

#include <filesystem>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "harness.h"
#include "replication/external/external_adapter.h"

namespace evac::conformance {
namespace {

using ::testing::HasSubstr;
namespace fs = std::filesystem;

class ConformanceKitTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() / ("evac-kit-" + std::to_string(::getpid()) + "-" +
                                         ::testing::UnitTest::GetInstance()->current_test_info()->name());
    evac::testing::remove_tree(root_);
    fs::create_directories(root_);
  }
  void TearDown() override { evac::testing::remove_tree(root_); }

  ReplicationAdapterConfig fake(const std::string& mine, const std::string& peer, const std::string& broken = "",
                                const std::string& broken_op = "") {
    ReplicationAdapterConfig a;
    a.kind = "fake-copy";
    a.command = {std::string(EVAC_SOURCE_DIR) + "/tests/adapters/fake_copy_adapter.py"};
    a.timeout = std::chrono::seconds(60);
    a.timeouts["ship"] = std::chrono::seconds(3);
    a.settings = {{"store", (root_ / ("array-" + mine)).string()}, {"peer_store", (root_ / ("array-" + peer)).string()}};
    if (!broken.empty()) {
      a.settings["break"] = broken;
      a.settings["break_ops"] = nlohmann::json::array({broken_op});
    }
    return a;
  }
  KitConfig kit(const std::string& kind) {
    KitConfig k;
    k.kind = kind;
    k.work_dir = (root_ / "work").string();
    for (auto [site, name] : {std::pair{&k.protected_site, "kit-a"}, std::pair{&k.recovery_site, "kit-b"}}) {
      site->name = name;
      site->state_dir = (root_ / name / "state").string();
      site->storage = (root_ / name / "storage").string();
    }
    k.disks = {KitDisk{"vda", DiskSource{}, "raw", 8u << 20}, KitDisk{"vdb", DiskSource{}, "qcow2", 8u << 20}};
    return k;
  }
  static std::string failures(const KitReport& r) {
    std::string out;
    for (const auto& c : r.checks)
      if (c.outcome != Check::Outcome::kPassed) out += std::string(outcome_name(c.outcome)) + " " + c.operation + ": " + c.failure + "\n";
    return out;
  }
  static const Check* failed_check(const KitReport& r) {
    for (const auto& c : r.checks)
      if (c.outcome == Check::Outcome::kFailed) return &c;
    return nullptr;
  }
  fs::path root_;
};

const std::vector<std::string> kSequence = {"setup", "discover", "sync", "list_pits", "create_test_copy", "drop_test_copy",
                                            "sync", "verify", "prepare_failover", "failover", "reverse", "release"};

TEST_F(ConformanceKitTest, TheBuiltinReplicatorPasses) {
  KitReport r = run_kit(kit("builtin"));
  EXPECT_TRUE(r.passed()) << failures(r);
  std::vector<std::string> ran;
  for (const auto& c : r.checks) {
    ran.push_back(c.operation);
    EXPECT_EQ(c.outcome, Check::Outcome::kPassed) << c.operation << ": " << c.failure;
  }
  EXPECT_EQ(ran, kSequence);
}

TEST_F(ConformanceKitTest, TheFakeCopyAdapterPasses) {
  KitConfig k = kit("fake-copy");
  k.protected_site.adapters = {fake("a", "b")};
  k.recovery_site.adapters = {fake("b", "a")};
  KitReport r = run_kit(k);
  EXPECT_TRUE(r.passed()) << failures(r);
  EXPECT_EQ(r.checks.size(), kSequence.size());
}

struct Broken {
  const char* mode;
  const char* op;
  const char* failed_check;
  const char* says;
};

void PrintTo(const Broken& b, std::ostream* os) { *os << b.mode << " " << b.op; }

class BrokenAdapterTest : public ConformanceKitTest, public ::testing::WithParamInterface<Broken> {};

TEST_P(BrokenAdapterTest, FailsTheKitWithTheFailureNamed) {
  const Broken b = GetParam();
  KitConfig k = kit("fake-copy");
  k.protected_site.adapters = {fake("a", "b", b.mode, b.op)};
  k.recovery_site.adapters = {fake("b", "a", b.mode, b.op)};
  KitReport r = run_kit(k);
  EXPECT_FALSE(r.passed());
  const Check* failed = failed_check(r);
  ASSERT_NE(failed, nullptr);
  EXPECT_EQ(failed->operation, b.failed_check);
  EXPECT_THAT(failed->failure, HasSubstr(b.says));
}

INSTANTIATE_TEST_SUITE_P(
    Modes, BrokenAdapterTest,
    ::testing::Values(Broken{"hang", "ship", "sync", "replication adapter 'fake-copy' (ship) did not finish within 3 s"},
                      Broken{"lie", "ship", "sync", "differs from what it should hold: Content mismatch"},
                      Broken{"malformed", "list_pits", "list_pits", "(list_pits): its answer is malformed"},
                      Broken{"wrong_shape", "list_pits", "list_pits", "field 'id' of a point in time must be a string"},
                      Broken{"crash", "snapshot", "sync", "(snapshot) was killed by signal 11"},
                      Broken{"exit", "discover", "discover", "(discover) exited with 3; it said: fake-copy: cannot reach"},
                      Broken{"silent", "create_test_copy", "create_test_copy", "printed no answer"}),
    [](const ::testing::TestParamInfo<Broken>& info) { return std::string(info.param.mode); });

// Cycles through an external adapter keep what the group's retention
// says, and never a PIT a copy reads.
TEST_F(ConformanceKitTest, AnAdaptersCyclesExpireWhatRetentionDrops) {
  auto site = [&](const std::string& name) {
    ReplicationSiteContext s;
    s.site_name = name;
    s.state_dir = (root_ / name).string();
    return s;
  };
  auto a = external::ExternalAdapter::start(fake("a", "b"), site("kit-a"));
  auto b = external::ExternalAdapter::start(fake("b", "a"), site("kit-b"));
  ASSERT_TRUE(a.is_ok() && b.is_ok()) << a.status().to_string() << b.status().to_string();
  fs::create_directories(root_ / "disks");
  const std::string disk = (root_ / "disks/vda.raw").string();
  ASSERT_EQ(evac::testing::run_command({"qemu-img", "create", "-q", "-f", "raw", disk, "1M"}).exit_code, 0);
  ReplicationGroupSpec spec;
  spec.group = "g1";
  spec.protected_site = "kit-a";
  spec.recovery_site = "kit-b";
  spec.retention.keep_last = 2;
  VmInfo vm;
  vm.name = "vm1";
  vm.uuid = "u1";
  vm.state = PowerState::kShutOff;
  DiskInfo d;
  d.target = "vda";
  d.path = disk;
  d.format = "raw";
  d.source.path = disk;
  vm.disks.push_back(d);
  spec.vms.push_back(vm);
  InProcessPeerLink link("kit-b", (*b)->peer_routes());
  std::vector<std::string> made;
  for (int i = 0; i < 4; ++i) {
    auto pit = (*a)->sync_now(spec, link, nullptr);
    ASSERT_TRUE(pit.is_ok()) << pit.status().to_string();
    EXPECT_TRUE(pit->warnings.empty()) << pit->warnings.front();
    made.push_back(pit->id);
    if (i == 0) ASSERT_TRUE((*b)->create_test_copy("g1", pit->id, "run-1").is_ok());
  }
  auto pits = (*b)->list_pits("g1");
  ASSERT_TRUE(pits.is_ok()) << pits.status().to_string();
  std::vector<std::string> kept;
  for (const auto& p : *pits) kept.push_back(p.id);
  EXPECT_EQ(kept, (std::vector<std::string>{made[0], made[2], made[3]}))
      << "the newest two, and the first, which a test copy reads";
}

}  // namespace
}  // namespace evac::conformance
