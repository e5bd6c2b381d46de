#include "engine/plan_compiler.h"

#include <algorithm>
#include <map>
#include <set>

namespace evac::engine {

using nlohmann::json;

namespace {

std::string check_label(const AppCheck& c) {
  switch (c.kind) {
    case AppCheck::Kind::kTcp: return "TCP port " + std::to_string(c.port);
    case AppCheck::Kind::kHttp: return "HTTP " + std::to_string(c.expect_status) + " on port " + std::to_string(c.port) + c.path;
    case AppCheck::Kind::kCommand: return "command " + (c.command.empty() ? std::string() : c.command.front());
  }
  return "check";
}

// Appends steps; chain() appends one VM's steps, the first after `start`.
class Emitter {
 public:
  // `customize_ip`: the plan has IP rules, applied in each guest once its
  // agent answers.
  Emitter(std::vector<StepSpec>& out, bool customize_ip) : out_(out), customize_ip_(customize_ip) {}

  int add(StepSpec s) {
    out_.push_back(std::move(s));
    return static_cast<int>(out_.size()) - 1;
  }

  // The steps of one VM, each after the one before; the first after `start`.
  // Returns what its last step is (`start` itself when it adds none).
  std::vector<int> chain(const PlanVm& vm, const std::string& group, std::vector<int> start) {
    std::vector<int> last = std::move(start);
    auto step = [&](std::string name, StepKind kind, json params) {
      params["vm"] = vm.vm;
      params["group"] = group;
      last = {add(StepSpec{std::move(name), kind, last, vm.priority, std::move(params)})};
    };
    auto actions = [&](const std::vector<PlanAction>& list, const char* when) {
      for (std::size_t i = 0; i < list.size(); ++i) {
        const auto& a = list[i];
        json p = {{"when", when}, {"action", i}};
        switch (a.kind) {
          case PlanAction::Kind::kPrompt:
            step("Prompt (" + vm.vm + "): " + a.message, StepKind::kPrompt, p);
            break;
          case PlanAction::Kind::kHostCommand:
            step("Run on the evacd host (" + vm.vm + "): " + a.command.front(), StepKind::kHostCommand, p);
            break;
          case PlanAction::Kind::kGuestCommand:
            step("Run in the guest (" + vm.vm + "): " + a.command.front(), StepKind::kGuestCommand, p);
            break;
        }
      }
    };
    if (vm.startup == StartupAction::kLeaveOff) return last;
    actions(vm.before_power_on, "before_power_on");
    step("Power on priority " + std::to_string(vm.priority) + " VM: " + vm.vm, StepKind::kPowerOn, json::object());
    if (vm.wait_for_guest) step("Wait for guest heartbeat: " + vm.vm, StepKind::kWaitForGuest, {{"timeout_s", vm.wait_for_guest->count()}});
    if (vm.wait_for_guest && customize_ip_) step("Customize IP: " + vm.vm, StepKind::kCustomizeIp, json::object());
    for (std::size_t i = 0; i < vm.checks.size(); ++i)
      step("Check " + check_label(vm.checks[i]) + ": " + vm.vm, StepKind::kCheck, {{"check", i}});
    actions(vm.after_power_on, "after_power_on");
    return last;
  }

 private:
  std::vector<StepSpec>& out_;
  bool customize_ip_;
};

}  // namespace

Result<std::vector<StepSpec>> compile_power_on(const RecoveryPlan& plan, const std::vector<RecoveryVm>& vms,
                                               std::vector<StepSpec> first) {
  std::vector<std::string> names;
  std::map<std::string, std::string> group_of;
  for (const auto& v : vms) {
    names.push_back(v.name);
    if (!group_of.emplace(v.name, v.group).second)
      return invalid_argument("VM name '" + v.name + "' appears twice in the plan's groups");
  }
  EVAC_RETURN_IF_ERROR(validate_plan(plan, names));

  std::vector<StepSpec> out = std::move(first);
  Emitter emit(out, !plan.ip_rules.empty());
  const std::vector<int> after_first = out.empty() ? std::vector<int>{} : std::vector<int>{static_cast<int>(out.size()) - 1};
  std::map<std::string, PlanVm> entry;
  for (const auto& n : names) entry[n] = plan_vm_or_default(plan, n);
  std::map<std::string, int> done_at;  // VM -> index of its chain's last step

  // VMs in a deterministic order: tier, then name.
  std::vector<std::string> order = names;
  std::sort(order.begin(), order.end(), [&](const std::string& a, const std::string& b) {
    return std::make_pair(entry[a].priority, a) < std::make_pair(entry[b].priority, b);
  });

  if (plan.ordering == PlanOrdering::kStrictTiers) {
    std::vector<int> barrier = after_first;
    for (int tier = 1; tier <= 5; ++tier) {
      std::vector<std::string> in_tier;
      for (const auto& n : order)
        if (entry[n].priority == tier) in_tier.push_back(n);
      if (in_tier.empty()) continue;
      // Within a tier, dependencies between its VMs still hold: emit them
      // in dependency order (validation refused cycles).
      std::set<std::string> emitted;
      std::vector<int> ends;
      while (emitted.size() < in_tier.size()) {
        for (const auto& n : in_tier) {
          if (emitted.count(n)) continue;
          bool ready = std::all_of(entry[n].depends_on.begin(), entry[n].depends_on.end(), [&](const std::string& d) {
            return entry[d].priority < tier || emitted.count(d);
          });
          if (!ready) continue;
          std::vector<int> start = barrier;
          for (const auto& d : entry[n].depends_on)
            if (entry[d].priority == tier && done_at[d] >= 0) start.push_back(done_at[d]);
          const std::size_t before = out.size();
          emit.chain(entry[n], group_of[n], start);
          done_at[n] = out.size() > before ? static_cast<int>(out.size()) - 1 : -1;  // -1: left off, nothing to wait for
          if (done_at[n] >= 0) ends.push_back(done_at[n]);
          emitted.insert(n);
        }
      }
      std::sort(ends.begin(), ends.end());
      ends.erase(std::unique(ends.begin(), ends.end()), ends.end());
      if (ends.empty()) continue;
      barrier = {emit.add(StepSpec{"Priority " + std::to_string(tier) + " VMs are up", StepKind::kBarrier, ends, tier,
                                   json{{"tier", tier}}})};
    }
    return out;
  }

  // Dependency-driven: Kahn's order, lower tier first among the ready.
  std::map<std::string, int> waiting;
  std::map<std::string, std::vector<std::string>> dependents;
  for (const auto& n : names) {
    waiting[n] = static_cast<int>(entry[n].depends_on.size());
    for (const auto& d : entry[n].depends_on) dependents[d].push_back(n);
  }
  std::set<std::pair<int, std::string>> ready;
  for (const auto& n : names)
    if (waiting[n] == 0) ready.insert({entry[n].priority, n});
  while (!ready.empty()) {
    std::string n = ready.begin()->second;
    ready.erase(ready.begin());
    std::vector<int> start = after_first;
    for (const auto& d : entry[n].depends_on)
      if (done_at[d] >= 0) start.push_back(done_at[d]);
    std::sort(start.begin(), start.end());
    start.erase(std::unique(start.begin(), start.end()), start.end());
    const std::size_t before = out.size();
    emit.chain(entry[n], group_of[n], start);
    done_at[n] = out.size() > before ? static_cast<int>(out.size()) - 1 : -1;
    for (const auto& m : dependents[n])
      if (--waiting[m] == 0) ready.insert({entry[m].priority, m});
  }
  return out;
}

namespace {

// The plan's groups in plan order, each with its VMs.
std::vector<std::pair<std::string, std::vector<std::string>>> by_group(const RecoveryPlan& plan,
                                                                       const std::vector<RecoveryVm>& vms) {
  std::vector<std::pair<std::string, std::vector<std::string>>> out;
  for (const auto& g : plan.groups) {
    out.push_back({g, {}});
    for (const auto& v : vms)
      if (v.group == g) out.back().second.push_back(v.name);
  }
  return out;
}

}  // namespace

Result<std::vector<StepSpec>> compile_test(const RecoveryPlan& plan, const std::vector<RecoveryVm>& vms) {
  std::vector<StepSpec> first;
  first.push_back(StepSpec{"Check readiness", StepKind::kReadiness, {}, 0, json::object()});
  std::vector<int> registered;
  for (const auto& [group, names] : by_group(plan, vms)) {
    first.push_back(StepSpec{"Create test copy: " + group, StepKind::kCreateTestCopy, {0}, 0, json{{"group", group}}});
    const int copy = static_cast<int>(first.size()) - 1;
    for (const auto& vm : names) {
      first.push_back(StepSpec{"Register test VM: " + vm, StepKind::kRegisterTestVm, {copy}, plan_vm_or_default(plan, vm).priority,
                               json{{"vm", vm}, {"group", group}}});
      registered.push_back(static_cast<int>(first.size()) - 1);
    }
  }
  if (registered.empty()) registered.push_back(static_cast<int>(first.size()) - 1);
  first.push_back(StepSpec{"Test VMs are registered", StepKind::kBarrier, registered, 0, json::object()});
  return compile_power_on(plan, vms, std::move(first));
}

namespace {

Result<std::vector<StepSpec>> compile_recovery(const RecoveryPlan& plan, const std::vector<RecoveryVm>& vms, bool planned) {
  std::vector<StepSpec> first;
  first.push_back(StepSpec{"Check readiness", StepKind::kReadiness, {}, 0, json::object()});
  std::vector<int> recovered;
  for (const auto& entry : by_group(plan, vms)) {
    // Named, not bound: clang 14 cannot capture a structured binding.
    const std::string& group = entry.first;
    const auto& names = entry.second;
    // Each group's chain starts after readiness, not after another group's.
    int start = 0;
    auto chain = [&](std::string name, StepKind kind, json params = json::object()) {
      params["group"] = group;
      first.push_back(StepSpec{std::move(name), kind, {start}, 0, std::move(params)});
      start = static_cast<int>(first.size()) - 1;
    };
    if (planned) {
      chain("Synchronize storage: " + group, StepKind::kSyncProtected, {{"final", false}});
      chain("Shut down VMs at protected site: " + group, StepKind::kShutdownProtected, {{"best_effort", false}});
      chain("Synchronize storage after shutdown: " + group, StepKind::kSyncProtected, {{"final", true}});
      chain("Hand over at protected site: " + group, StepKind::kHandover);
    } else {
      chain("Shut down VMs at protected site: " + group, StepKind::kShutdownProtected, {{"best_effort", true}});
    }
    chain("Promote replicas: " + group, StepKind::kPromote);
    chain("Take ownership: " + group, StepKind::kTakeOwnership);
    const int owned = start;
    for (const auto& vm : names) {
      first.push_back(StepSpec{"Recover VM: " + vm, StepKind::kRecoverVm, {owned}, plan_vm_or_default(plan, vm).priority,
                               json{{"vm", vm}, {"group", group}}});
      recovered.push_back(static_cast<int>(first.size()) - 1);
    }
  }
  if (recovered.empty()) recovered.push_back(static_cast<int>(first.size()) - 1);
  first.push_back(StepSpec{"Recovered VMs are registered", StepKind::kBarrier, recovered, 0, json::object()});
  return compile_power_on(plan, vms, std::move(first));
}

}  // namespace

Result<std::vector<StepSpec>> compile_failover(const RecoveryPlan& plan, const std::vector<RecoveryVm>& vms) {
  return compile_recovery(plan, vms, false);
}

Result<std::vector<StepSpec>> compile_migrate(const RecoveryPlan& plan, const std::vector<RecoveryVm>& vms) {
  return compile_recovery(plan, vms, true);
}

Result<std::vector<StepSpec>> compile_cleanup(const RecoveryPlan& plan, const std::vector<RecoveryVm>& vms) {
  std::vector<StepSpec> out;
  for (const auto& [group, names] : by_group(plan, vms)) {
    std::vector<int> removed;
    for (const auto& vm : names) {
      out.push_back(StepSpec{"Remove test VM: " + vm, StepKind::kRemoveTestVm, {}, 0, json{{"vm", vm}, {"group", group}}});
      removed.push_back(static_cast<int>(out.size()) - 1);
    }
    out.push_back(StepSpec{"Discard test copies: " + group, StepKind::kDropTestCopies, removed, 0, json{{"group", group}}});
  }
  return out;
}

namespace {

// The reprotect steps of each group, after `after`.
void append_reprotect(const RecoveryPlan& plan, const std::vector<RecoveryVm>& vms, const std::vector<int>& after,
                      std::vector<StepSpec>& out) {
  for (const auto& entry : by_group(plan, vms)) {
    const std::string& group = entry.first;  // captured below: no structured binding (clang 14)
    const auto& names = entry.second;
    // First the recovered VMs stop reading through the PITs they were
    // recovered from (side by side), before anything replicates from them;
    // then those PITs, history now, are released.
    std::vector<int> start;
    for (const auto& vm : names) {
      out.push_back(StepSpec{"Consolidate disks: " + vm, StepKind::kFlattenDisks, after, 0, json{{"vm", vm}}});
      start.push_back(static_cast<int>(out.size()) - 1);
    }
    if (start.empty()) start = after;
    auto chain = [&](std::string name, StepKind kind) {
      out.push_back(StepSpec{std::move(name), kind, start, 0, json{{"group", group}}});
      start = {static_cast<int>(out.size()) - 1};
    };
    chain("Release replicas here: " + group, StepKind::kReleaseReplicas);
    chain("Make placeholders at former protected site: " + group, StepKind::kReprotectPeer);
    chain("Protect from this site: " + group, StepKind::kProtectHere);
    chain("Synchronize storage back (delta resync): " + group, StepKind::kSyncReverse);
  }
}

}  // namespace

int default_step_timeout_s(const StepSpec& step) {
  const int own = step_kind_info(step.kind).default_timeout_s;
  // The guest gets the plan's wait, and the step a minute more for the calls around it.
  if (step.kind == StepKind::kWaitForGuest) return step.params.value("timeout_s", 300) + own;
  return own;
}

Result<std::vector<StepSpec>> compile_reprotect(const RecoveryPlan& plan, const std::vector<RecoveryVm>& vms) {
  std::vector<StepSpec> out;
  out.push_back(StepSpec{"Check readiness", StepKind::kReadiness, {}, 0, json::object()});
  append_reprotect(plan, vms, {0}, out);
  return out;
}

Result<std::vector<StepSpec>> compile_failback(const RecoveryPlan& plan, const std::vector<RecoveryVm>& vms) {
  auto out = compile_migrate(plan, vms);
  if (!out) return out;
  // After the whole migration: every step no other step waits for.
  std::vector<bool> awaited(out->size(), false);
  for (const auto& s : *out)
    for (int a : s.after) awaited[static_cast<std::size_t>(a)] = true;
  std::vector<int> ends;
  for (std::size_t i = 0; i < out->size(); ++i)
    if (!awaited[i]) ends.push_back(static_cast<int>(i));
  append_reprotect(plan, vms, ends, *out);
  return out;
}

}  // namespace evac::engine
