#include "service/runs/steps/readiness_step.h"

#include <set>

namespace evac {

using engine::Step;
using nlohmann::json;

namespace {

// What a reprotect needs beyond a recovery's checks: the former protected
// site answering (its copies become the placeholders), and mappings from
// here back to it for every network and storage pool the VMs use here.
Result<std::vector<ReadinessFinding>> reprotect_findings(StepEnv& env, const RunContext& ctx) {
  std::vector<ReadinessFinding> out;
  std::set<std::string> asked;
  for (const auto& g : ctx.groups) {
    if (ctx.operation == "reprotect") {
      auto owner = env.site.ownership(g.name, g.protected_site, g.epoch);
      if (!owner) return owner.status();
      if (owner->owner != ctx.site)
        out.push_back({"error", "ownership", "group '" + g.name + "' is not live here (owner: '" + owner->owner + "')",
                       "reprotect follows a migration or failover to this site"});
      if (!asked.count(g.protected_site)) {
        asked.insert(g.protected_site);
        auto reached = env.site.peer_client(g.protected_site).inventory();
        if (reached)
          out.push_back({"ok", "peer", "site '" + g.protected_site + "' answers", ""});
        else
          out.push_back({"error", "peer", "site '" + g.protected_site + "' does not answer: " + reached.status().message(),
                         "reprotect makes placeholders there; bring it back (it stays fenced) and run reprotect again"});
      }
    }
    RecoveredGroup back;
    back.name = g.name;
    back.protected_site = g.protected_site;
    back.source_networks = g.source_networks;
    back.source_pools = g.source_pools;
    std::vector<LiveVm> live;
    for (const auto& [vm_name, vm] : ctx.vms)
      if (vm.group == g.name) live.push_back({vm_name, vm.provider, vm.placeholder_uuid});
    auto mappings = env.plans.reverse_mapping_findings(back, live);
    if (!mappings) return mappings.status();
    out.insert(out.end(), mappings->begin(), mappings->end());
  }
  return out;
}

}  // namespace

Result<json> readiness(StepEnv& env, const RunContext& ctx) {
  PlanReadiness r;
  if (ctx.operation != "reprotect") {
    auto checked = env.plans.check_plan(ctx.plan);
    if (!checked) return checked.status();
    r = std::move(*checked);
  }
  if (ctx.operation == "reprotect" || ctx.operation == "failback") {
    auto reverse = reprotect_findings(env, ctx);
    if (!reverse) return reverse.status();
    r.findings.insert(r.findings.end(), reverse->begin(), reverse->end());
  }
  json warnings = json::array();
  std::string errors;
  int ok = 0;
  for (const auto& f : r.findings) {
    // Only what concerns this run stops it (a missing test network stops
    // no failover, a lost protected site no test).
    if (!f.concerns(ctx.operation)) continue;
    if (f.severity == "ok") ++ok;
    if (f.severity == "warning") warnings.push_back(f.message);
    if (f.severity == "error")
      errors += (errors.empty() ? "" : "; ") + f.message + (f.hint.empty() ? "" : " (" + f.hint + ")");
  }
  if (!errors.empty())
    return failed_precondition("plan '" + ctx.plan.name + "' is not ready: " + errors,
                               "fix what `evac plan check " + ctx.plan.name + "` lists, then `evac run resume`");
  return json{{"ok", ok}, {"warnings", warnings}};
}

}  // namespace evac
