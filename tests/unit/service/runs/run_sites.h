// Two in-process sites that replicate and run recovery plans, as evacd
// wires them: site-a protects group "shop" (db01 with two disks, web01 with
// one, unless a test names others) to site-b; each
// site has its ReplicationService on a FakeReplicationAdapter, its
// PlanService and its RunService behind its router. Each fake delivers its
// cycles to the other site's receiving half, so the recovery site holds
// real PITs (qcow2 images in a temporary folder, made by qemu-img) that
// runs test and recover from; compute is FakeComputeProvider's.
//
// The runs' tests (runs/*_runs_test.cc) start runs through RunService's
// public API, wait for them to end, and check their steps and what the
// fakes recorded. Each names the step kinds its runs drive (the k*Kinds
// sets below, checked against the steps its run did);
// step_kinds_covered_test.cc checks that together they drive every kind.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "engine/step_kind.h"
#include "fakes/fake_replication_adapter.h"
#include "service/replication_service.h"
#include "service/run_service.h"
#include "unit/two_sites.h"

namespace evac::testing {

using engine::StepKind;

// ---- the step kinds each test's runs drive --------------------------------------

// A test with a host callout before db01's power-on, a check and a guest
// command after it; web01 after db01 (strict tiers).
inline const std::set<StepKind> kTestRunKinds = {
    StepKind::kReadiness,   StepKind::kCreateTestCopy, StepKind::kRegisterTestVm, StepKind::kBarrier,
    StepKind::kHostCommand, StepKind::kPowerOn,        StepKind::kWaitForGuest,   StepKind::kCheck,
    StepKind::kGuestCommand};
inline const std::set<StepKind> kCleanupRunKinds = {StepKind::kRemoveTestVm, StepKind::kDropTestCopies};
inline const std::set<StepKind> kPromptKinds = {StepKind::kPrompt};
// A planned migration.
inline const std::set<StepKind> kMigrateRunKinds = {
    StepKind::kSyncProtected, StepKind::kShutdownProtected, StepKind::kHandover,
    StepKind::kPromote,       StepKind::kTakeOwnership,     StepKind::kRecoverVm};
// A failover of a plan with IP rules.
inline const std::set<StepKind> kFailoverRunKinds = {StepKind::kShutdownProtected, StepKind::kPromote,
                                                     StepKind::kTakeOwnership, StepKind::kRecoverVm,
                                                     StepKind::kCustomizeIp};
inline const std::set<StepKind> kReprotectRunKinds = {StepKind::kFlattenDisks, StepKind::kReleaseReplicas,
                                                      StepKind::kReprotectPeer, StepKind::kProtectHere,
                                                      StepKind::kSyncReverse};

// ---- the sites ------------------------------------------------------------------

// What evacd adds to a TwoSitesTest site: replication and runs.
struct SiteRuns {
  std::unique_ptr<ReplicationService> replication;
  std::unique_ptr<RunService> runs;
};

class RunSitesTest : public TwoSitesTest {
 protected:
  static constexpr const char* kUrlA = "https://a:1";
  static constexpr const char* kUrlB = "https://b:1";
  static constexpr const char* kPinA = "sha256//pin-a";
  static constexpr const char* kPinB = "sha256//pin-b";

  void SetUp() override {
    ASSERT_TRUE(on_path("qemu-img")) << "the recovery site's PITs are qcow2 images qemu-img makes: install qemu-utils "
                                        "(scripts/install-deps.sh)";
    ASSERT_NO_FATAL_FAILURE(TwoSitesTest::SetUp());
    // Replica folders that exist: PITs, test copies and recovered disks
    // are real files under them.
    for (const char* pool : {"b-images", "b-fast", "a-images-back", "a-fast-back"})
      std::filesystem::create_directories(dir_ / pool);
    b_.provider->add_pool("b-images", (dir_ / "b-images").string());
    b_.provider->add_pool("b-fast", (dir_ / "b-fast").string());
    a_.provider->add_pool("a-images-back", (dir_ / "a-images-back").string());
    a_.provider->add_pool("a-fast-back", (dir_ / "a-fast-back").string());
    a_.provider->add_network("test-isolated-a", true);
    ASSERT_NO_FATAL_FAILURE(pair());
    map(a_, {{MappingKind::kCompute, "kvm-a", "kvm-b", ""},
             {MappingKind::kNetwork, "prod", "recovery-prod", "test-isolated"},
             {MappingKind::kStorage, "images", "b-images", ""},
             {MappingKind::kStorage, "fast", "b-fast", ""}});
    auto group = a_.service->create_group({"shop", shop_vms_, std::nullopt, 900, 24});
    ASSERT_TRUE(group.is_ok()) << group.status().to_string();
    ASSERT_NO_FATAL_FAILURE(start_services(a_, runs_a_, fake_a_, kUrlA, kPinA, b_));
    ASSERT_NO_FATAL_FAILURE(start_services(b_, runs_b_, fake_b_, kUrlB, kPinB, a_));
  }

  void TearDown() override {
    fake_a_.release();
    fake_b_.release();
    // Runs first, at both sites: their steps call the other site.
    runs_a_.runs.reset();
    runs_b_.runs.reset();
    stop_services(a_, runs_a_);
    stop_services(b_, runs_b_);
    TwoSitesTest::TearDown();
  }

  static bool contains(const std::string& haystack, const std::string& needle) {
    return haystack.find(needle) != std::string::npos;
  }
  static bool on_path(const std::string& program) {
    const char* path = std::getenv("PATH");
    std::string rest = path ? path : "";
    while (!rest.empty()) {
      const std::string dir = rest.substr(0, rest.find(':'));
      rest = rest.find(':') == std::string::npos ? "" : rest.substr(rest.find(':') + 1);
      if (!dir.empty() && std::filesystem::exists(std::filesystem::path(dir) / program)) return true;
    }
    return false;
  }

  struct Mapping {
    MappingKind kind;
    std::string source, target, test_network;
  };
  void map(TestSite& site, const std::vector<Mapping>& mappings) {
    for (const auto& m : mappings) {
      auto made = site.service->create_mapping({m.kind, std::nullopt, m.source, m.target, m.test_network});
      ASSERT_TRUE(made.is_ok()) << m.source << " -> " << m.target << ": " << made.status().to_string();
    }
  }
  // Mappings from site-b back to site-a: what a reprotect needs.
  void map_back() {
    map(b_, {{MappingKind::kCompute, "kvm-b", "kvm-a", ""},
             {MappingKind::kNetwork, "recovery-prod", "prod", "test-isolated-a"},
             {MappingKind::kStorage, "b-images", "a-images-back", ""},
             {MappingKind::kStorage, "b-fast", "a-fast-back", ""}});
  }

  // The one place a site's ReplicationService is made (its adapter wiring
  // is what changes when adapters come from a registry).
  std::unique_ptr<ReplicationService> make_replication(TestSite& site, FakeReplicationAdapter& fake) {
    fake.deliver_as_builtin();
    ReplicationOptions options;
    options.clock = [this] { return now_; };
    options.schedules = false;
    // A paired site's sync call comes back this soon with the cycle still
    // going (then it follows it): short, so a cycle held by the fake shows.
    options.wait_limit = std::chrono::milliseconds(100);
    return std::make_unique<ReplicationService>(*site.service, *site.transport,
                                                (dir_ / (site.service->identity().name + "-state")).string(),
                                                fake.registry(), std::move(options));
  }

  // Replication, plans and runs at `site`, behind a new router that `peer`
  // reaches it through (as an evacd starting).
  void start_services(TestSite& site, SiteRuns& r, FakeReplicationAdapter& fake, const std::string& url,
                      const std::string& pin, TestSite& peer) {
    r.replication = make_replication(site, fake);
    site.router.reset();  // before the PlanService it holds
    site.plans = std::make_unique<PlanService>(*site.service, r.replication.get());
    // Retries 10 ms apart, so a step that is retried does not hold a test.
    r.runs = std::make_unique<RunService>(*site.service, *site.plans, r.replication.get(),
                                          engine::EngineOptions{8, 3, std::chrono::milliseconds(10), 4});
    site.router = std::make_unique<ApiRouter>(RouteServices{*site.service, *site.plans, r.replication.get(), r.runs.get()});
    peer.transport->connect(url, pin, site.router.get());
  }
  void stop_services(TestSite& site, SiteRuns& r) {
    site.router.reset();
    r.runs.reset();
    if (r.replication) r.replication->shutdown();
    site.plans.reset();
    r.replication.reset();
  }
  // site-a's evacd stopping and starting again: its store stays, what it
  // held in memory (the cycles it was asked for) is gone.
  void restart_site_a() {
    stop_services(a_, runs_a_);
    start_services(a_, runs_a_, fake_a_, kUrlA, kPinA, b_);
  }

  // A cycle of group "shop" at site-a, delivered to site-b: its PIT there.
  PointInTime sync_shop() {
    auto pit = runs_a_.replication->sync_group("shop");
    EXPECT_TRUE(pit.is_ok()) << pit.status().to_string();
    return pit.is_ok() ? *pit : PointInTime{};
  }

  void create_plan(TestSite& site, const nlohmann::json& plan) {
    auto made = site.plans->create_plan(plan);
    ASSERT_TRUE(made.is_ok()) << made.status().to_string();
  }

  // Starts a run of `plan` at `site`; the confirmation is given.
  std::string start(SiteRuns& r, const std::string& plan, const std::string& operation, const std::string& pit = "") {
    auto run = r.runs->start(RunRequest{plan, operation, "admin", plan, pit});
    EXPECT_TRUE(run.is_ok()) << operation << " of " << plan << ": " << run.status().to_string();
    return run.is_ok() ? run->id : "";
  }
  // Waits (bounded: a broken run fails the test, it does not hang it)
  // until the run stops running: succeeded, failed, cancelled, or waiting
  // at a prompt.
  RunRow wait_for(SiteRuns& r, const std::string& id) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    for (;;) {
      auto run = r.runs->get_run(id);
      EXPECT_TRUE(run.is_ok()) << run.status().to_string();
      if (!run.is_ok()) return RunRow{};
      if (run->state != "running") return *run;
      if (std::chrono::steady_clock::now() > deadline) {
        ADD_FAILURE() << "run " << id << " still running";
        return *run;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }
  std::vector<engine::Step> steps_of(SiteRuns& r, const std::string& id) {
    auto steps = r.runs->steps(id);
    EXPECT_TRUE(steps.is_ok()) << steps.status().to_string();
    return steps.is_ok() ? *steps : std::vector<engine::Step>{};
  }
  // The step of that name (a failure, and an empty step, if none).
  static engine::Step step_named(const std::vector<engine::Step>& steps, const std::string& name) {
    for (const auto& s : steps)
      if (s.spec.name == name) return s;
    ADD_FAILURE() << "no step '" << name << "'";
    return engine::Step{};
  }
  static std::string state_of(const std::vector<engine::Step>& steps, const std::string& name) {
    return std::string(engine::step_state_name(step_named(steps, name).state));
  }
  // Every step of the run succeeded; the ones that did not are named.
  static void expect_all_succeeded(const std::vector<engine::Step>& steps) {
    for (const auto& s : steps) EXPECT_EQ(engine::step_state_name(s.state), "succeeded") << s.spec.name << ": " << s.error;
  }
  // Every kind of `kinds` is the kind of a step of the run that ran to an
  // end (succeeded, or unreached for a best-effort step).
  static void expect_ran_kinds(const std::vector<engine::Step>& steps, const std::set<StepKind>& kinds) {
    std::set<StepKind> ran;
    for (const auto& s : steps)
      if (s.state == engine::StepState::kSucceeded || s.state == engine::StepState::kUnreached) ran.insert(s.spec.kind);
    for (StepKind k : kinds) EXPECT_TRUE(ran.count(k)) << "no step of kind " << engine::step_kind_name(k) << " ran";
  }
  // A run that must succeed whole: started, waited for, every step
  // succeeded, and steps of each of `kinds` among them.
  struct FinishedRun {
    std::string id;
    std::vector<engine::Step> steps;
  };
  FinishedRun run_ok(SiteRuns& r, const std::string& plan, const std::string& operation,
                     const std::set<StepKind>& kinds = {}) {
    FinishedRun out{start(r, plan, operation), {}};
    RunRow run = wait_for(r, out.id);
    EXPECT_EQ(run.state, "succeeded") << operation << " of " << plan << ": " << run.error;
    out.steps = steps_of(r, out.id);
    expect_all_succeeded(out.steps);
    expect_ran_kinds(out.steps, kinds);
    return out;
  }
  // The names of the steps, in order, that are in `state`.
  static std::vector<std::string> names_in(const std::vector<engine::Step>& steps, engine::StepState state) {
    std::vector<std::string> out;
    for (const auto& s : steps)
      if (s.state == state) out.push_back(s.spec.name);
    return out;
  }

  std::vector<EventRecord> events(TestSite& site, const std::string& kind) {
    std::vector<EventRecord> out;
    auto all = site.store->list_events(std::nullopt, 1000);
    EXPECT_TRUE(all.is_ok());
    if (all.is_ok())
      for (auto& e : *all)
        if (e.kind == kind) out.push_back(e);
    return out;
  }
  // The placeholder at site-b of site-a's VM `name`.
  std::string placeholder_uuid(const std::string& name) {
    auto vm = b_.provider->get_vm(name);
    EXPECT_TRUE(vm.is_ok()) << vm.status().to_string();
    return vm.is_ok() ? vm->uuid : "";
  }

  // Group "shop"'s VMs. Each of their disks costs every cycle a few
  // qemu-img runs: tests that need no second VM or disk protect web01 alone.
  std::vector<std::string> shop_vms_ = {"db01", "web01"};
  FakeReplicationAdapter fake_a_{[this] { return now_; }};
  FakeReplicationAdapter fake_b_{[this] { return now_; }};
  SiteRuns runs_a_, runs_b_;
};

}  // namespace evac::testing
