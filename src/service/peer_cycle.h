// How a recovery site follows the protected site's replication cycle
// during a migration's "Synchronize storage": in bounded waits rather than
// one call for the whole cycle, so a cycle longer than any call timeout
// still succeeds and a peer that dies mid-cycle shows at the next call.
#pragma once

#include <chrono>
#include <functional>

#include <nlohmann/json.hpp>

#include "core/status.h"

namespace evac {

// One call of POST /api/v1/peer/groups/G/sync: `body` as sent ({wait_ms},
// and {cycle} once the peer gave one), answered within `answer_within`.
using PeerSyncCall = std::function<Result<nlohmann::json>(const nlohmann::json& body, std::chrono::milliseconds answer_within)>;
// How long the next call may wait for the cycle (the step's time left,
// at most the follow interval), or why no more time is left.
using NextWait = std::function<Result<std::chrono::milliseconds>()>;

// Asks the peer for a cycle and follows it until it ends: its PIT
// ({pit, created_at, cycle}) or the error that ended it. A peer that
// restarted meanwhile no longer knows the cycle (not found): the sync is
// still owed, so a new cycle is asked for, at most `forgotten_retries` times.
// `margin`: how much longer than its wait a call may take to be answered.
// `on_progress`, if given, gets the cycle's progress from each answer that
// says it is still going (the peer's sync_progress, or null while the
// cycle waits for another to end).
using OnPeerProgress = std::function<void(const nlohmann::json& progress)>;
Result<nlohmann::json> follow_peer_cycle(const PeerSyncCall& call, const NextWait& next_wait,
                                         std::chrono::milliseconds margin, int forgotten_retries = 3,
                                         const OnPeerProgress& on_progress = nullptr);

}  // namespace evac
