// Which points in time a RetentionPolicy keeps, for every engine that
// applies one (the built-in replicator's PIT store, external adapters).
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "core/replication_adapter.h"

namespace evac {

// The ids of the PITs `policy` keeps: the newest keep_last, plus the newest
// of each of the last keep_hourly hours and keep_daily days (UTC) that have
// one. `pits` oldest first; any type with `id` and `created_at` (unix s).
template <typename Pit>
std::set<std::string> kept_by(const std::vector<Pit>& pits, const RetentionPolicy& policy) {
  std::set<std::string> keep;
  int last = 0;
  for (auto it = pits.rbegin(); it != pits.rend() && last < policy.keep_last; ++it, ++last) keep.insert(it->id);
  auto newest_per_bucket = [&](std::int64_t bucket_seconds, int buckets) {
    std::int64_t previous = 0;
    bool any = false;
    for (auto it = pits.rbegin(); it != pits.rend() && buckets > 0; ++it) {
      std::int64_t bucket = it->created_at / bucket_seconds;
      if (any && bucket == previous) continue;  // an older PIT of a bucket already kept
      keep.insert(it->id);
      previous = bucket;
      any = true;
      --buckets;
    }
  };
  newest_per_bucket(3600, policy.keep_hourly);
  newest_per_bucket(86400, policy.keep_daily);
  return keep;
}

}  // namespace evac
