// Recovery plans on their own: validation (every problem listed, cycles
// named, strict tiers' rules) and IP rules' addresses.
#include "core/plan.h"

#include <gtest/gtest.h>

#include "plan_samples.h"

namespace evac {
namespace {

using nlohmann::json;

TEST(PlanValidationTest, CycleIsRejectedWithTheCycleNamed) {
  RecoveryPlan p = decode(full_plan());
  p.ordering = PlanOrdering::kDependencies;
  p.vms[0].depends_on = {"web01"};  // db01 -> web01 -> app01 -> db01
  Status s = validate_plan(p, kVms);
  ASSERT_FALSE(s.is_ok());
  EXPECT_NE(s.message().find("dependency cycle: "), std::string::npos) << s.to_string();
  // Whichever VM the search starts from, the cycle names all three and closes.
  for (const char* vm : {"db01", "app01", "web01"}) EXPECT_NE(s.message().find(vm), std::string::npos) << s.to_string();
  EXPECT_NE(s.hint().find("nothing was changed"), std::string::npos);
}

TEST(PlanValidationTest, StrictTiersRefuseDependenciesOnLaterTiers) {
  RecoveryPlan p = decode(full_plan());
  p.vms[0].depends_on = {"batch01"};  // tier 1 on a tier 3 VM the plan leaves off
  Status s = validate_plan(p, kVms);
  ASSERT_FALSE(s.is_ok());
  EXPECT_NE(s.message().find("VM 'db01' (tier 1) depends on 'batch01' (tier 3)"), std::string::npos) << s.to_string();
  EXPECT_NE(s.message().find("which the plan leaves off"), std::string::npos) << s.to_string();

  // Dependency-driven ordering allows the tier order but not the left-off VM.
  p.ordering = PlanOrdering::kDependencies;
  s = validate_plan(p, kVms);
  ASSERT_FALSE(s.is_ok());
  EXPECT_EQ(s.message().find("(tier 1)"), std::string::npos) << s.to_string();
  p.vms[3].startup = StartupAction::kPowerOn;
  EXPECT_TRUE(validate_plan(p, kVms).is_ok()) << validate_plan(p, kVms).to_string();
}

TEST(PlanValidationTest, EveryProblemIsListedAtOnce) {
  RecoveryPlan p = decode(full_plan());
  p.name = "Web Shop";
  p.vms[0].priority = 7;
  p.vms[1].depends_on = {"ghost01"};
  p.vms.push_back(PlanVm{.vm = "mail01"});
  p.vms[2].checks[0].port = 0;
  p.ip_rules[0].to = "10.1.0.0/16";
  p.ip_rules.push_back(IpRule{.network = "prod", .from = "10.0.0.1/24", .to = "10.2.0.0/24"});
  Status s = validate_plan(p, kVms);
  ASSERT_FALSE(s.is_ok());
  for (const char* expected : {"plan name 'Web Shop'", "VM 'db01' has priority 7", "depends on 'ghost01'",
                               "VM 'mail01' is not in the plan's groups", "VM 'web01' check 1 needs a port",
                               "same family and prefix length", "IP rule 2 has 'from' '10.0.0.1/24'"}) {
    EXPECT_NE(s.message().find(expected), std::string::npos) << expected << " missing from: " << s.message();
  }
}

TEST(PlanValidationTest, NoGroupsAndDuplicateEntriesAreRefused) {
  RecoveryPlan p;
  p.name = "empty";
  EXPECT_FALSE(validate_plan(p, {}).is_ok());
  p.groups = {"shop", "shop"};
  p.vms = {PlanVm{.vm = "db01"}, PlanVm{.vm = "db01"}};
  Status s = validate_plan(p, kVms);
  ASSERT_FALSE(s.is_ok());
  EXPECT_NE(s.message().find("group 'shop' is listed twice"), std::string::npos) << s.to_string();
  EXPECT_NE(s.message().find("VM 'db01' has two entries"), std::string::npos) << s.to_string();
}

}  // namespace
}  // namespace evac

namespace evac {
namespace {

TEST(PlanIpRules, AnAddressKeepsItsHostPartInTheNewSubnet) {
  IpRule r{"prod", "10.77.0.0/24", "10.78.0.0/24", "", {}};
  EXPECT_EQ(map_address(r, "10.77.0.11/24"), "10.78.0.11/24");
  EXPECT_EQ(map_address(r, "10.77.0.11"), "10.78.0.11/24");
  EXPECT_EQ(map_address(r, "10.78.0.11/24"), std::nullopt) << "moved already: applying twice changes nothing";
  EXPECT_EQ(map_address(r, "192.168.1.5/24"), std::nullopt);
  IpRule wide{"prod", "172.16.0.0/12", "10.16.0.0/12", "", {}};
  EXPECT_EQ(map_address(wide, "172.20.3.4/16"), "10.20.3.4/12");
  EXPECT_EQ(map_address(IpRule{"prod", "10.0.0.0/24", "10.1.0.0/16", "", {}}, "10.0.0.5"), std::nullopt)
      << "prefixes differ: no mapping";
  EXPECT_EQ(map_address(r, "fe80::1/64"), std::nullopt);
}

// A rule may move IPv6 subnets the same way; families never cross.
TEST(PlanIpRules, AnIpv6AddressKeepsItsHostPartInTheNewSubnet) {
  IpRule r{"prod", "2001:db8:77::/64", "2001:db8:78::/64", "", {}};
  EXPECT_EQ(map_address(r, "2001:db8:77::11/64"), "2001:db8:78::11/64");
  EXPECT_EQ(map_address(r, "2001:db8:77:0:5054:ff:fe00:1/64"), "2001:db8:78:0:5054:ff:fe00:1/64");
  EXPECT_EQ(map_address(r, "2001:db8:78::11/64"), std::nullopt) << "moved already";
  EXPECT_EQ(map_address(r, "2001:db8:99::11/64"), std::nullopt);
  EXPECT_EQ(map_address(r, "10.77.0.11/24"), std::nullopt) << "another family";
  // A prefix that ends inside a byte keeps the host bits of that byte.
  IpRule odd{"prod", "2001:db8:7700::/40", "2001:db8:aa00::/40", "", {}};
  EXPECT_EQ(map_address(odd, "2001:db8:77ab::1/40"), "2001:db8:aaab::1/40");
  IpRule v4odd{"prod", "10.77.0.0/20", "10.80.16.0/20", "", {}};
  EXPECT_EQ(map_address(v4odd, "10.77.9.3/20"), "10.80.25.3/20");
  EXPECT_EQ(map_address(IpRule{"prod", "2001:db8:77::/64", "10.78.0.0/24", "", {}}, "2001:db8:77::11"), std::nullopt);
}

}  // namespace
}  // namespace evac
