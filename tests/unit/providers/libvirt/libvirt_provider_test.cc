// The libvirt compute provider against libvirt's in-process test driver,
// with tests/fixtures/site-a.xml as the protected site and site-b.xml as the
// recovery site. A test:/// connection to a fixture file starts from that
// file every time, so each test opens its own providers and starts clean.
#include "providers/libvirt/libvirt_provider.h"
#include "core/provider_registry.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <map>
#include <thread>

namespace evac {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::UnorderedElementsAre;

std::string fixture_uri(const std::string& file) {
  return "test://" + std::string(EVAC_SOURCE_DIR) + "/tests/fixtures/" + file;
}

std::unique_ptr<ComputeProvider> open_provider(const std::string& name, const std::string& uri) {
  auto made = make_libvirt_provider(ProviderConfig{name, "libvirt", uri});
  EXPECT_TRUE(made.is_ok()) << made.status().to_string();
  return std::move(made).value();
}

std::unique_ptr<ComputeProvider> protected_site() { return open_provider("site-a-kvm", fixture_uri("site-a.xml")); }
std::unique_ptr<ComputeProvider> recovery_site() { return open_provider("site-b-kvm", fixture_uri("site-b.xml")); }

VmInfo vm_at(ComputeProvider& provider, const std::string& name_or_uuid) {
  auto vm = provider.get_vm(name_or_uuid);
  EXPECT_TRUE(vm.is_ok()) << vm.status().to_string();
  return vm.is_ok() ? *vm : VmInfo{};
}

const DiskInfo* disk(const VmInfo& vm, const std::string& target) {
  for (const DiskInfo& d : vm.disks)
    if (d.target == target) return &d;
  return nullptr;
}

std::vector<std::string> names_of(const std::vector<VmInfo>& vms) {
  std::vector<std::string> names;
  for (const VmInfo& vm : vms) names.push_back(vm.name);
  return names;
}

// What the inventory mappings would make of a site-a VM at site-b.
PlaceholderSpec recovery_spec(const VmInfo& protected_vm, const std::string& group = "web-tier") {
  const std::map<std::string, std::string> networks = {{"prod", "recovery-prod"}, {"backup", "recovery-backup"}};
  const std::map<std::string, std::string> folders = {
      {"/var/lib/evac-fixture/a/images/", "/var/lib/evac-fixture/b/replicas/"},
      {"/var/lib/evac-fixture/a/fast/", "/var/lib/evac-fixture/b/replicas-fast/"}};
  PlaceholderSpec spec{group, "site-a", protected_vm.uuid, protected_vm};
  for (DiskInfo& d : spec.vm.disks) {
    for (const auto& [from, to] : folders)
      if (d.path.rfind(from, 0) == 0) d.path = to + d.path.substr(from.size());
    d.storage_pool.reset();
  }
  for (NicInfo& n : spec.vm.nics)
    if (networks.count(n.network)) n.network = networks.at(n.network);
  return spec;
}

PlaceholderSpec web01_spec() { return recovery_spec(vm_at(*protected_site(), "web01")); }

// ---------------------------------------------------------------- inventory

TEST(LibvirtProviderInventory, ListsActiveAndInactiveVms) {
  auto site_a = protected_site();
  auto vms = site_a->list_vms();
  ASSERT_TRUE(vms.is_ok()) << vms.status().to_string();
  EXPECT_THAT(names_of(*vms), UnorderedElementsAre("db01", "app01", "web01", "legacy01", "lonely01"));
  for (const VmInfo& vm : *vms) {
    EXPECT_EQ(vm.provider, "site-a-kvm");
    EXPECT_FALSE(vm.is_placeholder) << vm.name;
    EXPECT_EQ(vm.state, vm.name == "lonely01" ? PowerState::kShutOff : PowerState::kRunning) << vm.name;
  }
}

TEST(LibvirtProviderInventory, DescribesSizesDisksAndNicsFromTheDomainXml) {
  auto site_a = protected_site();
  VmInfo web01 = vm_at(*site_a, "web01");
  EXPECT_EQ(web01.uuid, "a0000000-0000-4000-8000-000000000003");
  EXPECT_EQ(web01.vcpus, 2u) << "the guest boots with vcpu/@current, not the hot-plug maximum";
  EXPECT_EQ(web01.memory_kib, 2097152u);
  EXPECT_EQ(web01.firmware, "bios");

  ASSERT_EQ(web01.disks.size(), 2u);
  const DiskInfo& vda = web01.disks[0];
  EXPECT_EQ(vda.target, "vda");
  EXPECT_EQ(vda.path, "/var/lib/evac-fixture/a/images/web01.qcow2");
  EXPECT_EQ(vda.format, "qcow2");
  EXPECT_EQ(vda.bus, "virtio");
  EXPECT_EQ(vda.device, "disk");
  EXPECT_EQ(vda.storage_pool, "images");
  EXPECT_EQ(web01.disks[1].path, "/var/lib/evac-fixture/a/fast/web01-cache.qcow2");
  EXPECT_EQ(web01.disks[1].storage_pool, "fast");

  ASSERT_EQ(web01.nics.size(), 2u);
  EXPECT_EQ(web01.nics[0].mac, "52:54:00:a0:00:03");
  EXPECT_EQ(web01.nics[0].network, "prod");
  EXPECT_EQ(web01.nics[0].type, "network");
  EXPECT_EQ(web01.nics[0].model, "virtio");
  EXPECT_EQ(web01.nics[1].mac, "52:54:00:a0:00:13");
  EXPECT_EQ(web01.nics[1].network, "backup");
  EXPECT_EQ(web01.nics[1].model, "e1000");

  EXPECT_EQ(web01.native.provider_kind, "libvirt");
  EXPECT_THAT(web01.native.document, HasSubstr("<name>web01</name>"));
  EXPECT_THAT(web01.native.document, HasSubstr("a0000000-0000-4000-8000-000000000003"));
}

TEST(LibvirtProviderInventory, TellsFirmwareAndConvertsMemoryUnits) {
  auto site_a = protected_site();
  VmInfo db01 = vm_at(*site_a, "db01");
  EXPECT_EQ(db01.firmware, "efi");
  EXPECT_EQ(db01.vcpus, 4u);
  EXPECT_EQ(db01.memory_kib, 8u * 1024 * 1024);  // fixture says 8 GiB
  EXPECT_THAT(db01.disks, ::testing::SizeIs(2));
  for (const DiskInfo& d : db01.disks) EXPECT_EQ(d.storage_pool, "fast") << d.target;

  VmInfo app01 = vm_at(*site_a, "app01");
  EXPECT_EQ(app01.firmware, "direct-kernel");
  EXPECT_EQ(app01.memory_kib, 4096u * 1024);  // fixture says 4096 MiB
}

TEST(LibvirtProviderInventory, DiskOutsideEveryPoolFolderHasNoPool) {
  auto site_a = protected_site();
  VmInfo legacy01 = vm_at(*site_a, "legacy01");
  ASSERT_EQ(legacy01.disks.size(), 1u);
  const DiskInfo& sda = legacy01.disks[0];
  EXPECT_EQ(sda.path, "/var/lib/evac-fixture/a/images-old/legacy01.img");
  EXPECT_EQ(sda.format, "raw");
  EXPECT_EQ(sda.bus, "sata");
  // ".../images-old/" starts with the images pool's folder name but is not in it.
  EXPECT_EQ(sda.storage_pool, std::nullopt);
}

TEST(LibvirtProviderInventory, BridgeNicNamesItsBridge) {
  auto site_a = protected_site();
  VmInfo legacy01 = vm_at(*site_a, "legacy01");
  ASSERT_EQ(legacy01.nics.size(), 2u);
  EXPECT_EQ(legacy01.nics[0].type, "network");
  EXPECT_EQ(legacy01.nics[0].network, "prod");
  EXPECT_EQ(legacy01.nics[1].type, "bridge");
  EXPECT_EQ(legacy01.nics[1].network, "br-legacy");
  EXPECT_EQ(legacy01.nics[1].mac, "52:54:00:a0:00:14");
}

TEST(LibvirtProviderInventory, GetsAVmByNameOrByUuid) {
  auto site_a = protected_site();
  VmInfo by_name = vm_at(*site_a, "lonely01");
  VmInfo by_uuid = vm_at(*site_a, "a0000000-0000-4000-8000-000000000005");
  EXPECT_EQ(by_name.uuid, "a0000000-0000-4000-8000-000000000005");
  EXPECT_EQ(by_uuid.name, "lonely01");
  EXPECT_EQ(by_uuid.state, PowerState::kShutOff);
  ASSERT_EQ(by_uuid.nics.size(), 1u);
  EXPECT_EQ(by_uuid.nics[0].network, "backup");
}

TEST(LibvirtProviderInventory, UnknownVmIsNotFoundWithAHint) {
  auto site_a = protected_site();
  for (const std::string ref : {"no-such-vm", "a0000000-0000-4000-8000-0000000000ff"}) {
    auto vm = site_a->get_vm(ref);
    ASSERT_FALSE(vm.is_ok()) << ref;
    EXPECT_EQ(vm.status().code(), StatusCode::kNotFound) << vm.status().to_string();
    EXPECT_THAT(vm.status().message(), HasSubstr(ref));
    EXPECT_THAT(vm.status().hint(), HasSubstr("inventory"));
  }
}

TEST(LibvirtProviderInventory, ListsNetworksWithIsolation) {
  auto site_a = protected_site();
  auto networks = site_a->list_networks();
  ASSERT_TRUE(networks.is_ok()) << networks.status().to_string();
  std::map<std::string, NetworkInfo> by_name;
  for (const NetworkInfo& n : *networks) by_name[n.name] = n;
  ASSERT_EQ(by_name.size(), 2u);
  const NetworkInfo& prod = by_name.at("prod");
  EXPECT_EQ(prod.provider, "site-a-kvm");
  EXPECT_EQ(prod.uuid, "a0000000-0000-4000-8000-000000000101");
  EXPECT_EQ(prod.bridge, "virbr-prod");
  EXPECT_TRUE(prod.active);
  EXPECT_FALSE(prod.isolated) << "prod forwards with NAT";
  EXPECT_TRUE(by_name.at("backup").isolated) << "backup has no <forward>";

  auto site_b = recovery_site();
  auto recovery_networks = site_b->list_networks();
  ASSERT_TRUE(recovery_networks.is_ok());
  std::map<std::string, bool> isolated;
  std::map<std::string, std::string> why;
  for (const NetworkInfo& n : *recovery_networks) {
    isolated[n.name] = n.isolated;
    why[n.name] = n.isolation;
  }
  // Host bridges are attachments too, judged by their own ports.
  EXPECT_EQ(isolated, (std::map<std::string, bool>{{"recovery-prod", false},
                                                   {"recovery-backup", true},
                                                   {"test-isolated", true},
                                                   {"lab-uplinked", false},
                                                   {"lab-no-uplink", true},
                                                   {"bridge:br-lab", false},
                                                   {"bridge:br-alone", true}}));
  // Judged by what is there, and said: a bridge's ports, not the presence
  // of <forward>.
  EXPECT_NE(why["lab-uplinked"].find("uplink port(s) eth9"), std::string::npos) << why["lab-uplinked"];
  EXPECT_NE(why["lab-no-uplink"].find("bridge 'br-alone', which has no uplink: no ports yet"), std::string::npos)
      << why["lab-no-uplink"];
  EXPECT_NE(why["recovery-prod"].find("forward mode 'nat'"), std::string::npos) << why["recovery-prod"];
}

TEST(LibvirtProviderInventory, ListsStoragePoolsWithFoldersAndSizes) {
  auto site_a = protected_site();
  auto pools = site_a->list_storage_pools();
  ASSERT_TRUE(pools.is_ok()) << pools.status().to_string();
  std::map<std::string, StoragePoolInfo> by_name;
  for (const StoragePoolInfo& p : *pools) by_name[p.name] = p;
  ASSERT_EQ(by_name.size(), 2u);
  const StoragePoolInfo& images = by_name.at("images");
  EXPECT_EQ(images.provider, "site-a-kvm");
  EXPECT_EQ(images.uuid, "a0000000-0000-4000-8000-000000000201");
  EXPECT_EQ(images.type, "dir");
  EXPECT_EQ(images.path, "/var/lib/evac-fixture/a/images");
  EXPECT_TRUE(images.active);
  EXPECT_GT(images.capacity_bytes, 0u);
  // The test driver counts the fixture's volumes (12 GiB allocated) as used.
  EXPECT_EQ(images.capacity_bytes - images.available_bytes, 12ull << 30);
  EXPECT_EQ(by_name.at("fast").path, "/var/lib/evac-fixture/a/fast");
}

TEST(LibvirtProviderInventory, AnswersFromSeveralThreadsAtOnce) {
  auto site_a = protected_site();
  std::vector<std::size_t> counts(4, 0);
  std::vector<std::thread> threads;
  for (std::size_t t = 0; t < counts.size(); ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 20; ++i) {
        auto vms = site_a->list_vms();
        if (vms.is_ok()) counts[t] += vms->size();
      }
    });
  }
  for (auto& th : threads) th.join();
  for (std::size_t c : counts) EXPECT_EQ(c, 20u * 5);
}

// ------------------------------------------------------------ connecting

TEST(LibvirtProviderConnection, UnreachableHypervisorIsUnavailableAndNamesTheUri) {
  for (const std::string uri : {"test:///nonexistent/file.xml", "qemu+unix:///system?socket=/nonexistent"}) {
    auto provider = open_provider("down", uri);  // construction does not connect
    Status ping = provider->ping();
    EXPECT_EQ(ping.code(), StatusCode::kUnavailable) << uri << ": " << ping.to_string();
    EXPECT_THAT(ping.hint(), HasSubstr(uri));
    EXPECT_THAT(ping.hint(), HasSubstr("libvirtd"));
    EXPECT_FALSE(ping.message().empty());

    auto vms = provider->list_vms();
    ASSERT_FALSE(vms.is_ok()) << uri;
    EXPECT_EQ(vms.status().code(), StatusCode::kUnavailable) << uri;
  }
}

TEST(LibvirtProviderConnection, FailedConnectIsRetriedOnTheNextCall) {
  // A site whose hypervisor comes up after evacd: the fixture file appears
  // only after the first, failed call.
  std::filesystem::path dir = std::filesystem::temp_directory_path() /
                              ("evac-libvirt-test-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  std::filesystem::path node = dir / "site-b.xml";
  auto provider = open_provider("late", "test://" + node.string());
  EXPECT_EQ(provider->ping().code(), StatusCode::kUnavailable);

  std::filesystem::copy_file(std::string(EVAC_SOURCE_DIR) + "/tests/fixtures/site-b.xml", node);
  EXPECT_TRUE(provider->ping().is_ok());
  auto vms = provider->list_vms();
  ASSERT_TRUE(vms.is_ok()) << vms.status().to_string();
  EXPECT_THAT(names_of(*vms), ElementsAre("b-infra01"));
  std::filesystem::remove_all(dir);
}

TEST(LibvirtProviderConnection, PingSucceedsAgainstAFixture) {
  auto site_a = protected_site();
  EXPECT_TRUE(site_a->ping().is_ok());
  EXPECT_EQ(site_a->kind(), "libvirt");
  EXPECT_EQ(site_a->uri(), fixture_uri("site-a.xml"));
}

TEST(LibvirtProviderConnection, FactoryNeedsAUriAndRegistersKindLibvirt) {
  auto no_uri = make_libvirt_provider(ProviderConfig{"local", "libvirt", ""});
  ASSERT_FALSE(no_uri.is_ok());
  EXPECT_EQ(no_uri.status().code(), StatusCode::kInvalidArgument);

  register_libvirt_provider();
  auto created = ProviderRegistry::instance().create(ProviderConfig{"local", "libvirt", fixture_uri("site-b.xml")});
  ASSERT_TRUE(created.is_ok()) << created.status().to_string();
  EXPECT_EQ((*created)->kind(), "libvirt");
  EXPECT_EQ((*created)->name(), "local");
}

// ----------------------------------------------------------- placeholders

TEST(LibvirtProviderPlaceholders, DefinesAShutOffMarkedCopyWithRecoverySiteResources) {
  auto site_b = recovery_site();
  PlaceholderSpec spec = web01_spec();
  auto defined = site_b->define_placeholder(spec);
  ASSERT_TRUE(defined.is_ok()) << defined.status().to_string();
  EXPECT_EQ(defined->provider, "site-b-kvm");
  EXPECT_EQ(defined->name, "web01");
  EXPECT_EQ(defined->group, "web-tier");
  EXPECT_EQ(defined->source_site, "site-a");
  EXPECT_EQ(defined->source_uuid, "a0000000-0000-4000-8000-000000000003");
  EXPECT_FALSE(defined->uuid.empty());
  EXPECT_NE(defined->uuid, spec.source_uuid) << "a placeholder gets its own UUID";

  VmInfo placeholder = vm_at(*site_b, defined->uuid);
  EXPECT_EQ(placeholder.name, "web01");
  EXPECT_EQ(placeholder.state, PowerState::kShutOff);
  EXPECT_TRUE(placeholder.is_placeholder);
  EXPECT_EQ(placeholder.vcpus, 2u);
  EXPECT_EQ(placeholder.memory_kib, 2097152u);

  ASSERT_EQ(placeholder.disks.size(), 2u);
  EXPECT_EQ(disk(placeholder, "vda")->path, "/var/lib/evac-fixture/b/replicas/web01.qcow2");
  EXPECT_EQ(disk(placeholder, "vda")->storage_pool, "replicas");
  EXPECT_EQ(disk(placeholder, "vdb")->path, "/var/lib/evac-fixture/b/replicas-fast/web01-cache.qcow2");
  EXPECT_EQ(disk(placeholder, "vdb")->storage_pool, "replicas-fast");
  EXPECT_EQ(disk(placeholder, "vdb")->format, "qcow2");

  ASSERT_EQ(placeholder.nics.size(), 2u);
  EXPECT_EQ(placeholder.nics[0].mac, "52:54:00:a0:00:03");
  EXPECT_EQ(placeholder.nics[0].network, "recovery-prod");
  EXPECT_EQ(placeholder.nics[1].mac, "52:54:00:a0:00:13");
  EXPECT_EQ(placeholder.nics[1].network, "recovery-backup");

  const std::string& xml = placeholder.native.document;
  EXPECT_THAT(xml, HasSubstr("https://evac.dev/xmlns/placeholder/1"));
  EXPECT_THAT(xml, HasSubstr("source-uuid=\"a0000000-0000-4000-8000-000000000003\""));
  EXPECT_THAT(xml, HasSubstr("evac placeholder for site-a/web01 (group web-tier): started only by an evac recovery"));
  EXPECT_THAT(xml, Not(HasSubstr("<seclabel")));

  auto listed = site_b->list_placeholders();
  ASSERT_TRUE(listed.is_ok()) << listed.status().to_string();
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ((*listed)[0].uuid, defined->uuid);
  EXPECT_EQ((*listed)[0].source_uuid, spec.source_uuid);
  EXPECT_EQ((*listed)[0].group, "web-tier");
  EXPECT_EQ((*listed)[0].source_site, "site-a");
}

// Readiness asks whether a placeholder would start: each NIC's network,
// bridge or device must exist here and be active.
TEST(LibvirtProviderPlaceholders, SaysWhatWouldKeepAPlaceholderFromStarting) {
  auto site_b = recovery_site();
  auto ready = site_b->define_placeholder(web01_spec());
  ASSERT_TRUE(ready.is_ok()) << ready.status().to_string();
  auto none = site_b->start_problems(ready->uuid);
  ASSERT_TRUE(none.is_ok()) << none.status().to_string();
  EXPECT_THAT(*none, ::testing::IsEmpty());

  PlaceholderSpec spec = recovery_spec(vm_at(*protected_site(), "db01"));
  ASSERT_GE(spec.vm.nics.size(), 1u);
  spec.vm.nics[0].network = "gone-net";
  spec.vm.nics.push_back(NicInfo{"52:54:00:b0:aa:01", "br-alone", "bridge", "virtio"});
  spec.vm.nics.push_back(NicInfo{"52:54:00:b0:aa:02", "br-none", "bridge", "virtio"});
  auto broken = site_b->define_placeholder(spec);
  ASSERT_TRUE(broken.is_ok()) << broken.status().to_string();
  auto problems = site_b->start_problems(broken->uuid);
  ASSERT_TRUE(problems.is_ok()) << problems.status().to_string();
  EXPECT_THAT(*problems, ::testing::UnorderedElementsAre(HasSubstr("network 'gone-net', which does not exist here"),
                                                         HasSubstr("host bridge 'br-none', which does not exist here")));
  EXPECT_EQ(site_b->start_problems("00000000-0000-4000-8000-00000000dead").status().code(), StatusCode::kNotFound);
}

TEST(LibvirtProviderPlaceholders, OtherVmsAreNotPlaceholders) {
  auto site_b = recovery_site();
  ASSERT_TRUE(site_b->define_placeholder(web01_spec()).is_ok());
  auto vms = site_b->list_vms();
  ASSERT_TRUE(vms.is_ok());
  std::map<std::string, bool> placeholder_by_name;
  for (const VmInfo& vm : *vms) placeholder_by_name[vm.name] = vm.is_placeholder;
  EXPECT_EQ(placeholder_by_name, (std::map<std::string, bool>{{"b-infra01", false}, {"web01", true}}));
}

TEST(LibvirtProviderPlaceholders, DefiningTwiceReturnsTheSamePlaceholder) {
  auto site_b = recovery_site();
  PlaceholderSpec spec = web01_spec();
  auto first = site_b->define_placeholder(spec);
  auto second = site_b->define_placeholder(spec);
  ASSERT_TRUE(first.is_ok()) << first.status().to_string();
  ASSERT_TRUE(second.is_ok()) << second.status().to_string();
  EXPECT_EQ(first->uuid, second->uuid);
  auto listed = site_b->list_placeholders();
  ASSERT_TRUE(listed.is_ok());
  EXPECT_EQ(listed->size(), 1u);
}

TEST(LibvirtProviderPlaceholders, NameOfANormalVmIsRefused) {
  auto site_b = recovery_site();
  PlaceholderSpec spec = web01_spec();
  spec.vm.name = "b-infra01";
  auto defined = site_b->define_placeholder(spec);
  ASSERT_FALSE(defined.is_ok());
  EXPECT_EQ(defined.status().code(), StatusCode::kAlreadyExists);
  EXPECT_THAT(defined.status().message(), HasSubstr("not an evac placeholder"));
  EXPECT_FALSE(defined.status().hint().empty());
  EXPECT_FALSE(vm_at(*site_b, "b-infra01").is_placeholder) << "the existing VM is left alone";
}

TEST(LibvirtProviderPlaceholders, NameOfAnotherVmsPlaceholderIsRefused) {
  auto site_b = recovery_site();
  ASSERT_TRUE(site_b->define_placeholder(web01_spec()).is_ok());
  PlaceholderSpec other = web01_spec();
  other.source_uuid = "c0000000-0000-4000-8000-000000000003";
  auto defined = site_b->define_placeholder(other);
  ASSERT_FALSE(defined.is_ok());
  EXPECT_EQ(defined.status().code(), StatusCode::kAlreadyExists);
  EXPECT_THAT(defined.status().message(), HasSubstr("a0000000-0000-4000-8000-000000000003"));
}

TEST(LibvirtProviderPlaceholders, RemovingIsIdempotent) {
  auto site_b = recovery_site();
  auto defined = site_b->define_placeholder(web01_spec());
  ASSERT_TRUE(defined.is_ok()) << defined.status().to_string();

  Status removed = site_b->remove_placeholder(defined->uuid);
  EXPECT_TRUE(removed.is_ok()) << removed.to_string();
  EXPECT_EQ(site_b->get_vm(defined->uuid).status().code(), StatusCode::kNotFound);
  auto listed = site_b->list_placeholders();
  ASSERT_TRUE(listed.is_ok());
  EXPECT_TRUE(listed->empty());

  Status again = site_b->remove_placeholder(defined->uuid);
  EXPECT_TRUE(again.is_ok()) << again.to_string();
}

TEST(LibvirtProviderPlaceholders, RemovingANormalVmIsRefused) {
  auto site_b = recovery_site();
  Status removed = site_b->remove_placeholder("b0000000-0000-4000-8000-000000000001");
  EXPECT_EQ(removed.code(), StatusCode::kFailedPrecondition) << removed.to_string();
  EXPECT_THAT(removed.message(), HasSubstr("refusing to remove VM b-infra01: it is not an evac placeholder"));
  EXPECT_EQ(vm_at(*site_b, "b-infra01").state, PowerState::kRunning) << "the VM is still there";
}

TEST(LibvirtProviderPlaceholders, RemovingWithAMalformedUuidIsAnInputError) {
  auto site_b = recovery_site();
  EXPECT_EQ(site_b->remove_placeholder("not-a-uuid").code(), StatusCode::kInvalidArgument);
}

TEST(LibvirtProviderPlaceholders, DefinesFromNeutralFieldsWithoutANativeDefinition) {
  auto site_b = recovery_site();
  VmInfo vm;
  vm.name = "esx-app07";
  vm.uuid = "d0000000-0000-4000-8000-000000000007";
  vm.vcpus = 3;
  vm.memory_kib = 3u * 1024 * 1024;
  vm.firmware = "bios";
  vm.disks = {DiskInfo{"vda", "/var/lib/evac-fixture/b/replicas/esx-app07.qcow2", "qcow2", "virtio", "disk", {}},
              DiskInfo{"vdb", "/dev/vg0/esx-app07-data", "raw", "virtio", "disk", {}}};
  vm.nics = {NicInfo{"52:54:00:d0:00:07", "recovery-prod", "network", "virtio"}};
  PlaceholderSpec spec{"apps", "site-v", vm.uuid, vm};

  auto defined = site_b->define_placeholder(spec);
  ASSERT_TRUE(defined.is_ok()) << defined.status().to_string();
  VmInfo placeholder = vm_at(*site_b, "esx-app07");
  EXPECT_EQ(placeholder.uuid, defined->uuid);
  EXPECT_NE(placeholder.uuid, vm.uuid);
  EXPECT_TRUE(placeholder.is_placeholder);
  EXPECT_EQ(placeholder.state, PowerState::kShutOff);
  EXPECT_EQ(placeholder.vcpus, 3u);
  EXPECT_EQ(placeholder.memory_kib, 3u * 1024 * 1024);
  EXPECT_EQ(placeholder.firmware, "bios");
  ASSERT_EQ(placeholder.disks.size(), 2u);
  EXPECT_EQ(disk(placeholder, "vda")->path, "/var/lib/evac-fixture/b/replicas/esx-app07.qcow2");
  EXPECT_EQ(disk(placeholder, "vda")->storage_pool, "replicas");
  EXPECT_EQ(disk(placeholder, "vdb")->path, "/dev/vg0/esx-app07-data") << "a /dev path becomes a block disk";
  EXPECT_EQ(disk(placeholder, "vdb")->format, "raw");
  ASSERT_EQ(placeholder.nics.size(), 1u);
  EXPECT_EQ(placeholder.nics[0].mac, "52:54:00:d0:00:07");
  EXPECT_EQ(placeholder.nics[0].network, "recovery-prod");
  EXPECT_THAT(placeholder.native.document, HasSubstr("<disk type='block'"));
}

TEST(LibvirtProviderPlaceholders, NeutralDirectKernelVmIsUnsupported) {
  auto site_b = recovery_site();
  PlaceholderSpec spec = web01_spec();
  spec.vm.native = {};
  spec.vm.firmware = "direct-kernel";
  EXPECT_EQ(site_b->define_placeholder(spec).status().code(), StatusCode::kUnsupported);
}

TEST(LibvirtProviderPlaceholders, KeepsTheKernelOfADirectKernelVmWithItsNativeDefinition) {
  auto site_b = recovery_site();
  PlaceholderSpec spec = recovery_spec(vm_at(*protected_site(), "app01"), "apps");
  auto defined = site_b->define_placeholder(spec);
  ASSERT_TRUE(defined.is_ok()) << defined.status().to_string();
  VmInfo placeholder = vm_at(*site_b, "app01");
  EXPECT_EQ(placeholder.firmware, "direct-kernel");
  EXPECT_EQ(placeholder.disks.at(0).path, "/var/lib/evac-fixture/b/replicas/app01.qcow2");
}

TEST(LibvirtProviderPlaceholders, SpecWithoutSourceIsRefusedBeforeTouchingTheSite) {
  auto site_b = recovery_site();
  PlaceholderSpec spec = web01_spec();
  spec.source_uuid.clear();
  EXPECT_EQ(site_b->define_placeholder(spec).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(site_b->get_vm("web01").status().code(), StatusCode::kNotFound);
}

}  // namespace
}  // namespace evac

// ---------------------------------------------------------------- test VMs

namespace evac {
namespace {

// web01's test VM at site-b: its placeholder's definition on test copies and
// the isolated test network.
TestVmSpec web01_test_spec(const PlaceholderInfo& placeholder, const std::string& run = "run-1") {
  TestVmSpec spec;
  spec.name = "web01-test";
  spec.placeholder_uuid = placeholder.uuid;
  spec.run = run;
  spec.group = placeholder.group;
  spec.source_site = placeholder.source_site;
  spec.source_uuid = placeholder.source_uuid;
  spec.disks = {{"vda", "/var/lib/evac-fixture/b/test/vda.qcow2"}, {"vdb", "/var/lib/evac-fixture/b/test/vdb.qcow2"}};
  spec.networks = {{"recovery-prod", "test-isolated"}, {"recovery-backup", "test-isolated"}};
  return spec;
}

TEST(LibvirtProviderTestVms, DefinesAMarkedCopyOnTestCopiesAndTestNetworks) {
  auto site_b = recovery_site();
  auto placeholder = site_b->define_placeholder(web01_spec());
  ASSERT_TRUE(placeholder.is_ok()) << placeholder.status().to_string();
  auto made = site_b->define_test_vm(web01_test_spec(*placeholder));
  ASSERT_TRUE(made.is_ok()) << made.status().to_string();
  EXPECT_EQ(made->name, "web01-test");
  EXPECT_EQ(made->run, "run-1");
  EXPECT_EQ(made->source_uuid, placeholder->source_uuid);
  EXPECT_EQ(made->state, PowerState::kShutOff);
  EXPECT_NE(made->uuid, placeholder->uuid);

  VmInfo test_vm = vm_at(*site_b, made->uuid);
  EXPECT_FALSE(test_vm.is_placeholder) << "a test VM is not a placeholder";
  EXPECT_EQ(disk(test_vm, "vda")->path, "/var/lib/evac-fixture/b/test/vda.qcow2");
  EXPECT_EQ(disk(test_vm, "vdb")->format, "qcow2");
  ASSERT_EQ(test_vm.nics.size(), 2u);
  for (const auto& nic : test_vm.nics) EXPECT_EQ(nic.network, "test-isolated");
  EXPECT_EQ(test_vm.nics[0].mac, "52:54:00:a0:00:03") << "the guest keeps its MACs";
  EXPECT_THAT(test_vm.native.document, HasSubstr("https://evac.dev/xmlns/test-vm/1"));
  EXPECT_THAT(test_vm.native.document, Not(HasSubstr("xmlns/placeholder/1")));

  // The placeholder itself is untouched.
  VmInfo still = vm_at(*site_b, placeholder->uuid);
  EXPECT_TRUE(still.is_placeholder);
  EXPECT_EQ(still.nics[0].network, "recovery-prod");

  auto again = site_b->define_test_vm(web01_test_spec(*placeholder));
  ASSERT_TRUE(again.is_ok()) << again.status().to_string();
  EXPECT_EQ(again->uuid, made->uuid) << "defining the same run's test VM again converges";
  auto other_run = site_b->define_test_vm(web01_test_spec(*placeholder, "run-2"));
  EXPECT_EQ(other_run.status().code(), StatusCode::kAlreadyExists);
  EXPECT_THAT(other_run.status().hint(), HasSubstr("cleanup"));

  auto listed = site_b->list_test_vms();
  ASSERT_TRUE(listed.is_ok()) << listed.status().to_string();
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ((*listed)[0].uuid, made->uuid);
  auto placeholders = site_b->list_placeholders();
  ASSERT_TRUE(placeholders.is_ok());
  EXPECT_EQ(placeholders->size(), 1u) << "the test VM is not listed as a placeholder";
}

TEST(LibvirtProviderTestVms, ANicWithoutTestNetworkIsRefused) {
  auto site_b = recovery_site();
  auto placeholder = site_b->define_placeholder(web01_spec());
  ASSERT_TRUE(placeholder.is_ok());
  TestVmSpec spec = web01_test_spec(*placeholder);
  spec.networks.erase("recovery-backup");
  auto made = site_b->define_test_vm(spec);
  EXPECT_EQ(made.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_THAT(made.status().message(), HasSubstr("recovery-backup"));
  auto listed = site_b->list_test_vms();
  ASSERT_TRUE(listed.is_ok());
  EXPECT_TRUE(listed->empty()) << "nothing is defined when a NIC would stay on production";
  spec = web01_test_spec(*placeholder);
  spec.disks.erase("vdb");
  EXPECT_EQ(site_b->define_test_vm(spec).status().code(), StatusCode::kFailedPrecondition) << "a disk without a test copy";
}

TEST(LibvirtProviderTestVms, PowerOnOffAndRemoveConverge) {
  auto site_b = recovery_site();
  auto placeholder = site_b->define_placeholder(web01_spec());
  ASSERT_TRUE(placeholder.is_ok());
  auto made = site_b->define_test_vm(web01_test_spec(*placeholder));
  ASSERT_TRUE(made.is_ok());
  ASSERT_TRUE(site_b->power_on(made->name).is_ok());
  EXPECT_EQ(vm_at(*site_b, made->uuid).state, PowerState::kRunning);
  EXPECT_TRUE(site_b->power_on(made->uuid).is_ok()) << "running already";
  EXPECT_TRUE(site_b->power_off(made->uuid, false, std::chrono::seconds(5)).is_ok());
  EXPECT_EQ(vm_at(*site_b, made->uuid).state, PowerState::kShutOff);
  EXPECT_TRUE(site_b->power_off(made->uuid, true, std::chrono::seconds(5)).is_ok()) << "off already";
  ASSERT_TRUE(site_b->power_on(made->uuid).is_ok());

  EXPECT_EQ(site_b->remove_test_vm(placeholder->uuid).code(), StatusCode::kFailedPrecondition)
      << "a placeholder is never removed as a test VM";
  ASSERT_TRUE(site_b->remove_test_vm(made->uuid).is_ok()) << "a running test VM is powered off and removed";
  EXPECT_EQ(site_b->get_vm(made->uuid).status().code(), StatusCode::kNotFound);
  EXPECT_TRUE(site_b->remove_test_vm(made->uuid).is_ok()) << "gone already";
  EXPECT_EQ(site_b->power_on("ghost").code(), StatusCode::kNotFound);
}

// Reprotect: the recovered VM at site-b made a placeholder again (standing
// in for the copy now live at site-a), keeping its disks as they are.
TEST(LibvirtProviderReprotect, AdoptsAStoppedVmAsAPlaceholderKeepingItsDisks) {
  auto site_b = recovery_site();
  auto placeholder = site_b->define_placeholder(web01_spec());
  ASSERT_TRUE(placeholder.is_ok());
  auto recovered = site_b->recover_placeholder(
      placeholder->uuid, {{"vda", "/var/lib/evac-fixture/b/live/vda.qcow2"}, {"vdb", "/var/lib/evac-fixture/b/live/vdb.qcow2"}},
      "run-1");
  ASSERT_TRUE(recovered.is_ok()) << recovered.status().to_string();
  ASSERT_TRUE(site_b->power_on(placeholder->uuid).is_ok());
  const PlaceholderInfo marker{"kvm-b", "web01", placeholder->uuid, "shop", "site-a", "a1a1a1a1-0000-4000-8000-000000000001"};

  auto running = site_b->adopt_as_placeholder(placeholder->uuid, marker);
  EXPECT_EQ(running.status().code(), StatusCode::kFailedPrecondition) << "a running VM is never made a placeholder";
  EXPECT_FALSE(vm_at(*site_b, placeholder->uuid).is_placeholder);

  ASSERT_TRUE(site_b->power_off(placeholder->uuid, false, std::chrono::seconds(5)).is_ok());
  auto adopted = site_b->adopt_as_placeholder(placeholder->uuid, marker);
  ASSERT_TRUE(adopted.is_ok()) << adopted.status().to_string();
  EXPECT_EQ(adopted->uuid, placeholder->uuid);
  EXPECT_EQ(adopted->source_site, "site-a");
  EXPECT_EQ(adopted->source_uuid, marker.source_uuid);
  VmInfo vm = vm_at(*site_b, placeholder->uuid);
  EXPECT_TRUE(vm.is_placeholder);
  EXPECT_EQ(disk(vm, "vda")->path, "/var/lib/evac-fixture/b/live/vda.qcow2") << "its disks seed the reverse replication";
  EXPECT_THAT(vm.native.document, Not(HasSubstr("xmlns/recovered/1")));
  EXPECT_EQ(vm.nics[0].network, "recovery-prod");

  auto again = site_b->adopt_as_placeholder(placeholder->uuid, marker);
  ASSERT_TRUE(again.is_ok()) << again.status().to_string();
  PlaceholderInfo other = marker;
  other.source_uuid = "b2b2b2b2-0000-4000-8000-000000000002";
  EXPECT_EQ(site_b->adopt_as_placeholder(placeholder->uuid, other).status().code(), StatusCode::kFailedPrecondition)
      << "already another VM's placeholder";

  // A later failback recovers onto it like onto any placeholder.
  auto back = site_b->recover_placeholder(placeholder->uuid, {{"vda", "/x/vda.qcow2"}, {"vdb", "/x/vdb.qcow2"}}, "run-2");
  ASSERT_TRUE(back.is_ok()) << back.status().to_string();
  EXPECT_EQ(disk(*back, "vda")->path, "/x/vda.qcow2");
}

TEST(LibvirtProviderReprotect, TestVmsAreNeverAdopted) {
  auto site_b = recovery_site();
  auto placeholder = site_b->define_placeholder(web01_spec());
  ASSERT_TRUE(placeholder.is_ok());
  auto made = site_b->define_test_vm(web01_test_spec(*placeholder));
  ASSERT_TRUE(made.is_ok());
  auto adopted = site_b->adopt_as_placeholder(made->uuid, PlaceholderInfo{"kvm-b", "x", made->uuid, "shop", "site-a", "u"});
  EXPECT_EQ(adopted.status().code(), StatusCode::kFailedPrecondition);
}

TEST(LibvirtProviderTestVms, GuestAgentNeedsQemu) {
  auto site_b = recovery_site();
  auto placeholder = site_b->define_placeholder(web01_spec());
  ASSERT_TRUE(placeholder.is_ok());
  ASSERT_TRUE(site_b->power_on(placeholder->uuid).is_ok());
  Status ping = site_b->guest_ping(placeholder->uuid);
  EXPECT_FALSE(ping.is_ok());
  EXPECT_NE(ping.code(), StatusCode::kUnavailable) << "the test driver has no agent: waiting would never end";
}

}  // namespace
}  // namespace evac

namespace evac {
namespace {

// libvirt's test driver runs no QEMU: flattening is left to the images' owner.
TEST(LibvirtProviderFlatten, TheTestDriverCannotPullAndSaysSo) {
  auto site = protected_site();
  auto vms = site->list_vms();
  ASSERT_TRUE(vms.is_ok());
  ASSERT_FALSE(vms->empty());
  auto flattened = site->flatten_disks(vms->front().uuid);
  ASSERT_FALSE(flattened.is_ok());
  EXPECT_EQ(flattened.status().code(), StatusCode::kUnsupported) << flattened.status().to_string();
  EXPECT_EQ(site->flatten_disks("00000000-0000-4000-8000-00000000dead").status().code(), StatusCode::kNotFound);
}

}  // namespace
}  // namespace evac
