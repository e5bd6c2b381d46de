// A per-group limit on the bytes a replication cycle sends (`--max-rate`),
// for thin links shared with production traffic.
//
// A token bucket that may go into debt: a batch of any size is let through
// at once when the bucket holds tokens, and the sender then waits until the
// debt is paid back. Batches (up to 8 MiB) can be larger than a second's
// worth of tokens on a slow link, so a bucket that made a batch wait for its
// full size in tokens would never let it pass; the debt keeps the average at
// the limit all the same. The clock and the sleep are injected so tests run
// on simulated time.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>

#include "core/status.h"

namespace evac {

// "50MiB/s", "10MB/s", "1.5G", "800k", "0", "none", "unlimited" → bytes per
// second (0 = unlimited). Binary (KiB, MiB, GiB) and decimal (k, M, G, KB,
// MB, GB) units; "/s" is optional. A bare number is bytes per second.
Result<std::uint64_t> parse_byte_rate(std::string_view text);
// Rates from a petabyte per second up are refused, as typos: no link is
// that fast, and a byte count of a second at that rate is far from overflow.
inline constexpr std::uint64_t kMaxByteRate = 1'000'000'000'000'000;
// 52428800 → "50MiB/s"; 0 → "unlimited".
std::string format_byte_rate(std::uint64_t bytes_per_second);

class TokenBucket {
 public:
  using Clock = std::function<std::chrono::steady_clock::time_point()>;

  // `bytes_per_second` 0 lets everything through. The burst is one second's
  // worth of tokens.
  explicit TokenBucket(std::uint64_t bytes_per_second, Clock clock = nullptr);

  // Takes `bytes` tokens and returns how long the caller must wait before
  // sending them (zero when within the limit). Thread-safe: concurrent
  // callers queue behind each other's debt.
  std::chrono::nanoseconds reserve(std::uint64_t bytes);
  // reserve() and then wait, unless cancel() is called meanwhile; false if
  // cancelled.
  bool acquire(std::uint64_t bytes);
  // Wakes and refuses every waiting and later acquire (shutdown).
  void cancel();

  // A change applies to the next reservation (`evac group set --max-rate`
  // during a cycle slows or frees it at once).
  void set_rate(std::uint64_t bytes_per_second);
  std::uint64_t rate() const;

 private:
  void refill(std::chrono::steady_clock::time_point now);

  Clock clock_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::uint64_t rate_ = 0;
  double tokens_ = 0;  // may be negative: the debt of batches already let through
  std::chrono::steady_clock::time_point last_;
  bool cancelled_ = false;
};

}  // namespace evac
