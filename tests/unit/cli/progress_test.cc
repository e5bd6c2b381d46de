#include <gtest/gtest.h>

#include "cli/progress.h"

namespace evac::cli {
namespace {

using nlohmann::json;

TEST(CliProgress, FormatsBytes) {
  EXPECT_EQ(format_bytes(0), "0 B");
  EXPECT_EQ(format_bytes(1536), "1.5 KiB");
  EXPECT_EQ(format_bytes(4.0 * (1ull << 30)), "4.0 GiB");
}

TEST(CliProgress, OneLineWithBytesRateAndEta) {
  json sync = {{"running", true},           {"cycle", 3},           {"phase", "replicating"},
               {"bytes_total", 4ull << 30}, {"bytes_scanned", 1ull << 30}, {"bytes_sent", 310ull << 20},
               {"scan_rate_bytes", 85.0 * (1 << 20)}, {"eta_seconds", 36.2}};
  EXPECT_EQ(format_sync_progress(sync),
            "cycle 3 replicating: scanned 1.0 GiB of 4.0 GiB (25%), sent 310.0 MiB, 85.0 MiB/s, ETA 37s");
  sync["eta_seconds"] = nullptr;
  sync["follow_up_queued"] = true;
  EXPECT_EQ(format_sync_progress(sync),
            "cycle 3 replicating: scanned 1.0 GiB of 4.0 GiB (25%), sent 310.0 MiB, 85.0 MiB/s, ETA unknown (another cycle queued)");
  EXPECT_EQ(format_sync_progress(json{{"running", true}, {"cycle", 1}, {"phase", "preparing"}, {"bytes_total", 0}}),
            "cycle 1 preparing: reading the group's disks");
  EXPECT_EQ(format_sync_progress(json{{"running", false}}), "idle");
}

}  // namespace
}  // namespace evac::cli
