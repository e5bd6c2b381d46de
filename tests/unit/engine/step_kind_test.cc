#include "engine/step_kind.h"

#include <gtest/gtest.h>

#include <set>
#include <string>

#include "engine/plan_compiler.h"
#include "engine/run_engine.h"

namespace evac::engine {
namespace {

constexpr int kKindCount = static_cast<int>(StepKind::kSyncReverse) + 1;

TEST(StepKindTest, EveryKindHasOneUniqueNameThatReadsBack) {
  std::set<std::string> names;
  for (int i = 0; i < kKindCount; ++i) {
    const auto kind = static_cast<StepKind>(i);
    const std::string name(step_kind_name(kind));
    EXPECT_FALSE(name.empty());
    EXPECT_TRUE(names.insert(name).second) << name << " is the name of two kinds";
    EXPECT_EQ(step_kind_from_name(name), kind) << name;
  }
  EXPECT_FALSE(step_kind_from_name("Power_On").has_value()) << "names are exact";
  EXPECT_FALSE(step_kind_from_name("").has_value());
}

// The names are what stored runs hold: renaming one would strand every run
// a restarted evacd must resume.
TEST(StepKindTest, StoredNamesAreTheReleasedOnes) {
  EXPECT_EQ(step_kind_name(StepKind::kPowerOn), "power_on");
  EXPECT_EQ(step_kind_name(StepKind::kWaitForGuest), "wait_for_guest");
  EXPECT_EQ(step_kind_name(StepKind::kSyncProtected), "sync_protected");
  EXPECT_EQ(step_kind_name(StepKind::kReprotectPeer), "reprotect_peer");
  EXPECT_EQ(step_kind_name(StepKind::kBarrier), "barrier");
}

TEST(StepKindTest, OnlyStepsOnAVmHoldItsProvider) {
  EXPECT_TRUE(step_kind_info(StepKind::kPowerOn).calls_provider);
  EXPECT_TRUE(step_kind_info(StepKind::kRecoverVm).calls_provider);
  EXPECT_TRUE(step_kind_info(StepKind::kGuestCommand).calls_provider);
  EXPECT_FALSE(step_kind_info(StepKind::kHostCommand).calls_provider) << "runs on the evacd host";
  EXPECT_FALSE(step_kind_info(StepKind::kPromote).calls_provider);
  EXPECT_FALSE(step_kind_info(StepKind::kBarrier).calls_provider);
}

TEST(StepKindTest, TheRtoEndsWithAVmUpAndChecked) {
  std::set<StepKind> ends;
  for (int i = 0; i < kKindCount; ++i)
    if (step_kind_info(static_cast<StepKind>(i)).ends_rto) ends.insert(static_cast<StepKind>(i));
  EXPECT_EQ(ends, (std::set<StepKind>{StepKind::kPowerOn, StepKind::kWaitForGuest, StepKind::kCheck}));
}

TEST(StepKindTest, AStoredStepOfAnUnknownKindIsRefusedNotGuessed) {
  StepRow row{"run-1", 3, "Do a thing", "teleport_vm", R"({"after":[],"tier":0,"params":{}})", "pending", 0,
              std::nullopt, std::nullopt, "", ""};
  auto step = from_row(row);
  ASSERT_FALSE(step.is_ok());
  EXPECT_NE(step.status().message().find("'teleport_vm'"), std::string::npos) << step.status().message();
  row.kind = "power_on";
  auto known = from_row(row);
  ASSERT_TRUE(known.is_ok()) << known.status().to_string();
  EXPECT_EQ(known->spec.kind, StepKind::kPowerOn);
  EXPECT_EQ(to_row("run-1", *known).kind, "power_on");
}

}  // namespace
}  // namespace evac::engine
