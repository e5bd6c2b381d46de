// RunService: runs of recovery plans at this site (the recovery site of
// their groups) — starting them, refusing what must not run, and doing
// their steps.
//
// A run is started here by resolving what it works on once — every VM's
// placeholder, the point in time to recover, the test networks — into the
// run's context (RunRow.groups), so a run resumed after a crash recovers
// the same PIT onto the same placeholders whatever changed meanwhile. The
// plan is compiled into steps (engine/plan_compiler.h) that the RunEngine
// executes durably; the step runner (service/runs/run_steps.h) hands each
// step to its kind's handler (service/runs/steps/), which does its side
// effect idempotently:
//
//   readiness          the plan's readiness check; errors fail the run
//   create_test_copy   a writable copy of the PIT, owned by the run
//   register_test_vm   "<vm>-test" on the copy and the test networks
//   power_on, wait_for_guest, check, host_command, guest_command
//   remove_test_vm     every test VM of the VM, whichever run made it
//   drop_test_copies   every test copy of the group
//   sync_protected     a cycle at the protected site, waited for (migrate)
//   shutdown_protected the group's VMs stopped there (best effort in a failover)
//   handover           the protected site fences its copy (migrate)
//   promote            the PIT made the live disks (overlays owned by the run)
//   take_ownership     this site owns the group at a new epoch; a failover
//                      tells the old site if it answers
//   recover_vm         the placeholder redefined on the live disks
//   reprotect_peer     the former protected site's copies made placeholders
//                      and seeds; it stops protecting the group
//   protect_here       the group protected from here toward that site
//   sync_reverse       its first cycle back (only differing blocks travel)
//
// Every operation checks first who owns the group's live copy: a group
// already live here is not tested or recovered again.
// Operations: test, cleanup, failover, migrate, reprotect (here, after a
// recovery here) and failback (at the original site after a reprotect:
// a migration back, then a reprotect).
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/run_engine.h"
#include "service/plan_service.h"
#include "service/replication_service.h"
#include "service/runs/run_steps.h"
#include "service/site_service.h"

namespace evac {

struct RunRequest {
  std::string plan;
  std::string operation;   // test, cleanup, migrate, failover, reprotect, failback
  std::string started_by;  // the API token's name
  std::string confirm;     // destructive operations: must name the plan
  std::string pit;         // test: this PIT of every group instead of the newest
};

class RunService {
 public:
  // `plans` is the site's PlanService (evacd's one, which the API shares).
  // `replication` may be null (unit tests without replication): runs that
  // need points in time then fail at their first step, saying why.
  RunService(SiteService& site, PlanService& plans, ReplicationService* replication,
             engine::EngineOptions options = default_options());
  // 16 steps at once, 8 of them on one compute provider; a transient error
  // (a peer or libvirtd that does not answer) is tried 7 times in all, 1,
  // 2, 4, 8, 16 and 32 s apart: ~1 min, so a peer evacd restarting, a link
  // flapping or a libvirtd restart mid-run does not stop the run (the e2e
  // test kills the protected site's evacd mid-migration: 3 tries, ~3 s, ran
  // out before its restart answered; and with random kills of either evacd
  // a reprotect's step once found the peer down for over 15 s). A step's
  // own timeout still ends its retries, and a disaster's steps that reach
  // for the lost site do not retry (their outcome is "unreached").
  static engine::EngineOptions default_options() { return engine::EngineOptions{16, 7, std::chrono::seconds(1), 8}; }
  ~RunService();
  RunService(const RunService&) = delete;
  RunService& operator=(const RunService&) = delete;

  // evacd start: every run left running or waiting goes on.
  Status resume_interrupted();

  // Checks the request, resolves the run's context, refuses a run over a
  // group another run holds, then starts it in the background.
  Result<RunRow> start(const RunRequest& request);

  Result<std::vector<RunRow>> list_runs(const std::optional<std::string>& plan, int limit);
  Result<RunRow> get_run(const std::string& id);
  Result<std::vector<engine::Step>> steps(const std::string& id);
  // How far a running step of the run has got, where evac can tell; null
  // otherwise: a migration's "Synchronize storage" (the protected site's
  // cycle, as its last answer said) and a reprotect's resync (the reverse
  // cycle here, see the free step_progress below).
  nlohmann::json step_progress(const std::string& run_id, const engine::Step& step);
  Status resume(const std::string& id);
  Status ack(const std::string& id, int step = -1);
  Status cancel(const std::string& id);
  // Blocks until the run stops running (tests, synchronous callers).
  void wait_idle(const std::string& id);

  // A paired site lost for good (`evac site unpair SITE --lost`): refused
  // while it answers, while a group here still recovers to it (`group
  // delete --force` first), or while a group of it was never recovered
  // here (its VMs exist only as the replicas here: fail over first). For
  // each group of it that is live here: the VMs' disks are flattened (a
  // block pull; the release does the rest offline), the replicas here
  // released, the VMs stop being its placeholders (so they can be
  // protected toward another site); then the pairing, its mappings and its
  // configuration copy go. The ownership records stay, as history.
  Result<nlohmann::json> forget_lost_site(const std::string& site);

  // The former protected site's half of a reprotect (the caller owns the
  // group's live copy now): body {epoch, run, vms: [{name, uuid (live at
  // the caller), source_uuid (the VM here)}]}. Each VM here, fenced, becomes
  // the placeholder of the caller's; its disks become the seeds of the
  // reverse replication; this site stops protecting the group. Asked again,
  // it answers the same: {placeholders: [{uuid, provider, name, source_uuid}]}.
  Result<nlohmann::json> handle_peer_reprotect(const PeerRecord& caller, const std::string& group,
                                               const nlohmann::json& body);

 private:
  // Refuses a run over a group another unfinished run holds. A cleanup
  // may follow a failed test: those tests are returned, for the caller to
  // close once the cleanup has started (a refused request changes nothing).
  Result<std::vector<std::string>> check_no_conflicting_run(const std::string& plan, const std::string& operation,
                                                            const std::vector<std::string>& groups);
  // A test leaves test VMs and copies until cleanup; a new test must not
  // stack onto them.
  Status check_no_test_left(const RunContext& ctx);
  // What a start checks before it resolves anything.
  Status check_request(const RunRequest& request, const RecoveryPlan& plan);
  // The run's context: each group's PIT, epoch and test networks, each VM's
  // placeholder, resolved once (see run_context.h).
  Result<RunContext> resolve_context(const RunRequest& request, const RecoveryPlan& plan);
  Result<RunGroup> resolve_group(const RunRequest& request, const RecoveredGroup& g);
  // The operation's steps with their timeouts, expected times and the
  // compute provider each holds.
  Result<std::vector<engine::StepSpec>> compile_steps(const RunContext& ctx);
  std::map<std::string, int> earlier_step_times(const std::string& plan, const std::vector<engine::StepSpec>& steps);

  SiteService& site_;
  ReplicationService* replication_;
  PlanService& plans_;
  std::unique_ptr<RunSteps> steps_;
  std::unique_ptr<engine::RunEngine> engine_;
  std::mutex start_mu_;  // one start at a time: the conflict check and the insert are one decision
};

nlohmann::json to_json(const RunRow& run);
// `now_ms` (unix ms): a step still running past its timeout shows how far
// past (`overdue_s`). The engine bounds a step's own waits by its deadline
// but cannot interrupt a provider's or peer's call in flight, so such a step
// is waiting on a call that has not returned, which the operator should know.
nlohmann::json to_json(const engine::Step& step, std::int64_t now_ms);
// How far a running step has got, where this site can see it; null
// otherwise. A reprotect's "Synchronize storage back (delta resync)" may
// read every block of the group's disks for hours: its reverse cycle runs
// here, and its progress (ReplicationService::sync_progress) is shown.
nlohmann::json step_progress(const engine::Step& step, ReplicationService* replication);

}  // namespace evac
