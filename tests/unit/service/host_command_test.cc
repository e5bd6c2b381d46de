// Host callouts: run without a shell, with the run's facts in their
// environment, bounded by their timeout.
#include "service/host_command.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace evac {
namespace {

using ::testing::HasSubstr;

TEST(HostCommand, PassesEnvironmentAndCapturesOutput) {
  auto r = run_host_command({"sh", "-c", "echo vm=$EVAC_VM; echo oops >&2; exit 3"}, {"EVAC_VM=web01"}, std::chrono::seconds(10));
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ(r->exit_code, 3);
  EXPECT_THAT(r->output, HasSubstr("vm=web01"));
  EXPECT_THAT(r->output, HasSubstr("oops"));
}

TEST(HostCommand, NoShellInterpretsItsArguments) {
  auto r = run_host_command({"echo", "$EVAC_VM;", "*"}, {"EVAC_VM=web01"}, std::chrono::seconds(10));
  ASSERT_TRUE(r.is_ok());
  EXPECT_EQ(r->output, "$EVAC_VM; *\n");
}

TEST(HostCommand, ATimeoutKillsTheWholeGroup) {
  auto r = run_host_command({"sh", "-c", "sleep 30 & sleep 30"}, {}, std::chrono::seconds(1));
  EXPECT_EQ(r.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_THAT(r.status().message(), HasSubstr("did not finish within 1 s"));
}

TEST(HostCommand, AMissingProgramSaysSo) {
  auto r = run_host_command({"/nonexistent/callout"}, {}, std::chrono::seconds(5));
  EXPECT_EQ(r.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_THAT(r.status().message(), HasSubstr("/nonexistent/callout"));
  EXPECT_FALSE(r.status().hint().empty());
}

}  // namespace
}  // namespace evac
