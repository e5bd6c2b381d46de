// The built-in replicator before anything is read or made: what it takes
// from a protected site and what it refuses to replicate.
#include "replication/builtin/builtin_replicator.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "replication/builtin/pit_store.h"

namespace evac::builtin {
namespace {

// A cycle's disk sizes come from the protected site: one beyond the largest
// disk evac replicates is refused before a staging image is created or a
// hash list allocated for it (2^62 bytes would be 2^46 hashes, 2 PiB), and
// before a cycle open here is given up for it.
TEST(ReplicaReceiverTest, ADiskLargerThanEvacReplicatesIsRefusedBeforeAnythingIsMade) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("evac-receiver-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir / "replicas");
  PitStore pits((dir / "index").string());
  ReplicaReceiver receiver(pits);
  const std::string replicas = (dir / "replicas").string();
  for (std::uint64_t size : {kMaxDiskBytes + 512, std::uint64_t{1} << 62, ~std::uint64_t{0}}) {
    Status s = receiver.begin_cycle("g1", "cycle-1",
                                    {ReplicatedDevice{"u-web01", "web01", "vda", {}, "qcow2", replicas, 1 << 20, ""},
                                     ReplicatedDevice{"u-web01", "web01", "vdb", {}, "qcow2", replicas, size, ""}});
    ASSERT_FALSE(s.is_ok()) << size;
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(s.message(), "disk u-web01/vdb is " + std::to_string(size) +
                               " bytes, more than the 64 TiB (70368744177664 bytes) evac replicates");
    EXPECT_TRUE(fs::is_empty(dir / "replicas")) << "no staging image";
    EXPECT_FALSE(fs::exists(dir / "index")) << "no index";
  }
  fs::remove_all(dir);
}

// A disk is named by its libvirt source: image files and block devices are
// read; a network disk is refused, naming it and what to do, before a
// cycle starts.
TEST(BuiltinReplicatorTest, DiscoverNamesEachDiskBySourceAndRefusesNetworkDisks) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::path(::testing::TempDir()) / ("evac-discover-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::string image = (dir / "db01.qcow2").string(), device = (dir / "db01-data").string();
  ASSERT_EQ(std::system(("qemu-img create -q -f qcow2 " + image + " 3M").c_str()), 0);
  ASSERT_EQ(std::system(("truncate -s 2M " + device).c_str()), 0);  // stands for a block device
  BuiltinReplicator replicator(nullptr);
  ReplicationGroupSpec spec;
  spec.group = "g1";
  spec.recovery_site = "site-b";
  spec.replica_dirs = {{"images", "/b/replicas"}};
  VmInfo vm;
  vm.name = "db01";
  vm.uuid = "u-db01";
  vm.state = PowerState::kShutOff;
  DiskInfo file{"vda", image, "qcow2", "virtio", "disk", "images"};
  DiskInfo block{"vdb", device, "raw", "virtio", "disk", "images"};
  block.source = DiskSource{"block", device, "", ""};
  vm.disks = {file, block};
  spec.vms = {vm};
  auto found = replicator.discover(spec);
  ASSERT_TRUE(found.is_ok()) << found.status().to_string();
  ASSERT_EQ(found->size(), 2u);
  EXPECT_EQ((*found)[0].source.type, "file");
  EXPECT_EQ((*found)[0].source.path, image);
  EXPECT_EQ((*found)[0].size_bytes, 3u << 20) << "the image's virtual size, not its file's";
  EXPECT_EQ((*found)[1].source.type, "block");
  EXPECT_EQ((*found)[1].source.path, device);
  EXPECT_EQ((*found)[1].size_bytes, 2u << 20);

  DiskInfo rbd{"vdc", "rbd:pool/db01-logs", "raw", "virtio", "disk", std::nullopt};
  rbd.source = DiskSource{"network", "", "rbd", "pool/db01-logs"};
  spec.vms[0].disks.push_back(rbd);
  auto refused = replicator.discover(spec);
  ASSERT_FALSE(refused.is_ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kUnsupported);
  EXPECT_EQ(refused.status().message(), "disk vdc of VM 'db01' is a network disk rbd pool/db01-logs: the built-in "
                                        "replicator reads image files and block devices");
  EXPECT_NE(refused.status().hint().find("replication engine"), std::string::npos) << refused.status().hint();
  fs::remove_all(dir);
}

}  // namespace
}  // namespace evac::builtin
