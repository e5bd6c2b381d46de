// libvirt XML read and written without libvirt (domain_xml.h): networks'
// isolation, placeholders', test VMs' and recovered VMs' definitions, disks'
// sources, disks with backing images, and the DAC label QEMU runs under.
#include "providers/libvirt/domain_xml.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

namespace evac {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

// Guests' taps on a bridge are not uplinks; a NIC, a veth or a forward
// device is, and so is whatever cannot be seen on a forwarding network.
TEST(LibvirtNetworkIsolation, TapsAreGuestsAnythingElseIsAnUplink) {
  auto judged = [](const std::string& xml, std::optional<std::vector<std::string>> ports,
                   std::vector<std::string> taps) {
    std::vector<std::string> devices;
    auto net = libvirt::parse_network_xml(xml, &devices);
    EXPECT_TRUE(net.is_ok());
    libvirt::judge_isolation(*net, devices, ports, ports ? "" : "no interface driver", taps);
    return *net;
  };
  const std::string bridged = "<network><name>t</name><forward mode='bridge'/><bridge name='br0'/></network>";
  auto only_taps = judged(bridged, std::vector<std::string>{"vnet0", "vnet4"}, {"vnet0", "vnet4", "vnet9"});
  EXPECT_TRUE(only_taps.isolated);
  EXPECT_NE(only_taps.isolation.find("guests' taps (vnet0, vnet4)"), std::string::npos) << only_taps.isolation;
  EXPECT_FALSE(judged(bridged, std::vector<std::string>{"vnet0", "veth-up"}, {"vnet0"}).isolated);
  EXPECT_FALSE(judged(bridged, std::nullopt, {}).isolated) << "unseen ports on a forwarding bridge";
  // libvirt's own isolated network: no forward; an uplink added by hand shows.
  const std::string isolated = "<network><name>t</name><bridge name='virbr9'/></network>";
  EXPECT_TRUE(judged(isolated, std::vector<std::string>{"virbr9-nic"}, {}).isolated);
  EXPECT_FALSE(judged(isolated, std::vector<std::string>{"eth1"}, {}).isolated);
  EXPECT_TRUE(judged(isolated, std::nullopt, {}).isolated);
  // Forward modes that leave the host, and macvtap through a device.
  EXPECT_FALSE(judged("<network><name>t</name><forward/><bridge name='virbr1'/></network>", std::vector<std::string>{}, {})
                   .isolated)
      << "a bare <forward> is NAT";
  auto macvtap = judged("<network><name>t</name><forward mode='bridge'><interface dev='eth0'/></forward></network>",
                        std::nullopt, {});
  EXPECT_FALSE(macvtap.isolated);
  EXPECT_NE(macvtap.isolation.find("host device eth0"), std::string::npos) << macvtap.isolation;
}

const char* kProtectedDomainXml = R"(<domain type='kvm'>
  <name>db02</name>
  <uuid>e0000000-0000-4000-8000-000000000002</uuid>
  <description>the database</description>
  <metadata>
    <evac:placeholder xmlns:evac="https://evac.dev/xmlns/placeholder/1" group="old" source-site="x" source-uuid="old"/>
    <other:note xmlns:other="https://example.org/other/1">keep me</other:note>
  </metadata>
  <memory unit='KiB'>1048576</memory>
  <vcpu>1</vcpu>
  <os><type>hvm</type></os>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='/a/db02.qcow2'><seclabel model='dac' relabel='no'/></source>
      <target dev='vda' bus='virtio'/>
    </disk>
    <disk type='file' device='disk'>
      <source file='/a/scratch.img'/>
      <target dev='vdz' bus='virtio'/>
    </disk>
    <disk type='file' device='cdrom'>
      <source file='/a/install.iso'/>
      <target dev='sda' bus='sata'/>
    </disk>
    <interface type='network'>
      <source network='prod'/>
      <target dev='vnet7'/>
    </interface>
  </devices>
  <seclabel type='dynamic' model='selinux'/>
</domain>)";

PlaceholderSpec db02_spec() {
  VmInfo vm;
  vm.name = "db02";
  vm.native = {"libvirt", kProtectedDomainXml};
  vm.disks = {DiskInfo{"vda", "/b/db02.qcow2", "qcow2", "virtio", "disk", {}}};
  vm.nics = {NicInfo{"", "recovery-prod", "network", ""}};
  return PlaceholderSpec{"db", "site-a", "e0000000-0000-4000-8000-000000000002", vm};
}

TEST(PlaceholderDomainXml, ReplacesOldMarkersAndDropsLabelsUuidAndUnreplicatedDisks) {
  auto xml = libvirt::placeholder_domain_xml(db02_spec());
  ASSERT_TRUE(xml.is_ok()) << xml.status().to_string();
  auto parsed = libvirt::parse_domain_xml(*xml);
  ASSERT_TRUE(parsed.is_ok()) << parsed.status().to_string();

  EXPECT_TRUE(parsed->vm.uuid.empty()) << "libvirt must assign a new UUID";
  ASSERT_TRUE(parsed->placeholder.has_value());
  EXPECT_EQ(parsed->placeholder->group, "db");
  EXPECT_EQ(parsed->placeholder->source_uuid, "e0000000-0000-4000-8000-000000000002");
  EXPECT_THAT(*xml, Not(HasSubstr("source-uuid=\"old\"")));
  EXPECT_THAT(*xml, HasSubstr("keep me")) << "metadata of other tools stays";
  EXPECT_THAT(*xml, Not(HasSubstr("seclabel")));
  EXPECT_THAT(*xml, Not(HasSubstr("the database")));
  EXPECT_THAT(*xml, Not(HasSubstr("vnet7")));

  std::vector<std::string> targets;
  for (const DiskInfo& d : parsed->vm.disks) targets.push_back(d.target + "=" + d.path);
  // vdz was not replicated, so it goes; the CD-ROM drive stays, ejected.
  EXPECT_THAT(targets, ElementsAre("vda=/b/db02.qcow2", "sda="));
  ASSERT_EQ(parsed->vm.nics.size(), 1u);
  EXPECT_EQ(parsed->vm.nics[0].network, "recovery-prod") << "without MACs, NICs match by position";
}

// A placeholder's NIC is of the kind its mapping's target is: a bridged NIC
// mapped to a libvirt network becomes a network NIC, a network NIC mapped to
// a host bridge a bridge NIC (never <source bridge='NAME-OF-A-NETWORK'/>),
// and a macvtap NIC keeps its mode on its new device.
TEST(PlaceholderDomainXml, EachNicTakesTheKindOfWhatItIsMappedTo) {
  const std::string native = R"(<domain type='kvm'><name>mixed</name><devices>
    <interface type='bridge'><mac address='52:54:00:00:00:01'/><source bridge='br-prod'/><model type='virtio'/></interface>
    <interface type='network'><mac address='52:54:00:00:00:02'/><source network='prod'/><virtualport type='openvswitch'/></interface>
    <interface type='direct'><mac address='52:54:00:00:00:03'/><source dev='eth1' mode='vepa'/></interface>
  </devices></domain>)";
  PlaceholderSpec spec{"g", "site-a", "e0000000-0000-4000-8000-0000000000aa", VmInfo{}};
  spec.vm.name = "mixed";
  spec.vm.native = {"libvirt", native};
  spec.vm.nics = {NicInfo{"52:54:00:00:00:01", "recovery-prod", "network", "virtio"},
                  NicInfo{"52:54:00:00:00:02", "br-recovery", "bridge", ""},
                  NicInfo{"52:54:00:00:00:03", "eth7", "direct", ""}};
  auto xml = libvirt::placeholder_domain_xml(spec);
  ASSERT_TRUE(xml.is_ok()) << xml.status().to_string();
  auto parsed = libvirt::parse_domain_xml(*xml);
  ASSERT_TRUE(parsed.is_ok()) << parsed.status().to_string();
  std::vector<std::string> keys;
  for (const auto& n : parsed->vm.nics) keys.push_back(n.mac + "=" + attachment_of(n).key());
  EXPECT_THAT(keys, ElementsAre("52:54:00:00:00:01=recovery-prod", "52:54:00:00:00:02=bridge:br-recovery",
                                "52:54:00:00:00:03=direct:eth7"));
  EXPECT_THAT(*xml, HasSubstr("<source network=\"recovery-prod\""));
  EXPECT_THAT(*xml, HasSubstr("<source bridge=\"br-recovery\""));
  EXPECT_THAT(*xml, HasSubstr("mode=\"vepa\"")) << "a macvtap NIC keeps its mode";
  EXPECT_THAT(*xml, Not(HasSubstr("openvswitch"))) << "a port profile belongs to the old kind of link";
  EXPECT_THAT(*xml, Not(HasSubstr("br-prod")));

  // A test VM moves each NIC, whatever its kind, to its test network, of
  // whatever kind that is: here a host bridge with no uplink.
  TestVmSpec test;
  test.name = "mixed-test";
  test.run = "r1";
  test.group = "g";
  test.source_site = "site-a";
  test.source_uuid = "e0000000-0000-4000-8000-0000000000aa";
  test.networks = {{"recovery-prod", "bridge:br-test"}, {"bridge:br-recovery", "test-isolated"}, {"direct:eth7", "bridge:br-test"}};
  auto made = libvirt::test_vm_domain_xml(*xml, test);
  ASSERT_TRUE(made.is_ok()) << made.status().to_string();
  auto test_vm = libvirt::parse_domain_xml(*made);
  ASSERT_TRUE(test_vm.is_ok());
  keys.clear();
  for (const auto& n : test_vm->vm.nics) keys.push_back(attachment_of(n).key());
  EXPECT_THAT(keys, ElementsAre("bridge:br-test", "test-isolated", "bridge:br-test"));
  // A NIC whose attachment has no test network is refused, naming it by its key.
  test.networks.erase("direct:eth7");
  auto refused = libvirt::test_vm_domain_xml(*xml, test);
  ASSERT_FALSE(refused.is_ok());
  EXPECT_THAT(refused.status().message(), HasSubstr("'direct:eth7'"));
}

// After a failback, the VMs protected again are recovered VMs: their own
// definitions carry evac:recovered, which a placeholder made from them must
// not (it would look recovered already, and refuse a recovery).
TEST(PlaceholderDomainXml, AProtectedVmThatWasRecoveredGivesAPlainPlaceholder) {
  PlaceholderSpec spec = db02_spec();
  auto recovered = libvirt::recovered_domain_xml(*libvirt::placeholder_domain_xml(spec), {{"vda", "/a/live/vda.qcow2"}}, "run-1");
  ASSERT_TRUE(recovered.is_ok()) << recovered.status().to_string();
  spec.vm.native.document = *recovered;
  auto xml = libvirt::placeholder_domain_xml(spec);
  ASSERT_TRUE(xml.is_ok()) << xml.status().to_string();
  auto parsed = libvirt::parse_domain_xml(*xml);
  ASSERT_TRUE(parsed.is_ok());
  EXPECT_TRUE(parsed->placeholder.has_value());
  EXPECT_FALSE(parsed->recovered.has_value());

  auto adopted = libvirt::adopted_placeholder_xml(*recovered, libvirt::PlaceholderMarker{"db", "site-b", "u-b"});
  ASSERT_TRUE(adopted.is_ok()) << adopted.status().to_string();
  auto again = libvirt::parse_domain_xml(*adopted);
  ASSERT_TRUE(again.is_ok());
  EXPECT_EQ(again->placeholder->source_site, "site-b");
  EXPECT_FALSE(again->recovered.has_value());
  EXPECT_EQ(again->vm.disks[0].path, "/a/live/vda.qcow2") << "adoption keeps the disks";
}

TEST(PlaceholderDomainXml, ParsesTheMarkerOnlyInEvacsNamespace) {
  const char* foreign = R"(<domain><name>x</name><metadata>
      <evac:placeholder xmlns:evac="https://example.org/not-evac" group="g"/></metadata></domain>)";
  auto parsed = libvirt::parse_domain_xml(foreign);
  ASSERT_TRUE(parsed.is_ok());
  EXPECT_FALSE(parsed->placeholder.has_value());
  EXPECT_FALSE(parsed->vm.is_placeholder);
}

TEST(PlaceholderDomainXml, MacsAreLowerCaseInTheModel) {
  // Guest agents report MACs in lower case; IP customization matches a
  // guest's interface to its NIC by comparing the two.
  auto parsed = libvirt::parse_domain_xml(
      "<domain><name>x</name><devices><interface type='network'><mac address='52:54:00:AB:CD:EF'/>"
      "<source network='prod'/></interface></devices></domain>");
  ASSERT_TRUE(parsed.is_ok());
  ASSERT_EQ(parsed->vm.nics.size(), 1u);
  EXPECT_EQ(parsed->vm.nics[0].mac, "52:54:00:ab:cd:ef");
}

TEST(PlaceholderDomainXml, MalformedNativeDefinitionIsAnInputError) {
  PlaceholderSpec spec = db02_spec();
  spec.vm.native.document = "<domain><name>db02";
  auto xml = libvirt::placeholder_domain_xml(spec);
  ASSERT_FALSE(xml.is_ok());
  EXPECT_EQ(xml.status().code(), StatusCode::kInvalidArgument);
}

// A running QEMU VM's definition lists each disk's backing chain; a block
// pull is only needed where it names an image below the disk.
TEST(LibvirtProviderFlatten, FindsTheDisksThatReadThroughABackingImage) {
  auto targets = libvirt::disks_with_backing_images(R"(<domain type='kvm'><devices>
    <disk type='file' device='disk'><source file='/r/recovered/vda.qcow2'/>
      <backingStore type='file'><format type='qcow2'/><source file='/r/pit-3.qcow2'/>
        <backingStore type='file'><format type='qcow2'/><source file='/r/pit-1.qcow2'/><backingStore/></backingStore>
      </backingStore><target dev='vda' bus='virtio'/></disk>
    <disk type='file' device='disk'><source file='/r/own.qcow2'/><backingStore/><target dev='vdb' bus='virtio'/></disk>
    <disk type='file' device='cdrom'><source file='/r/seed.iso'/><target dev='sda' bus='sata'/></disk>
  </devices></domain>)");
  ASSERT_TRUE(targets.is_ok()) << targets.status().to_string();
  EXPECT_EQ(*targets, std::vector<std::string>{"vda"});
  EXPECT_FALSE(libvirt::disks_with_backing_images("<network/>").is_ok());
}

// A disk's source as libvirt names it (DiskInfo::source), next to the
// one-string path the model has always carried.
DiskInfo only_disk(const std::string& disk_xml) {
  auto parsed = libvirt::parse_domain_xml("<domain type='kvm'><name>d</name><devices>" + disk_xml + "</devices></domain>");
  EXPECT_TRUE(parsed.is_ok()) << parsed.status().to_string();
  if (!parsed.is_ok() || parsed->vm.disks.size() != 1) {
    ADD_FAILURE() << "expected one disk in " << disk_xml;
    return {};
  }
  return parsed->vm.disks.front();
}

// A disk on a path here: the model's path is the source's.
void expect_local_source(const DiskInfo& d, const std::string& type, const std::string& path,
                         const std::string& described) {
  EXPECT_EQ(d.path, path);
  EXPECT_EQ(d.source.type, type);
  EXPECT_EQ(d.source.path, path);
  EXPECT_EQ(d.source.protocol, "");
  EXPECT_EQ(d.source.name, "");
  EXPECT_EQ(d.source.describe(), described);
}

TEST(LibvirtDiskSource, AFileDiskNamesItsImage) {
  expect_local_source(only_disk(R"(<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
    <source file='/var/lib/libvirt/images/db01.qcow2'/><target dev='vda' bus='virtio'/></disk>)"),
                      "file", "/var/lib/libvirt/images/db01.qcow2", "image file /var/lib/libvirt/images/db01.qcow2");
  // libvirt reads a disk without a type as a file.
  EXPECT_EQ(only_disk("<disk device='disk'><source file='/x.img'/><target dev='vdb'/></disk>").source.type, "file");
}

TEST(LibvirtDiskSource, ABlockDiskNamesItsDevice) {
  DiskInfo d = only_disk(R"(<disk type='block' device='disk'><driver name='qemu' type='raw'/>
    <source dev='/dev/vg0/db01'/><target dev='vdb' bus='virtio'/></disk>)");
  expect_local_source(d, "block", "/dev/vg0/db01", "block device /dev/vg0/db01");
  EXPECT_EQ(d.format, "raw");
}

TEST(LibvirtDiskSource, AnRbdDiskNamesItsProtocolAndImage) {
  DiskInfo d = only_disk(R"(<disk type='network' device='disk'><driver name='qemu' type='raw'/><source protocol='rbd' name='pool/image'><host name='mon1' port='6789'/></source><target dev='vdb' bus='virtio'/></disk>)");
  EXPECT_EQ(d.path, "rbd:pool/image") << "the path keeps qemu's spelling";
  EXPECT_EQ(d.target, "vdb");
  EXPECT_EQ(d.source.type, "network");
  EXPECT_EQ(d.source.path, "");
  EXPECT_EQ(d.source.protocol, "rbd");
  EXPECT_EQ(d.source.name, "pool/image");
  EXPECT_EQ(d.source.describe(), "network disk rbd pool/image");
  EXPECT_EQ(source_of(d).path, "") << "a network disk has no local path";
}

TEST(LibvirtDiskSource, ADirectoryAndAPoolVolumeKeepTheirNames) {
  expect_local_source(only_disk("<disk type='dir' device='disk'><source dir='/srv/fat'/><target dev='hdb'/></disk>"), "dir",
                      "/srv/fat", "dir disk /srv/fat");
  DiskInfo volume = only_disk("<disk type='volume' device='disk'><source pool='default' volume='db01.qcow2'/><target dev='vdc'/></disk>");
  EXPECT_EQ(volume.path, "") << "the pool tells the path, later";
  EXPECT_EQ(volume.source.type, "volume");
  EXPECT_EQ(volume.source.name, "default/db01.qcow2");
}

// What evac hands to a running VM's QEMU must be reachable by the user
// libvirt runs it as: the live definition's DAC label says which.
TEST(LibvirtQemuOwner, ReadsTheDacLabelOfARunningVm) {
  auto label = libvirt::qemu_dac_label(R"(<domain type='qemu' id='1'><name>db01</name>
    <seclabel type='dynamic' model='dac' relabel='yes'><label>+64055:+994</label><imagelabel>+64055:+994</imagelabel></seclabel>
  </domain>)");
  ASSERT_TRUE(label.is_ok()) << label.status().to_string();
  ASSERT_TRUE(label->has_value());
  EXPECT_EQ((*label)->user, "+64055");
  EXPECT_EQ((*label)->group, "+994");

  auto named = libvirt::qemu_dac_label(R"(<domain><seclabel type='static' model='dac' relabel='yes'><label>qemu:kvm</label></seclabel></domain>)");
  ASSERT_TRUE(named.is_ok() && named->has_value());
  EXPECT_EQ((*named)->user, "qemu");
  EXPECT_EQ((*named)->group, "kvm");
}

TEST(LibvirtQemuOwner, NoDacRelabellingMeansQemuOpensWhatRootCan) {
  // security_driver "none": no seclabel at all.
  auto none = libvirt::qemu_dac_label("<domain type='qemu'><name>db01</name></domain>");
  ASSERT_TRUE(none.is_ok());
  EXPECT_FALSE(none->has_value());
  // Only another model's label, or DAC with relabelling off.
  auto other = libvirt::qemu_dac_label(R"(<domain><seclabel type='dynamic' model='selinux'><label>system_u:system_r:svirt_t:s0:c1,c2</label></seclabel>
    <seclabel type='none' model='dac' relabel='no'/></domain>)");
  ASSERT_TRUE(other.is_ok());
  EXPECT_FALSE(other->has_value());
  // A label evac cannot read is said, not guessed at.
  EXPECT_FALSE(libvirt::qemu_dac_label("<domain><seclabel model='dac'><label>64055</label></seclabel></domain>").is_ok());
  EXPECT_FALSE(libvirt::qemu_dac_label("<network/>").is_ok());
}

}  // namespace
}  // namespace evac
