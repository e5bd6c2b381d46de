// Replication operations at the protected site, on the fake adapter and
// simulated time: cycles on their thread, progress, lag and compliance kept
// locally, alarms, schedules, rate limits, metrics and their API.
#include <thread>

#include "fakes/fake_replication_adapter.h"
#include "replication/builtin/builtin_protocol.h"
#include "replication/builtin/builtin_registration.h"
#include "unit/two_sites.h"

namespace evac::testing {
namespace {

using nlohmann::json;

// The engines evacd has: the built-in replicator.
ReplicationRegistry builtin_engines() {
  ReplicationRegistry engines;
  builtin::register_builtin_replicator(engines);
  return engines;
}

bool contains(const std::string& haystack, const std::string& needle) { return haystack.find(needle) != std::string::npos; }

class ReplicationOpsTest : public TwoSitesTest {
 protected:
  void SetUp() override {
    TwoSitesTest::SetUp();
    pair();
    map_all();
    ReplicationOptions options;
        options.clock = [this] { return now_; };
    options.steady_clock = [this] { return std::chrono::steady_clock::time_point(std::chrono::steady_clock::duration(steady_.load())); };
    options.schedules = schedules_;
    make_replication(std::move(options));
    GroupCreateRequest req;
    req.name = "g1";
    req.vms = {"web01"};
    req.rpo_seconds = 600;
    auto g = a_.service->create_group(req);
    ASSERT_TRUE(g.is_ok()) << g.status().to_string();
  }
  void TearDown() override {
    fake_.release();
    if (replication_) replication_->shutdown();
    a_.router.reset();
    replication_.reset();
    b_.router.reset();
    replication_b_.reset();
    TwoSitesTest::TearDown();
  }
  void make_replication(ReplicationOptions options) {
    replication_ = std::make_unique<ReplicationService>(*a_.service, *a_.transport, (dir_ / "a-state").string(),
                                                        fake_.registry(), std::move(options));
    a_.router.reset();  // before the PlanService it holds
    a_.plans = std::make_unique<PlanService>(*a_.service, replication_.get());
    a_.router = std::make_unique<ApiRouter>(RouteServices{*a_.service, *a_.plans, replication_.get()});
    if (!replication_b_) {
      // The recovery site holds what the fake engine made: the PITs a cycle
      // counts are the ones it lists there.
      replication_b_ = std::make_unique<ReplicationService>(*b_.service, *b_.transport, (dir_ / "b-state").string(),
                                                            fake_.registry());
      b_.router.reset();
      b_.plans = std::make_unique<PlanService>(*b_.service, replication_b_.get());
      b_.router = std::make_unique<ApiRouter>(RouteServices{*b_.service, *b_.plans, replication_b_.get()});
      a_.transport->connect("https://b:1", "sha256//pin-b", b_.router.get());
    }
  }
  // Replication again, without schedules, holding an API call that waits
  // for a cycle at most `limit`.
  void restart_with_wait_limit(std::chrono::milliseconds limit) {
    replication_->shutdown();
    a_.router.reset();
    ReplicationOptions options;
        options.clock = [this] { return now_; };
    options.schedules = false;
    options.wait_limit = limit;
    make_replication(std::move(options));
  }
  json state(const std::string& group = "g1") { return replication_->replication_state(*a_.service->get_group(group)); }
  std::vector<EventRecord> events(const std::string& kind) {
    std::vector<EventRecord> out;
    auto all = a_.store->list_events(std::nullopt, 1000);
    for (auto& e : *all)
      if (e.kind == kind) out.push_back(e);
    return out;
  }
  void advance_steady(std::chrono::seconds s) { steady_ += std::chrono::duration_cast<std::chrono::steady_clock::duration>(s).count(); }

  bool schedules_ = true;
  std::atomic<std::chrono::steady_clock::rep> steady_{0};
  FakeReplicationAdapter fake_{[this] { return now_; }};
  std::unique_ptr<ReplicationService> replication_;
  std::unique_ptr<ReplicationService> replication_b_;  // site-b, the recovery site, on the same fake engine
};

// ---- cycles and what the protected site records --------------------------------

TEST_F(ReplicationOpsTest, SyncMakesAPitAndRecordsTheCycleLocally) {
  now_ += 100;
  fake_.set_bytes_sent(12345);
  auto pit = replication_->sync_group("g1");
  ASSERT_TRUE(pit.is_ok()) << pit.status().to_string();
  EXPECT_EQ(pit->created_at, now_);
  EXPECT_EQ(fake_.synced_groups(), std::vector<std::string>{"g1"});
  now_ += 30;
  json s = state();
  EXPECT_EQ(s["lag_seconds"], 30);
  EXPECT_EQ(s["lag_since"], "newest_pit");
  EXPECT_EQ(s["rpo_met"], true);
  EXPECT_EQ(s["last_success"]["pit_id"], pit->id);
  EXPECT_EQ(s["last_success"]["bytes_sent"], 12345);
  EXPECT_EQ(s["cycles"]["succeeded"], 1);
  EXPECT_EQ(s["cycles"]["failed"], 0);
  EXPECT_EQ(s["bytes_sent_total"], 12345);
  EXPECT_EQ(s["known_pits"], 1);
  EXPECT_EQ(s["last_cycle"]["ok"], true);
  EXPECT_EQ(s["sync"]["running"], false);
}

// Change tracking is trusted between periodic full reads: the first cycle,
// then one whenever the last full read is older than full_read_every.
TEST_F(ReplicationOpsTest, ACycleReadsEveryBlockWhenTheLastFullReadIsOld) {
  now_ += 100;
  auto first = replication_->sync_group("g1");
  ASSERT_TRUE(first.is_ok()) << first.status().to_string();
  now_ += 600;
  ASSERT_TRUE(replication_->sync_group("g1").is_ok());
  EXPECT_EQ(fake_.full_reads(), (std::vector<bool>{true, false}));
  json s = state();
  EXPECT_EQ(s["last_full_read_at"], first->created_at);
  EXPECT_EQ(s["full_read_due_at"], first->created_at + 7 * 24 * 3600);

  now_ = first->created_at + 7 * 24 * 3600;
  auto due = replication_->sync_group("g1");
  ASSERT_TRUE(due.is_ok());
  EXPECT_EQ(fake_.full_reads(), (std::vector<bool>{true, false, true}));
  EXPECT_EQ(state()["last_full_read_at"], due->created_at);

  // Off: nothing beyond what the engine reads whole by itself.
  replication_->shutdown();
  a_.router.reset();
  ReplicationOptions options;
    options.clock = [this] { return now_; };
  options.full_read_every = std::chrono::seconds(0);
  make_replication(std::move(options));
  now_ += 30 * 24 * 3600;
  ASSERT_TRUE(replication_->sync_group("g1").is_ok());
  EXPECT_FALSE(fake_.full_reads().back());
  EXPECT_TRUE(state()["full_read_due_at"].is_null());
  EXPECT_EQ(state()["last_full_read_at"], due->created_at) << "kept from before";
}

TEST_F(ReplicationOpsTest, FailedCycleIsRecordedAndRaisesAnEvent) {
  fake_.fail_with(unavailable("cannot reach https://b:1 (fake network)"));
  auto pit = replication_->sync_group("g1");
  ASSERT_FALSE(pit.is_ok());
  EXPECT_EQ(pit.status().code(), StatusCode::kUnavailable);
  json s = state();
  EXPECT_EQ(s["consecutive_failures"], 1);
  EXPECT_EQ(s["cycles"]["failed"], 1);
  EXPECT_TRUE(contains(s["last_failure"]["error"], "cannot reach"));
  EXPECT_EQ(s["last_cycle"]["ok"], false);
  EXPECT_EQ(s["last_cycle"]["error"]["code"], "unavailable");
  auto failed = events("cycle_failed");
  ASSERT_EQ(failed.size(), 1u);
  EXPECT_EQ(failed[0].group, "g1");
  EXPECT_EQ(failed[0].severity, "error");

  fake_.fail_with(std::nullopt);
  ASSERT_TRUE(replication_->sync_group("g1").is_ok());
  EXPECT_EQ(state()["consecutive_failures"], 0);  // a success ends the streak
  EXPECT_EQ(state()["cycles"]["failed"], 1);
}

TEST_F(ReplicationOpsTest, BadRequestsStartNothing) {
  auto unknown = replication_->request_sync("ghost");
  EXPECT_EQ(unknown.status().code(), StatusCode::kNotFound);
  EXPECT_EQ(fake_.sync_calls(), 0);
  auto r = a_.call("POST", "/api/v1/groups/ghost/sync");
  EXPECT_EQ(r.status, 404);
  EXPECT_TRUE(r.body.contains("hint"));
  EXPECT_EQ(a_.call("POST", "/api/v1/groups/g1/sync?wait=maybe").status, 400);
  EXPECT_EQ(fake_.sync_calls(), 0);
}

TEST_F(ReplicationOpsTest, ManualRequestDuringACycleRunsOneMoreAfterIt) {
  fake_.block();
  auto first = replication_->request_sync("g1", SyncTrigger::kScheduled);
  ASSERT_TRUE(first.is_ok());
  ASSERT_TRUE(fake_.wait_until_blocked(1));
  // The running cycle may have read the disks before the caller's writes:
  // manual requests get a cycle of their own, all of them the same one.
  auto second = replication_->request_sync("g1");
  auto third = replication_->request_sync("g1");
  ASSERT_TRUE(second.is_ok() && third.is_ok());
  EXPECT_EQ(*second, *first + 1);
  EXPECT_EQ(*third, *second);
  EXPECT_EQ(state()["sync"]["follow_up_queued"], true);
  // A scheduled start while one runs is refused: never two cycles at once.
  EXPECT_EQ(replication_->request_sync("g1", SyncTrigger::kScheduled).status().code(), StatusCode::kFailedPrecondition);
  now_ += 5;  // the follow-up starts after the request
  fake_.release();
  auto pit = replication_->wait_cycle("g1", *second);
  ASSERT_TRUE(pit.is_ok()) << pit.status().to_string();
  EXPECT_EQ(pit->created_at, now_);
  EXPECT_EQ(fake_.sync_calls(), 2);
  auto earlier = replication_->wait_cycle("g1", *first);
  ASSERT_TRUE(earlier.is_ok());
  EXPECT_NE(earlier->id, pit->id);
}

// Reprotect's first cycle back goes through the adapter's reverse(), the
// engine's own way to resync from what the former protected site holds;
// asked while a cycle runs, it is the follow-up, not the running one.
TEST_F(ReplicationOpsTest, AReverseCycleGoesThroughTheAdaptersReverse) {
  auto pit = replication_->reverse_group("g1");
  ASSERT_TRUE(pit.is_ok()) << pit.status().to_string();
  EXPECT_EQ(fake_.reverse_calls(), 1);
  ASSERT_TRUE(replication_->sync_group("g1").is_ok());
  EXPECT_EQ(fake_.reverse_calls(), 1) << "a plain sync is no reverse cycle";

  fake_.block();
  auto running = replication_->request_sync("g1", SyncTrigger::kScheduled);
  ASSERT_TRUE(running.is_ok());
  ASSERT_TRUE(fake_.wait_until_blocked(3));
  auto reverse = replication_->request_sync("g1", SyncTrigger::kReverse);
  ASSERT_TRUE(reverse.is_ok());
  EXPECT_EQ(*reverse, *running + 1);
  EXPECT_EQ(fake_.reverse_calls(), 1) << "the running cycle stays what it was";
  fake_.release();
  ASSERT_TRUE(replication_->wait_cycle("g1", *reverse).is_ok());
  EXPECT_EQ(fake_.reverse_calls(), 2);
  EXPECT_EQ(fake_.sync_calls(), 4);
}

// The storage half of a fence goes through the adapter: the group's disks
// as this site has them; a failure there is reported and fences all the same.
TEST_F(ReplicationOpsTest, AFenceHasTheAdapterMakeTheGroupsDisksReadOnly) {
  auto group = a_.service->get_group("g1");
  ASSERT_TRUE(group.is_ok());
  ASSERT_TRUE(a_.service->fence(*group, OwnershipRecord{"g1", "site-b", 2, now_, "run-1"}).is_ok());
  EXPECT_EQ(fake_.made_read_only(), std::vector<std::string>{"g1:web01:/a/images/web01.qcow2"});
  auto fenced = events("fenced");
  ASSERT_EQ(fenced.size(), 1u);
  EXPECT_TRUE(contains(fenced[0].message, "; its disks are read-only")) << fenced[0].message;

  fake_.fail_storage_with(unsupported("no immutable attribute on this filesystem", "keep disks on ext4"));
  ASSERT_TRUE(a_.service->fence(*group, OwnershipRecord{"g1", "site-b", 3, now_, "run-2"}).is_ok());
  fenced = events("fenced");
  ASSERT_EQ(fenced.size(), 2u);
  const std::string& message = fenced[0].message;  // newest first
  EXPECT_TRUE(contains(message, "epoch 3")) << message;
  EXPECT_TRUE(contains(message, "could not be made read-only (no immutable attribute on this filesystem: keep disks on ext4)"))
      << message;
  EXPECT_TRUE(contains(message, "a VM started here by hand would write its stale copy")) << message;
  EXPECT_FALSE(a_.service->check_not_fenced(*group).is_ok()) << "fenced all the same";

  // Recovered VMs that left their old disks: those, and only those, are released.
  VmInfo old = make_vm("web01", "u-web01", {{"vda", "/a/images/web01.qcow2", "qcow2", "virtio", "disk", "images"}}, {});
  ASSERT_TRUE(replication_->release_old_disks("g1", "site-b", {old}).is_ok());
  EXPECT_EQ(fake_.released(), std::vector<std::string>{"g1:web01:/a/images/web01.qcow2"});
}

TEST_F(ReplicationOpsTest, ProgressOfARunningCycle) {
  fake_.report({SyncProgress{1000, 100, 10}, SyncProgress{1000, 250, 100}});
  fake_.block();
  auto r = a_.call("POST", "/api/v1/groups/g1/sync");
  ASSERT_EQ(r.status, 202) << r.body.dump();
  EXPECT_EQ(r.body["cycle"], 1);
  ASSERT_TRUE(fake_.wait_until_blocked());
  advance_steady(std::chrono::seconds(10));
  auto got = a_.call("GET", "/api/v1/groups/g1/replication");
  ASSERT_EQ(got.status, 200);
  const json& sync = got.body["sync"];
  EXPECT_EQ(sync["running"], true);
  EXPECT_EQ(sync["phase"], "replicating");
  EXPECT_EQ(sync["trigger"], "manual");
  EXPECT_EQ(sync["bytes_total"], 1000);
  EXPECT_EQ(sync["bytes_scanned"], 250);
  EXPECT_EQ(sync["bytes_sent"], 100);
  EXPECT_DOUBLE_EQ(sync["scan_rate_bytes"].get<double>(), 25.0);
  EXPECT_DOUBLE_EQ(sync["send_rate_bytes"].get<double>(), 10.0);
  EXPECT_DOUBLE_EQ(sync["eta_seconds"].get<double>(), 30.0);
  EXPECT_EQ(sync["started_at"], now_);
  auto metrics = a_.call("GET", "/metrics");
  std::string text(metrics.body.get_binary().begin(), metrics.body.get_binary().end());
  EXPECT_TRUE(contains(text, "evac_group_sync_in_progress{group=\"g1\",recovery_site=\"site-b\"} 1")) << text;
  fake_.release();
  ASSERT_TRUE(replication_->wait_cycle("g1", 1).is_ok());
  EXPECT_EQ(state()["sync"]["running"], false);
}

// A reprotect's resync step shows its reverse cycle's progress in the run;
// any other step, or another cycle of the group, shows none.
TEST_F(ReplicationOpsTest, AResyncStepShowsItsReverseCyclesProgress) {
  engine::Step resync;
  resync.spec.kind = engine::StepKind::kSyncReverse;
  resync.spec.params = {{"group", "g1"}};
  resync.state = engine::StepState::kRunning;
  EXPECT_TRUE(step_progress(resync, replication_.get()).is_null()) << "no cycle running";

  fake_.report({SyncProgress{1000, 400, 40}});
  fake_.block();
  auto manual = replication_->request_sync("g1", SyncTrigger::kManual);
  ASSERT_TRUE(manual.is_ok());
  ASSERT_TRUE(fake_.wait_until_blocked(1));
  EXPECT_TRUE(step_progress(resync, replication_.get()).is_null()) << "a manual cycle is not the resync";
  fake_.release();
  ASSERT_TRUE(replication_->wait_cycle("g1", *manual).is_ok());
  fake_.block();
  auto reverse = replication_->request_sync("g1", SyncTrigger::kReverse);
  ASSERT_TRUE(reverse.is_ok());
  ASSERT_TRUE(fake_.wait_until_blocked(2));
  advance_steady(std::chrono::seconds(4));
  const json progress = step_progress(resync, replication_.get());
  ASSERT_TRUE(progress.is_object()) << progress.dump();
  EXPECT_EQ(progress["cycle"], *reverse);
  EXPECT_EQ(progress["trigger"], "reverse");
  EXPECT_EQ(progress["bytes_scanned"], 400);
  EXPECT_EQ(progress["bytes_total"], 1000);

  engine::Step other = resync;
  other.spec.kind = engine::StepKind::kSyncProtected;
  EXPECT_TRUE(step_progress(other, replication_.get()).is_null());
  engine::Step ended = resync;
  ended.state = engine::StepState::kSucceeded;
  EXPECT_TRUE(step_progress(ended, replication_.get()).is_null());
  EXPECT_TRUE(step_progress(resync, nullptr).is_null()) << "a site that does not replicate";
  fake_.release();
  ASSERT_TRUE(replication_->wait_cycle("g1", *reverse).is_ok());
  EXPECT_TRUE(step_progress(resync, replication_.get()).is_null()) << "the cycle ended";
}

// A migration's "Synchronize storage" follows the protected site's cycle in
// bounded waits: each call comes back when the cycle ended or the wait did,
// and following a cycle never starts another.
TEST_F(ReplicationOpsTest, TheRecoverySiteFollowsALongCycleInBoundedWaits) {
  b_.transport->connect("https://a:1", "sha256//pin-a", a_.router.get());  // a's router with replication
  const auto answer_within = std::chrono::seconds(10);
  fake_.block();
  auto started = b_.service->peer_client("site-a").sync_group("g1", json{{"wait_ms", 20}}, answer_within);
  ASSERT_TRUE(started.is_ok()) << started.status().to_string();
  EXPECT_EQ((*started)["done"], false);
  ASSERT_EQ((*started)["cycle"], 1);
  ASSERT_TRUE(fake_.wait_until_blocked());
  auto still = b_.service->peer_client("site-a").sync_group("g1", json{{"cycle", 1}, {"wait_ms", 20}}, answer_within);
  ASSERT_TRUE(still.is_ok()) << still.status().to_string();
  EXPECT_EQ((*still)["done"], false);
  EXPECT_EQ(fake_.sync_calls(), 1);
  // A cycle the site never gave (as after its restart) is named, not waited for.
  auto unknown = b_.service->peer_client("site-a").sync_group("g1", json{{"cycle", 7}, {"wait_ms", 20}}, answer_within);
  EXPECT_EQ(unknown.status().code(), StatusCode::kNotFound);
  EXPECT_EQ(b_.service->peer_client("site-a").sync_group("g1", json{{"wait_ms", "soon"}}, answer_within).status().code(),
            StatusCode::kInvalidArgument);
  fake_.release();
  auto ended = b_.service->peer_client("site-a").sync_group("g1", json{{"cycle", 1}, {"wait_ms", 10'000}}, answer_within);
  ASSERT_TRUE(ended.is_ok()) << ended.status().to_string();
  EXPECT_EQ((*ended)["done"], true);
  EXPECT_EQ((*ended)["cycle"], 1);
  EXPECT_FALSE((*ended)["id"].get<std::string>().empty());
  EXPECT_EQ(fake_.sync_calls(), 1);
}

// A sync request is read strictly: a key the recovery site never sends, a
// negative wait, a cycle that is no number are refused, and start nothing.
TEST_F(ReplicationOpsTest, APeerSyncRequestIsReadStrictly) {
  b_.transport->connect("https://a:1", "sha256//pin-a", a_.router.get());
  for (const json& body : {json{{"wait_ms", 20}, {"wait", 20}}, json{{"cycle", -1}}, json{{"cycle", "1"}},
                           json{{"cycle", std::uint64_t{1} << 63}}, json{{"wait_ms", -5}}, json{{"wait_ms", 1.5}},
                           json::array()}) {
    auto r = b_.service->peer_client("site-a").sync_group("g1", body, std::chrono::seconds(10));
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << body.dump() << ": " << r.status().to_string();
  }
  auto unknown = b_.service->peer_client("site-a").sync_group("g1", json{{"wait", 20}}, std::chrono::seconds(10));
  EXPECT_TRUE(contains(unknown.status().message(), "unknown field 'wait' in a sync request")) << unknown.status().to_string();
  EXPECT_TRUE(contains(unknown.status().hint(), "cycle, wait_ms")) << unknown.status().hint();
  EXPECT_EQ(fake_.sync_calls(), 0) << "no cycle started";
}

// A paired site's call holds one of the API server's threads while it
// waits: never longer than the limit, even when it names no wait at all.
TEST_F(ReplicationOpsTest, APeerCallFollowingACycleIsHeldNoLongerThanTheLimit) {
  restart_with_wait_limit(std::chrono::milliseconds(50));
  b_.transport->connect("https://a:1", "sha256//pin-a", a_.router.get());
  fake_.report({SyncProgress{1000, 300, 30}});
  fake_.block();
  auto unbounded = b_.service->peer_client("site-a").sync_group("g1", json::object(), std::chrono::seconds(10));
  ASSERT_TRUE(unbounded.is_ok()) << unbounded.status().to_string();
  EXPECT_EQ((*unbounded)["done"], false);
  ASSERT_EQ((*unbounded)["cycle"], 1);
  ASSERT_TRUE(fake_.wait_until_blocked());
  auto longer = b_.service->peer_client("site-a").sync_group("g1", json{{"cycle", 1}, {"wait_ms", 3'600'000}},
                                             std::chrono::seconds(10));
  ASSERT_TRUE(longer.is_ok()) << longer.status().to_string();
  EXPECT_EQ((*longer)["done"], false);
  // Each answer says how far the cycle has got, for the recovery site's
  // "Synchronize storage" step to show.
  EXPECT_EQ((*longer)["progress"]["cycle"], 1) << longer->dump();
  EXPECT_EQ((*longer)["progress"]["bytes_scanned"], 300);
  EXPECT_EQ((*longer)["progress"]["bytes_total"], 1000);
  fake_.release();
  // Once the cycle ends, a call that names no wait gets its PIT.
  json ended = json::object();
  for (int i = 0; i < 100 && !ended.value("done", false); ++i) {
    auto r = b_.service->peer_client("site-a").sync_group("g1", json{{"cycle", 1}}, std::chrono::seconds(10));
    ASSERT_TRUE(r.is_ok()) << r.status().to_string();
    ended = *r;
  }
  EXPECT_EQ(ended["done"], true);
  EXPECT_FALSE(ended["id"].get<std::string>().empty());
  EXPECT_EQ(fake_.sync_calls(), 1);
}

// The operator's `?wait=true` (evac group sync) is bounded the same way:
// 202 with the cycle still running, followed by ?cycle=N until its PIT.
TEST_F(ReplicationOpsTest, AnOperatorWaitingForACycleIsAnsweredWithinTheLimitAndFollowsIt) {
  restart_with_wait_limit(std::chrono::milliseconds(50));
  fake_.block();
  auto started = a_.call("POST", "/api/v1/groups/g1/sync?wait=true");
  ASSERT_EQ(started.status, 202) << started.body.dump();
  EXPECT_EQ(started.body["done"], false);
  ASSERT_EQ(started.body["cycle"], 1);
  auto still = a_.call("POST", "/api/v1/groups/g1/sync?wait=true&cycle=1");
  ASSERT_EQ(still.status, 202) << still.body.dump();
  EXPECT_EQ(still.body["done"], false);
  EXPECT_EQ(a_.call("POST", "/api/v1/groups/g1/sync?cycle=7").status, 404) << "a cycle never asked for";
  EXPECT_EQ(a_.call("POST", "/api/v1/groups/g1/sync?cycle=soon").status, 400);
  fake_.release();
  ASSERT_TRUE(replication_->wait_cycle("g1", 1).is_ok());
  auto ended = a_.call("POST", "/api/v1/groups/g1/sync?wait=true&cycle=1");
  ASSERT_EQ(ended.status, 200) << ended.body.dump();
  EXPECT_EQ(ended.body["done"], true);
  EXPECT_FALSE(ended.body["id"].get<std::string>().empty());
  EXPECT_EQ(fake_.sync_calls(), 1) << "following a cycle never starts another";
}

TEST_F(ReplicationOpsTest, WaitingCallersReturnWhenEvacdShutsDown) {
  fake_.block();
  auto first = replication_->request_sync("g1");
  ASSERT_TRUE(fake_.wait_until_blocked());
  auto follow_up = replication_->request_sync("g1");
  std::optional<Result<PointInTime>> waited;
  std::thread waiter([&] { waited = replication_->wait_cycle("g1", *follow_up); });
  replication_->shutdown();
  waiter.join();
  ASSERT_TRUE(waited.has_value());
  EXPECT_EQ(waited->status().code(), StatusCode::kUnavailable);
  EXPECT_EQ(fake_.sync_calls(), 1);  // the follow-up never started
  EXPECT_EQ(replication_->request_sync("g1").status().code(), StatusCode::kUnavailable);
  (void)first;
}

// ---- lag, compliance and alarms ---------------------------------------------------

TEST_F(ReplicationOpsTest, RpoBreachRaisesOneEventAndRecoveryAnother) {
  schedules_ = false;
  replication_->shutdown();
  ReplicationOptions options;
    options.clock = [this] { return now_; };
  options.schedules = false;
  make_replication(std::move(options));

  ASSERT_TRUE(replication_->sync_group("g1").is_ok());
  now_ += 600;  // exactly the RPO: still met
  replication_->tick();
  EXPECT_TRUE(events("rpo_breached").empty());
  now_ += 1;
  for (int i = 0; i < 5; ++i) {
    replication_->tick();
    now_ += 60;
  }
  auto breached = events("rpo_breached");
  ASSERT_EQ(breached.size(), 1u);  // no storm: one event per change
  EXPECT_EQ(breached[0].severity, "warning");
  EXPECT_TRUE(contains(breached[0].message, "out of its RPO")) << breached[0].message;
  EXPECT_EQ(state()["rpo_met"], false);
  EXPECT_EQ(fake_.sync_calls(), 1);  // schedules off: nothing started by itself

  ASSERT_TRUE(replication_->sync_group("g1").is_ok());
  replication_->tick();
  EXPECT_EQ(events("rpo_restored").size(), 1u);
  EXPECT_EQ(events("rpo_breached").size(), 1u);
  auto api = a_.call("GET", "/api/v1/events?group=g1");
  ASSERT_EQ(api.status, 200);
  EXPECT_EQ(api.body[0]["kind"], "rpo_restored");  // newest first
}

TEST_F(ReplicationOpsTest, LagKeepsGrowingWithTheRecoverySiteUnreachable) {
  ASSERT_TRUE(replication_->sync_group("g1").is_ok());
  a_.transport->cut("https://b:1");
  now_ += 900;
  auto show = a_.call("GET", "/api/v1/groups/g1");
  ASSERT_EQ(show.status, 200);
  const json& r = show.body["replication"];
  EXPECT_EQ(r["lag_seconds"], 900);
  EXPECT_EQ(r["rpo_met"], false);
  EXPECT_TRUE(r["pits"].is_null());  // unknown, not zero
  EXPECT_TRUE(contains(r["peer_error"], "cannot reach"));
  EXPECT_FALSE(r["newest_pit"].is_null());
}

TEST_F(ReplicationOpsTest, GroupShowCountsPitsAtTheRecoverySite) {
  ASSERT_TRUE(replication_->sync_group("g1").is_ok());
  auto show = a_.call("GET", "/api/v1/groups/g1");
  EXPECT_EQ(show.body["replication"]["pits"], 1) << show.body.dump();
  EXPECT_FALSE(show.body["replication"].contains("peer_error")) << show.body.dump();

  // Site-b now runs no replication: the count is unknown and says why.
  b_.router = std::make_unique<ApiRouter>(RouteServices{*b_.service, *b_.plans});
  a_.transport->connect("https://b:1", "sha256//pin-b", b_.router.get());
  show = a_.call("GET", "/api/v1/groups/g1");
  EXPECT_TRUE(show.body["replication"]["pits"].is_null());
  EXPECT_TRUE(show.body["replication"].contains("peer_error"));
  EXPECT_EQ(show.body["replication"]["newest_pit"]["id"], "pit-1");
  EXPECT_EQ(show.body["replication"]["rpo_met"], true);
}

// ---- schedules ----------------------------------------------------------------------

TEST_F(ReplicationOpsTest, SchedulerStartsAtHalfTheRpoAndBacksOffAfterFailures) {
  now_ += 299;  // the group was created 299 s ago; RPO 600 s
  replication_->tick();
  EXPECT_EQ(fake_.sync_calls(), 0);
  now_ += 1;
  replication_->tick();
  ASSERT_TRUE(replication_->wait_cycle("g1", 1).is_ok());
  EXPECT_EQ(fake_.sync_calls(), 1);
  EXPECT_EQ(state()["last_cycle"]["cycle"], 1);

  now_ += 299;
  replication_->tick();
  EXPECT_EQ(fake_.sync_calls(), 1);
  fake_.fail_with(unavailable("link down"));
  now_ += 1;
  replication_->tick();
  (void)replication_->wait_cycle("g1", 2);
  EXPECT_EQ(fake_.sync_calls(), 2);
  now_ += 29;  // first retry after 30 s
  replication_->tick();
  EXPECT_EQ(fake_.sync_calls(), 2);
  now_ += 1;
  replication_->tick();
  (void)replication_->wait_cycle("g1", 3);
  EXPECT_EQ(fake_.sync_calls(), 3);
  now_ += 59;  // then 60 s
  replication_->tick();
  EXPECT_EQ(fake_.sync_calls(), 3);
  now_ += 1;
  replication_->tick();
  (void)replication_->wait_cycle("g1", 4);
  EXPECT_EQ(fake_.sync_calls(), 4);
  // Retries failing the same way raise no more events, they are counted on
  // the first; a new reason does.
  ASSERT_EQ(events("cycle_failed").size(), 1u);
  EXPECT_EQ(events("cycle_failed")[0].count, 3);
  EXPECT_TRUE(events("cycle_failed")[0].last_at.has_value());
  EXPECT_EQ(state()["cycles"]["failed"], 3);
  fake_.fail_with(internal_error("disk gone"));
  now_ += 120;
  replication_->tick();
  (void)replication_->wait_cycle("g1", 5);
  auto failed = events("cycle_failed");
  ASSERT_EQ(failed.size(), 2u);
  EXPECT_TRUE(contains(failed[0].message, "disk gone")) << failed[0].message;
}

// ---- rate limits ----------------------------------------------------------------------

TEST_F(ReplicationOpsTest, MaxRateReachesTheCyclesLimiter) {
  auto set = a_.call("PUT", "/api/v1/groups/g1/settings", json{{"max_rate", "50MiB/s"}});
  ASSERT_EQ(set.status, 200) << set.body.dump();
  EXPECT_EQ(set.body["max_rate_bytes"], 50u << 20);
  EXPECT_EQ(set.body["max_rate"], "50MiB/s");
  fake_.block();
  auto cycle = replication_->request_sync("g1");
  ASSERT_TRUE(cycle.is_ok());
  ASSERT_TRUE(fake_.wait_until_blocked());
  EXPECT_EQ(replication_->sync_progress("g1")["rate_limit_bytes"], 50u << 20);

  auto bad = a_.call("PUT", "/api/v1/groups/g1/settings", json{{"max_rate", "fast"}});
  EXPECT_EQ(bad.status, 400);
  EXPECT_TRUE(contains(bad.body["message"], "not a byte rate")) << bad.body.dump();
  EXPECT_FALSE(bad.body["hint"].get<std::string>().empty());
  EXPECT_EQ(a_.service->get_group("g1")->max_rate_bytes, 50u << 20);  // unchanged
  EXPECT_EQ(a_.call("PUT", "/api/v1/groups/g1/settings", json{{"rpo", "5m"}}).status, 400);
  EXPECT_EQ(a_.call("PUT", "/api/v1/groups/ghost/settings", json{{"max_rate", "1M"}}).status, 404);

  auto off = a_.call("PUT", "/api/v1/groups/g1/settings", json{{"max_rate", "none"}});
  ASSERT_EQ(off.status, 200);
  EXPECT_EQ(off.body["max_rate"], "unlimited");
  EXPECT_EQ(replication_->sync_progress("g1")["rate_limit_bytes"], 0u);  // the running cycle follows at once
  fake_.release();
  EXPECT_TRUE(replication_->wait_cycle("g1", *cycle).is_ok());
}

// A group naming an engine this evacd was not built with is refused before
// anything is made, naming the engines it has.
TEST_F(ReplicationOpsTest, GroupCreateRefusesAnEngineThisSiteLacks) {
  a_.provider->add_vm(make_vm("app01", "u-app01", {{"vda", "/a/images/app01.qcow2", "qcow2", "virtio", "disk", "images"}},
                              {{"52:54:00:00:00:09", "prod", "network", "virtio"}}));
  auto r = a_.call("POST", "/api/v1/groups", json{{"name", "g2"}, {"vms", {"app01"}}, {"replication_engine", "rbd"}});
  EXPECT_EQ(r.body.value("code", ""), "unsupported") << r.body.dump();
  EXPECT_TRUE(contains(r.body.value("message", ""), "replication engine 'rbd' is not built into the evacd of site 'site-a'"))
      << r.body.dump();
  EXPECT_TRUE(contains(r.body.value("hint", ""), "builtin")) << r.body.dump();
  EXPECT_FALSE(a_.store->find_group("g2")->has_value());
  auto ok = a_.call("POST", "/api/v1/groups", json{{"name", "g2"}, {"vms", {"app01"}}, {"replication_engine", "builtin"}});
  EXPECT_EQ(ok.status, 201) << ok.body.dump();
}

TEST_F(ReplicationOpsTest, GroupCreateTakesAMaxRate) {
  a_.provider->add_vm(make_vm("app01", "u-app01", {{"vda", "/a/images/app01.qcow2", "qcow2", "virtio", "disk", "images"}},
                              {{"52:54:00:00:00:09", "prod", "network", "virtio"}}));
  auto bad = a_.call("POST", "/api/v1/groups", json{{"name", "g2"}, {"vms", {"app01"}}, {"max_rate", "12 parsecs"}});
  EXPECT_EQ(bad.status, 400);
  EXPECT_FALSE(a_.store->find_group("g2")->has_value());
  auto ok = a_.call("POST", "/api/v1/groups", json{{"name", "g2"}, {"vms", {"app01"}}, {"max_rate", "10MB/s"}});
  ASSERT_EQ(ok.status, 201) << ok.body.dump();
  EXPECT_EQ(ok.body["max_rate_bytes"], 10'000'000);
}

TEST_F(TwoSitesTest, PeerLinkPassesEveryBulkBodyThroughTheLimiter) {
  pair();
  std::chrono::steady_clock::time_point now{};
  TokenBucket bucket(1000, [&] { return now; });
  std::atomic<bool> stopping{false};
  auto link = make_peer_link(*a_.transport, **a_.store->find_peer("site-b"), "builtin", &bucket, &stopping);
  EXPECT_EQ(link->site(), "site-b");
  (void)link->call_bytes("POST", "g1/cycles/c1/blocks", std::string(1500, 'x'));  // site-b refuses it; the bytes were counted
  EXPECT_EQ(std::chrono::duration_cast<std::chrono::milliseconds>(bucket.reserve(1)).count(), 500);  // 500 bytes of debt
  EXPECT_FALSE(link->stopping());
  stopping = true;
  EXPECT_TRUE(link->stopping());
  auto s = link->call_bytes("POST", "g1/cycles/c1/blocks", "x");
  EXPECT_EQ(s.status().code(), StatusCode::kUnavailable);
  EXPECT_TRUE(contains(s.status().message(), "shutting down"));
  EXPECT_EQ(link->call("GET", "g1/pits", std::nullopt).status().code(), StatusCode::kUnavailable);
}

// ---- events and metrics over the API ---------------------------------------------------

TEST_F(ReplicationOpsTest, EventsRouteValidatesItsQuery) {
  EXPECT_EQ(a_.call("GET", "/api/v1/events").status, 200);
  auto unknown = a_.call("GET", "/api/v1/events?group=ghost");
  EXPECT_EQ(unknown.status, 404);  // query parameters come through ApiRequest::query
}

TEST_F(ReplicationOpsTest, MetricsInPrometheusTextFormat) {
  ApiRequest anonymous{"GET", "/metrics", {}, "", "", ""};
  EXPECT_EQ(a_.router->handle(anonymous).status, 401);
  fake_.set_bytes_sent(777);
  now_ += 10;
  ASSERT_TRUE(replication_->sync_group("g1").is_ok());
  fake_.fail_with(internal_error("disk gone"));
  (void)replication_->sync_group("g1");
  now_ += 20;
  a_.service->heartbeat_round();
  auto r = a_.call("GET", "/metrics");
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.content_type, "text/plain; version=0.0.4; charset=utf-8");
  ASSERT_TRUE(r.body.is_binary());
  std::string text(r.body.get_binary().begin(), r.body.get_binary().end());
  const std::string g = "{group=\"g1\",recovery_site=\"site-b\"";
  for (const std::string& line : std::vector<std::string>{
       "# TYPE evac_group_rpo_seconds gauge", "evac_group_rpo_seconds" + g + "} 600", "evac_group_lag_seconds" + g + "} 20",
        "evac_group_rpo_met" + g + "} 1", "evac_group_points_in_time" + g + "} 1",
        "# TYPE evac_group_cycles_total counter", "evac_group_cycles_total" + g + ",result=\"success\"} 1",
        "evac_group_cycles_total" + g + ",result=\"failure\"} 1", "evac_group_bytes_sent_total" + g + "} 777",
        "evac_group_last_cycle_duration_seconds" + g + "} 0", "evac_group_sync_in_progress" + g + "} 0",
        "evac_peer_connected{site=\"site-b\"} 1"})
    EXPECT_TRUE(contains(text, line + "\n")) << line << "\n" << text;
  // One HELP and TYPE per family, even with several samples.
  std::size_t first = text.find("# TYPE evac_group_cycles_total");
  EXPECT_EQ(text.find("# TYPE evac_group_cycles_total", first + 1), std::string::npos);
  a_.transport->cut("https://b:1");
  a_.service->heartbeat_round();
  auto after = a_.call("GET", "/metrics");
  std::string cut(after.body.get_binary().begin(), after.body.get_binary().end());
  EXPECT_TRUE(contains(cut, "evac_peer_connected{site=\"site-b\"} 0\n")) << cut;
}

TEST_F(ReplicationOpsTest, SyncWaitReturnsThePit) {
  auto r = a_.call("POST", "/api/v1/groups/g1/sync?wait=true");
  EXPECT_EQ(r.status, 200) << r.body.dump();
}

// ---- a paired site's cycles, read strictly ------------------------------------------------

// A paired site's call to this site's router, as its certificate makes it.
ApiResponse peer_call(ApiRouter& router, const std::string& pin, const std::string& path, const json& body) {
  return router.handle(ApiRequest{"POST", path, {}, body.dump(), "", pin});
}

void expect_refused(const ApiResponse& r, const std::string& in_message, const std::string& in_hint = "") {
  EXPECT_EQ(r.status, 400) << r.body.dump();
  EXPECT_EQ(r.body.value("code", ""), "invalid_argument") << r.body.dump();
  EXPECT_TRUE(contains(r.body.value("message", ""), in_message)) << r.body.dump();
  EXPECT_TRUE(r.body.contains("hint")) << r.body.dump();
  EXPECT_TRUE(contains(r.body.value("hint", ""), in_hint)) << r.body.dump();
}

TEST_F(TwoSitesTest, ReplicaFolderMustBeARecoverySitePool) {
  ASSERT_NO_FATAL_FAILURE(protect_web01_in_g1());
  ReplicationService replication(*b_.service, *b_.transport, dir_.string(), builtin_engines());
  PlanService plans(*b_.service, &replication);
  ApiRouter router(RouteServices{*b_.service, plans, &replication});
  nlohmann::json body = {{"cycle_id", "cycle-1"},
                         {"disks", {{{"vm_uuid", "u-web01"}, {"disk", "vda"}, {"replica_dir", "/etc"}, {"size_bytes", 1 << 20}}}}};
  ApiResponse r = peer_call(router, "sha256//pin-a", "/api/v1/peer/replication/builtin/g1/cycles", body);
  EXPECT_EQ(r.status, 403) << r.body.dump();
  EXPECT_TRUE(contains(r.body.value("message", ""), "/etc")) << r.body.dump();
  // A group the caller does not protect to this site is refused before anything else.
  body["disks"][0]["replica_dir"] = "/b/replicas";
  ApiResponse stranger = peer_call(router, "sha256//pin-a", "/api/v1/peer/replication/builtin/not-a-group/cycles", body);
  EXPECT_EQ(stranger.status, 403) << stranger.body.dump();
  EXPECT_TRUE(contains(stranger.body.value("message", ""), "does not protect a group 'not-a-group'")) << stranger.body.dump();
}

// A commit is read whole before the receiver sees it: one asking to keep
// 2^40 PITs is refused and changes nothing, the same commit within bounds
// reaches the receiver (which has no such cycle open here).
TEST_F(TwoSitesTest, ACommitKeepingMorePitsThanAnOperatorMayIsRefusedAndChangesNothing) {
  ASSERT_NO_FATAL_FAILURE(protect_web01_in_g1());
  ReplicationService replication(*b_.service, *b_.transport, dir_.string(), builtin_engines());
  PlanService plans(*b_.service, &replication);
  ApiRouter router(RouteServices{*b_.service, plans, &replication});
  const std::string path = "/api/v1/peer/replication/builtin/g1/cycles/cycle-1/commit";
  json body = to_json(builtin::CycleCommitRequest{{{"u-web01/vda", std::string(64, 'f')}}, now_ * 1000, 4096, {}});
  body["keep_pits"] = std::uint64_t{1} << 40;
  expect_refused(peer_call(router, "sha256//pin-a", path, body), "field 'keep_pits' of the commit of a cycle is 1099511627776",
                 "from 1 to 1000");
  body["keep_pits"] = (std::uint64_t{1} << 32) + 1;
  expect_refused(peer_call(router, "sha256//pin-a", path, body), "out of range", "from 1 to 1000");
  body["keep_pits"] = 24;
  body["keep_forever"] = true;
  expect_refused(peer_call(router, "sha256//pin-a", path, body), "unknown field 'keep_forever'", "keep_pits");
  // No cycle ever started here: nothing staged, no PIT kept or deleted.
  EXPECT_EQ(replication.pits_held_here("g1").status().code(), StatusCode::kNotFound);

  body.erase("keep_forever");
  ApiResponse valid = peer_call(router, "sha256//pin-a", path, body);
  EXPECT_EQ(valid.body.value("code", ""), "failed_precondition") << valid.body.dump();
  EXPECT_TRUE(contains(valid.body.value("message", ""), "is not open here")) << valid.body.dump();
}

// A cycle's start with a key the sender never sends (a misplaced or
// misspelt one, or the protected site's own path of the disk) is refused;
// the sender's own body is read and goes on to the pool check.
TEST_F(TwoSitesTest, ACycleStartWithAnUnknownKeyIsRefused) {
  ASSERT_NO_FATAL_FAILURE(protect_web01_in_g1());
  ReplicationService replication(*b_.service, *b_.transport, dir_.string(), builtin_engines());
  PlanService plans(*b_.service, &replication);
  ApiRouter router(RouteServices{*b_.service, plans, &replication});
  const std::string path = "/api/v1/peer/replication/builtin/g1/cycles";
  json body = to_json(builtin::CycleBeginRequest{
      "cycle-1",
      {ReplicatedDevice{"u-web01", "web01", "vda", DiskSource{"file", "/a/images/web01.qcow2"}, "qcow2", "/etc", 1 << 20, ""}}});
  ApiResponse read = peer_call(router, "sha256//pin-a", path, body);
  EXPECT_EQ(read.status, 403) << read.body.dump();  // read whole, then: /etc is no pool here
  EXPECT_TRUE(contains(read.body.value("message", ""), "/etc")) << read.body.dump();

  body["replica_dir"] = "/b/replicas";
  expect_refused(peer_call(router, "sha256//pin-a", path, body), "unknown field 'replica_dir' in the start of a cycle",
                 "cycle_id, disks");
  body.erase("replica_dir");
  body["disks"][0]["replica_dir"] = "/b/replicas";
  body["disks"][0]["source_path"] = "/a/images/web01.qcow2";
  expect_refused(peer_call(router, "sha256//pin-a", path, body),
                 "unknown field 'source_path' in a disk of the start of a cycle", "size_bytes");
  body["disks"][0].erase("source_path");
  body["disks"][0].erase("vm_uuid");
  expect_refused(peer_call(router, "sha256//pin-a", path, body), "field 'vm_uuid' of a disk of the start of a cycle is required");
  EXPECT_EQ(replication.pits_held_here("g1").status().code(), StatusCode::kNotFound) << "nothing staged";
}

// A copy stored before it was checked (by an older evacd) is read strictly
// where it is used: the epoch that decides whether the caller may write
// PITs here is refused, not narrowed.
TEST_F(TwoSitesTest, ACycleIsRefusedWhenTheCallersCopyOfItsGroupIsOutOfBounds) {
  ASSERT_NO_FATAL_FAILURE(protect_web01_in_g1());
  auto held = b_.store->find_peer_copy("site-a");
  ASSERT_TRUE(held.is_ok() && held->has_value());
  json copy = json::parse((*held)->document);
  copy["groups"][0]["epoch"] = "2";
  ASSERT_TRUE(b_.store->put_peer_copy(PeerCopyRecord{"site-a", (*held)->version, copy.dump(), now_}).is_ok());
  ReplicationService replication(*b_.service, *b_.transport, dir_.string(), builtin_engines());
  PlanService plans(*b_.service, &replication);
  ApiRouter router(RouteServices{*b_.service, plans, &replication});
  const json body = to_json(builtin::CycleBeginRequest{
      "cycle-1", {ReplicatedDevice{"u-web01", "web01", "vda", {}, "qcow2", "/b/replicas", 1 << 20, ""}}});
  ApiResponse r = peer_call(router, "sha256//pin-a", "/api/v1/peer/replication/builtin/g1/cycles", body);
  EXPECT_EQ(r.status, 400) << r.body.dump();
  EXPECT_TRUE(contains(r.body.value("message", ""), "the configuration of site 'site-a': group 'g1': field 'epoch'"))
      << r.body.dump();
  EXPECT_EQ(replication.pits_held_here("g1").status().code(), StatusCode::kNotFound) << "nothing staged";
}

}  // namespace
}  // namespace evac::testing
