#include "service/runs/run_steps.h"

#include "service/runs/steps/guest_steps.h"
#include "service/runs/steps/readiness_step.h"
#include "service/runs/steps/recovery_steps.h"
#include "service/runs/steps/reprotect_steps.h"
#include "service/runs/steps/test_steps.h"

namespace evac {

using engine::Step;
using engine::StepKind;
using nlohmann::json;

RunSteps::RunSteps(SiteService& site, PlanService& plans, ReplicationService* replication)
    : env_{site, plans, replication, progress_} {}

Result<std::shared_ptr<const RunContext>> RunSteps::context(const RunRow& run) {
  {
    std::lock_guard lock(mu_);
    if (auto it = contexts_.find(run.id); it != contexts_.end()) return it->second;
  }
  EVAC_ASSIGN_OR_RETURN(auto ctx, run_context_from_row(run.id, run.operation, env_.site.identity().name,
                                                       run.plan_document, run.groups));
  std::lock_guard lock(mu_);
  return contexts_.emplace(run.id, std::make_shared<const RunContext>(std::move(ctx))).first->second;
}

Result<json> RunSteps::run(const RunRow& run, const Step& step) {
  EVAC_ASSIGN_OR_RETURN(auto ctx, context(run));
  const json& p = step.spec.params;
  switch (step.spec.kind) {
    case StepKind::kPrompt:
    case StepKind::kBarrier:
      break;  // the engine's own
    case StepKind::kReadiness: return readiness(env_, *ctx);
    case StepKind::kCreateTestCopy: return create_test_copy(env_, run, *ctx, p.value("group", ""));
    case StepKind::kDropTestCopies: return drop_test_copies(env_, p.value("group", ""));
    case StepKind::kSyncProtected:
    case StepKind::kShutdownProtected:
    case StepKind::kHandover:
    case StepKind::kPromote:
    case StepKind::kTakeOwnership:
    case StepKind::kReprotectPeer:
    case StepKind::kProtectHere:
    case StepKind::kSyncReverse:
    case StepKind::kReleaseReplicas: return run_group_step(run, step, *ctx);
    case StepKind::kRegisterTestVm:
    case StepKind::kRecoverVm:
    case StepKind::kRemoveTestVm:
    case StepKind::kFlattenDisks:
    case StepKind::kPowerOn:
    case StepKind::kWaitForGuest:
    case StepKind::kCustomizeIp:
    case StepKind::kCheck:
    case StepKind::kHostCommand:
    case StepKind::kGuestCommand: return run_vm_step(run, step, *ctx);
  }
  return internal_error("no step runner for step kind '" + std::string(engine::step_kind_name(step.spec.kind)) + "'",
                        "a bug in evac: report it with the run's id");
}

Result<json> RunSteps::run_group_step(const RunRow& run, const Step& step, const RunContext& ctx) {
  const json& p = step.spec.params;
  EVAC_ASSIGN_OR_RETURN(const RunGroup* g, ctx.group(p.value("group", "")));
  switch (step.spec.kind) {
    case StepKind::kReleaseReplicas: return release_replicas(env_, *g);
    case StepKind::kReprotectPeer: return reprotect_peer(env_, step, run, ctx, *g);
    case StepKind::kProtectHere: return protect_here(env_, ctx, *g);
    case StepKind::kSyncReverse: return sync_reverse(env_, *g);
    case StepKind::kSyncProtected: return sync_protected(env_, run, step, *g);
    case StepKind::kShutdownProtected: return shutdown_protected(env_, step, *g, p.value("best_effort", false));
    case StepKind::kHandover: return handover(env_, run, ctx, *g, false);
    case StepKind::kPromote: return promote(env_, run, *g);
    case StepKind::kTakeOwnership: return take_ownership(env_, run, ctx, *g);
    default: return internal_error("step kind '" + std::string(engine::step_kind_name(step.spec.kind)) + "' is not a group's");
  }
}

Result<json> RunSteps::run_vm_step(const RunRow& run, const Step& step, const RunContext& ctx) {
  const json& p = step.spec.params;
  const StepKind kind = step.spec.kind;
  EVAC_ASSIGN_OR_RETURN(const RunVm* vm, ctx.vm(p.value("vm", "")));
  if (kind == StepKind::kRegisterTestVm) return register_test_vm(env_, run, ctx, *vm);
  if (kind == StepKind::kRecoverVm) return recover_vm(env_, run, ctx, *vm);
  if (kind == StepKind::kRemoveTestVm) return remove_test_vm(env_, *vm);
  EVAC_ASSIGN_OR_RETURN(const Target target, target_of(env_.site, ctx, *vm));
  const PlanVm entry = plan_vm_or_default(ctx.plan, vm->name);
  switch (kind) {
    case StepKind::kFlattenDisks: return flatten_disks(target);
    case StepKind::kPowerOn: return power_on(target);
    case StepKind::kWaitForGuest: {
      EVAC_ASSIGN_OR_RETURN(auto timeout, within(step, std::chrono::seconds(p.value("timeout_s", 300))));
      return wait_for_guest(target, timeout);
    }
    case StepKind::kCustomizeIp: return customize_ip(env_, step, ctx, *vm, target);
    case StepKind::kCheck: {
      std::size_t i = p.value("check", std::size_t{0});
      if (i >= entry.checks.size()) return internal_error("step " + step.spec.name + " names a check the plan lacks");
      return check(step, target, entry.checks[i]);
    }
    case StepKind::kHostCommand:
    case StepKind::kGuestCommand: {
      const auto& list = p.value("when", "") == "before_power_on" ? entry.before_power_on : entry.after_power_on;
      std::size_t i = p.value("action", std::size_t{0});
      if (i >= list.size()) return internal_error("step " + step.spec.name + " names an action the plan lacks");
      EVAC_ASSIGN_OR_RETURN(auto timeout, within(step, list[i].timeout));
      if (kind == StepKind::kHostCommand) return host_command(run, ctx, *vm, list[i], timeout);
      return guest_command(target, list[i], timeout);
    }
    default: return internal_error("step kind '" + std::string(engine::step_kind_name(kind)) + "' is not a VM's");
  }
}

}  // namespace evac
