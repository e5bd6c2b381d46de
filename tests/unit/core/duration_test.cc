// Durations as operators write them: always with a unit ("90s", "1h30m",
// "2d"), and written back the same way.
#include "core/duration.h"

#include <gtest/gtest.h>

namespace evac {
namespace {

TEST(DurationTest, ParsesOperatorSpellings) {
  EXPECT_EQ(parse_duration("90s")->count(), 90);
  EXPECT_EQ(parse_duration("15m")->count(), 900);
  EXPECT_EQ(parse_duration("1h30m")->count(), 5400);
  EXPECT_EQ(parse_duration("2d")->count(), 172800);
  // A bare number could be seconds or minutes: it needs its unit.
  for (const char* bad : {"", "m", "45", "15x", "-5m", "1h30", "1.5h"}) EXPECT_FALSE(parse_duration(bad).is_ok()) << bad;
  EXPECT_EQ(format_duration(std::chrono::seconds(5400)), "1h30m");
  EXPECT_EQ(format_duration(std::chrono::seconds(0)), "0s");
}

TEST(ParseDuration, ABareNumberIsRefusedEverywhere) {
  EXPECT_FALSE(parse_duration("15"));
  EXPECT_FALSE(parse_duration("1h30"));
  EXPECT_EQ(*parse_duration("15s"), std::chrono::seconds(15));
  EXPECT_EQ(*parse_duration("2d"), std::chrono::seconds(172800));
}

}  // namespace
}  // namespace evac
