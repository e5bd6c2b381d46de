// libvirt change tracking's host check: whose backups this host may read.
#include "providers/libvirt/libvirt_change_tracking.h"

#include <gtest/gtest.h>

namespace evac {
namespace {

// A running VM's backup export is a unix socket on the hypervisor's host:
// evacd starts a backup only when libvirt's host is its own, whichever side
// gives the fully qualified name.
TEST(LibvirtChangeTrackingHost, OnlyTheHypervisorsOwnHostReadsItsBackups) {
  EXPECT_TRUE(libvirt::same_host("kvm1", "kvm1"));
  EXPECT_TRUE(libvirt::same_host("kvm1.dc1.example", "kvm1"));
  EXPECT_TRUE(libvirt::same_host("kvm1", "kvm1.dc1.example"));
  EXPECT_FALSE(libvirt::same_host("kvm2.dc1.example", "kvm1.dc1.example"));
  EXPECT_FALSE(libvirt::same_host("kvm10", "kvm1"));
  EXPECT_FALSE(libvirt::same_host("", "kvm1")) << "an unnamed host is not assumed to be this one";
}

}  // namespace
}  // namespace evac
