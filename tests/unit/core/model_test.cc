// The neutral model's attachment keys: one name space for libvirt networks,
// host bridges and host devices, as inventories and mappings use it.
#include "core/model.h"

#include <gtest/gtest.h>

namespace evac {
namespace {

TEST(Attachment, KeysNameEachKindApart) {
  EXPECT_EQ(attachment_of(NicInfo{"", "prod", "network", ""}).key(), "prod");
  EXPECT_EQ(attachment_of(NicInfo{"", "br0", "bridge", ""}).key(), "bridge:br0");
  EXPECT_EQ(attachment_of(NicInfo{"", "eth1", "direct", ""}).key(), "direct:eth1");
  EXPECT_EQ(attachment_of(NicInfo{"", "prod", "", ""}).key(), "prod") << "an untyped NIC is on a network";
  for (const char* key : {"prod", "bridge:br0", "direct:eth1"}) EXPECT_EQ(parse_attachment(key).key(), key);
  EXPECT_EQ(parse_attachment("bridge:br0").type, "bridge");
  EXPECT_EQ(parse_attachment("bridge:br0").name, "br0");
  EXPECT_EQ(parse_attachment("bridge:").type, "network") << "a prefix without a name is a network's odd name";
  EXPECT_EQ(parse_attachment("vlan:7").type, "network");
}

TEST(Attachment, ABareNameResolvesToTheOneKindItFits) {
  const std::vector<std::string> site = {"prod", "br-lab", "bridge:br-lab", "bridge:br0", "direct:eth1"};
  auto resolved = [&](const std::string& given) {
    auto r = resolve_attachment(site, given);
    EXPECT_TRUE(r.is_ok()) << r.status().to_string();
    return r->value_or("<none>");
  };
  EXPECT_EQ(resolved("prod"), "prod");
  EXPECT_EQ(resolved("br0"), "bridge:br0") << "no network of that name: the bridge";
  EXPECT_EQ(resolved("eth1"), "direct:eth1");
  EXPECT_EQ(resolved("br-lab"), "br-lab") << "a network of that name comes first; bridge:br-lab names the bridge";
  EXPECT_EQ(resolved("bridge:br-lab"), "bridge:br-lab");
  EXPECT_EQ(resolved("nowhere"), "<none>");
  EXPECT_EQ(resolved("bridge:nowhere"), "<none>");
  auto both = resolve_attachment({"bridge:x", "direct:x"}, "x");
  ASSERT_FALSE(both.is_ok());
  EXPECT_EQ(both.status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace evac
