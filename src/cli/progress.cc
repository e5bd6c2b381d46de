#include "cli/progress.h"

#include <chrono>
#include <cmath>
#include <cstdio>

#include "core/duration.h"

namespace evac::cli {
using nlohmann::json;

std::string format_bytes(double bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (bytes >= 1024 && u < 4) {
    bytes /= 1024;
    ++u;
  }
  char buf[32];
  if (u == 0)
    std::snprintf(buf, sizeof buf, "%.0f B", bytes);
  else
    std::snprintf(buf, sizeof buf, "%.1f %s", bytes, units[u]);
  return buf;
}

namespace {
double number(const json& j, const char* key) { return j.contains(key) && j[key].is_number() ? j[key].get<double>() : 0.0; }
}  // namespace

std::string format_sync_progress(const json& sync) {
  if (!sync.value("running", false)) return "idle";
  std::string line = "cycle " + std::to_string(sync.value("cycle", std::uint64_t{0})) + " " + sync.value("phase", "") + ":";
  double total = number(sync, "bytes_total"), scanned = number(sync, "bytes_scanned");
  if (total <= 0) return line + " reading the group's disks";
  int percent = static_cast<int>(std::floor(scanned * 100.0 / total));
  line += " scanned " + format_bytes(scanned) + " of " + format_bytes(total) + " (" + std::to_string(percent) + "%)";
  line += ", sent " + format_bytes(number(sync, "bytes_sent"));
  line += ", " + format_bytes(number(sync, "scan_rate_bytes")) + "/s";
  if (sync.contains("eta_seconds") && sync["eta_seconds"].is_number())
    line += ", ETA " + format_duration(std::chrono::seconds(static_cast<std::int64_t>(std::ceil(sync["eta_seconds"].get<double>()))));
  else
    line += ", ETA unknown";
  if (sync.value("follow_up_queued", false)) line += " (another cycle queued)";
  return line;
}

}  // namespace evac::cli
