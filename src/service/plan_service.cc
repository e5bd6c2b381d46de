#include "service/plan_service.h"

#include <map>

#include "core/model_json.h"
#include "core/plan_json.h"

namespace evac {

using nlohmann::json;

namespace {

Result<RecoveryPlan> plan_from_record(const PlanRecord& r) {
  auto j = parse_json(r.document, "stored plan '" + r.name + "'");
  if (!j) return j.status();
  auto p = plan_from_json(*j);
  if (!p) return p.status().with_context("stored plan '" + r.name + "'");
  p->created_at = r.created_at;
  p->updated_at = r.updated_at;
  return p;
}

}  // namespace

Result<std::vector<std::string>> PlanService::group_vm_names(const std::string& group) {
  auto own = site_.store().find_group(group);
  if (!own) return own.status();
  std::vector<std::string> names;
  if (own->has_value()) {
    for (const auto& v : (*own)->vms) names.push_back(v.vm_name);
    return names;
  }
  auto copies = site_.store().list_peer_copies();
  if (!copies) return copies.status();
  for (const auto& c : *copies) {
    auto doc = json::parse(c.document, nullptr, false);
    if (!doc.is_object() || !doc.contains("groups") || !doc["groups"].is_array()) continue;
    for (const auto& g : doc["groups"]) {
      if (!g.is_object() || g.value("name", "") != group) continue;
      if (g.contains("vms") && g["vms"].is_array())
        for (const auto& v : g["vms"])
          if (v.is_object() && v.contains("name") && v["name"].is_string()) names.push_back(v["name"]);
      return names;
    }
  }
  return not_found("no protection group named '" + group + "' is protected here or recovered here",
                   "list groups with `evac group list` at either site; a peer's groups appear here once it is paired "
                   "and has sent its configuration");
}

Result<RecoveryPlan> PlanService::save(RecoveryPlan plan, bool must_be_new) {
  std::vector<std::string> vms;
  std::vector<std::string> problems;
  for (const auto& g : plan.groups) {
    auto names = group_vm_names(g);
    if (!names) {
      if (names.status().code() != StatusCode::kNotFound) return names.status();
      problems.push_back("group '" + g + "' is not known at this site");
      continue;
    }
    vms.insert(vms.end(), names->begin(), names->end());
  }
  // The same VM name in two groups would make the plan's entries ambiguous.
  std::map<std::string, int> times;
  for (const auto& vm : vms) ++times[vm];
  for (const auto& [vm, n] : times)
    if (n > 1) problems.push_back("VM name '" + vm + "' appears in more than one of the plan's groups");
  if (!problems.empty()) {
    std::string message = "plan '" + plan.name + "' cannot be saved: ";
    for (std::size_t i = 0; i < problems.size(); ++i) message += (i ? "; " : "") + problems[i];
    return invalid_argument(message, "cover only groups listed by `evac group list`, each VM name once");
  }
  EVAC_RETURN_IF_ERROR(validate_plan(plan, vms));

  const std::int64_t now = site_.now();
  Status st = site_.store().transaction([&]() -> Status {
    auto existing = site_.store().find_plan(plan.name);
    if (!existing) return existing.status();
    if (existing->has_value() && must_be_new)
      return already_exists("a recovery plan named '" + plan.name + "' exists",
                            "change it with `evac apply -f`, or delete it first");
    plan.created_at = existing->has_value() ? (*existing)->created_at : now;
    plan.updated_at = now;
    json doc = plan_to_json(plan);
    doc.erase("created_at");
    doc.erase("updated_at");
    EVAC_RETURN_IF_ERROR(site_.store().put_plan(PlanRecord{plan.name, doc.dump(), plan.created_at, plan.updated_at}));
    return site_.store().bump_config_version();
  });
  if (!st.is_ok()) return st;
  return plan;
}

Result<RecoveryPlan> PlanService::create_plan(const json& body) {
  auto plan = plan_from_json(body);
  if (!plan) return plan.status();
  return save(std::move(*plan), true);
}

Result<RecoveryPlan> PlanService::apply_plan(const std::string& name, const json& body) {
  json named = body;
  if (named.is_object() && !named.contains("name")) named["name"] = name;
  auto plan = plan_from_json(named);
  if (!plan) return plan.status();
  if (plan->name != name)
    return invalid_argument("the plan is named '" + plan->name + "' but was sent to '" + name + "'",
                            "send it to /api/v1/plans/" + plan->name + ", or rename it in the document");
  return save(std::move(*plan), false);
}

Result<std::vector<RecoveryPlan>> PlanService::list_plans() {
  auto records = site_.store().list_plans();
  if (!records) return records.status();
  std::vector<RecoveryPlan> out;
  for (const auto& r : *records) {
    auto p = plan_from_record(r);
    if (!p) return p.status();
    out.push_back(std::move(*p));
  }
  return out;
}

Result<RecoveryPlan> PlanService::get_plan(const std::string& name) {
  auto r = site_.store().find_plan(name);
  if (!r) return r.status();
  if (!r->has_value())
    return not_found("no recovery plan named '" + name + "'", "list plans with `evac plan list`");
  return plan_from_record(**r);
}

Status PlanService::delete_plan(const std::string& name) {
  return site_.store().transaction([&]() -> Status {
    auto r = site_.store().find_plan(name);
    if (!r) return r.status();
    if (!r->has_value()) return not_found("no recovery plan named '" + name + "'", "list plans with `evac plan list`");
    EVAC_RETURN_IF_ERROR(site_.store().remove_plan(name));
    return site_.store().bump_config_version();
  });
}

}  // namespace evac
