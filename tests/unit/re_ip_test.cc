// The script a recovery runs in a guest to move its addresses into the
// recovery site's subnets (the plan's IP rules), for IPv4 and IPv6.
#include <gtest/gtest.h>

#include "service/run_service.h"

namespace evac {
namespace {

const std::vector<NicInfo> kNics = {{"52:54:00:00:00:01", "recovery-prod", "network", "virtio"}};
const std::map<std::string, std::string> kSourceNetworks = {{"recovery-prod", "prod"}};

GuestInterface eth0() {
  GuestInterface i;
  i.name = "eth0";
  i.mac = "52:54:00:00:00:01";
  i.ipv4 = {"10.77.0.11/24"};
  i.ipv6 = {"2001:db8:77::11/64"};
  return i;
}

TEST(ReIpScript, MovesEachFamilyWithItsOwnRuleAndGateway) {
  std::vector<IpRule> rules = {{"prod", "10.77.0.0/24", "10.78.0.0/24", "10.78.0.1", {"10.78.0.53"}},
                               {"prod", "2001:db8:77::/64", "2001:db8:78::/64", "2001:db8:78::1", {}}};
  auto r = re_ip_script("web01", kNics, kSourceNetworks, rules, {eth0()});
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ(r->script,
            "ip addr del 10.77.0.11/24 dev eth0 && ip addr add 10.78.0.11/24 dev eth0 && "
            "ip route replace default via 10.78.0.1 && { echo nameserver 10.78.0.53; } > /etc/resolv.conf && "
            "ip -6 addr del 2001:db8:77::11/64 dev eth0 && ip -6 addr add 2001:db8:78::11/64 dev eth0 && "
            "ip -6 route replace default via 2001:db8:78::1 && true");
  ASSERT_EQ(r->changed.size(), 2u);
  EXPECT_EQ(r->changed[1]["to"], "2001:db8:78::11/64");
}

TEST(ReIpScript, AGuestMovedAlreadyOrOnAnotherNetworkGetsNoScript) {
  std::vector<IpRule> rules = {{"prod", "2001:db8:77::/64", "2001:db8:78::/64", "", {}}};
  GuestInterface moved = eth0();
  moved.ipv6 = {"2001:db8:78::11/64"};
  auto again = re_ip_script("web01", kNics, kSourceNetworks, rules, {moved});
  ASSERT_TRUE(again.is_ok());
  EXPECT_EQ(again->script, "") << "a step run again converges";
  std::vector<IpRule> elsewhere = {{"backup", "2001:db8:77::/64", "2001:db8:78::/64", "", {}}};
  auto other = re_ip_script("web01", kNics, kSourceNetworks, elsewhere, {eth0()});
  ASSERT_TRUE(other.is_ok());
  EXPECT_EQ(other->script, "");
}

TEST(ReIpScript, ANicTheGuestDoesNotShowIsAnError) {
  std::vector<IpRule> rules = {{"prod", "10.77.0.0/24", "10.78.0.0/24", "", {}}};
  GuestInterface other = eth0();
  other.mac = "52:54:00:00:00:99";
  auto r = re_ip_script("web01", kNics, kSourceNetworks, rules, {other});
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(r.status().message().find("shows no interface with MAC 52:54:00:00:00:01 (network 'prod')"), std::string::npos)
      << r.status().to_string();
}

}  // namespace
}  // namespace evac
