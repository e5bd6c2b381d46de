// Runs of recovery plans between two real evacd processes, through the evac
// CLI: real replication of real qcow2 images (the built-in replicator, scan
// mode: the VMs are shut off) into points in time at the recovery site, then
// a test recovery on libvirt's test driver and its cleanup.
//
// The sites' test-driver inventories are written per test, with disks that
// are real files under the test's folder, so replication has something to
// read and the test copies real overlays.
#include <gtest/gtest.h>

#include <fstream>
#include <set>

#include "harness.h"
#include "test_driver_sites.h"

namespace evac::testing {
namespace {

using nlohmann::json;

class RunsCliTest : public TwoEvacdTest {
 protected:
  void SetUp() override {
    make_root("evac-runs-");
    write_test_driver_sites(root_);
    make_sites("test://" + (root_ / "site-a.xml").string(), "test://" + (root_ / "site-b.xml").string());
    start_sites();
    ASSERT_NO_FATAL_FAILURE(
        pair_and_protect_shop([this](const std::string& c, std::vector<std::string> a) { return evac_at(c, std::move(a)); }));
    // The plan, written where it runs; the recovery site needs the
    // protected site's configuration copy (with the group) first.
    std::ofstream(root_ / "plan.yaml") << "kind: RecoveryPlan\nname: shop-dr\ngroups: [shop]\nvms:\n"
                                          "  - {vm: db01, priority: 1, wait_for_guest: false}\n"
                                          "  - vm: web01\n    priority: 2\n    depends_on: [db01]\n    wait_for_guest: false\n"
                                          "    after_power_on:\n      - host: [sh, -c, 'echo \"$EVAC_OPERATION $EVAC_VM $EVAC_TEST_VM\" >> "
                                       << (root_ / "callouts.log").string() << "']\n";
    for (int i = 0; i < 100; ++i) {
      auto applied = evac_at("b", {"apply", "-f", (root_ / "plan.yaml").string()});
      if (applied.exit_code == 0) break;
      ASSERT_TRUE(i < 99 && applied.err.find("not known at this site") != std::string::npos) << applied.err;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
  // Site-a answers a call following a cycle within 1 s, and its next cycle
  // takes a few seconds: 12 MiB that does not compress in db01, sent at
  // 1 MiB/s (a first batch goes at once, the next waits for it to be paid).
  void make_site_a_cycles_slow() {
    ASSERT_EQ(a_->stop(), 0) << a_->log();
    std::ofstream(a_->config_path(), std::ios::app) << "replication: {wait_limit: 1s}\n";
    ASSERT_TRUE(a_->start()) << a_->log();
    const fs::path random = root_ / "random.raw";
    ASSERT_EQ(run_command({"dd", "if=/dev/urandom", "of=" + random.string(), "bs=1M", "count=12", "status=none"}).exit_code, 0);
    auto wrote = run_command({"qemu-io", "-f", "qcow2", "-c", "write -s " + random.string() + " 2097152 12582912",
                              (root_ / "a/images/db01.qcow2").string()});
    ASSERT_EQ(wrote.exit_code, 0) << wrote.err;
    ASSERT_EQ(evac_at("a", {"group", "set", "shop", "--max-rate", "1MiB/s"}).exit_code, 0);
  }
  std::map<std::string, json> vms_at(const std::string& context) {
    std::map<std::string, json> out;
    for (const auto& vm : evac_at(context, {"inventory", "vms", "-o", "json"}).json()) out[vm["name"]] = vm;
    return out;
  }
};

TEST_F(RunsCliTest, TestRecoveryThenCleanupLeavesNothingBehind) {
  auto check = evac_at("b", {"plan", "check", "shop-dr"});
  ASSERT_EQ(check.exit_code, 0) << check.out << check.err;
  EXPECT_NE(check.out.find("ok      fencing: site 'site-a' can make group 'shop''s disks read-only when fenced"),
            std::string::npos)
      << check.out;

  auto test = evac_at("b", {"plan", "test", "shop-dr", "--follow"});
  ASSERT_EQ(test.exit_code, 0) << test.out << test.err;
  for (const char* step : {"Check readiness", "Create test copy: shop", "Register test VM: db01", "Power on priority 1 VM: db01",
                           "Priority 1 VMs are up", "Power on priority 2 VM: web01", "Run on the evacd host (web01): sh"})
    EXPECT_NE(test.out.find(step), std::string::npos) << step << "\n" << test.out;
  EXPECT_NE(test.out.find("succeeded"), std::string::npos) << test.out;

  // The test VMs run on the isolated network, on overlays of the PIT; the
  // placeholders stay shut off and on the recovery network.
  auto vms = vms_at("b");
  for (const char* name : {"db01-test", "web01-test"}) {
    ASSERT_TRUE(vms.count(name)) << name;
    EXPECT_EQ(vms[name]["state"], "running") << name;
    EXPECT_EQ(vms[name]["nics"][0]["network"], "test-isolated") << name;
    const std::string disk = vms[name]["disks"][0]["path"];
    EXPECT_NE(disk.find("test-copies"), std::string::npos) << disk;
    EXPECT_TRUE(fs::exists(disk)) << disk;
    auto info = run_command({"qemu-img", "info", "--output=json", disk});
    EXPECT_NE(info.out.find(".evac-pits"), std::string::npos) << "a test copy is an overlay on the PIT: " << info.out;
  }
  for (const char* name : {"db01", "web01"}) {
    EXPECT_EQ(vms[name]["state"], "shut off") << name;
    EXPECT_EQ(vms[name]["nics"][0]["network"], "recovery-prod") << name;
  }
  EXPECT_EQ(trim(read_file(root_ / "callouts.log")), "test web01 web01-test");
  // Production is untouched.
  for (const auto& [name, vm] : vms_at("a")) EXPECT_EQ(vm["state"], "shut off") << name;

  auto runs = evac_at("b", {"run", "list", "-o", "json"});
  ASSERT_EQ(runs.exit_code, 0) << runs.err;
  ASSERT_EQ(runs.json().size(), 1u);
  const std::string id = runs.json()[0]["id"];
  EXPECT_EQ(runs.json()[0]["state"], "succeeded");
  EXPECT_EQ(runs.json()[0]["started_by"], "admin");
  auto shown = evac_at("b", {"run", "show", id, "-o", "json"});
  ASSERT_EQ(shown.exit_code, 0) << shown.err;
  EXPECT_FALSE(shown.json()["groups"][0]["pit"].get<std::string>().empty());
  const json shown_run = shown.json();  // kept: a range-for over shown.json()["steps"] would outlive the document
  for (const auto& s : shown_run["steps"]) {
    EXPECT_EQ(s["state"], "succeeded") << s.dump();
    if (s["kind"] == "power_on" || s["kind"] == "register_test_vm") {
      EXPECT_EQ(s["resource"], "provider:kvm-b") << "provider calls hold their provider: " << s.dump();
    }
    EXPECT_TRUE(s["started_at_ms"].is_number() && s["ended_at_ms"].is_number()) << s.dump();
  }
  auto table = evac_at("b", {"run", "show", id});
  EXPECT_NE(table.out.find("Register test VM: web01"), std::string::npos) << table.out;

  // A second test while this one is set up is refused, naming what is left.
  auto again = evac_at("b", {"plan", "test", "shop-dr"});
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_NE(again.err.find("still set up"), std::string::npos) << again.err;
  EXPECT_NE(again.err.find("evac plan cleanup"), std::string::npos) << again.err;
  // Runs execute at the recovery site: a plan written at the protected
  // site is refused there, saying where to run it.
  ASSERT_EQ(evac_at("a", {"plan", "create", "shop-local", "--group", "shop"}).exit_code, 0);
  auto at_a = evac_at("a", {"plan", "test", "shop-local"});
  EXPECT_EQ(at_a.exit_code, 1);
  EXPECT_NE(at_a.err.find("recovery site"), std::string::npos) << at_a.err;

  auto cleanup = evac_at("b", {"plan", "cleanup", "shop-dr", "--follow"});
  ASSERT_EQ(cleanup.exit_code, 0) << cleanup.out << cleanup.err;
  EXPECT_NE(cleanup.out.find("Discard test copies: shop"), std::string::npos) << cleanup.out;
  vms = vms_at("b");
  EXPECT_FALSE(vms.count("db01-test") || vms.count("web01-test"));
  EXPECT_TRUE(vms.count("db01") && vms.count("web01")) << "placeholders stay";
  for (const auto& entry : fs::recursive_directory_iterator(root_ / "b/replicas"))
    EXPECT_EQ(entry.path().string().find("test-copies/shop"), std::string::npos) << entry.path();

  // Cleaned up, a new test may start. Its steps carry how long each took
  // in the first (the engine starts a tier's longest chains first).
  // Started, then followed to its end: returns the run's id.
  auto test_run = [&](const std::string& plan) -> std::string {
    auto started = evac_at("b", {"plan", "test", plan, "-o", "json"});
    EXPECT_EQ(started.exit_code, 0) << started.err;
    const std::string run_id = started.json()["id"];
    auto followed = evac_at("b", {"run", "show", run_id, "--follow"});
    EXPECT_EQ(followed.exit_code, 0) << followed.out << followed.err;
    return run_id;
  };
  const std::string second_id = test_run("shop-dr");
  auto steps_of = [&](const std::string& run_id) { return evac_at("b", {"run", "show", run_id, "-o", "json"}).json()["steps"]; };
  auto expect_learned = [](const json& before, const json& after) {
    std::map<std::string, std::int64_t> took;
    for (const auto& s : before) took[s["name"]] = s["ended_at_ms"].get<std::int64_t>() - s["started_at_ms"].get<std::int64_t>();
    int nonzero = 0;
    for (const auto& s : after) {
      ASSERT_TRUE(took.count(s["name"])) << s.dump();
      EXPECT_EQ(s["expected_ms"], took[s["name"]]) << s.dump();
      nonzero += took[s["name"]] > 0;
    }
    EXPECT_GT(nonzero, 0) << "some step took a measurable time, so the match is not all zeros";
  };
  expect_learned(shown_run["steps"], steps_of(second_id));
  EXPECT_EQ(evac_at("b", {"plan", "cleanup", "shop-dr", "--follow"}).exit_code, 0);

  // A new plan over the same VMs starts from what they took under the old one.
  std::string copy = read_file(root_ / "plan.yaml");
  copy.replace(copy.find("name: shop-dr"), 13, "name: shop-dr-copy");
  std::ofstream(root_ / "copy.yaml") << copy;
  ASSERT_EQ(evac_at("b", {"apply", "-f", (root_ / "copy.yaml").string()}).exit_code, 0);
  const std::string third_id = test_run("shop-dr-copy");
  expect_learned(steps_of(second_id), steps_of(third_id));
  EXPECT_EQ(evac_at("b", {"plan", "cleanup", "shop-dr-copy", "--follow"}).exit_code, 0);
}

TEST_F(RunsCliTest, RefusalsSayWhatToDo) {
  // Destructive operations need the plan named again.
  auto unconfirmed = evac_at("b", {"plan", "migrate", "shop-dr"});
  EXPECT_EQ(unconfirmed.exit_code, 2) << unconfirmed.err;
  auto wrong = evac_at("b", {"plan", "failover", "shop-dr", "--confirm", "other"});
  EXPECT_EQ(wrong.exit_code, 1);
  EXPECT_NE(wrong.err.find("--confirm shop-dr"), std::string::npos) << wrong.err;
  auto ghost = evac_at("b", {"plan", "test", "ghost"});
  EXPECT_EQ(ghost.exit_code, 1);
  EXPECT_NE(ghost.err.find("hint:"), std::string::npos) << ghost.err;
  auto bad_pit = evac_at("b", {"plan", "test", "shop-dr", "--pit", "pit-00000099-1"});
  EXPECT_EQ(bad_pit.exit_code, 1);
  EXPECT_NE(bad_pit.err.find("evac group pits"), std::string::npos) << bad_pit.err;
  EXPECT_EQ(evac_at("b", {"run", "show", "no-such-run"}).exit_code, 1);
  EXPECT_EQ(evac_at("b", {"run", "list", "-o", "json"}).json().size(), 0u) << "refused runs leave no trace";

  // A test whose replicas vanished fails at the step that needs them, and
  // stops there saying why.
  fs::remove_all(root_ / "b/replicas/.evac-pits");
  auto failed = evac_at("b", {"plan", "test", "shop-dr", "--follow"});
  EXPECT_EQ(failed.exit_code, 1) << failed.out;
  EXPECT_NE(failed.out.find("failed"), std::string::npos) << failed.out;
  EXPECT_NE(failed.err.find("evac run resume"), std::string::npos) << failed.err;

  // Cleanup is what follows a failed test: it starts over the failed run's
  // group, and closes that run.
  const std::string failed_id = evac_at("b", {"run", "list", "-o", "json"}).json()[0]["id"];
  EXPECT_EQ(evac_at("b", {"run", "show", failed_id, "-o", "json"}).json()["state"], "failed");
  auto cleanup = evac_at("b", {"plan", "cleanup", "shop-dr", "--follow"});
  EXPECT_EQ(cleanup.exit_code, 0) << cleanup.out << cleanup.err;
  EXPECT_EQ(evac_at("b", {"run", "show", failed_id, "-o", "json"}).json()["state"], "cancelled");
}

// A planned migration: the protected site syncs, shuts the VMs down, syncs
// again and fences its copy before the recovery site promotes the final PIT
// and starts the VMs. Data written at the protected site before the
// migration is in the recovered disks: nothing is lost.
TEST_F(RunsCliTest, MigrationRecoversTheFinalSyncAndFencesTheOldCopy) {
  // Written after the setup's sync: only the migration's syncs carry it.
  const std::string source = (root_ / "a/images/db01.qcow2").string();
  auto wrote = run_command({"qemu-io", "-f", "qcow2", "-c", "write -P 0x5a 1048576 65536", source});
  ASSERT_EQ(wrote.exit_code, 0) << wrote.err;

  auto migrate = evac_at("b", {"plan", "migrate", "shop-dr", "--confirm", "shop-dr", "--follow"});
  ASSERT_EQ(migrate.exit_code, 0) << migrate.out << migrate.err;
  for (const char* step : {"Synchronize storage: shop", "Shut down VMs at protected site: shop",
                           "Synchronize storage after shutdown: shop", "Hand over at protected site: shop",
                           "Promote replicas: shop", "Take ownership: shop", "Recover VM: db01", "Power on priority 2 VM: web01"})
    EXPECT_NE(migrate.out.find(step), std::string::npos) << step << "\n" << migrate.out;

  auto vms = vms_at("b");
  for (const char* name : {"db01", "web01"}) {
    EXPECT_EQ(vms[name]["state"], "running") << name;
    EXPECT_EQ(vms[name]["is_placeholder"], false) << name;
    EXPECT_EQ(vms[name]["nics"][0]["network"], "recovery-prod") << "a recovery runs on the production mapping: " << name;
  }
  const std::string disk = vms["db01"]["disks"][0]["path"];
  EXPECT_NE(disk.find("recovered"), std::string::npos) << disk;
  auto read = run_command({"qemu-io", "-r", "-f", "qcow2", "-c", "read -P 0x5a 1048576 65536", disk});
  EXPECT_EQ(read.exit_code, 0) << "the write made before the migration is in the recovered disk: " << read.out << read.err;
  EXPECT_EQ(read.out.find("Pattern verification failed"), std::string::npos) << read.out;
  EXPECT_EQ(trim(read_file(root_ / "callouts.log")), "migrate web01");

  // The old copy is fenced: its VMs are off and it replicates no more.
  for (const auto& [name, vm] : vms_at("a")) EXPECT_EQ(vm["state"], "shut off") << name;
  auto sync = evac_at("a", {"group", "sync", "shop"});
  EXPECT_EQ(sync.exit_code, 1);
  EXPECT_NE(sync.err.find("live at site 'site-b'"), std::string::npos) << sync.err;
  EXPECT_NE(sync.err.find("reprotect"), std::string::npos) << sync.err;
  bool fenced_event = false;
  for (const auto& e : evac_at("a", {"events", "list", "-o", "json"}).json())
    if (e["kind"] == "fenced") {
      fenced_event = true;
      EXPECT_NE(e["message"].get<std::string>().find("its disks are read-only"), std::string::npos) << e.dump();
    }
  EXPECT_TRUE(fenced_event);
  // Its disks too: nothing, root included, writes the stale copy (a VM
  // started there by hand fails to open them).
  for (const char* image : {"a/images/db01.qcow2", "a/images/web01.qcow2"}) {
    auto frozen = evac::builtin::is_immutable((root_ / image).string());
    ASSERT_TRUE(frozen.is_ok()) << frozen.status().to_string();
    EXPECT_TRUE(*frozen) << image;
  }
  auto stale_write = run_command({"qemu-io", "-f", "qcow2", "-c", "write -P 0x66 0 65536", source});
  EXPECT_NE(stale_write.exit_code, 0) << "the fenced copy took a write: " << stale_write.out;
  EXPECT_NE((stale_write.out + stale_write.err).find("Operation not permitted"), std::string::npos)
      << stale_write.out << stale_write.err;

  // Recovered once; again, or a test of it, is refused.
  auto again = evac_at("b", {"plan", "migrate", "shop-dr", "--confirm", "shop-dr"});
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_NE(again.err.find("already live here"), std::string::npos) << again.err;
  EXPECT_EQ(evac_at("b", {"plan", "test", "shop-dr"}).exit_code, 1);
  auto check = evac_at("b", {"plan", "check", "shop-dr"});
  EXPECT_EQ(check.exit_code, 1);
  EXPECT_NE(check.out.find("is live here: run"), std::string::npos) << check.out;
  EXPECT_NE(check.out.find("evac plan reprotect shop-dr"), std::string::npos) << check.out;
  // What applies now is a reprotect, which lacks its way back: named exactly.
  EXPECT_NE(check.out.find("reprotect NOT READY"), std::string::npos) << check.out;
  EXPECT_NE(check.out.find("test does not apply now"), std::string::npos) << check.out;
  EXPECT_NE(check.out.find("evac mapping create network recovery-prod prod --test-network"), std::string::npos) << check.out;
  EXPECT_EQ(check.out.find("no longer defined"), std::string::npos) << "the recovered VMs are not missing placeholders: " << check.out;
}

// The image `path` reads through, if any (qemu-img info; -U: a VM may hold it).
std::string backing_file_of(const std::string& path) {
  auto info = run_command({"qemu-img", "info", "-U", "--output=json", path});
  EXPECT_EQ(info.exit_code, 0) << info.err;
  return nlohmann::json::parse(info.out, nullptr, false).value("backing-filename", "");
}

// PIT images and manifests a site still keeps under a replica folder.
int pit_files_under(const fs::path& replica_dir) {
  int n = 0;
  std::error_code ec;
  for (const auto& e : fs::recursive_directory_iterator(replica_dir / ".evac-pits", ec))
    if (e.is_regular_file() && e.path().filename().string().rfind("pit-", 0) == 0) ++n;
  return n;
}

// A disaster: the protected site is gone. Failover records that it could
// not reach it, recovers the newest PIT, and the old site, when it comes
// back, learns it was taken over and fences its copy.
TEST_F(RunsCliTest, FailoverRunsWithoutTheProtectedSiteWhichComesBackFenced) {
  a_->stop(SIGKILL);
  auto failover = evac_at("b", {"plan", "failover", "shop-dr", "--confirm", "shop-dr", "--follow"});
  ASSERT_EQ(failover.exit_code, 0) << failover.out << failover.err;
  auto runs = evac_at("b", {"run", "list", "-o", "json"}).json();
  ASSERT_EQ(runs.size(), 1u);
  auto run = evac_at("b", {"run", "show", runs[0]["id"], "-o", "json"}).json();
  EXPECT_FALSE(run["groups"][0]["pit"].get<std::string>().empty()) << "a failover recovers the PIT chosen at its start";
  bool shutdown_recorded = false;
  for (const auto& s : run["steps"])
    if (s["kind"] == "shutdown_protected") {
      // Best effort that did not reach its target: not shown as succeeded.
      EXPECT_EQ(s["state"], "unreached");
      EXPECT_EQ(s["result"]["reached"], false) << s.dump();
      EXPECT_NE(s["error"].get<std::string>().find("not reached: protected site 'site-a' did not answer"),
                std::string::npos)
          << s.dump();
      shutdown_recorded = true;
    }
  EXPECT_TRUE(shutdown_recorded);
  auto vms = vms_at("b");
  for (const char* name : {"db01", "web01"}) EXPECT_EQ(vms[name]["state"], "running") << name;

  // The report an auditor reads, and the same facts as JSON and CSV.
  const std::string id = runs[0]["id"];
  const fs::path page = root_ / "report.html";
  auto html = evac_at("b", {"run", "report", id, "--out", page.string()});
  ASSERT_EQ(html.exit_code, 0) << html.err;
  const std::string text = read_file(page);
  EXPECT_NE(text.find("<!DOCTYPE html>"), std::string::npos);
  EXPECT_NE(text.find("Achieved RTO"), std::string::npos);
  EXPECT_NE(text.find("Promote replicas: shop"), std::string::npos);
  auto report = evac_at("b", {"run", "report", id, "--format", "json"});
  ASSERT_EQ(report.exit_code, 0) << report.err;
  EXPECT_TRUE(report.json()["rto"]["seconds"].is_number()) << report.out;
  EXPECT_TRUE(report.json()["rpo"][0]["seconds"].is_number()) << report.out;
  EXPECT_EQ(report.json()["run"]["started_by"], "admin");
  EXPECT_EQ(report.json()["step_counts"]["unreached"], 1) << report.out;
  EXPECT_NE(text.find("unreached"), std::string::npos);
  auto csv = evac_at("b", {"run", "report", id, "--format", "csv"});
  EXPECT_EQ(csv.out.rfind("run,plan,operation", 0), 0u) << csv.out;

  // The old site returns; the recovery site's configuration tells it.
  ASSERT_TRUE(a_->start()) << a_->log();
  // Even before it has heard (a sync at once), its stale copy makes no PIT:
  // the recovery site refuses cycles of a group it owns now.
  const std::size_t pits_before = evac_at("b", {"group", "pits", "shop", "-o", "json"}).json().size();
  auto early = evac_at("a", {"group", "sync", "shop"});
  EXPECT_EQ(early.exit_code, 1) << early.out;
  EXPECT_NE(early.err.find("fenced"), std::string::npos) << early.err;
  EXPECT_EQ(evac_at("b", {"group", "pits", "shop", "-o", "json"}).json().size(), pits_before);
  bool fenced = false;
  for (int i = 0; i < 100 && !fenced; ++i) {
    for (const auto& e : evac_at("a", {"events", "list", "-o", "json"}).json()) fenced |= e["kind"] == "fenced";
    if (!fenced) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_TRUE(fenced) << a_->log();
  auto sync = evac_at("a", {"group", "sync", "shop"});
  EXPECT_EQ(sync.exit_code, 1);
  EXPECT_NE(sync.err.find("fenced"), std::string::npos) << sync.err;

  // The fenced site says so, and keeps no RPO for a copy that is not live:
  // no lag, no cycle scheduled, no breach alarm.
  auto at_a = evac_at("a", {"group", "show", "shop", "-o", "json"}).json();
  EXPECT_EQ(at_a["standing"]["state"], "fenced_here") << at_a.dump();
  EXPECT_EQ(at_a["standing"]["live_at"], "site-b");
  EXPECT_EQ(at_a["replication"]["active"], false) << at_a.dump();
  EXPECT_TRUE(at_a["replication"]["next_cycle_at"].is_null());
  EXPECT_TRUE(at_a["replication"]["rpo_met"].is_null());
  auto table = evac_at("a", {"group", "show", "shop"});
  EXPECT_NE(table.out.find("fenced here: live at site-b"), std::string::npos) << table.out;
  EXPECT_EQ(table.out.find("BREACHED"), std::string::npos) << table.out;
  for (const auto& e : evac_at("a", {"events", "list", "-o", "json"}).json())
    EXPECT_NE(e["kind"], "rpo_breached") << e.dump();
}

// The worst case: the protected site never comes back. The recovery site
// unpairs it as lost; its group, live here, is no longer its placeholders'
// (so the VMs can be protected toward another site), on disks of their own.
TEST_F(RunsCliTest, ASiteLostForGoodIsUnpairedOnceItsGroupIsLiveHere) {
  auto answering = evac_at("b", {"site", "unpair", "site-a", "--lost"});
  EXPECT_EQ(answering.exit_code, 1);
  EXPECT_NE(answering.err.find("answers: it is not lost"), std::string::npos) << answering.err;
  a_->stop(SIGKILL);
  auto too_early = evac_at("b", {"site", "unpair", "site-a", "--lost"});
  EXPECT_EQ(too_early.exit_code, 1);
  EXPECT_NE(too_early.err.find("never recovered here"), std::string::npos) << too_early.err;
  EXPECT_NE(too_early.err.find("evac plan failover"), std::string::npos) << too_early.err;
  EXPECT_NE(evac_at("b", {"site", "status"}).out.find("site-a"), std::string::npos) << "a refusal changes nothing";

  auto failover = evac_at("b", {"plan", "failover", "shop-dr", "--confirm", "shop-dr", "--follow"});
  ASSERT_EQ(failover.exit_code, 0) << failover.out << failover.err;
  ASSERT_GT(pit_files_under(root_ / "b/replicas"), 0);
  ASSERT_NE(evac_at("b", {"placeholder", "list"}).out.find("db01"), std::string::npos)
      << "before: the recovered VMs are still registered as site-a's placeholders";
  auto lost = evac_at("b", {"site", "unpair", "site-a", "--lost"});
  ASSERT_EQ(lost.exit_code, 0) << lost.out << lost.err;
  EXPECT_NE(lost.out.find("as lost for good"), std::string::npos) << lost.out;
  EXPECT_NE(lost.out.find("group 'shop': live here, no longer protected"), std::string::npos) << lost.out;
  EXPECT_NE(lost.out.find("plan 'shop-dr' recovers them from the lost site"), std::string::npos) << lost.out;

  EXPECT_EQ(evac_at("b", {"site", "status"}).out.find("site-a"), std::string::npos);
  EXPECT_EQ(pit_files_under(root_ / "b/replicas"), 0) << "the PITs of a group nobody replicates any more are released";
  for (const auto& [name, vm] : vms_at("b")) {
    EXPECT_EQ(vm["state"], "running") << name;
    EXPECT_EQ(backing_file_of(vm["disks"][0]["path"]), "") << name << " still reads through a released PIT";
  }
  bool recorded = false;
  for (const auto& e : evac_at("b", {"events", "list", "-o", "json"}).json()) recorded |= e["kind"] == "site_lost";
  EXPECT_TRUE(recorded);
  // Its VMs are this site's own now, no longer placeholders kept for site-a.
  EXPECT_EQ(evac_at("b", {"placeholder", "list"}).out.find("db01"), std::string::npos)
      << evac_at("b", {"placeholder", "list"}).out;
}

// A reprotect can reach the old site before the recovery site's
// configuration has told it of the failover (it just came back; the news
// travels with the next heartbeat). The reprotect itself carries the news:
// the old site fences its copy on the spot, then reprotects, instead of
// failing the run with "not fenced here".
class RunsCliQuietRecoverySiteTest : public RunsCliTest {
 protected:
  RunsCliQuietRecoverySiteTest() { b_heartbeat_interval_ = "3600s"; }
};

TEST_F(RunsCliQuietRecoverySiteTest, AReprotectArrivingBeforeTheOldSiteHeardOfTheFailoverFencesItFirst) {
  std::ofstream(root_ / "off.yaml") << "kind: RecoveryPlan\nname: shop-dr\ngroups: [shop]\nvms:\n"
                                       "  - {vm: db01, priority: 1, startup: leave-off}\n"
                                       "  - {vm: web01, priority: 2, startup: leave-off}\n";
  ASSERT_EQ(evac_at("b", {"apply", "-f", (root_ / "off.yaml").string()}).exit_code, 0);
  // The way back is mapped while both sites are up (creating a mapping
  // sends the configuration, which would tell site-a too early).
  for (auto args : std::vector<std::vector<std::string>>{
           {"mapping", "create", "network", "recovery-prod", "prod", "--test-network", "test-isolated-a"},
           {"mapping", "create", "storage", "replicas", "images"}})
    ASSERT_EQ(evac_at("b", args).exit_code, 0);

  a_->stop(SIGKILL);
  auto failover = evac_at("b", {"plan", "failover", "shop-dr", "--confirm", "shop-dr", "--follow"});
  ASSERT_EQ(failover.exit_code, 0) << failover.out << failover.err;
  // Site-a comes back, unaware: site-b's heartbeats, which would send it
  // the news, are an hour apart in this fixture.
  ASSERT_TRUE(a_->start()) << a_->log();
  for (const auto& e : evac_at("a", {"events", "list", "-o", "json"}).json())
    ASSERT_NE(e["kind"], "fenced") << "site-a heard of the failover already; the test proves nothing: " << e.dump();

  auto started = evac_at("b", {"plan", "reprotect", "shop-dr", "-o", "json"});
  ASSERT_EQ(started.exit_code, 0) << started.err;
  auto reprotect = evac_at("b", {"run", "show", started.json()["id"], "--follow"});
  ASSERT_EQ(reprotect.exit_code, 0) << reprotect.out << reprotect.err;
  bool fenced = false;
  for (const auto& e : evac_at("a", {"events", "list", "-o", "json"}).json()) fenced |= e["kind"] == "fenced";
  EXPECT_TRUE(fenced) << "site-a records that its copy was fenced";
  for (const auto& [name, vm] : vms_at("a")) {
    EXPECT_EQ(vm["is_placeholder"], true) << name;
    EXPECT_EQ(vm["state"], "shut off") << name;
  }
  auto group = evac_at("b", {"group", "show", "shop", "-o", "json"});
  ASSERT_EQ(group.exit_code, 0) << group.err;
  EXPECT_EQ(group.json()["protected_site"], "site-b");
  EXPECT_EQ(evac_at("b", {"group", "verify", "shop"}).exit_code, 0);
}

// The way home: migrate to site-b, reprotect (site-a's copies become the
// placeholders and seed the reverse replication, so only what changed at
// site-b travels back), then fail back from site-a, which migrates home and
// reprotects again. Every step keeps one live copy.
TEST_F(RunsCliTest, ReprotectThenFailbackBringsTheVmsHome) {
  // The test driver cannot back up a running VM, so its recovered VMs stay
  // off and replicate by scanning (tests/e2e runs the same on real guests).
  std::ofstream(root_ / "off.yaml") << "kind: RecoveryPlan\nname: shop-dr\ngroups: [shop]\nvms:\n"
                                       "  - {vm: db01, priority: 1, startup: leave-off}\n"
                                       "  - {vm: web01, priority: 2, startup: leave-off}\n";
  ASSERT_EQ(evac_at("b", {"apply", "-f", (root_ / "off.yaml").string()}).exit_code, 0);
  // 4 MiB of random data in db01, written before the migration: without a
  // seed, the reverse replication would send all of it again.
  const fs::path random = root_ / "random.raw";
  ASSERT_EQ(run_command({"dd", "if=/dev/urandom", "of=" + random.string(), "bs=1M", "count=4", "status=none"}).exit_code, 0);
  const std::string source = (root_ / "a/images/db01.qcow2").string();
  auto wrote = run_command({"qemu-io", "-f", "qcow2", "-c", "write -s " + random.string() + " 4194304 4194304", "-c",
                            "write -P 0x5a 1048576 65536", source});
  ASSERT_EQ(wrote.exit_code, 0) << wrote.err;
  auto migrate = evac_at("b", {"plan", "migrate", "shop-dr", "--confirm", "shop-dr", "--follow"});
  ASSERT_EQ(migrate.exit_code, 0) << migrate.out << migrate.err;

  // Site-b writes while it runs the VMs.
  const std::string live = vms_at("b")["db01"]["disks"][0]["path"];
  ASSERT_EQ(run_command({"qemu-io", "-f", "qcow2", "-c", "write -P 0x6b 2097152 65536", live}).exit_code, 0);

  // No way back yet: the readiness check names the mappings to create.
  auto started = evac_at("b", {"plan", "reprotect", "shop-dr", "-o", "json"});
  ASSERT_EQ(started.exit_code, 0) << started.err;
  const std::string id = started.json()["id"];
  auto failed = evac_at("b", {"run", "show", id, "--follow"});
  EXPECT_EQ(failed.exit_code, 1) << failed.out;
  const std::string error = evac_at("b", {"run", "show", id, "-o", "json"}).json()["error"];
  EXPECT_NE(error.find("evac mapping create network recovery-prod prod --test-network"), std::string::npos) << error;
  EXPECT_NE(error.find("evac mapping create storage replicas images"), std::string::npos) << error;
  EXPECT_EQ(vms_at("a")["db01"]["is_placeholder"], false) << "a failed readiness check changes nothing";

  for (auto args : std::vector<std::vector<std::string>>{
           {"mapping", "create", "network", "recovery-prod", "prod", "--test-network", "test-isolated-a"},
           {"mapping", "create", "storage", "replicas", "images"}})
    ASSERT_EQ(evac_at("b", args).exit_code, 0);
  ASSERT_EQ(evac_at("b", {"run", "resume", id}).exit_code, 0);
  auto reprotect = evac_at("b", {"run", "show", id, "--follow"});
  ASSERT_EQ(reprotect.exit_code, 0) << reprotect.out << reprotect.err;
  for (const char* step : {"Consolidate disks: db01", "Release replicas here: shop",
                           "Make placeholders at former protected site: shop", "Protect from this site: shop",
                           "Synchronize storage back (delta resync): shop"})
    EXPECT_NE(reprotect.out.find(step), std::string::npos) << step << "\n" << reprotect.out;

  // Site-b's VMs stand on their own disks now, with everything they held,
  // and the PITs they were recovered from are gone from site-b.
  EXPECT_EQ(backing_file_of(live), "") << live << " still reads through a PIT";
  for (const char* check : {"read -P 0x5a 1048576 65536", "read -P 0x6b 2097152 65536"}) {
    auto read = run_command({"qemu-io", "-r", "-f", "qcow2", "-c", check, live});
    EXPECT_EQ(read.exit_code, 0) << read.err;
    EXPECT_EQ(read.out.find("Pattern verification failed"), std::string::npos) << check << ": " << read.out;
  }
  EXPECT_EQ(pit_files_under(root_ / "b/replicas"), 0);
  const auto reprotect_run = evac_at("b", {"run", "show", id, "-o", "json"}).json();
  for (const auto& s : reprotect_run["steps"]) {
    if (s["kind"] != "release_replicas") continue;
    EXPECT_EQ(s["result"]["released_copies"].size(), 1u) << s.dump();
    EXPECT_FALSE(s["result"]["removed_pits"].empty()) << s.dump();
    EXPECT_TRUE(s["result"]["kept_pits"].empty()) << s.dump();
    EXPECT_EQ(s["result"]["flattened"].size(), 2u) << "db01 and web01 were off: flattened offline: " << s.dump();
  }

  // Site-b protects the group now; site-a's copies are its placeholders.
  auto group = evac_at("b", {"group", "show", "shop", "-o", "json"});
  ASSERT_EQ(group.exit_code, 0) << group.err;
  EXPECT_EQ(group.json()["protected_site"], "site-b");
  EXPECT_EQ(group.json()["recovery_site"], "site-a");
  EXPECT_EQ(evac_at("a", {"group", "show", "shop"}).exit_code, 1) << "site-a protects nothing any more";
  for (const auto& [name, vm] : vms_at("a")) {
    EXPECT_EQ(vm["is_placeholder"], true) << name;
    EXPECT_EQ(vm["state"], "shut off") << name;
  }
  auto steps = evac_at("b", {"run", "show", id, "-o", "json"}).json()["steps"];
  for (const auto& s : steps) {
    if (s["kind"] != "sync_reverse") continue;
    EXPECT_LT(s["result"]["bytes_sent"].get<std::uint64_t>(), 1u << 20)
        << "only the blocks site-b wrote travel back, not the 4 MiB site-a still has: " << s.dump();
  }
  EXPECT_EQ(evac_at("b", {"group", "verify", "shop"}).exit_code, 0);
  auto reprotect_again = evac_at("b", {"plan", "reprotect", "shop-dr"});
  EXPECT_EQ(reprotect_again.exit_code, 1);
  EXPECT_NE(reprotect_again.err.find("nothing to reprotect"), std::string::npos) << reprotect_again.err;

  // Failback runs at site-a, from the plan site-b's configuration carries.
  bool listed = false;
  for (int i = 0; i < 100 && !listed; ++i) {
    for (const auto& p : evac_at("a", {"plan", "list", "-o", "json"}).json())
      listed |= p["name"] == "shop-dr" && p["stored_at"] == "site-b" && p["ready"] == true;
    if (!listed) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_TRUE(listed) << evac_at("a", {"plan", "list", "-o", "json"}).out;
  auto unconfirmed = evac_at("a", {"plan", "failback", "shop-dr"});
  EXPECT_EQ(unconfirmed.exit_code, 2) << unconfirmed.err;
  auto failback = evac_at("a", {"plan", "failback", "shop-dr", "--confirm", "shop-dr", "--follow"});
  ASSERT_EQ(failback.exit_code, 0) << failback.out << failback.err;
  for (const char* step : {"Hand over at protected site: shop", "Recover VM: db01", "Protect from this site: shop",
                           "Synchronize storage back (delta resync): shop"})
    EXPECT_NE(failback.out.find(step), std::string::npos) << step << "\n" << failback.out;

  // Home: site-a runs the VMs on what site-b wrote; site-b keeps placeholders.
  auto home = vms_at("a");
  for (const char* name : {"db01", "web01"}) {
    EXPECT_EQ(home[name]["is_placeholder"], false) << name;
    EXPECT_EQ(home[name]["nics"][0]["network"], "prod") << name;
  }
  const std::string back = home["db01"]["disks"][0]["path"];
  EXPECT_EQ(backing_file_of(back), "") << "the failback's reprotect consolidated " << back;
  EXPECT_EQ(pit_files_under(root_ / "a/images"), 0) << "site-a's PITs from site-b are released";
  for (const char* check : {"read -P 0x5a 1048576 65536", "read -P 0x6b 2097152 65536"}) {
    auto read = run_command({"qemu-io", "-r", "-f", "qcow2", "-c", check, back});
    EXPECT_EQ(read.exit_code, 0) << read.err;
    EXPECT_EQ(read.out.find("Pattern verification failed"), std::string::npos) << check << ": " << read.out;
  }
  for (const auto& [name, vm] : vms_at("b")) {
    EXPECT_EQ(vm["is_placeholder"], true) << name;
    EXPECT_EQ(vm["state"], "shut off") << name;
    // Fenced when the failback handed over: the disks it ran on are read-only.
    auto frozen = evac::builtin::is_immutable(vm["disks"][0]["path"].get<std::string>());
    ASSERT_TRUE(frozen.is_ok()) << frozen.status().to_string();
    EXPECT_TRUE(*frozen) << name << " at site-b: " << vm["disks"][0]["path"];
  }
  // Site-a's VMs left the disks they were fenced on: those are writable again.
  for (const char* image : {"a/images/db01.qcow2", "a/images/web01.qcow2"}) {
    auto frozen = evac::builtin::is_immutable((root_ / image).string());
    ASSERT_TRUE(frozen.is_ok()) << frozen.status().to_string();
    EXPECT_FALSE(*frozen) << image << " was not released when its VM moved onto new disks";
  }
  group = evac_at("a", {"group", "show", "shop", "-o", "json"});
  ASSERT_EQ(group.exit_code, 0) << group.err;
  EXPECT_EQ(group.json()["protected_site"], "site-a");
  EXPECT_EQ(evac_at("a", {"group", "sync", "shop"}).exit_code, 0) << "replication to site-b goes on";

  // And the plan works as on day one: a test at site-b, then its cleanup.
  auto test = evac_at("b", {"plan", "test", "shop-dr", "--follow"});
  EXPECT_EQ(test.exit_code, 0) << test.out << test.err;
  EXPECT_EQ(vms_at("b").count("db01-test"), 1u);
  EXPECT_EQ(evac_at("b", {"plan", "cleanup", "shop-dr", "--follow"}).exit_code, 0);
  EXPECT_EQ(vms_at("b").count("db01-test"), 0u);
}

// A prompt holds the run until an operator acknowledges it; meanwhile no
// other run may take the group. A cancelled run starts nothing more.
// A cycle that outlasts replication.wait_limit: `evac group sync` is
// answered "still going" and follows the same cycle, in as many calls as
// it takes, to its PIT (a proxy with a short read timeout in front of the
// API needs that).
TEST_F(RunsCliTest, AGroupSyncLongerThanTheWaitLimitIsFollowedToItsPit) {
  ASSERT_NO_FATAL_FAILURE(make_site_a_cycles_slow());
  const auto before = evac_at("a", {"group", "show", "shop", "-o", "json"}).json()["replication"]["cycles"];

  auto sync = evac_at("a", {"group", "sync", "shop"});
  ASSERT_EQ(sync.exit_code, 0) << sync.out << sync.err;
  EXPECT_NE(sync.out.find("complete"), std::string::npos) << sync.out;
  const std::string log = a_->log();
  int still_going = 0;
  for (std::size_t at = 0; (at = log.find("POST /api/v1/groups/shop/sync -> 202", at)) != std::string::npos; ++at)
    ++still_going;
  EXPECT_GE(still_going, 2) << "the first call and at least one follow-up came back before the cycle ended";
  const auto after = evac_at("a", {"group", "show", "shop", "-o", "json"}).json()["replication"]["cycles"];
  EXPECT_EQ(after["succeeded"].get<int>(), before["succeeded"].get<int>() + 1) << "one cycle, followed, not one per call";
  EXPECT_EQ(after["failed"], before["failed"]);
}

// While a migration's "Synchronize storage" follows a long cycle at the
// protected site, the run shows how far that cycle has got.
TEST_F(RunsCliTest, AMigrationsSyncShowsTheProtectedSitesProgress) {
  ASSERT_NO_FATAL_FAILURE(make_site_a_cycles_slow());
  auto started = evac_at("b", {"plan", "migrate", "shop-dr", "--confirm", "shop-dr", "-o", "json"});
  ASSERT_EQ(started.exit_code, 0) << started.err;
  const std::string id = started.json()["id"];
  json seen;
  for (int i = 0; i < 300 && seen.is_null(); ++i) {
    const json run = evac_at("b", {"run", "show", id, "-o", "json"}).json();
    // The cycle's first report may come before it has sized its disks
    // (seen under ASan): wait for one that has.
    for (const auto& s : run["steps"])
      if (s["kind"] == "sync_protected" && s.contains("progress") && s["progress"].value("bytes_total", 0ull) > 0)
        seen = s["progress"];
    if (run["state"] != "running") break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_TRUE(seen.is_object()) << "no progress shown while site-a's cycle ran\n" << b_->log();
  EXPECT_EQ(seen["running"], true) << seen.dump();
  EXPECT_GT(seen["bytes_total"].get<std::uint64_t>(), 12u << 20) << seen.dump();
  auto finished = evac_at("b", {"run", "show", id, "--follow"});
  ASSERT_EQ(finished.exit_code, 0) << finished.out << finished.err;
  const json ended = evac_at("b", {"run", "show", id, "-o", "json"}).json();
  for (const auto& s : ended["steps"])
    EXPECT_FALSE(s.contains("progress")) << "an ended step shows none: " << s.dump();
}

TEST_F(RunsCliTest, PromptsWaitForAckAndHoldTheGroup) {
  std::ofstream(root_ / "prompt.yaml") << "kind: RecoveryPlan\nname: shop-dr\ngroups: [shop]\nvms:\n"
                                          "  - vm: db01\n    priority: 1\n    wait_for_guest: false\n"
                                          "    before_power_on:\n      - prompt: Is the licence server up?\n"
                                          "  - {vm: web01, priority: 2, wait_for_guest: false}\n";
  ASSERT_EQ(evac_at("b", {"apply", "-f", (root_ / "prompt.yaml").string()}).exit_code, 0);
  auto started = evac_at("b", {"plan", "test", "shop-dr", "-o", "json"});
  ASSERT_EQ(started.exit_code, 0) << started.err;
  const std::string id = started.json()["id"];
  std::string state;
  for (int i = 0; i < 100 && state != "waiting"; ++i) {
    state = evac_at("b", {"run", "show", id, "-o", "json"}).json()["state"];
    if (state != "waiting") std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_EQ(state, "waiting");
  EXPECT_EQ(vms_at("b").count("web01-test") ? vms_at("b")["web01-test"]["state"] : json("none"), "shut off")
      << "nothing after the prompt has started";

  auto other = evac_at("b", {"plan", "cleanup", "shop-dr"});
  EXPECT_EQ(other.exit_code, 1);
  EXPECT_NE(other.err.find("is waiting"), std::string::npos) << other.err;
  EXPECT_NE(other.err.find(id), std::string::npos) << "the refusal names the run holding the group: " << other.err;

  auto ack = evac_at("b", {"run", "ack", id});
  ASSERT_EQ(ack.exit_code, 0) << ack.err;
  auto follow = evac_at("b", {"run", "show", id, "--follow"});
  EXPECT_EQ(follow.exit_code, 0) << follow.out << follow.err;
  EXPECT_EQ(vms_at("b")["web01-test"]["state"], "running");
  EXPECT_EQ(evac_at("b", {"run", "ack", id}).exit_code, 1) << "nothing waits any more";

  // Cleanup, then a test cancelled at its prompt: skipped steps, no VM started.
  ASSERT_EQ(evac_at("b", {"plan", "cleanup", "shop-dr", "--follow"}).exit_code, 0);
  auto second = evac_at("b", {"plan", "test", "shop-dr", "-o", "json"});
  ASSERT_EQ(second.exit_code, 0) << second.err;
  const std::string id2 = second.json()["id"];
  for (int i = 0; i < 100 && evac_at("b", {"run", "show", id2, "-o", "json"}).json()["state"] != "waiting"; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  ASSERT_EQ(evac_at("b", {"run", "cancel", id2}).exit_code, 0);
  auto cancelled = evac_at("b", {"run", "show", id2, "-o", "json"}).json();
  EXPECT_EQ(cancelled["state"], "cancelled");
  int skipped = 0;
  for (const auto& s : cancelled["steps"]) skipped += s["state"] == "skipped";
  EXPECT_GT(skipped, 0);
  EXPECT_NE(vms_at("b")["db01-test"]["state"], "running") << "the prompt guarded db01's power-on";
}

}  // namespace
}  // namespace evac::testing
