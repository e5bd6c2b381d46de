// The live line of `evac group sync --follow` and the SYNC row of
// `evac group show`, from the API's replication state.
#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

namespace evac::cli {

// 1536 → "1.5 KiB"; 0 → "0 B".
std::string format_bytes(double bytes);
// One line for a running cycle (the "sync" object of
// GET /api/v1/groups/{name}/replication):
//   "cycle 3 replicating: scanned 1.2 GiB of 4.0 GiB (30%), sent 310.0 MiB, 85.3 MiB/s, ETA 36s"
std::string format_sync_progress(const nlohmann::json& sync);

}  // namespace evac::cli
