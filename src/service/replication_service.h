// Replication for one site: syncing the groups it protects, keeping their
// lag and RPO compliance, raising alarms, and, as a recovery site, serving
// its engines' routes and its points in time. Engines are reached only
// through ReplicationAdapter: one per kind the ReplicationRegistry given
// has, made when the service starts; each group names its kind.
//
// Cycles of a group run on a background thread, one at a time per group:
//
//   request_sync ──► [idle] ──start──► [preparing] ──► [replicating] ──► [committing] ──► [idle]
//                                          │  a manual request while running sets follow_up;  │
//                                          └──────── the thread then runs one more cycle ◄────┘
//
// A manual request never joins a cycle already running: that cycle may have
// read the disks before the writes the caller wants replicated (the final
// sync of a planned migration, after the guests stopped). It waits for it and
// runs its own; every request arriving meanwhile shares that one follow-up.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/replication_adapter.h"
#include "core/replication_json.h"
#include "core/replication_registry.h"
#include "service/rate_limit.h"
#include "service/site_service.h"

namespace evac {

struct ReplicationOptions {
  std::function<std::int64_t()> clock;  // unix seconds; default: the system clock
  TokenBucket::Clock steady_clock;      // rates and limits; default: std::chrono::steady_clock
  bool schedules = true;                // start cycles from the RPO (evacd config replication.schedules)
  // How often a cycle reads every block instead of trusting change tracking
  // (ReplicationGroupSpec::full_read), counted from the instant the last
  // full read captured; 0: never beyond the first (evacd config
  // replication.full_read_every, default 7 days).
  std::chrono::seconds full_read_every{7 * 24 * 3600};
  // The longest an API call following a cycle is held (a paired site's or
  // an operator's `?wait=true`): each holds one of the API server's
  // threads, so a call that names no wait, or a longer one, comes back
  // after this with the cycle still going, to be followed by another
  // (evacd config replication.wait_limit, default 5 minutes).
  std::chrono::milliseconds wait_limit{std::chrono::minutes(5)};
};

// kReverse: the first cycle of a group after a reprotect, through the
// adapter's reverse() (the engine resyncs from what the former protected
// site holds); like a manual one otherwise.
enum class SyncTrigger { kManual, kScheduled, kReverse };

// The link a cycle's engine reaches its counterpart at `peer` through: the
// engine's routes there (kind `kind`) over the paired sites' mutual-TLS API.
// Every body sent passes `limiter` (may be null) first; once `stopping`
// (may be null) is set, calls fail with kUnavailable. Exposed for tests.
std::unique_ptr<ReplicationPeerLink> make_peer_link(PeerTransport& transport, PeerRecord peer, std::string kind,
                                                    TokenBucket* limiter, const std::atomic<bool>* stopping);

// An engine's route as the router mounts it: the caller is checked (it
// protects the group to this site; not fenced for a route that writes)
// before the engine's handler runs.
struct MountedPeerRoute {
  std::string method;
  std::string pattern;  // the whole path, "/api/v1/peer/replication/<kind>/{group}/..."
  std::string summary;
  bool bulk = false;    // takes a batch of blocks
  std::function<Result<nlohmann::json>(const PeerRecord& caller, const std::vector<std::string>& params,
                                       const std::string& body)>
      handle;
};

class ReplicationService {
 public:
  // Makes one adapter of each kind `engines` has, for this site (its state
  // under `state_dir`). An engine that fails to start is reported by every
  // call that needs it.
  ReplicationService(SiteService& site, PeerTransport& transport, const std::string& state_dir,
                     const ReplicationRegistry& engines, ReplicationOptions options = {});
  ~ReplicationService();

  // Protected site: asks for a cycle of the group and returns its number,
  // to pass to wait_cycle. A manual request while a cycle runs queues one
  // follow-up cycle (shared by every request meanwhile); a scheduled one is
  // refused then (kFailedPrecondition). Bad input (unknown group, a group
  // this site does not protect) fails here and starts nothing.
  Result<std::uint64_t> request_sync(const std::string& group, SyncTrigger trigger = SyncTrigger::kManual);
  // Blocks until cycle `cycle` of the group ended; its PIT or its error.
  Result<PointInTime> wait_cycle(const std::string& group, std::uint64_t cycle);
  // The same for at most `at_most`: nullopt if the cycle is still going then.
  Result<std::optional<PointInTime>> wait_cycle_for(const std::string& group, std::uint64_t cycle,
                                                    std::chrono::milliseconds at_most);
  // What an API call that waits for a cycle answers: starts one (no
  // `cycle`) or follows one this site gave, waits at most `wait` (never
  // longer than ReplicationOptions::wait_limit), then {cycle, done: false,
  // progress} if it still runs (progress: its sync_progress once it is the
  // cycle running, null while it waits for another to end), or its PIT
  // with {cycle, done: true}.
  Result<nlohmann::json> follow_cycle(const std::string& group, std::optional<std::uint64_t> cycle,
                                      std::chrono::milliseconds wait);
  // Both: one cycle started after this call; returns the new PIT.
  Result<PointInTime> sync_group(const std::string& group);
  // The same through the adapter's reverse(): reprotect's first cycle back.
  Result<PointInTime> reverse_group(const std::string& group);

  // Protected site: the group's PITs, as the recovery site holds them.
  Result<std::vector<PointInTime>> group_pits(const std::string& group);
  // The points in time this site holds as the recovery site of a peer's group.
  Result<std::vector<PointInTime>> pits_held_here(const std::string& group);
  // Recovery site: writable copies of a PIT held here for test recoveries
  // (owner: the test run, so a step run again finds its copy), and their
  // removal; they work with the protected site gone.
  Result<TestCopy> create_test_copy(const std::string& group, const std::string& pit_id, const std::string& owner);
  Status drop_test_copy(const std::string& group, const std::string& test_copy_id);
  Result<std::vector<TestCopy>> test_copies_held_here(const std::string& group);
  // Recovery site: a PIT made the live disks of the group's recovered VMs
  // (owner: the run; asking again returns the same disks).
  Result<TestCopy> promote(const std::string& group, const std::string& pit_id, const std::string& owner);
  // New protected site (reprotect): the replicas this site kept of the
  // group as its recovery site are released (the adapter's release_replicas).
  Result<ReleasedReplicas> release_replicas_here(const std::string& group);
  // Future recovery site (reprotect): images here that hold an older state
  // of the group's disks (by disk key), to start their first PITs from so
  // that only differing blocks travel.
  Status set_seeds(const std::string& group, const std::map<std::string, std::string>& seeds);
  // Former protected site, as SiteService fences the group here (it calls
  // this through its storage fence): the adapter makes the group's disks
  // read-only, so that nothing writes the stale copy.
  Status make_source_read_only(const GroupRecord& group);
  // Recovery here moved `vms` (as they were before: on their old disks)
  // onto new disks: the adapter lifts what it did to those old disks when
  // their copy was fenced. `peer_site`: the group's other site.
  Status release_old_disks(const std::string& group, const std::string& peer_site, const std::vector<VmInfo>& vms);
  // Re-reads a PIT (empty id: the newest) and compares every block with the
  // source hashes its cycle recorded. At the protected site the recovery
  // site does the reading; at the recovery site it runs here, so it works
  // with the protected site gone (before a failover, say).
  Result<nlohmann::json> verify_group(const std::string& group, const std::string& pit_id);
  // Protected site, without asking the recovery site: lag, RPO compliance,
  // the last success and failure, cycle counters, the running cycle's
  // progress. Lag keeps growing while the recovery site is unreachable.
  nlohmann::json replication_state(const GroupRecord& group);
  // Its "sync" part alone: {running: false} or the running cycle's number,
  // trigger, phase, bytes and rates, ETA.
  nlohmann::json sync_progress(const std::string& group);
  // replication_state plus what the recovery site says (the PIT count).
  // Never fails: an unreachable recovery site is reported.
  nlohmann::json group_replication_status(const GroupRecord& group);

  // One round of the scheduler (evacd calls it every few seconds): checks
  // every group this site protects for RPO compliance, raising an alarm on
  // each change, and starts the cycles that are due if schedules are on.
  void tick();
  // A group's --max-rate changed: a running cycle follows at once.
  void rate_changed(const std::string& group, std::uint64_t bytes_per_second);
  // Prometheus text exposition of the replication metrics (and peers').
  std::string prometheus_metrics();
  // Aborts running cycles at their next batch and joins their threads.
  void shutdown();

  // Ok when this site has a started engine of `kind`; otherwise why not
  // (not built in, naming those that are; or failed to start).
  Status check_engine(const std::string& kind) { return engine(kind).status(); }
  // Recovery site: every engine's routes (ReplicationAdapter::peer_routes),
  // for the router to mount; the router authenticated the caller, each
  // route checks the caller protects the group to this site.
  std::vector<MountedPeerRoute> engine_peer_routes();
  // The routes below call these after the router authenticated the caller;
  // each checks the caller protects `group` to this site.
  Result<nlohmann::json> handle_pits(const PeerRecord& caller, const std::string& group);
  // Protected site, for its group's recovery site (a planned migration's
  // final sync). Starts a cycle ({} or {"wait_ms"}) or follows one ({"cycle", "wait_ms"}):
  // the new PIT with "done": true once it ended, else {"cycle", "done": false}
  // after wait_ms (at most 5 minutes). Without wait_ms (an older recovery
  // site's call) it waits for the end, however long.
  Result<nlohmann::json> handle_peer_sync(const PeerRecord& caller, const std::string& group, const nlohmann::json& body);
  // Protected site, for its group's recovery site (readiness): whether a
  // fence here could make the group's disks read-only: {read_only, error, hint}.
  Result<nlohmann::json> handle_peer_fence_check(const PeerRecord& caller, const std::string& group);
  // Protected site, for its group's recovery site (readiness): whether the
  // next cycle could read each VM now (adapter probe_sources): {vms: [{vm,
  // state, ok, error, hint}]}, or {busy: true} while a cycle runs (its own
  // outcome then says it).
  Result<nlohmann::json> handle_peer_backup_probe(const PeerRecord& caller, const std::string& group);
  Result<nlohmann::json> handle_verify(const PeerRecord& caller, const std::string& group, const std::string& pit_id);

 private:
  // One group's cycles at this site (guarded by mu_).
  struct GroupRun {
    std::uint64_t started = 0;   // number of the newest cycle started since evacd started
    std::uint64_t finished = 0;  // number of the newest cycle ended
    bool running = false;
    bool follow_up = false;  // a manual request arrived while a cycle ran
    bool reverse_next = false;  // the next cycle to start is a reverse one
    std::string trigger;
    std::string phase = "idle";
    std::int64_t started_at = 0;
    std::chrono::steady_clock::time_point started_steady;
    SyncProgress progress;
    std::map<std::uint64_t, Result<PointInTime>> results;  // recent cycles' outcomes, for waiters
    std::optional<std::size_t> known_pits;  // PITs at the recovery site after the last cycle
    std::shared_ptr<TokenBucket> limiter;
    std::thread thread;
  };
  // sync_progress of one GroupRun, with mu_ held.
  nlohmann::json sync_json(const GroupRun& run) const;
  Result<ReplicationGroupSpec> group_spec(const GroupRecord& group, const PeerRecord& peer);
  // The group's PITs as `peer`, its recovery site, holds them.
  Result<std::vector<PointInTime>> pits_at(const PeerRecord& peer, const std::string& group);
  // The group's epoch in the caller's configuration copy, if the caller
  // protects it to this site (kPermissionDenied otherwise).
  Result<std::int64_t> caller_group_epoch(const PeerRecord& caller, const std::string& group);
  // The group as `peer_site`'s configuration copy names it, when that site
  // protects it to this one; nullopt otherwise.
  Result<std::optional<GroupRecord>> group_protected_by(const std::string& peer_site, const std::string& group);
  Status check_caller_protects(const PeerRecord& caller, const std::string& group);
  // check_caller_protects, and kFailedPrecondition when this site owns the
  // group's live copy: a cycle from the caller would be of a stale copy.
  Status check_caller_may_write(const PeerRecord& caller, const std::string& group);
  // Running VMs' change tracking, from the provider each VM runs on.
  ChangeTrackingLookup change_tracking_lookup();
  // The kind of engine that replicates `group` (its record here, else the
  // configuration a paired site sent of it; the default when neither names one).
  std::string engine_kind(const std::string& group);
  // The adapter of `kind`, or why this site has none.
  Result<ReplicationAdapter*> engine(const std::string& kind);
  Result<ReplicationAdapter*> engine_of(const std::string& group) { return engine(engine_kind(group)); }
  Result<GroupRecord> protected_group(const std::string& name);
  void run_cycles(const std::string& group);
  Result<PointInTime> run_one_cycle(const std::string& group, std::size_t& known_pits);
  // When the group's next periodic full read is due (unix seconds; now when
  // none has been recorded), or nullopt when they are off.
  std::optional<std::int64_t> full_read_due_at(const std::optional<ReplicationRecord>& record) const;
  // The group's VMs as they are at this site (those not found are listed in
  // `missing`), for the fence's operations.
  ReplicationGroupSpec spec_here(const GroupRecord& group, std::string& missing);
  // Compares the group's lag with its RPO and raises an event when that changed.
  void check_compliance(const GroupRecord& group);
  // Why this site does not replicate `group` now (it is not its protected
  // site, or its copies here are fenced); nullopt when it does.
  std::optional<std::string> not_replicating_why(const GroupRecord& group);
  void raise_event(const std::string& severity, const std::string& kind, const std::string& group,
                   const std::string& message);
  std::int64_t now() const { return options_.clock(); }

  SiteService& site_;
  PeerTransport& transport_;
  ReplicationOptions options_;
  std::map<std::string, std::unique_ptr<ReplicationAdapter>> engines_;  // by kind
  std::map<std::string, Status> engine_failures_;                        // kinds that failed to start
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, GroupRun> runs_;
  std::atomic<bool> stopping_{false};
  std::mutex compliance_mu_;  // one compliance check at a time, so a change raises one event
};

}  // namespace evac
