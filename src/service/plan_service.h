// PlanService: recovery plans at one site.
//
// A plan may cover groups this site protects and groups a paired site
// protects with this site as their recovery site (known from that site's
// configuration copy), so it can be written where it will run: at the
// recovery site, which must be able to run it with the protected site gone.
// Every plan change bumps the site's configuration version, so the plans
// that concern a peer travel to it with the rest of the protection
// configuration (and are there for failback).
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/plan.h"
#include "core/status.h"
#include "service/site_service.h"

namespace evac {

class PlanService {
 public:
  explicit PlanService(SiteService& site) : site_(site) {}

  // Creates a plan from its JSON form; kAlreadyExists if the name is taken.
  Result<RecoveryPlan> create_plan(const nlohmann::json& body);
  // Creates or replaces the plan `name` (declarative `evac apply`); the
  // body's name, if any, must be `name`.
  Result<RecoveryPlan> apply_plan(const std::string& name, const nlohmann::json& body);
  Result<std::vector<RecoveryPlan>> list_plans();
  Result<RecoveryPlan> get_plan(const std::string& name);
  Status delete_plan(const std::string& name);

  // The VM names of a protection group as this site knows it (its own
  // groups, and its peers' groups it is the recovery site for).
  Result<std::vector<std::string>> group_vm_names(const std::string& group);

 private:
  Result<RecoveryPlan> save(RecoveryPlan plan, bool must_be_new);

  SiteService& site_;
};

}  // namespace evac
