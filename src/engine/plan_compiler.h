// Compiles a recovery plan into the steps of a run's power-on phase.
//
// Each VM becomes a chain, in this order:
//   before_power_on actions → "Power on VM" → "Wait for guest heartbeat"
//   → "Customize IP" (when the plan has IP rules; it needs the agent, so
//   only for VMs waited for) → checks → after_power_on actions
// (a VM left off gets none of it). How chains are ordered is the plan's
// ordering:
//   strict-tiers:  tier N's chains start after "Priority N-1 VMs are up", a
//                  barrier step after every chain of tier N-1 (so a tier
//                  starts once the whole tier before it is up and checked);
//   dependencies:  a VM's chain starts once the chains of the VMs it depends
//                  on are done; tiers only order VMs ready at the same time
//                  (each step carries its VM's tier for the engine).
// Dependencies hold in both modes. Steps are emitted in an order where every
// step comes after the steps it waits for, which the engine requires.
#pragma once

#include <string>
#include <vector>

#include "core/plan.h"
#include "core/status.h"
#include "engine/run_engine.h"

namespace evac::engine {

// A VM the run recovers: its name at the protected site and its group.
struct RecoveryVm {
  std::string name;
  std::string group;
};

// `first`: steps that come before the power-on phase (e.g. preparing
// storage); every VM chain comes after the last of them. Their `after`
// indices are kept as given.
Result<std::vector<StepSpec>> compile_power_on(const RecoveryPlan& plan, const std::vector<RecoveryVm>& vms,
                                               std::vector<StepSpec> first = {});

// The operations, each starting with "Check readiness" (kind "readiness").
//
// test:    readiness → "Create test copy: <group>" per group (kind
//          create_test_copy) → "Register test VM: <vm>" per VM, after its
//          group's copy (register_test_vm) → "Test VMs are registered"
//          (barrier) → the power-on phase.
// cleanup: "Remove test VM: <vm>" per VM (remove_test_vm) → "Discard test
//          copies: <group>" per group, after its VMs (drop_test_copies).
//          Cleanup checks nothing first: it must work on whatever a failed
//          or interrupted test left.
Result<std::vector<StepSpec>> compile_test(const RecoveryPlan& plan, const std::vector<RecoveryVm>& vms);

// failover: readiness → per group "Shut down VMs at protected site: <g>"
//           (shutdown_protected, best effort: the site may be gone) →
//           "Promote replicas: <g>" (promote) → "Take ownership: <g>"
//           (take_ownership) → "Recover VM: <vm>" per VM (recover_vm) →
//           "Recovered VMs are registered" → the power-on phase.
// migrate:  the same, but before promoting, per group: "Synchronize
//           storage: <g>" (sync_protected) → "Shut down VMs at protected
//           site: <g>" (graceful, must succeed) → "Synchronize storage
//           after shutdown: <g>" (the final sync: nothing written after it)
//           → "Hand over at protected site: <g>" (handover: the old copy is
//           fenced before the new one can start).
Result<std::vector<StepSpec>> compile_failover(const RecoveryPlan& plan, const std::vector<RecoveryVm>& vms);
Result<std::vector<StepSpec>> compile_migrate(const RecoveryPlan& plan, const std::vector<RecoveryVm>& vms);
Result<std::vector<StepSpec>> compile_cleanup(const RecoveryPlan& plan, const std::vector<RecoveryVm>& vms);

// reprotect (at the site that owns the group's live copy after a
//           recovery): readiness → per group "Make placeholders at former
//           protected site: <g>" (reprotect_peer: its stale copies become
//           placeholders and seeds, it stops protecting the group) →
//           "Protect from this site: <g>" (protect_here) → "Synchronize
//           storage back (delta resync): <g>" (sync_reverse).
// failback: migrate, then the reprotect steps once every step of the
//           migration is done.
// The time a step of this kind gets (StepSpec::timeout_s), generous: it is
// what stops a run that hangs, not a performance target. 0 for steps bound
// by the plan's own timeouts (checks, actions) and for storage syncs (a
// first sync of a large group takes hours; a cycle fails on its own).
int default_step_timeout_s(const StepSpec& step);

Result<std::vector<StepSpec>> compile_reprotect(const RecoveryPlan& plan, const std::vector<RecoveryVm>& vms);
Result<std::vector<StepSpec>> compile_failback(const RecoveryPlan& plan, const std::vector<RecoveryVm>& vms);

}  // namespace evac::engine
