#include "core/duration.h"

#include <cctype>
#include <cstdint>

#include "core/json_decode.h"

namespace evac {

Result<std::chrono::seconds> parse_duration(std::string_view text) {
  auto bad = [&] {
    return invalid_argument("'" + excerpt(text) + "' is not a duration",
                            "write it like 30s, 15m, 1h30m or 2d");
  };
  if (text.empty()) return bad();
  std::int64_t total = 0;
  std::size_t i = 0;
  while (i < text.size()) {
    if (!std::isdigit(static_cast<unsigned char>(text[i]))) return bad();
    std::int64_t n = 0;
    while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) {
      n = n * 10 + (text[i] - '0');
      if (n > 10'000'000'000LL) return bad();
      ++i;
    }
    std::int64_t unit = 1;
    if (i < text.size()) {
      switch (text[i]) {
        case 's': unit = 1; break;
        case 'm': unit = 60; break;
        case 'h': unit = 3600; break;
        case 'd': unit = 86400; break;
        default: return bad();
      }
      ++i;
    } else {
      // "15" could mean seconds or minutes, "1h30" minutes or seconds: an
      // RPO or a timeout a unit off is a silent disaster, so ask.
      return invalid_argument("'" + excerpt(text) + "' has no unit",
                              "write the unit: " + std::to_string(n) + "s, " + std::to_string(n) + "m, " +
                                  std::to_string(n) + "h or " + std::to_string(n) + "d");
    }
    total += n * unit;
  }
  return std::chrono::seconds(total);
}

std::string format_duration(std::chrono::seconds d) {
  auto s = d.count();
  if (s == 0) return "0s";
  std::string out;
  const std::pair<std::int64_t, char> units[] = {{86400, 'd'}, {3600, 'h'}, {60, 'm'}, {1, 's'}};
  for (auto [size, suffix] : units) {
    if (s >= size) {
      out += std::to_string(s / size) + suffix;
      s %= size;
    }
  }
  return out;
}

}  // namespace evac
