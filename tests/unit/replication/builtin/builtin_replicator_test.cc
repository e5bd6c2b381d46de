// The built-in replicator's receiving side, before anything is made.
#include "replication/builtin/builtin_replicator.h"

#include <gtest/gtest.h>
#include <unistd.h>

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

}  // namespace
}  // namespace evac::builtin
