// evac plan create|list|show|check|delete: recovery plans and their readiness.
#include "cli/commands/plan_commands.h"

#include <CLI/CLI.hpp>

#include <algorithm>
#include <iostream>
#include <memory>

#include "cli/apply.h"

namespace evac::cli {
namespace {
using nlohmann::json;

struct PlanCreateOptions {
  std::string name, ordering = "strict-tiers", description;
  std::vector<std::string> groups;
};

struct PlanNameOptions {  // show, delete
  std::string name;
};

struct PlanCheckOptions {
  std::string name, operation;
};

// A plan as an operator reads it: what it covers, then each VM entry.
void print_plan(const Globals& g, const json& j) {
  if (g.format() != Format::kTable) {
    print_object(std::cout, j, g.format());
    return;
  }
  print_object(std::cout, j, Format::kTable,
               {field("NAME", "name"), field("DESCRIPTION", "description"), field("GROUPS", "groups"),
                field("ORDERING", "ordering"), time_column("UPDATED", "updated_at")});
  const json& vms = j.contains("vms") ? j["vms"] : json::array();
  std::cout << "\nVMs (" << vms.size() << " with settings; the groups' other VMs: tier 3, powered on, waited for):\n";
  if (vms.empty()) return;
  auto count = [](std::string header, std::vector<std::string> keys) {
    return Column{std::move(header), [keys](const json& v) {
                    std::size_t n = 0;
                    for (const auto& k : keys)
                      if (v.contains(k) && v[k].is_array()) n += v[k].size();
                    return std::to_string(n);
                  }};
  };
  print_list(std::cout, vms, Format::kTable,
             {field("VM", "vm"), field("TIER", "priority"), field("DEPENDS-ON", "depends_on"),
              field("STARTUP", "startup"), field("WAIT-FOR-GUEST", "wait_for_guest"), count("CHECKS", {"checks"}),
              count("ACTIONS", {"before_power_on", "after_power_on"})});
}

void add_plan_create(CLI::App& plan, Globals& g, int& rc) {
  auto o = std::make_shared<PlanCreateOptions>();
  auto* create = plan.add_subcommand("create", "Create a plan over protection groups (details: evac apply -f)");
  create->add_option("name", o->name, "Plan name")->required();
  create->add_option("--group", o->groups, "A protection group the plan recovers; repeat for several")->required();
  create->add_option("--ordering", o->ordering, "strict-tiers (every VM of a tier up before the next) or dependencies")
      ->check(CLI::IsMember({"strict-tiers", "dependencies"}))
      ->capture_default_str();
  create->add_option("--description", o->description, "What the plan is for");
  create->callback([&g, &rc, o] {
    json body = {{"name", o->name}, {"groups", o->groups}, {"ordering", o->ordering}, {"description", o->description}};
    rc = call_and_print(g, "POST", "/api/v1/plans", body, [&](const json& j) { print_plan(g, j); });
  });
}

void add_plan_show(CLI::App& plan, Globals& g, int& rc) {
  auto o = std::make_shared<PlanNameOptions>();
  auto* show = plan.add_subcommand("show", "Show a plan");
  show->add_option("name", o->name, "Plan name")->required();
  show->callback([&g, &rc, o] {
    rc = call_and_print(g, "GET", "/api/v1/plans/" + path_part(o->name), std::nullopt, [&](const json& j) { print_plan(g, j); });
  });
}

void add_plan_check(CLI::App& plan, Globals& g, int& rc) {
  auto o = std::make_shared<PlanCheckOptions>();
  auto* check = plan.add_subcommand("check", "Check, without side effects, everything a run of the plan here needs");
  check->add_option("name", o->name, "Plan name")->required();
  check->add_option("--operation", o->operation,
                    "Answer for this run only (exit 0 when it would run): test, migrate, failover, reprotect, failback")
      ->check(CLI::IsMember({"test", "migrate", "failover", "reprotect", "failback"}));
  check->callback([&g, &rc, o] {
    bool ready = false;
    rc = call_and_print(g, "GET", "/api/v1/plans/" + path_part(o->name) + "/readiness", std::nullopt, [&](const json& j) {
      const json ops = j.value("operations", json::object());
      ready = o->operation.empty() ? j.value("ready", false)
                                   : ops.contains(o->operation) && ops[o->operation].value("ready", false);
      if (g.format() != Format::kTable) {
        print_object(std::cout, j, g.format());
        return;
      }
      for (const auto& f : j.value("findings", json::array())) {
        std::vector<std::string> concerns = f.value("operations", std::vector<std::string>{});
        if (!o->operation.empty() && !concerns.empty() &&
            std::find(concerns.begin(), concerns.end(), o->operation) == concerns.end())
          continue;
        std::string sev = f.value("severity", "");
        std::string which;
        for (const auto& op : concerns) which += (which.empty() ? " [" : ", ") + op;
        if (!which.empty()) which += "]";
        std::cout << (sev == "ok" ? "ok      " : sev == "warning" ? "WARNING " : "ERROR   ") << f.value("check", "") << which
                  << ": " << f.value("message", "") << "\n";
        if (!f.value("hint", "").empty() && sev != "ok") std::cout << "        hint: " << f.value("hint", "") << "\n";
      }
      // What each run would do now.
      std::string verdicts;
      for (const auto& [op, v] : ops.items()) {
        if (!o->operation.empty() && op != o->operation) continue;
        verdicts += (verdicts.empty() ? "" : ", ") + op + " " +
                    (!v.value("applicable", false) ? "does not apply now" : v.value("ready", false) ? "ready" : "NOT READY");
      }
      if (!verdicts.empty()) std::cout << "runs: " << verdicts << "\n";
      std::cout << "plan '" << o->name << "' is " << (ready ? "ready" : "not ready")
                << (o->operation.empty() ? "" : " for " + o->operation) << "\n";
    });
    if (rc == kOk && !ready) rc = kFailed;
  });
}

void add_plan_delete(CLI::App& plan, Globals& g, int& rc) {
  auto o = std::make_shared<PlanNameOptions>();
  auto* del = plan.add_subcommand("delete", "Delete a plan (its groups stay protected)");
  del->add_option("name", o->name, "Plan name")->required();
  del->callback([&g, &rc, o] {
    rc = call_and_print(g, "DELETE", "/api/v1/plans/" + path_part(o->name), std::nullopt,
                        as_message(g, [](const json& j) { return "deleted recovery plan '" + j.value("deleted", "") + "'"; }));
  });
}

}  // namespace

void add_plan_commands(CLI::App& app, Globals& g, int& rc) {
  auto* plan = app.add_subcommand("plan", "Recovery plans: the runbooks that test, migrate and fail over groups");
  plan->require_subcommand(1);
  add_plan_create(*plan, g, rc);
  plan->add_subcommand("list", "List recovery plans")->callback([&g, &rc] {
    rc = call_and_print(g, "GET", "/api/v1/plans", std::nullopt,
                        as_list(g, {field("NAME", "name"), field("GROUPS", "groups"), field("ORDERING", "ordering"),
                                    Column{"STATE", [](const json& p) {
                                             return !p.contains("ready") || p["ready"].is_null() ? std::string("unknown")
                                                    : p["ready"].get<bool>()                      ? std::string("ready")
                                                                                                  : std::string("not ready");
                                           }},
                                    Column{"VM-ENTRIES", [](const json& p) { return std::to_string(p.value("vms", json::array()).size()); }},
                                    field("STORED-AT", "stored_at"), time_column("UPDATED", "updated_at")}));
  });
  add_plan_show(*plan, g, rc);
  add_plan_check(*plan, g, rc);
  add_plan_delete(*plan, g, rc);
}

}  // namespace evac::cli
