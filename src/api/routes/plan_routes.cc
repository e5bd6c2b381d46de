// Recovery plans: what a run recovers and how, and whether it could run here now.
#include <algorithm>
#include <string>

#include "api/request.h"
#include "api/routes/routes.h"
#include "core/plan_json.h"

namespace evac {
using nlohmann::json;

namespace {
using Access = ApiRouter::Access;
using Context = ApiRouter::Context;

json readiness_json(const PlanReadiness& r) {
  json findings = json::array();
  for (const auto& f : r.findings)
    findings.push_back({{"severity", f.severity},
                        {"check", f.check},
                        {"message", f.message},
                        {"hint", f.hint},
                        {"operations", f.operations}});
  // Per operation: whether it applies now, and whether it would run.
  json operations = json::object();
  for (const auto& op : readiness_operations())
    operations[op] = {{"applicable", std::find(r.applicable.begin(), r.applicable.end(), op) != r.applicable.end()},
                      {"ready", r.ready_for(op)}};
  return json{{"ready", r.ready}, {"operations", operations}, {"findings", findings}};
}

// This site's plans, then those a paired site's configuration copy carries
// (after a reprotect, a failback runs here from the plan the other site
// stores), each with whether it is ready and where it is stored.
Result<json> list_plans(RouteServices& services) {
  PlanService& plans = services.plans;
  EVAC_ASSIGN_OR_RETURN(auto ours, plans.list_plans());
  json out = json::array();
  auto add_plan = [&](const RecoveryPlan& p, const std::string& stored_at) {
    json j = plan_to_json(p);
    auto r = plans.check_plan(p, false);
    j["ready"] = r ? json(r->ready) : json(nullptr);
    j["stored_at"] = stored_at;
    out.push_back(std::move(j));
  };
  for (const auto& p : ours) add_plan(p, services.site.identity().name);
  EVAC_ASSIGN_OR_RETURN(auto theirs, plans.peer_plans());
  for (const auto& [site, p] : theirs) add_plan(p, site);
  return out;
}

}  // namespace

void add_plan_routes(ApiRouter& router, RouteServices& services) {
  PlanService& plans = services.plans;
  router.add("GET", "/api/v1/plans", Access::kOperator, "Recovery plans, each with whether it is ready to run here",
             [&services](Context&) { return list_plans(services); });
  router.add("GET", "/api/v1/plans/{name}/readiness", Access::kOperator,
             "Check, without side effects, everything a run of the plan at this site needs",
             [&plans](Context& c) -> Result<json> {
               EVAC_ASSIGN_OR_RETURN(auto readiness, plans.check_plan(c.params[0]));
               json out = readiness_json(readiness);
               out["plan"] = c.params[0];
               return out;
             });
  router.add(
      "POST", "/api/v1/plans", Access::kOperator, "Create a recovery plan (its JSON form; see docs/plans.md)",
      [&plans](Context& c) -> Result<json> {
        EVAC_ASSIGN_OR_RETURN(auto body, body_object(c.request));
        EVAC_ASSIGN_OR_RETURN(auto p, plans.create_plan(body));
        return plan_to_json(p);
      },
      201);
  router.add("GET", "/api/v1/plans/{name}", Access::kOperator, "One recovery plan (this site's, else a paired site's)",
             [&plans](Context& c) -> Result<json> {
               EVAC_ASSIGN_OR_RETURN(auto p, plans.runnable_plan(c.params[0]));
               return plan_to_json(p);
             });
  router.add("PUT", "/api/v1/plans/{name}", Access::kOperator,
             "Create or replace a recovery plan (declarative: `evac apply -f`)", [&plans](Context& c) -> Result<json> {
               EVAC_ASSIGN_OR_RETURN(auto body, body_object(c.request));
               EVAC_ASSIGN_OR_RETURN(auto p, plans.apply_plan(c.params[0], body));
               return plan_to_json(p);
             });
  router.add("DELETE", "/api/v1/plans/{name}", Access::kOperator, "Delete a recovery plan",
             [&plans](Context& c) -> Result<json> {
               EVAC_RETURN_IF_ERROR(plans.delete_plan(c.params[0]));
               return json{{"deleted", c.params[0]}};
             });
}

}  // namespace evac
