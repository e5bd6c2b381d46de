#include "service/rate_limit.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>

#include "core/json_decode.h"

namespace evac {

Result<std::uint64_t> parse_byte_rate(std::string_view text) {
  auto bad = [&] {
    return invalid_argument("'" + excerpt(text) + "' is not a byte rate",
                            "write it like 50MiB/s, 10MB/s or 800k (bytes per second); 0 or none means unlimited");
  };
  std::string s;
  for (char c : text)
    if (!std::isspace(static_cast<unsigned char>(c))) s += c;
  if (s == "none" || s == "unlimited") return std::uint64_t{0};
  if (s.size() > 2 && s.compare(s.size() - 2, 2, "/s") == 0) s.resize(s.size() - 2);
  std::size_t i = 0;
  bool dot = false, digits = false;
  while (i < s.size() && (std::isdigit(static_cast<unsigned char>(s[i])) || (s[i] == '.' && !dot))) {
    dot |= s[i] == '.';
    digits |= s[i] != '.';
    ++i;
  }
  if (!digits) return bad();
  double value = std::strtod(s.substr(0, i).c_str(), nullptr);
  std::string unit = s.substr(i);
  for (auto& c : unit) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  double scale = 0;
  if (unit.empty() || unit == "b") scale = 1;
  else if (unit == "k" || unit == "kb") scale = 1e3;
  else if (unit == "m" || unit == "mb") scale = 1e6;
  else if (unit == "g" || unit == "gb") scale = 1e9;
  else if (unit == "kib") scale = 1024.0;
  else if (unit == "mib") scale = 1024.0 * 1024;
  else if (unit == "gib") scale = 1024.0 * 1024 * 1024;
  else return bad();
  double bytes = value * scale;
  if (bytes >= static_cast<double>(kMaxByteRate)) return bad();
  if (bytes > 0 && bytes < 1)
    return invalid_argument("'" + excerpt(text) + "' is below one byte per second", "use at least 1k/s, or 0 for unlimited");
  return static_cast<std::uint64_t>(std::llround(bytes));
}

std::string format_byte_rate(std::uint64_t bps) {
  if (bps == 0) return "unlimited";
  const std::pair<std::uint64_t, const char*> units[] = {{1ull << 30, "GiB"}, {1ull << 20, "MiB"}, {1ull << 10, "KiB"}};
  for (auto [size, name] : units) {
    if (bps >= size) {
      char buf[64];
      if (bps % size == 0)
        std::snprintf(buf, sizeof buf, "%llu%s/s", static_cast<unsigned long long>(bps / size), name);
      else
        std::snprintf(buf, sizeof buf, "%.1f%s/s", static_cast<double>(bps) / static_cast<double>(size), name);
      return buf;
    }
  }
  return std::to_string(bps) + "B/s";
}

TokenBucket::TokenBucket(std::uint64_t bytes_per_second, Clock clock)
    : clock_(clock ? std::move(clock) : [] { return std::chrono::steady_clock::now(); }),
      rate_(bytes_per_second),
      tokens_(static_cast<double>(bytes_per_second)),
      last_(clock_()) {}

void TokenBucket::refill(std::chrono::steady_clock::time_point now) {
  double elapsed = std::chrono::duration<double>(now - last_).count();
  last_ = now;
  if (elapsed <= 0) return;
  tokens_ = std::min(static_cast<double>(rate_), tokens_ + elapsed * static_cast<double>(rate_));
}

std::chrono::nanoseconds TokenBucket::reserve(std::uint64_t bytes) {
  std::lock_guard lock(mu_);
  auto now = clock_();
  if (rate_ == 0) {
    last_ = now;
    return std::chrono::nanoseconds(0);
  }
  refill(now);
  // The wait pays the debt of batches already let through; this batch adds
  // its own for the next caller.
  double debt = std::max(0.0, -tokens_);
  tokens_ -= static_cast<double>(bytes);
  return std::chrono::nanoseconds(static_cast<std::int64_t>(debt / static_cast<double>(rate_) * 1e9));
}

bool TokenBucket::acquire(std::uint64_t bytes) {
  auto wait = reserve(bytes);
  std::unique_lock lock(mu_);
  if (wait.count() > 0) cv_.wait_for(lock, wait, [this] { return cancelled_; });
  return !cancelled_;
}

void TokenBucket::cancel() {
  {
    std::lock_guard lock(mu_);
    cancelled_ = true;
  }
  cv_.notify_all();
}

void TokenBucket::set_rate(std::uint64_t bytes_per_second) {
  std::lock_guard lock(mu_);
  refill(clock_());
  if (rate_ == 0 || bytes_per_second == 0) tokens_ = static_cast<double>(bytes_per_second);
  rate_ = bytes_per_second;
  tokens_ = std::min(tokens_, static_cast<double>(rate_));
}

std::uint64_t TokenBucket::rate() const {
  std::lock_guard lock(mu_);
  return rate_;
}

}  // namespace evac
