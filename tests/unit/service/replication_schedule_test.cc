// The replication scheduler's decision on simulated time: when a group's
// next cycle starts, how failures back off, and what lag is.
#include "service/replication_schedule.h"

#include <gtest/gtest.h>

#include <optional>

namespace evac::testing {
namespace {

TEST(ReplicationSchedule, DecisionsOnSimulatedTime) {
  ScheduleInput in;
  in.rpo_seconds = 900;
  in.group_created_at = 1000;
  in.now = 1449;
  EXPECT_FALSE(decide_schedule(in).start);
  EXPECT_EQ(decide_schedule(in).not_before, 1450);
  in.now = 1450;
  EXPECT_TRUE(decide_schedule(in).start);
  in.cycle_running = true;
  EXPECT_FALSE(decide_schedule(in).start);
  in.cycle_running = false;
  in.newest_pit_at = 1400;
  EXPECT_FALSE(decide_schedule(in).start);
  in.now = 1850;
  EXPECT_TRUE(decide_schedule(in).start);
  in.consecutive_failures = 3;
  in.last_failure_at = 1800;
  EXPECT_FALSE(decide_schedule(in).start);  // 120 s after the third failure
  EXPECT_EQ(decide_schedule(in).not_before, 1920);
  EXPECT_EQ(retry_backoff_seconds(1, 900), 30);
  EXPECT_EQ(retry_backoff_seconds(10, 3600), 900);  // capped at 15 min
  EXPECT_EQ(retry_backoff_seconds(10, 120), 60);    // never beyond half the RPO
  EXPECT_EQ(replication_lag(2000, 1000, std::nullopt), 1000);
  EXPECT_EQ(replication_lag(2000, 1000, 1900), 100);
  EXPECT_EQ(replication_lag(2000, 1000, 2100), 0);  // a clock step back is no negative lag
}

}  // namespace
}  // namespace evac::testing
