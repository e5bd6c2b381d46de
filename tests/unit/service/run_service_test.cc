// How the run service shows a run's step.
#include "service/run_service.h"

#include <gtest/gtest.h>

#include "step_samples.h"

namespace evac {
namespace {

TEST(StepView, ARunningStepPastItsTimeoutShowsHowFar) {
  engine::Step s = step(3, "Power on priority 1 VMs: db01", "power_on", 1'000'000, 0, engine::StepState::kRunning);
  s.ended_at_ms.reset();
  s.spec.timeout_s = 600;
  EXPECT_FALSE(to_json(s, 1'000'000 + 600'000).contains("overdue_s")) << "at its deadline, not past it";
  EXPECT_EQ(to_json(s, 1'000'000 + 635'500)["overdue_s"], 35);
  s.spec.timeout_s = 0;  // no bound of the engine's own: never overdue
  EXPECT_FALSE(to_json(s, 1'000'000 + 9'000'000).contains("overdue_s"));
  engine::Step done = step(4, "Wait for guest heartbeat: db01", "wait_for_guest", 1'000'000, 2'000'000);
  done.spec.timeout_s = 1;
  EXPECT_FALSE(to_json(done, 9'000'000).contains("overdue_s"));
}

}  // namespace
}  // namespace evac
