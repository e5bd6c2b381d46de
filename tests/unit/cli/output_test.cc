// The CLI's YAML: what `-o yaml` prints must read back as the same JSON
// (`evac get plan X -o yaml > f; evac apply -f f`), and hand-written YAML
// must mean what an operator expects.
#include <gtest/gtest.h>

#include "cli/output.h"

namespace evac::cli {
namespace {

using nlohmann::json;

TEST(CliYamlTest, PrintedYamlReadsBackAsTheSameJson) {
  json j = {{"name", "shop-dr"},
            {"numbers_as_strings", {"5432", "1.5", "-7", "1e3"}},
            {"words_that_look_special", {"true", "no", "yes", "null", "~", "", "off"}},
            {"real", {{"int", 5432}, {"neg", -3}, {"float", 2.5}, {"yes", true}, {"no", false}, {"none", nullptr}}},
            {"empty_list", json::array()},
            {"empty_map", json::object()},
            {"text", "line one: with colon # and hash"},
            {"nested", {{{"vm", "db01"}, {"depends_on", {"a", "b"}}}}}};
  std::string yaml = to_yaml(j);
  auto docs = parse_documents(yaml, "printed");
  ASSERT_TRUE(docs.is_ok()) << docs.status().to_string() << "\n" << yaml;
  ASSERT_EQ(docs->size(), 1u);
  EXPECT_EQ((*docs)[0], j) << yaml;
}

TEST(CliYamlTest, HandWrittenYamlMeansWhatItSays) {
  auto docs = parse_documents(R"(
kind: RecoveryPlan
name: shop-dr
vms:
  - vm: db01
    priority: 1
    wait_for_guest: false
    checks:
      - tcp: {port: 5432}
    note: "5432"
---
# a second document
kind: RecoveryPlan
name: other
)", "plan.yaml");
  ASSERT_TRUE(docs.is_ok()) << docs.status().to_string();
  ASSERT_EQ(docs->size(), 2u);
  const json& plan = (*docs)[0];
  EXPECT_EQ(plan["vms"][0]["priority"], 1);
  EXPECT_EQ(plan["vms"][0]["wait_for_guest"], false);
  EXPECT_EQ(plan["vms"][0]["checks"][0]["tcp"]["port"], 5432);
  EXPECT_EQ(plan["vms"][0]["note"], "5432") << "quoted stays a string";
  EXPECT_EQ((*docs)[1]["name"], "other");
}

TEST(CliYamlTest, BrokenYamlAndDuplicateKeysAreRefusedWithWhere) {
  auto bad = parse_documents("name: [unclosed\n", "plan.yaml");
  ASSERT_FALSE(bad.is_ok());
  EXPECT_NE(bad.status().message().find("plan.yaml is not valid YAML or JSON: line "), std::string::npos)
      << bad.status().to_string();

  auto dup = parse_documents("name: a\nvms:\n  - vm: x\n    priority: 1\n    priority: 2\n", "plan.yaml");
  ASSERT_FALSE(dup.is_ok());
  EXPECT_NE(dup.status().message().find("plan.yaml.vms[0]: key 'priority' appears twice"), std::string::npos)
      << dup.status().to_string();
}

TEST(CliTimeTest, InstantsToTheMillisecond) {
  EXPECT_EQ(format_time_ms(1'796'608'417'005), "2026-12-07T01:53:37.005Z");
  EXPECT_EQ(format_time_ms(0), "1970-01-01T00:00:00.000Z");
}

TEST(CliRunTest, AStepPastItsTimeoutSaysByHowMuch) {
  EXPECT_EQ(step_state(json{{"state", "running"}}), "running");
  EXPECT_EQ(step_state(json{{"state", "running"}, {"overdue_s", 35}}), "running (35 s past its timeout)");
}

TEST(CliRunTest, AResyncStepSaysHowFarItHasGot) {
  const json progress = {{"running", true},       {"cycle", 2},           {"phase", "replicating"},
                         {"bytes_total", 4096},  {"bytes_scanned", 1024}, {"bytes_sent", 512},
                         {"scan_rate_bytes", 64}, {"eta_seconds", 48}};
  EXPECT_EQ(step_state(json{{"state", "running"}, {"progress", progress}}),
            "running (cycle 2 replicating: scanned 1.0 KiB of 4.0 KiB (25%), sent 512 B, 64 B/s, ETA 48s)");
}

TEST(CliRunTest, AStepRunAgainAfterARestartSaysSo) {
  EXPECT_EQ(step_state(json{{"state", "succeeded"}, {"result", {{"interrupted_attempt", {{"started_at_ms", 5}}}}}}),
            "succeeded (run again after an evacd restart)");
  EXPECT_EQ(step_state(json{{"state", "succeeded"}, {"result", "done"}}), "succeeded");
}

}  // namespace
}  // namespace evac::cli
