// Together the runs of runs/*_runs_test.cc drive every step kind: each test
// checks that its run did the kinds its set in run_sites.h names; this
// checks that those sets name every StepKind.
#include <set>

#include "unit/service/runs/run_sites.h"

namespace evac::testing {
namespace {

constexpr int kKindCount = static_cast<int>(StepKind::kSyncReverse) + 1;

// A kind added to StepKind makes this switch incomplete (-Wswitch names
// it): drive it in a run of a *_runs_test.cc, and name it in that test's
// set in run_sites.h.
constexpr bool known_here(StepKind kind) {
  switch (kind) {
    case StepKind::kPrompt:
    case StepKind::kBarrier:
    case StepKind::kReadiness:
    case StepKind::kCreateTestCopy:
    case StepKind::kRegisterTestVm:
    case StepKind::kRemoveTestVm:
    case StepKind::kDropTestCopies:
    case StepKind::kSyncProtected:
    case StepKind::kShutdownProtected:
    case StepKind::kHandover:
    case StepKind::kPromote:
    case StepKind::kTakeOwnership:
    case StepKind::kRecoverVm:
    case StepKind::kPowerOn:
    case StepKind::kWaitForGuest:
    case StepKind::kCustomizeIp:
    case StepKind::kCheck:
    case StepKind::kHostCommand:
    case StepKind::kGuestCommand:
    case StepKind::kFlattenDisks:
    case StepKind::kReleaseReplicas:
    case StepKind::kReprotectPeer:
    case StepKind::kProtectHere:
    case StepKind::kSyncReverse:
      return true;
  }
  return false;
}

TEST(RunStepKinds, TheRunTestsDriveEveryStepKind) {
  std::set<StepKind> driven;
  for (const auto* kinds : {&kTestRunKinds, &kCleanupRunKinds, &kPromptKinds, &kMigrateRunKinds, &kFailoverRunKinds,
                            &kReprotectRunKinds})
    driven.insert(kinds->begin(), kinds->end());
  for (int i = 0; i < kKindCount; ++i) {
    const auto kind = static_cast<StepKind>(i);
    EXPECT_TRUE(known_here(kind)) << engine::step_kind_name(kind);
    EXPECT_TRUE(driven.count(kind)) << "no run test drives step kind " << engine::step_kind_name(kind);
  }
}

}  // namespace
}  // namespace evac::testing
