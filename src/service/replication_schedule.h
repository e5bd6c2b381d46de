// When a protection group's next cycle starts: the scheduler's decision,
// a pure function of the group's record and the time, so it is tested on
// simulated time.
//
// Policy (docs/configuration.md, "Replication schedules"):
//   lag  = now − the instant the newest PIT captures (or, before the first
//          PIT, now − when the group was created: it has been unprotected
//          since then)
//   due  when lag ≥ RPO/2 — half the RPO is left for the cycle itself, so a
//          cycle that takes up to RPO/2 still lands within the RPO;
//   never two cycles of one group at once;
//   after n failed cycles in a row, wait min(30 s × 2^(n−1), 15 min, RPO/2)
//          from the last failure before trying again, so a dead link or a
//          broken disk is not hammered, yet a long RPO does not delay retries
//          beyond the scheduling interval itself.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace evac {

struct ScheduleInput {
  std::int64_t now = 0;
  std::int64_t rpo_seconds = 900;
  std::int64_t group_created_at = 0;
  std::optional<std::int64_t> newest_pit_at;  // the instant the newest PIT captures
  bool cycle_running = false;
  int consecutive_failures = 0;
  std::optional<std::int64_t> last_failure_at;
};

struct ScheduleDecision {
  bool start = false;
  std::int64_t not_before = 0;  // when a cycle is (or was) due
  std::string reason;           // for logs and the replication state
};

// Seconds to wait after `failures` cycles failed in a row.
std::int64_t retry_backoff_seconds(int failures, std::int64_t rpo_seconds);
// Seconds of data a failover now would lose, by the definition above.
std::int64_t replication_lag(std::int64_t now, std::int64_t group_created_at, std::optional<std::int64_t> newest_pit_at);
ScheduleDecision decide_schedule(const ScheduleInput& in);

}  // namespace evac
