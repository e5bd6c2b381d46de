#pragma once

#include <string>

namespace evac {
// Sets spdlog's default logger: human-readable text, or one JSON object per
// line ({"ts","level","msg",...}) for log collectors. Logs go to stderr.
void setup_logging(const std::string& format, const std::string& level, const std::string& site);
}  // namespace evac
