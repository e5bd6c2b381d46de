// evac's Ceph RBD adapter: drives Ceph's snapshot-based RBD mirroring
// through evac's external adapter protocol (docs/adapters.md,
// README "Ceph RBD sites"). One invocation per operation, against this site's
// cluster only; rbd-mirror carries the data between the two clusters.
//
// A point in time is a user snapshot `evac.<group>.<pit id>` on each
// primary image, taken with a mirror snapshot right after it while the
// group's VMs stand paused, so the mirror snapshot holds exactly the PIT
// and carries the user snapshot to the recovery cluster. A test copy is a
// format-2 clone of the PIT's snapshot there (a non-primary image cannot
// be cloned by its mirror snapshot on Ceph 16). Failover promotes the
// images (forced when the other cluster does not answer); reprotect makes
// the old primary follow the new one.
#pragma once

#include <nlohmann/json.hpp>

#include "core/status.h"
#include "replication/external/adapter_side.h"

namespace evac::rbd {

// The answer of one invocation: its result, or why not.
Result<nlohmann::json> run_operation(const external::Invocation& invocation);

}  // namespace evac::rbd
