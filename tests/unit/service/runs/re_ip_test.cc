// The script a recovery runs in a guest to move its addresses into the
// recovery site's subnets (the plan's IP rules), for IPv4 and IPv6.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "service/runs/re_ip.h"

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
  const std::string old_gateway = "g=$(ip route show default 2>/dev/null | sed -n 's/^default via \\([^ ]*\\).*/\\1/p' | head -n 1) && ";
  const std::string old_gateway6 = "g=$(ip -6 route show default 2>/dev/null | sed -n 's/^default via \\([^ ]*\\).*/\\1/p' | head -n 1) && ";
  EXPECT_EQ(r->script,
            guest_config_rewriter("") +
                "evac_persist 10.77.0.11 10.78.0.11 && "
                "ip addr del 10.77.0.11/24 dev eth0 && ip addr add 10.78.0.11/24 dev eth0 && " +
                old_gateway + "{ [ -z \"$g\" ] || [ \"$g\" = 10.78.0.1 ] || evac_persist \"$g\" 10.78.0.1; } && "
                "ip route replace default via 10.78.0.1 && { echo nameserver 10.78.0.53; } > /etc/resolv.conf && "
                "evac_persist 2001:db8:77::11 2001:db8:78::11 && "
                "ip -6 addr del 2001:db8:77::11/64 dev eth0 && ip -6 addr add 2001:db8:78::11/64 dev eth0 && " +
                old_gateway6 + "{ [ -z \"$g\" ] || [ \"$g\" = 2001:db8:78::1 ] || evac_persist \"$g\" 2001:db8:78::1; } && "
                "ip -6 route replace default via 2001:db8:78::1 && true");
  ASSERT_EQ(r->changed.size(), 2u);
  EXPECT_EQ(r->changed[1]["to"], "2001:db8:78::11/64");
}

// The guest's configuration files are rewritten by the script's own shell
// function; here it runs under /bin/sh on files laid out as distributions
// keep them, below a folder standing for the guest's root.
TEST(ReIpScript, TheGuestsNetworkConfigurationNamesTheNewAddresses) {
  namespace fs = std::filesystem;
  const fs::path root = fs::temp_directory_path() / ("evac-re-ip-" + std::to_string(::getpid()));
  fs::remove_all(root);
  auto write = [&](const std::string& rel, const std::string& text) {
    fs::create_directories((root / rel).parent_path());
    std::ofstream(root / rel) << text;
  };
  auto read = [&](const std::string& rel) {
    std::ifstream in(root / rel);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  write("etc/network/interfaces",
        "iface eth0 inet static\n  address 10.77.0.11/24\n  gateway 10.77.0.1\n"
        "  dns-nameservers 10.77.0.1 10.77.0.1\n# 10.77.0.110 is db02, 110.77.0.11 elsewhere\n");
  write("etc/netplan/50-cloud-init.yaml",
        "network:\n  ethernets:\n    eth0:\n      addresses: [10.77.0.11/24, \"2001:db8:77::11/64\"]\n"
        "      routes:\n        - to: default\n          via: 10.77.0.1\n");
  write("etc/NetworkManager/system-connections/eth0.nmconnection", "[ipv4]\naddress1=10.77.0.11/24,10.77.0.1\n");
  write("etc/sysconfig/network-scripts/ifcfg-eth0", "IPADDR=\"10.77.0.11\"\nPREFIX=24\nGATEWAY=10.77.0.1\n");
  write("etc/systemd/network/10-eth0.network", "[Network]\nAddress=10.77.0.11/24\nGateway=10.77.0.1\n");
  write("etc/systemd/network/20-eth1.network", "[Network]\nAddress=10.77.0.110/24\n");
  write("etc/hosts", "10.77.0.11 db01\n");  // not network configuration: left alone

  const std::string script = guest_config_rewriter(root.string()) +
                             "evac_persist 10.77.0.11 10.78.0.11 && evac_persist 10.77.0.1 10.78.0.1 && "
                             "evac_persist 2001:db8:77::11 2001:db8:78::11";
  const fs::path script_file = root / "script.sh", out_file = root / "out.txt";
  auto run = [&]() {
    std::ofstream(script_file) << script;
    EXPECT_EQ(std::system(("/bin/sh " + script_file.string() + " > " + out_file.string()).c_str()), 0);
    std::ifstream in(out_file);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  const std::string printed = run();
  EXPECT_EQ(read("etc/network/interfaces"),
            "iface eth0 inet static\n  address 10.78.0.11/24\n  gateway 10.78.0.1\n"
            "  dns-nameservers 10.78.0.1 10.78.0.1\n# 10.77.0.110 is db02, 110.77.0.11 elsewhere\n");
  EXPECT_EQ(read("etc/netplan/50-cloud-init.yaml"),
            "network:\n  ethernets:\n    eth0:\n      addresses: [10.78.0.11/24, \"2001:db8:78::11/64\"]\n"
            "      routes:\n        - to: default\n          via: 10.78.0.1\n");
  EXPECT_EQ(read("etc/NetworkManager/system-connections/eth0.nmconnection"), "[ipv4]\naddress1=10.78.0.11/24,10.78.0.1\n");
  EXPECT_EQ(read("etc/sysconfig/network-scripts/ifcfg-eth0"), "IPADDR=\"10.78.0.11\"\nPREFIX=24\nGATEWAY=10.78.0.1\n");
  EXPECT_EQ(read("etc/systemd/network/10-eth0.network"), "[Network]\nAddress=10.78.0.11/24\nGateway=10.78.0.1\n");
  EXPECT_EQ(read("etc/systemd/network/20-eth1.network"), "[Network]\nAddress=10.77.0.110/24\n");
  EXPECT_EQ(read("etc/hosts"), "10.77.0.11 db01\n");
  for (const char* f : {"etc/network/interfaces", "etc/netplan/50-cloud-init.yaml",
                        "etc/NetworkManager/system-connections/eth0.nmconnection", "etc/sysconfig/network-scripts/ifcfg-eth0",
                        "etc/systemd/network/10-eth0.network"})
    EXPECT_NE(printed.find("persisted " + (root / f).string() + "\n"), std::string::npos) << f << " in:\n" << printed;
  EXPECT_EQ(printed.find("20-eth1"), std::string::npos) << printed;
  EXPECT_EQ(run(), "") << "run again, it finds nothing left to change";
  fs::remove_all(root);
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
