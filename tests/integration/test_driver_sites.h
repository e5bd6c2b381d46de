// Two sites on libvirt's test driver whose VMs have real disks: qcow2
// files under the test's folder, so the built-in replicator (scan mode:
// the VMs are shut off) has real images to read and the recovery site real
// points in time to keep. Used by tests that replicate between two evacd's.
#pragma once

#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "harness.h"

namespace evac::testing {

// A protected site with db01 and web01 shut off (one qcow2 disk each, on
// network prod, in pool images; an isolated test network for when it is
// the recovery site after a reprotect), and a recovery site with recovery-prod, an
// isolated test network and a replicas pool.
inline void write_test_driver_sites(const fs::path& root) {
  fs::create_directories(root / "a/images");
  fs::create_directories(root / "b/replicas");
  const char* vms[][3] = {{"db01", "c0000000-0000-4000-8000-000000000001", "52:54:00:c0:00:01"},
                          {"web01", "c0000000-0000-4000-8000-000000000002", "52:54:00:c0:00:02"}};
  std::ofstream a(root / "site-a.xml");
  a << "<node>\n"
       "  <network><name>prod</name><uuid>c0000000-0000-4000-8000-000000000101</uuid><forward mode='nat'/>"
       "<bridge name='virbr-rp'/><ip address='10.30.0.1' netmask='255.255.255.0'/></network>\n"
       "  <network><name>test-isolated-a</name><uuid>c0000000-0000-4000-8000-000000000102</uuid>"
       "<bridge name='virbr-rta'/><ip address='10.98.0.1' netmask='255.255.255.0'/></network>\n"
       "  <pool type='dir'><name>images</name><uuid>c0000000-0000-4000-8000-000000000201</uuid><source/>"
       "<target><path>"
    << (root / "a/images").string() << "</path></target></pool>\n";
  for (const auto& vm : vms) {
    const std::string disk = (root / "a/images" / (std::string(vm[0]) + ".qcow2")).string();
    auto made = run_command({"qemu-img", "create", "-q", "-f", "qcow2", disk, "16M"});
    EXPECT_EQ(made.exit_code, 0) << made.err;
    a << "  <domain type='test' xmlns:test='http://libvirt.org/schemas/domain/test/1.0'>\n"
         "    <name>" << vm[0] << "</name><uuid>" << vm[1] << "</uuid>\n"
         "    <memory unit='MiB'>256</memory><vcpu>1</vcpu><os><type>hvm</type></os>\n"
         "    <devices>\n"
         "      <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='" << disk << "'/>"
         "<target dev='vda' bus='virtio'/></disk>\n"
         "      <interface type='network'><mac address='" << vm[2] << "'/><source network='prod'/><model type='virtio'/></interface>\n"
         "    </devices>\n"
         "    <test:runstate>5</test:runstate>\n"
         "  </domain>\n";
  }
  a << "</node>\n";
  std::ofstream b(root / "site-b.xml");
  b << "<node>\n"
       "  <network><name>recovery-prod</name><uuid>c0000000-0000-4000-8000-000000000301</uuid><forward mode='nat'/>"
       "<bridge name='virbr-rrp'/><ip address='10.31.0.1' netmask='255.255.255.0'/></network>\n"
       "  <network><name>test-isolated</name><uuid>c0000000-0000-4000-8000-000000000302</uuid>"
       "<bridge name='virbr-rti'/><ip address='10.99.0.1' netmask='255.255.255.0'/></network>\n"
       "  <pool type='dir'><name>replicas</name><uuid>c0000000-0000-4000-8000-000000000401</uuid><source/>"
       "<target><path>"
    << (root / "b/replicas").string() << "</path></target></pool>\n"
    << "</node>\n";
}

// Pairs site-a with site-b (the token from b, used at a), maps compute,
// network (with the test network) and storage, protects db01 and web01 in
// group "shop" and makes its first point in time. `evac_at(context, args)`
// runs the CLI at a site.
inline void pair_and_protect_shop(
    const std::function<CommandResult(const std::string&, std::vector<std::string>)>& evac_at) {
  auto token = evac_at("b", {"site", "pairing-token", "-o", "json"});
  ASSERT_EQ(token.exit_code, 0) << token.err;
  auto paired = evac_at("a", {"site", "pair", token.json()["token"]});
  ASSERT_EQ(paired.exit_code, 0) << paired.err;
  for (auto args : std::vector<std::vector<std::string>>{
           {"mapping", "create", "compute", "kvm-a", "kvm-b"},
           {"mapping", "create", "network", "prod", "recovery-prod", "--test-network", "test-isolated"},
           {"mapping", "create", "storage", "images", "replicas"},
           {"group", "create", "shop", "--vm", "db01", "--vm", "web01"},
           {"group", "sync", "shop"}}) {
    auto r = evac_at("a", args);
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
}

}  // namespace evac::testing
