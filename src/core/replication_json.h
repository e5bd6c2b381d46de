// The JSON of what replication engines answer about points in time, as
// sites send it to each other and to operators: to_json where it is
// written, *_from_json (strict: every field typed and ranged, unknown keys
// refused) where a paired site's answer is read.
#pragma once

#include <cstdint>
#include <cstddef>
#include <limits>

#include <nlohmann/json.hpp>

#include "core/replication_adapter.h"

namespace evac {

// Identifiers a paired site names: VM UUIDs, disk targets, cycles, PITs, runs.
inline constexpr std::size_t kMaxIdLength = 256;
inline constexpr std::size_t kMaxGroupNameLength = 64;
// Seconds since the epoch whose milliseconds still fit an int64.
inline constexpr std::int64_t kMaxUnixSeconds = std::numeric_limits<std::int64_t>::max() / 1000;
inline constexpr std::int64_t kMaxUnixMillis = std::numeric_limits<std::int64_t>::max();
// Byte counts and disk sizes from a paired site: far beyond any disk, far
// from overflowing a sum of them.
inline constexpr std::int64_t kMaxPeerBytes = std::int64_t{1} << 62;

nlohmann::json to_json(const PointInTime& pit);
nlohmann::json to_json(const PitVerification& v);
nlohmann::json to_json(const std::vector<PointInTime>& pits);
// A paired site's answers.
Result<PointInTime> pit_from_json(const nlohmann::json& j);
Result<std::vector<PointInTime>> pits_from_json(const nlohmann::json& j);

}  // namespace evac
