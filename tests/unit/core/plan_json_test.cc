// Recovery plans' JSON shape: strict, with defaults for what is left out,
// and round-tripping.
#include "core/plan_json.h"

#include <gtest/gtest.h>

#include "plan_samples.h"

namespace evac {
namespace {

using nlohmann::json;

TEST(PlanJsonTest, FullPlanDecodesAndRoundTrips) {
  RecoveryPlan p = decode(full_plan());
  EXPECT_TRUE(validate_plan(p, kVms).is_ok()) << validate_plan(p, kVms).to_string();
  ASSERT_EQ(p.vms.size(), 4u);
  EXPECT_EQ(p.vms[0].priority, 1);
  ASSERT_TRUE(p.vms[0].wait_for_guest.has_value());
  EXPECT_EQ(p.vms[0].wait_for_guest->count(), 120);
  ASSERT_EQ(p.vms[0].checks.size(), 2u);
  EXPECT_EQ(p.vms[0].checks[0].kind, AppCheck::Kind::kTcp);
  EXPECT_EQ(p.vms[0].checks[1].interval.count(), 10);
  ASSERT_EQ(p.vms[0].before_power_on.size(), 2u);
  EXPECT_EQ(p.vms[0].before_power_on[0].kind, PlanAction::Kind::kPrompt);
  EXPECT_EQ(p.vms[0].before_power_on[1].timeout.count(), 60);
  EXPECT_EQ(p.vms[2].checks[0].expect_status, 204);
  EXPECT_EQ(p.vms[3].startup, StartupAction::kLeaveOff);
  EXPECT_FALSE(p.vms[3].wait_for_guest.has_value());
  EXPECT_EQ(p.ip_rules[0].dns, std::vector<std::string>{"10.1.0.53"});

  // What comes out goes back in unchanged (`get -o yaml`, edit, `apply -f`).
  json once = plan_to_json(p);
  RecoveryPlan again = decode(once);
  EXPECT_EQ(plan_to_json(again), once);
}

TEST(PlanJsonTest, DefaultsFillWhatIsLeftOut) {
  RecoveryPlan p = decode(json{{"name", "min"}, {"groups", {"shop"}}});
  EXPECT_EQ(p.ordering, PlanOrdering::kStrictTiers);
  EXPECT_TRUE(p.vms.empty());
  PlanVm d = plan_vm_or_default(p, "web01");
  EXPECT_EQ(d.vm, "web01");
  EXPECT_EQ(d.priority, 3);
  EXPECT_EQ(d.startup, StartupAction::kPowerOn);
  ASSERT_TRUE(d.wait_for_guest.has_value());
  EXPECT_EQ(d.wait_for_guest->count(), 300);
}

TEST(PlanJsonTest, UnknownKeysAndWrongTypesAreNamedWithTheirPath) {
  json typo = full_plan();
  typo["vms"][1]["dependson"] = json::array({"db01"});
  auto r = plan_from_json(typo);
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("plan.vms[1]: unknown key 'dependson'"), std::string::npos) << r.status().to_string();

  json wrong = full_plan();
  wrong["vms"][0]["checks"][0]["tcp"]["port"] = "5432";
  r = plan_from_json(wrong);
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("plan.vms[0].checks[0].tcp.port: expected a whole number"), std::string::npos)
      << r.status().to_string();

  json two_kinds = full_plan();
  two_kinds["vms"][0]["before_power_on"][0]["host"] = json::array({"/bin/true"});
  r = plan_from_json(two_kinds);
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("exactly one of host"), std::string::npos) << r.status().to_string();

  json bad_duration = full_plan();
  bad_duration["vms"][0]["wait_for_guest"] = "5 minutes";
  r = plan_from_json(bad_duration);
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("plan.vms[0].wait_for_guest"), std::string::npos) << r.status().to_string();

  json bad_ordering = full_plan();
  bad_ordering["ordering"] = "fastest";
  r = plan_from_json(bad_ordering);
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("'fastest' is not strict-tiers or dependencies"), std::string::npos);
}

}  // namespace
}  // namespace evac
