#pragma once

#include <chrono>
#include <string>
#include <string_view>

#include "core/status.h"

namespace evac {

// Parses operator-friendly durations: "90s", "15m", "1h30m", "2d". Every
// number needs its unit: a bare "15" is refused. Used for RPOs, intervals and timeouts in config,
// CLI and API alike so they all accept the same spelling.
Result<std::chrono::seconds> parse_duration(std::string_view text);
std::string format_duration(std::chrono::seconds d);

}  // namespace evac
