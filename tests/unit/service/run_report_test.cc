// Run reports: RTO from the first step to the last VM milestone, RPO from
// the recovered PIT, and renderings that escape what the run recorded.
#include "service/run_report.h"
#include "service/run_service.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "step_samples.h"

namespace evac {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using nlohmann::json;

RunRow failover_run() {
  RunRow r;
  r.id = "20261126-0700-abcd";
  r.plan = "shop-dr";
  r.operation = "failover";
  r.state = "succeeded";
  r.started_by = "admin";
  r.created_at = 1000;
  r.ended_at = 1040;
  r.plan_document = R"({"name":"shop-dr","groups":["shop"]})";
  r.groups = R"([{"name":"shop","pit":"pit-7","pit_created_at":880}])";
  return r;
}

TEST(RunReport, RtoRunsFromTheFirstStepToTheLastVmMilestone) {
  std::vector<engine::Step> steps = {step(0, "Check readiness", "readiness", 1'000'000, 1'000'500),
                                     step(1, "Power on priority 1 VM: db01", "power_on", 1'001'000, 1'002'000),
                                     step(2, "Wait for guest heartbeat: db01", "wait_for_guest", 1'002'000, 1'020'000),
                                     step(3, "Check TCP port 5432: db01", "check", 1'020'000, 1'031'250),
                                     step(4, "Priority 1 VMs are up", "barrier", 1'031'250, 1'031'300)};
  json r = run_report(failover_run(), steps);
  EXPECT_DOUBLE_EQ(r["rto"]["seconds"].get<double>(), 31.25);
  EXPECT_EQ(r["rto"]["text"], "31.2 s");
  ASSERT_EQ(r["rpo"].size(), 1u);
  EXPECT_EQ(r["rpo"][0]["pit"], "pit-7");
  EXPECT_DOUBLE_EQ(r["rpo"][0]["seconds"].get<double>(), 120.0) << "the PIT was 120 s old when the run started";
  EXPECT_EQ(r["steps"].size(), 5u);
  EXPECT_EQ(r["plan"]["name"], "shop-dr");
  EXPECT_EQ(r["run"]["started_by"], "admin");
}

// A failover's RPO is a data-loss window an auditor can use: from the
// recovered PIT's instant (to the millisecond) to the protected site's last
// contact; nothing acknowledged before the instant is lost.
TEST(RunReport, AFailoverGivesTheLossWindowFromTheInstantToTheLastContact) {
  RunRow run = failover_run();
  run.groups = R"([{"name":"shop","protected_site":"site-a","pit":"pit-7","pit_created_at":880,)"
               R"("pit_created_at_ms":880250,"protected_last_seen_ms":892750}])";
  json r = run_report(run, {step(0, "Power on priority 1 VM: db01", "power_on", 1'000'000, 1'002'000)});
  ASSERT_EQ(r["rpo"].size(), 1u);
  const json& g = r["rpo"][0];
  EXPECT_EQ(g["pit_instant"], "1970-01-01T00:14:40.250Z");
  EXPECT_EQ(g["protected_site_last_seen"], "1970-01-01T00:14:52.750Z");
  EXPECT_DOUBLE_EQ(g["loss_window_seconds"].get<double>(), 12.5);
  EXPECT_DOUBLE_EQ(g["seconds"].get<double>(), 12.5);
  EXPECT_THAT(g["text"].get<std::string>(), HasSubstr("at most 12.500 s of writes"));
  EXPECT_THAT(g["text"].get<std::string>(), HasSubstr("site-a's last contact"));
  EXPECT_THAT(report_html(r), HasSubstr("1970-01-01T00:14:52.750Z"));

  // A test run's RPO stays the PIT's age, now to the millisecond.
  run.operation = "test";
  json t = run_report(run, {step(0, "Power on priority 1 VM: db01", "power_on", 1'000'000, 1'002'000)});
  EXPECT_DOUBLE_EQ(t["rpo"][0]["seconds"].get<double>(), 119.75);
  EXPECT_FALSE(t["rpo"][0].contains("loss_window_seconds"));
}

TEST(RunReport, AFailedRunAchievedNoRto) {
  RunRow run = failover_run();
  run.state = "failed";
  json r = run_report(run, {step(0, "Power on priority 1 VM: db01", "power_on", 1'000'000, 1'001'000),
                            step(1, "Check TCP port 5432: db01", "check", 1'001'000, 1'300'000, engine::StepState::kFailed)});
  EXPECT_TRUE(r["rto"]["seconds"].is_null());
  EXPECT_THAT(r["rto"]["text"].get<std::string>(), HasSubstr("failed"));
}

// The report of a planned move (`operation`) whose promote step recovered
// pit-9, made at `pit_created_at` (the run started at 1000).
json planned_move_report(const std::string& operation, std::int64_t pit_created_at) {
  RunRow run = failover_run();
  run.operation = operation;
  run.groups = R"([{"name":"shop","pit":""}])";
  engine::Step promote = step(0, "Promote replicas: shop", "promote", 1'000'000, 1'000'100);
  promote.spec.params = {{"group", "shop"}};
  promote.result = {{"pit", "pit-9"}, {"pit_created_at", pit_created_at}};
  return run_report(run, {promote});
}

TEST(RunReport, AMigrationLosesNothingByConstruction) {
  json r = planned_move_report("migrate", 999);
  EXPECT_EQ(r["rpo"][0]["pit"], "pit-9") << "a migration's PIT is the one its promote step chose";
  EXPECT_EQ(r["rpo"][0]["seconds"], 0);
}

TEST(RunReport, AFailbackLosesNothingEither) {
  // Its PIT comes from the final sync after the shutdown, so it is younger
  // than the run: an age counted from the run's start came out negative.
  json r = planned_move_report("failback", 1'013);
  EXPECT_EQ(r["rpo"][0]["seconds"], 0);
  EXPECT_THAT(r["rpo"][0]["text"].get<std::string>(), HasSubstr("final sync"));
}

TEST(RunReport, CsvAndHtmlEscapeWhatTheRunRecorded) {
  engine::Step bad = step(0, "Run on the evacd host (web01): notify", "host_command", 1'000'000, 1'000'100, engine::StepState::kFailed);
  bad.error = "exited with 1: \"<script>alert(1)</script>\", and more";
  json r = run_report(failover_run(), {bad});
  std::string csv = report_csv(r);
  EXPECT_THAT(csv, HasSubstr("\"exited with 1: \"\"<script>alert(1)</script>\"\", and more\""));
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), 2) << "a header and one row";
  std::string html = report_html(r);
  EXPECT_THAT(html, Not(HasSubstr("<script>")));
  EXPECT_THAT(html, HasSubstr("&lt;script&gt;"));
  EXPECT_THAT(html, HasSubstr("Achieved RTO"));
  EXPECT_THAT(html, HasSubstr("The plan as it was when the run started"));
}

// A failover whose protected site was gone: its best-effort shutdown is
// counted apart from the steps that did their work, and said so in HTML.
TEST(RunReport, UnreachedStepsAreCountedApartFromSucceededOnes) {
  engine::Step shutdown = step(0, "Shut down VMs at protected site: shop", "shutdown_protected", 1'000'000, 1'000'100,
                               engine::StepState::kUnreached);
  shutdown.error = "not reached: protected site 'site-a' did not answer";
  json r = run_report(failover_run(), {shutdown, step(1, "Power on priority 1 VM: db01", "power_on", 1'000'100, 1'002'000)});
  EXPECT_EQ(r["step_counts"]["unreached"], 1);
  EXPECT_EQ(r["step_counts"]["succeeded"], 1);
  EXPECT_EQ(r["steps"][0]["state"], "unreached");
  std::string html = report_html(r);
  EXPECT_THAT(html, HasSubstr("1 succeeded, 1 unreached"));
  EXPECT_THAT(html, HasSubstr("could not be reached"));
  EXPECT_THAT(report_csv(r), HasSubstr(",unreached,"));
}

// A step still running past its timeout is waiting on a call the engine
// cannot interrupt: its view says by how much.
TEST(RunReport, EveryIpRuleOutcomeIsListedPerVm) {
  RunRow run = failover_run();
  run.plan_document = R"({"name":"shop-dr","groups":["shop"],
    "ip_rules":[{"network":"prod","from":"10.0.0.0/24","to":"10.1.0.0/24"}],
    "vms":[{"vm":"batch01","startup":"leave-off"}]})";
  auto moved = step(1, "Customize IP: db01", "customize_ip", 1000, 1001);
  moved.spec.params = {{"vm", "db01"}};
  moved.result = {{"changed", {{{"interface", "eth0"}, {"from", "10.0.0.11/24"}, {"to", "10.1.0.11/24"}}}}};
  auto failed = step(2, "Customize IP: web01", "customize_ip", 1000, 1002, engine::StepState::kFailed);
  failed.spec.params = {{"vm", "web01"}};
  failed.error = "the guest of web01 shows no interface with MAC 52:54:00:00:00:01";
  auto skipped = step(3, "Customize IP: app01", "customize_ip", 0, 0, engine::StepState::kSkipped);
  skipped.spec.params = {{"vm", "app01"}};
  json report = run_report(run, {moved, failed, skipped});
  const json& ip = report["ip_customization"];
  ASSERT_EQ(ip.size(), 4u) << ip.dump(2);
  EXPECT_EQ(ip[0]["vm"], "db01");
  EXPECT_EQ(ip[0]["applied"][0]["to"], "10.1.0.11/24");
  EXPECT_EQ(ip[1]["vm"], "web01");
  EXPECT_THAT(ip[1]["text"].get<std::string>(), HasSubstr("not applied: the guest of web01"));
  EXPECT_THAT(ip[2]["text"].get<std::string>(), HasSubstr("not applied: the step skipped"));
  EXPECT_EQ(ip[3]["vm"], "batch01");
  EXPECT_THAT(ip[3]["text"].get<std::string>(), HasSubstr("keeps its production addresses"));
  EXPECT_THAT(report_html(report), HasSubstr("eth0: 10.0.0.11/24 -&gt; 10.1.0.11/24"));
  // Without IP rules there is nothing to say.
  EXPECT_TRUE(run_report(failover_run(), {moved})["ip_customization"].empty());
}

}  // namespace
}  // namespace evac
