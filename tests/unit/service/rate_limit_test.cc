// Byte rates as operators write them, and the token bucket that holds a
// group's cycles to one, on simulated time.
#include "service/rate_limit.h"

#include <gtest/gtest.h>

#include <chrono>

namespace evac::testing {
namespace {

TEST(RateLimit, ParsesRatesWithUnits) {
  EXPECT_EQ(*parse_byte_rate("50MiB/s"), 50u << 20);
  EXPECT_EQ(*parse_byte_rate("10MB/s"), 10'000'000u);
  EXPECT_EQ(*parse_byte_rate("1.5G"), 1'500'000'000u);
  EXPECT_EQ(*parse_byte_rate("800k"), 800'000u);
  EXPECT_EQ(*parse_byte_rate("2 GiB/s"), 2ull << 30);
  EXPECT_EQ(*parse_byte_rate("4096"), 4096u);
  EXPECT_EQ(*parse_byte_rate("0"), 0u);
  EXPECT_EQ(*parse_byte_rate("none"), 0u);
  EXPECT_EQ(*parse_byte_rate("unlimited"), 0u);
  for (const char* bad : {"", "fast", "MiB/s", "10 parsecs", "-5M", "1.2.3M", "0.1"}) {
    auto r = parse_byte_rate(bad);
    EXPECT_FALSE(r.is_ok()) << bad;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << bad;
    EXPECT_FALSE(r.status().hint().empty()) << bad;
  }
  EXPECT_EQ(format_byte_rate(50u << 20), "50MiB/s");
  EXPECT_EQ(format_byte_rate(1536), "1.5KiB/s");
  EXPECT_EQ(format_byte_rate(0), "unlimited");
}

TEST(RateLimit, TokenBucketHoldsTheAverageOnSimulatedTime) {
  std::chrono::steady_clock::time_point now{};
  TokenBucket bucket(1000, [&] { return now; });
  using std::chrono::milliseconds;
  EXPECT_EQ(bucket.reserve(1000).count(), 0);  // a second's burst passes at once
  EXPECT_EQ(bucket.reserve(500).count(), 0);   // the bucket is empty, not in debt: this one passes too
  EXPECT_EQ(std::chrono::duration_cast<milliseconds>(bucket.reserve(500)), milliseconds(500));  // pays the debt first
  EXPECT_EQ(std::chrono::duration_cast<milliseconds>(bucket.reserve(0)), milliseconds(1000));   // queued behind it
  now += milliseconds(1000);
  EXPECT_EQ(std::chrono::duration_cast<milliseconds>(bucket.reserve(0)), milliseconds(0));
  // A batch larger than the burst (8 MiB batches on a 1 MiB/s link) still
  // passes, and its debt makes the next one wait.
  now += std::chrono::seconds(10);
  EXPECT_EQ(bucket.reserve(8000).count(), 0);
  EXPECT_EQ(std::chrono::duration_cast<milliseconds>(bucket.reserve(0)), milliseconds(7000));
  // Over a long stretch the bytes let through stay at the rate: 100 batches
  // of 250 bytes wait 7 s of debt, then 0.25 s each.
  std::chrono::nanoseconds waited{0};
  for (int i = 0; i < 100; ++i) {
    auto w = bucket.reserve(250);
    now += w;
    waited += w;
  }
  EXPECT_NEAR(std::chrono::duration<double>(waited).count(), 7.0 + 99 * 0.25, 0.01);
  bucket.set_rate(0);
  EXPECT_EQ(bucket.reserve(1 << 30).count(), 0);  // unlimited
  bucket.cancel();
  EXPECT_FALSE(bucket.acquire(1));
}

}  // namespace
}  // namespace evac::testing
