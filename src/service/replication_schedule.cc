#include "service/replication_schedule.h"

#include <algorithm>

namespace evac {

std::int64_t retry_backoff_seconds(int failures, std::int64_t rpo_seconds) {
  if (failures <= 0) return 0;
  std::int64_t backoff = 30;
  for (int i = 1; i < failures && backoff < 15 * 60; ++i) backoff *= 2;
  return std::max<std::int64_t>(1, std::min({backoff, std::int64_t{15 * 60}, rpo_seconds / 2}));
}

std::int64_t replication_lag(std::int64_t now, std::int64_t group_created_at, std::optional<std::int64_t> newest_pit_at) {
  return std::max<std::int64_t>(0, now - newest_pit_at.value_or(group_created_at));
}

ScheduleDecision decide_schedule(const ScheduleInput& in) {
  std::int64_t reference = in.newest_pit_at.value_or(in.group_created_at);
  ScheduleDecision d;
  d.not_before = reference + std::max<std::int64_t>(1, in.rpo_seconds / 2);
  d.reason = in.newest_pit_at ? "lag reaches half the RPO" : "first cycle: half the RPO after the group was created";
  if (in.consecutive_failures > 0 && in.last_failure_at) {
    std::int64_t retry_at = *in.last_failure_at + retry_backoff_seconds(in.consecutive_failures, in.rpo_seconds);
    if (retry_at > d.not_before) {
      d.not_before = retry_at;
      d.reason = "retry after " + std::to_string(in.consecutive_failures) + " failed cycle(s)";
    }
  }
  if (in.cycle_running) {
    d.reason = "a cycle is running";
    return d;
  }
  d.start = in.now >= d.not_before;
  return d;
}

}  // namespace evac
