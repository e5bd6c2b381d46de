// The CLI's output: what `-o yaml` prints must read back as the same JSON
// (`evac get plan X -o yaml > f; evac apply -f f`); instants and step
// states as the tables show them.
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
