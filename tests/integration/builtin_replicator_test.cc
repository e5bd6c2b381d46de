// The built-in replicator end to end in one process: real qemu-img images,
// real qemu-nbd exports read and written through libnbd, a real PitStore,
// with the site-to-site channel replaced by a loopback that can cut the link
// or corrupt bytes on the wire.
#include "replication/builtin/builtin_replicator.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "harness.h"

namespace evac::builtin {
namespace {

namespace fs = std::filesystem;
using evac::testing::run_command;

// The recovery site's half, reached directly; faults are injected per call.
class LoopbackChannel : public ReplicaChannel {
 public:
  explicit LoopbackChannel(ReplicaReceiver& receiver) : receiver_(receiver) {}
  // Batches arrive from several sender threads at once.
  std::atomic<int> batches{0};
  std::atomic<std::uint64_t> wire_bytes{0};
  std::atomic<int> cut_after_batches{-1};  // the link dies from batch N on (0-based)
  std::atomic<int> corrupt_batch{-1};      // flip one byte in batch N (0-based)
  std::atomic<bool> drop_aborts{false};    // the sender died: its abort never arrives

  Status begin_cycle(const std::string& g, const std::string& c, const std::vector<ReplicatedDevice>& d) override {
    return receiver_.begin_cycle(g, c, d);
  }
  Result<std::optional<std::string>> manifest(const std::string& g, const std::string& k) override {
    return receiver_.manifest(g, k);
  }
  Status send_batch(const std::string& g, const std::string& c, const std::string& batch) override {
    int n = batches++;
    if (cut_after_batches >= 0 && n >= cut_after_batches) return unavailable("link cut (test)");
    std::string wire = batch;
    if (n == corrupt_batch) wire[wire.size() / 2] ^= 0x5a;
    wire_bytes += wire.size();
    return receiver_.apply_batch(g, c, wire);
  }
  Result<PointInTime> commit_cycle(const std::string& g, const std::string& c, const std::vector<DiskDigest>& d,
                                   std::int64_t at_ms, std::uint64_t sent, const RetentionPolicy& keep) override {
    return receiver_.commit_cycle(g, c, d, at_ms, sent, keep);
  }
  Status abort_cycle(const std::string& g, const std::string& c) override {
    if (drop_aborts) return unavailable("link cut (test)");
    return receiver_.abort_cycle(g, c);
  }
  Result<std::vector<PointInTime>> list_pits(const std::string& g) override { return receiver_.list_pits(g); }

 private:
  ReplicaReceiver& receiver_;
};

class BuiltinReplicatorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() /
            ("evac-repl-" + std::to_string(::getpid()) + "-" + ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    fs::create_directories(root_ / "source");
    fs::create_directories(root_ / "replicas");
    fs::create_directories(root_ / "index");
    source_ = (root_ / "source" / "web01.qcow2").string();
    ASSERT_EQ(qemu_img({"create", "-q", "-f", "qcow2", source_, "64M"}), 0);
    pits_ = std::make_unique<PitStore>((root_ / "index").string());
    receiver_ = std::make_unique<ReplicaReceiver>(*pits_);
    channel_ = std::make_unique<LoopbackChannel>(*receiver_);
    replicator_ = std::make_unique<BuiltinReplicator>(receiver_.get());

    VmInfo vm;
    vm.name = "web01";
    vm.uuid = "11111111-2222-4333-8444-555555555555";
    vm.state = PowerState::kShutOff;
    vm.disks.push_back(DiskInfo{"vda", source_, "qcow2", "virtio", "disk", "images"});
    spec_.group = "g1";
    spec_.protected_site = "site-a";
    spec_.recovery_site = "site-b";
    spec_.vms = {vm};
    spec_.replica_dirs = {{"images", (root_ / "replicas").string()}};
    spec_.retention = RetentionPolicy{24, 0, 0};
  }
  void TearDown() override {
    replicator_.reset();
    channel_.reset();
    receiver_.reset();
    pits_.reset();
    evac::testing::remove_tree(root_);  // a failed test may leave an image read-only
  }

  static int qemu_img(std::vector<std::string> args) {
    args.insert(args.begin(), "/usr/bin/qemu-img");
    return run_command(args).exit_code;
  }
  // Writes `pattern` bytes at offset through qemu-io, as a guest would.
  void write(std::uint64_t offset, std::uint64_t length, int pattern) {
    auto r = run_command({"/usr/bin/qemu-io", "-f", "qcow2", "-c",
                          "write -P " + std::to_string(pattern) + " " + std::to_string(offset) + " " + std::to_string(length),
                          source_});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  // Writes random (incompressible) bytes at offset, so wire sizes count data.
  void write_random(std::uint64_t offset, std::uint64_t length) {
    std::string file = (root_ / "random.bin").string();
    {
      std::ofstream out(file, std::ios::binary | std::ios::trunc);
      std::string bytes(length, '\0');
      for (auto& c : bytes) c = static_cast<char>(std::rand());
      out << bytes;
    }
    auto r = run_command({"/usr/bin/qemu-io", "-f", "qcow2", "-c",
                          "write -s " + file + " " + std::to_string(offset) + " " + std::to_string(length), source_});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  // A raw copy of the source as it is now, to compare PITs against later.
  std::string snapshot(const std::string& name) {
    std::string path = (root_ / (name + ".raw")).string();
    EXPECT_EQ(qemu_img({"convert", "-O", "raw", source_, path}), 0);
    return path;
  }
  std::string snapshot_of(const std::string& image, const std::string& format, const std::string& name) {
    std::string path = (root_ / (name + ".raw")).string();
    EXPECT_EQ(qemu_img({"convert", "-f", format, "-O", "raw", image, path}), 0);
    return path;
  }
  static bool same_content(const std::string& a, const std::string& b) {
    return run_command({"/usr/bin/qemu-img", "compare", "-q", a, b}).exit_code == 0;
  }

  fs::path root_;
  std::string source_;
  ReplicationGroupSpec spec_;
  std::unique_ptr<PitStore> pits_;
  std::unique_ptr<ReplicaReceiver> receiver_;
  std::unique_ptr<LoopbackChannel> channel_;
  std::unique_ptr<BuiltinReplicator> replicator_;
};

TEST_F(BuiltinReplicatorTest, FirstSyncThenOnlyChangedBlocks) {
  write(0, 1 << 20, 0x11);
  write(40 << 20, 3 << 20, 0x22);
  std::string v1 = snapshot("v1");
  auto pit1 = replicator_->sync_over(*channel_, spec_, nullptr);
  ASSERT_TRUE(pit1.is_ok()) << pit1.status().to_string();
  ASSERT_EQ(pit1->disks.size(), 1u);
  EXPECT_TRUE(same_content(pit1->disks[0].path, v1));

  // Rewrite 1% of the disk in 64 KiB blocks spread over it.
  std::uint64_t changed = 0;
  for (std::uint64_t off = 512 << 10; off < (64u << 20); off += 6 << 20) {
    write(off, 64 << 10, 0x33);
    changed += 64 << 10;
  }
  std::string v2 = snapshot("v2");
  channel_->wire_bytes = 0;
  auto pit2 = replicator_->sync_over(*channel_, spec_, nullptr);
  ASSERT_TRUE(pit2.is_ok()) << pit2.status().to_string();
  EXPECT_TRUE(same_content(pit2->disks[0].path, v2));
  EXPECT_TRUE(same_content(pit1->disks[0].path, v1)) << "an older PIT must never change";
  EXPECT_LE(channel_->wire_bytes.load(), changed * 105 / 100) << "only changed blocks travel";
  EXPECT_GT(channel_->wire_bytes.load(), 0u);

  // Nothing changed: a cycle still makes a PIT but ships no blocks.
  channel_->wire_bytes = 0;
  auto pit3 = replicator_->sync_over(*channel_, spec_, nullptr);
  ASSERT_TRUE(pit3.is_ok());
  EXPECT_EQ(channel_->wire_bytes.load(), 0u);
  auto list = replicator_->list_pits("g1");
  ASSERT_TRUE(list.is_ok());
  EXPECT_EQ(list->size(), 3u);
}

TEST_F(BuiltinReplicatorTest, CorruptedBlockOnTheWireDiscardsTheCycle) {
  write(0, 2 << 20, 0x44);
  std::string v1 = snapshot("v1");
  ASSERT_TRUE(replicator_->sync_over(*channel_, spec_, nullptr).is_ok());
  write(8 << 20, 2 << 20, 0x55);
  channel_->corrupt_batch = channel_->batches.load();  // the next batch
  auto bad = replicator_->sync_over(*channel_, spec_, nullptr);
  ASSERT_FALSE(bad.is_ok());
  EXPECT_NE(bad.status().message().find("corrupt"), std::string::npos) << bad.status().to_string();
  EXPECT_NE(bad.status().hint().find("intact"), std::string::npos) << bad.status().to_string();
  auto list = replicator_->list_pits("g1");
  ASSERT_EQ(list->size(), 1u);
  EXPECT_TRUE(same_content(list->back().disks[0].path, v1));
  channel_->corrupt_batch = -1;
  std::string v2 = snapshot("v2");
  auto good = replicator_->sync_over(*channel_, spec_, nullptr);
  ASSERT_TRUE(good.is_ok()) << good.status().to_string();
  EXPECT_TRUE(same_content(good->disks[0].path, v2));
}

TEST_F(BuiltinReplicatorTest, CutLinkLeavesTheLastPitIntact) {
  write(0, 1 << 20, 0x66);
  std::string v1 = snapshot("v1");
  ASSERT_TRUE(replicator_->sync_over(*channel_, spec_, nullptr).is_ok());
  for (int i = 0; i < 4; ++i) write(static_cast<std::uint64_t>(i) * (12 << 20), 5 << 20, 0x77);  // > one batch
  channel_->cut_after_batches = channel_->batches.load() + 1;
  auto cut = replicator_->sync_over(*channel_, spec_, nullptr);
  ASSERT_FALSE(cut.is_ok());
  EXPECT_EQ(cut.status().code(), StatusCode::kUnavailable);
  auto list = replicator_->list_pits("g1");
  ASSERT_EQ(list->size(), 1u);
  EXPECT_TRUE(same_content(list->back().disks[0].path, v1));
  // No staging file is left behind.
  for (const auto& e : fs::recursive_directory_iterator(root_ / "replicas"))
    EXPECT_EQ(e.path().string().find("staging"), std::string::npos) << e.path();
  channel_->cut_after_batches = -1;
  std::string v2 = snapshot("v2");
  auto retried = replicator_->sync_over(*channel_, spec_, nullptr);
  ASSERT_TRUE(retried.is_ok()) << retried.status().to_string();
  EXPECT_TRUE(same_content(retried->disks[0].path, v2));
}

TEST_F(BuiltinReplicatorTest, RetainsKeepPits) {
  spec_.retention.keep_last = 2;
  std::vector<std::string> versions;
  for (int i = 0; i < 4; ++i) {
    write(static_cast<std::uint64_t>(i) << 20, 1 << 20, 0x10 + i);
    versions.push_back(snapshot("v" + std::to_string(i)));
    ASSERT_TRUE(replicator_->sync_over(*channel_, spec_, nullptr).is_ok());
  }
  auto list = replicator_->list_pits("g1");
  ASSERT_EQ(list->size(), 2u);
  EXPECT_TRUE(same_content((*list)[0].disks[0].path, versions[2]));
  EXPECT_TRUE(same_content((*list)[1].disks[0].path, versions[3]));
}

TEST_F(BuiltinReplicatorTest, TestCopyIsWritableAndLeavesThePitAlone) {
  write(0, 1 << 20, 0x21);
  std::string v1 = snapshot("v1");
  auto pit = replicator_->sync_over(*channel_, spec_, nullptr);
  ASSERT_TRUE(pit.is_ok());
  auto copy = replicator_->create_test_copy("g1", pit->id);
  ASSERT_TRUE(copy.is_ok()) << copy.status().to_string();
  ASSERT_EQ(copy->disks.size(), 1u);
  auto w = run_command({"/usr/bin/qemu-io", "-f", "qcow2", "-c", "write -P 0x99 0 65536", copy->disks[0].path});
  ASSERT_EQ(w.exit_code, 0) << w.err;
  EXPECT_FALSE(same_content(copy->disks[0].path, v1));
  EXPECT_TRUE(same_content(pit->disks[0].path, v1));
  EXPECT_TRUE(replicator_->drop_test_copy("g1", copy->id).is_ok());
  EXPECT_FALSE(fs::exists(copy->disks[0].path));
}

unsigned mode_of(const fs::path& p) {
  struct stat st {};
  EXPECT_EQ(::lstat(p.c_str(), &st), 0) << p;
  return st.st_mode & 07777;
}

// Replicas, PITs, test copies and recovered disks are evacd's alone whatever
// the umask and however open the source disk is; their folders let QEMU
// (libvirt's unprivileged user, handed each image by libvirt) pass, never list.
TEST_F(BuiltinReplicatorTest, ReplicasAreOwnerOnlyWhateverTheUmaskAndTheSourcesMode) {
  fs::permissions(source_, fs::perms(0644));
  struct OpenUmask {
    mode_t old = ::umask(0);
    ~OpenUmask() { ::umask(old); }
  } open_to_all;
  write(0, 1 << 20, 0x31);
  auto first = replicator_->sync_over(*channel_, spec_, nullptr);  // written straight into the image
  ASSERT_TRUE(first.is_ok()) << first.status().to_string();
  write(8 << 20, 1 << 20, 0x32);
  auto second = replicator_->sync_over(*channel_, spec_, nullptr);  // through qemu-nbd into an overlay
  ASSERT_TRUE(second.is_ok()) << second.status().to_string();
  auto copy = replicator_->create_test_copy("g1", first->id, "test-run");
  ASSERT_TRUE(copy.is_ok()) << copy.status().to_string();
  auto recovered = replicator_->failover("g1", second->id, "failover-run");
  ASSERT_TRUE(recovered.is_ok()) << recovered.status().to_string();
  ASSERT_FALSE(recovered->disks.empty());
  EXPECT_TRUE(recovered->live);

  const fs::path pits = root_ / "replicas" / ".evac-pits";
  EXPECT_EQ(mode_of(pits), 0711u);
  std::set<std::string> seen;
  for (const auto& e : fs::recursive_directory_iterator(pits)) {
    EXPECT_EQ(mode_of(e.path()), e.is_directory() ? 0711u : 0600u) << e.path();
    seen.insert(e.path().string());
  }
  for (const auto& path : {first->disks[0].path, second->disks[0].path, copy->disks[0].path, recovered->disks[0].path})
    EXPECT_TRUE(seen.count(path)) << path << " is under " << pits;
  for (const auto& folder : {pits / "test-copies", pits / "recovered"}) EXPECT_TRUE(seen.count(folder.string())) << folder;
  EXPECT_EQ(mode_of(root_ / "index" / "g1.pits.json"), 0600u);
  EXPECT_EQ(mode_of(source_), 0644u) << "the source is never changed";
}

TEST_F(BuiltinReplicatorTest, RefusesWhatItCannotDoYet) {
  spec_.vms[0].state = PowerState::kRunning;
  auto running = replicator_->sync_over(*channel_, spec_, nullptr);
  EXPECT_EQ(running.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(running.status().message().find("web01"), std::string::npos);
  spec_.vms[0].state = PowerState::kShutOff;

  spec_.replica_dirs.clear();
  EXPECT_EQ(replicator_->sync_over(*channel_, spec_, nullptr).status().code(), StatusCode::kFailedPrecondition);
  spec_.replica_dirs = {{"images", (root_ / "replicas").string()}};

  spec_.vms[0].disks[0].path = (root_ / "source" / "missing.qcow2").string();
  EXPECT_EQ(replicator_->sync_over(*channel_, spec_, nullptr).status().code(), StatusCode::kNotFound);
  spec_.vms[0].disks[0].path = source_;

  ASSERT_TRUE(replicator_->sync_over(*channel_, spec_, nullptr).is_ok());
  ASSERT_EQ(qemu_img({"resize", "-q", "-f", "qcow2", source_, "128M"}), 0);
  auto resized = replicator_->sync_over(*channel_, spec_, nullptr);
  EXPECT_EQ(resized.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(resized.status().message().find("changed size"), std::string::npos);
  EXPECT_EQ(replicator_->list_pits("g1")->size(), 1u);
}

TEST_F(BuiltinReplicatorTest, ProgressReachesTheWholeDisk) {
  write(0, 1 << 20, 0x31);
  SyncProgress last;
  int reports = 0;
  ASSERT_TRUE(replicator_->sync_over(*channel_, spec_, [&](const SyncProgress& p) {
                            last = p;
                            ++reports;
                          }).is_ok());
  EXPECT_GT(reports, 1);
  EXPECT_EQ(last.bytes_total, 64u << 20);
  EXPECT_EQ(last.bytes_scanned, last.bytes_total);
  EXPECT_GT(last.bytes_sent, 0u);
}


TEST_F(BuiltinReplicatorTest, VerifyFindsABlockAlteredInAReplica) {
  write(0, 4 << 20, 0x71);
  auto pit1 = replicator_->sync_over(*channel_, spec_, nullptr);
  ASSERT_TRUE(pit1.is_ok());
  write(16 << 20, 1 << 20, 0x72);
  auto pit2 = replicator_->sync_over(*channel_, spec_, nullptr);
  ASSERT_TRUE(pit2.is_ok());
  for (const auto& id : {pit1->id, pit2->id}) {
    auto v = replicator_->verify_pit("g1", id);
    ASSERT_TRUE(v.is_ok()) << v.status().to_string();
    EXPECT_TRUE(v->ok());
    ASSERT_EQ(v->disks.size(), 1u);
    EXPECT_EQ(v->disks[0].blocks_checked, (64u << 20) / kBlockSize);
  }
  // Bit rot (or a hand) alters the newest replica outside evac.
  auto r = run_command({"/usr/bin/qemu-io", "-f", "qcow2", "-c", "write -P 0x99 3145728 4096", pit2->disks[0].path});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto newest = replicator_->verify_pit("g1", "");
  ASSERT_TRUE(newest.is_ok()) << newest.status().to_string();
  EXPECT_EQ(newest->pit_id, pit2->id);
  EXPECT_FALSE(newest->ok());
  EXPECT_EQ(newest->disks[0].blocks_mismatched, 1u);
  EXPECT_EQ(newest->disks[0].first_mismatches, std::vector<std::uint64_t>{3u << 20});
  EXPECT_TRUE(replicator_->verify_pit("g1", pit1->id)->ok()) << "the older PIT is untouched";
  EXPECT_EQ(replicator_->verify_pit("g1", "pit-nope").status().code(), StatusCode::kNotFound);

  // The next cycle sends the damaged block again although the source did
  // not change, and its PIT verifies; the damaged PIT itself stays as it is.
  channel_->wire_bytes = 0;
  auto pit3 = replicator_->sync_over(*channel_, spec_, nullptr);
  ASSERT_TRUE(pit3.is_ok()) << pit3.status().to_string();
  EXPECT_GT(channel_->wire_bytes.load(), 0u);
  EXPECT_LE(channel_->wire_bytes.load(), 2 * kBlockSize);
  EXPECT_TRUE(same_content(pit3->disks[0].path, snapshot("now")));
  EXPECT_TRUE(replicator_->verify_pit("g1", "")->ok());
  channel_->wire_bytes = 0;
  ASSERT_TRUE(replicator_->sync_over(*channel_, spec_, nullptr).is_ok());
  EXPECT_EQ(channel_->wire_bytes.load(), 0u) << "once repaired, nothing is sent again";
}

TEST_F(BuiltinReplicatorTest, APitOfAnOlderEvacStillVerifiesAndItsBlocksAreSentOnceMore) {
  write(0, 4 << 20, 0x71);
  write_random(8 << 20, 1 << 20);
  auto pit1 = replicator_->sync_over(*channel_, spec_, nullptr);
  ASSERT_TRUE(pit1.is_ok()) << pit1.status().to_string();
  // Make pit1 what an evac before the leaf hashes left: a manifest ("EVM1")
  // of plain SHA-256s of whole blocks, computed here from its image.
  std::string raw = snapshot_of(pit1->disks[0].path, "qcow2", "pit1");
  std::ifstream in(raw, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  Manifest old;
  old.scheme = HashScheme::kSha256;
  old.disk_size = bytes.size();
  for (std::size_t at = 0; at < bytes.size(); at += kBlockSize)
    old.hashes.push_back(sha256(bytes.data() + at, std::min(kBlockSize, bytes.size() - at)));
  std::string manifest_path = pit1->disks[0].path.substr(0, pit1->disks[0].path.size() - 6) + ".manifest";
  ASSERT_TRUE(fs::exists(manifest_path)) << manifest_path;
  std::ofstream(manifest_path, std::ios::binary | std::ios::trunc) << old.encode();

  auto v1 = replicator_->verify_pit("g1", pit1->id);
  ASSERT_TRUE(v1.is_ok()) << v1.status().to_string();
  EXPECT_TRUE(v1->ok()) << "an old PIT is verified in its own scheme";
  EXPECT_EQ(v1->disks[0].blocks_checked, (64u << 20) / kBlockSize);

  // Hashes of two schemes cannot be compared: the next cycle sends every
  // block once (the random MiB at least), and its PIT is in the new scheme.
  channel_->wire_bytes = 0;
  auto pit2 = replicator_->sync_over(*channel_, spec_, nullptr);
  ASSERT_TRUE(pit2.is_ok()) << pit2.status().to_string();
  EXPECT_GE(channel_->wire_bytes.load(), 1u << 20);
  EXPECT_TRUE(same_content(pit2->disks[0].path, snapshot("now")));
  std::string manifest2_path = pit2->disks[0].path.substr(0, pit2->disks[0].path.size() - 6) + ".manifest";
  std::ifstream in2(manifest2_path, std::ios::binary);
  std::string magic(4, '\0');
  in2.read(magic.data(), 4);
  EXPECT_EQ(magic, "EVM2");
  EXPECT_TRUE(replicator_->verify_pit("g1", pit2->id)->ok());
  channel_->wire_bytes = 0;
  ASSERT_TRUE(replicator_->sync_over(*channel_, spec_, nullptr).is_ok());
  EXPECT_EQ(channel_->wire_bytes.load(), 0u) << "from then on only changes travel";
}

TEST_F(BuiltinReplicatorTest, AFullRecoveryDiskFailsTheCycleAndKeepsTheLastPit) {
  if (::geteuid() != 0) GTEST_SKIP() << "mounting a small filesystem needs root";
  fs::path small = root_ / "small";
  fs::create_directories(small);
  ASSERT_EQ(run_command({"/bin/mount", "-t", "tmpfs", "-o", "size=24M", "tmpfs", small.string()}).exit_code, 0);
  struct Unmount {
    fs::path p;
    ~Unmount() { run_command({"/bin/umount", "-l", p.string()}); }
  } unmount{small};
  spec_.replica_dirs = {{"images", small.string()}};

  write(0, 8 << 20, 0x81);
  std::string v1 = snapshot("v1");
  auto pit1 = replicator_->sync_over(*channel_, spec_, nullptr);
  ASSERT_TRUE(pit1.is_ok()) << pit1.status().to_string();

  write(8 << 20, 40 << 20, 0x82);  // more than the folder has room for
  auto full = replicator_->sync_over(*channel_, spec_, nullptr);
  ASSERT_FALSE(full.is_ok());
  EXPECT_NE(full.status().to_string().find("full"), std::string::npos) << full.status().to_string();
  auto pits = replicator_->list_pits("g1");
  ASSERT_TRUE(pits.is_ok());
  ASSERT_EQ(pits->size(), 1u) << "the failed cycle made no PIT";
  EXPECT_TRUE(same_content(pits->back().disks[0].path, v1)) << "the last PIT is intact";
  EXPECT_TRUE(replicator_->verify_pit("g1", pit1->id)->ok());
  for (const auto& e : fs::recursive_directory_iterator(small))
    EXPECT_EQ(e.path().string().find("staging"), std::string::npos) << "left behind: " << e.path();
}

// A sender that dies mid-way through a seeded first cycle never aborts it:
// the receiver keeps it open, with the blocks it applied, until the next
// cycle begins. That next cycle asks for each disk's manifest before it
// begins (the dead cycle is still open then), and its own begin restages
// from the seed: it must compare against the seed, not the dead cycle's
// blocks, or its commit cannot match (found by e2e chaos, a reprotect's
// first cycle back with evacd killed mid-cycle).
TEST_F(BuiltinReplicatorTest, ACycleAfterASeededOneThatDiedOpenComparesAgainstTheSeed) {
  write_random(0, 16 << 20);
  fs::path seed = root_ / "replicas" / "web01.qcow2";
  ASSERT_EQ(qemu_img({"convert", "-O", "raw", source_, seed.string()}), 0);
  write_random(4 << 20, 12 << 20);  // two batches' worth differs from the seed
  std::string v1 = snapshot("v1");

  channel_->cut_after_batches = 1;  // the first batch is applied, then the sender is gone
  channel_->drop_aborts = true;
  ASSERT_FALSE(replicator_->sync_over(*channel_, spec_, nullptr).is_ok());
  channel_->cut_after_batches = -1;
  channel_->drop_aborts = false;

  auto pit = replicator_->sync_over(*channel_, spec_, nullptr);
  ASSERT_TRUE(pit.is_ok()) << pit.status().to_string();
  EXPECT_TRUE(same_content(pit->disks[0].path, v1));
  EXPECT_TRUE(replicator_->verify_pit("g1", "")->ok());
}

TEST_F(BuiltinReplicatorTest, AFirstCycleStartsFromASeedAlreadyAtTheRecoverySite) {
  write_random(0, 16 << 20);
  write_random(32 << 20, 8 << 20);
  // An older copy of the disk reached the recovery site some other way (a
  // shipped drive, a restore), where the placeholder expects it; since
  // then the source changed 1 MiB.
  fs::path seed = root_ / "replicas" / "web01.qcow2";
  ASSERT_EQ(qemu_img({"convert", "-O", "raw", source_, seed.string()}), 0);
  write_random(4 << 20, 1 << 20);
  std::string v1 = snapshot("v1");
  std::string seed_before = snapshot_of(seed.string(), "raw", "seed-before");

  auto pit = replicator_->sync_over(*channel_, spec_, nullptr);
  ASSERT_TRUE(pit.is_ok()) << pit.status().to_string();
  EXPECT_TRUE(same_content(pit->disks[0].path, v1));
  EXPECT_LE(channel_->wire_bytes.load(), (1u << 20) * 105 / 100) << "only what differs from the seed travels";
  EXPECT_TRUE(same_content(seed.string(), seed_before)) << "the seed itself is left alone";
  EXPECT_TRUE(replicator_->verify_pit("g1", "")->ok());

  // A seed of another size is passed over: the disk is sent whole.
  fs::remove_all(root_ / "replicas" / ".evac-pits");
  ASSERT_TRUE(fs::remove(root_ / "index" / "g1.pits.json"));
  auto fresh_receiver_pits = std::make_unique<PitStore>((root_ / "index").string());
  ASSERT_EQ(qemu_img({"resize", "--shrink", "-q", "-f", "raw", seed.string(), "32M"}), 0);
  receiver_ = std::make_unique<ReplicaReceiver>(*fresh_receiver_pits);
  channel_ = std::make_unique<LoopbackChannel>(*receiver_);
  replicator_ = std::make_unique<BuiltinReplicator>(receiver_.get());
  auto whole = replicator_->sync_over(*channel_, spec_, nullptr);
  ASSERT_TRUE(whole.is_ok()) << whole.status().to_string();
  EXPECT_TRUE(same_content(whole->disks[0].path, v1));
  EXPECT_GE(channel_->wire_bytes.load(), 24u << 20) << "all 24 MiB of data travel";
  replicator_.reset();
  channel_.reset();
  receiver_.reset();
  pits_ = std::move(fresh_receiver_pits);
}

// ---- running VMs --------------------------------------------------------------------------

// Change tracking that serves each "running" VM's image through a read-only
// qemu-nbd as the backup export, so the replicator's live path (freeze,
// checkpoints, journal, cleanup) runs for real without a QEMU guest. It has
// no change maps: a request for changes since a checkpoint is refused the
// way libvirt refuses a checkpoint that does not track a disk, and the
// replicator falls back to reading whole disks. Incremental reads against
// real dirty bitmaps are proven with QEMU guests in tests/e2e.
class FakeChangeTracking : public ChangeTracking {
 public:
  std::map<std::string, std::string> images;  // vm uuid -> qcow2 image
  std::map<std::string, std::vector<std::string>> checkpoints;
  std::set<std::string> paused;
  std::set<std::string> fail_begin;  // vm uuids whose backup start fails
  std::set<std::string> fail_end;    // vm uuids whose backup end fails (a hypervisor that stopped answering)
  std::set<std::string> hang_after_begin;  // vm uuids whose hypervisor stops answering once their backup began
  std::vector<std::string> events;   // "pause <uuid>", "begin <uuid> since=<cp>", ...
  std::mutex mu;

  Status pause(const std::string& vm) override {
    std::lock_guard lock(mu);
    events.push_back("pause " + vm);
    paused.insert(vm);
    return Status::ok();
  }
  Status resume(const std::string& vm) override {
    std::lock_guard lock(mu);
    events.push_back("resume " + vm);
    paused.erase(vm);
    return Status::ok();
  }
  Result<bool> is_paused(const std::string& vm) override {
    std::lock_guard lock(mu);
    return paused.count(vm) > 0;
  }
  Result<BackupExport> begin_backup(const BackupRequest& r) override {
    std::lock_guard lock(mu);
    std::string since = r.disks.empty() ? "" : r.disks[0].since_checkpoint;
    events.push_back("begin " + r.vm_uuid + " since=" + since);
    if (fail_begin.count(r.vm_uuid)) return unavailable("backup refused (test)");
    if (exports.count(r.vm_uuid)) return failed_precondition("VM already has a backup job (test)");
    if (!since.empty()) return invalid_argument("checkpoint " + since + " does not track disk vda (test)");
    auto exp = start_export(images.at(r.vm_uuid));
    if (!exp) return exp.status();
    checkpoints[r.vm_uuid].push_back(r.checkpoint);
    if (hang_after_begin.count(r.vm_uuid)) fail_end.insert(r.vm_uuid);
    BackupExport out{(*exp)->socket_path(), {}};
    for (const auto& d : r.disks) out.disks.push_back(DiskExport{d.disk, "", ""});
    exports[r.vm_uuid] = std::move(*exp);
    return out;
  }
  Status end_backup(const std::string& vm, const std::string&) override {
    std::lock_guard lock(mu);
    if (fail_end.count(vm)) {
      events.push_back("end refused " + vm);
      return unavailable("libvirtd has not answered (test)");
    }
    if (exports.erase(vm) > 0) events.push_back("end " + vm);  // ending none succeeds, and ends nothing
    return Status::ok();
  }
  Result<std::vector<std::string>> list_checkpoints(const std::string& vm) override {
    std::lock_guard lock(mu);
    return checkpoints[vm];
  }
  Status delete_checkpoint(const std::string& vm, const std::string& name) override {
    std::lock_guard lock(mu);
    events.push_back("delete " + vm + " " + name);
    auto& cps = checkpoints[vm];
    cps.erase(std::remove(cps.begin(), cps.end(), name), cps.end());
    return Status::ok();
  }
  std::size_t count(const std::string& prefix) {
    std::lock_guard lock(mu);
    return std::count_if(events.begin(), events.end(), [&](const std::string& e) { return e.rfind(prefix, 0) == 0; });
  }

  ~FakeChangeTracking() {
    {
      std::lock_guard lock(launch_mu_);
      stop_ = true;
    }
    launch_cv_.notify_all();
    launcher_.join();
  }

 private:
  // QEMU serves a real backup export itself. This fake's qemu-nbd is our
  // child and dies with the thread that started it (PR_SET_PDEATHSIG), while
  // the replicator may begin backups on a short-lived thread: the exports
  // are started on one that lives as long as the fake.
  Result<std::unique_ptr<NbdExport>> start_export(const std::string& image) {
    std::packaged_task<Result<std::unique_ptr<NbdExport>>()> task(
        [image] { return NbdExport::start(image, "qcow2", NbdExport::Mode::kReadOnly); });
    auto result = task.get_future();
    {
      std::lock_guard lock(launch_mu_);
      launches_.push_back(std::move(task));
    }
    launch_cv_.notify_all();
    return result.get();
  }
  void launch_loop() {
    std::unique_lock lock(launch_mu_);
    while (true) {
      launch_cv_.wait(lock, [&] { return stop_ || !launches_.empty(); });
      if (launches_.empty()) return;
      auto task = std::move(launches_.front());
      launches_.pop_front();
      lock.unlock();
      task();
      lock.lock();
    }
  }

  std::map<std::string, std::unique_ptr<NbdExport>> exports;
  std::mutex launch_mu_;
  std::condition_variable launch_cv_;
  std::deque<std::packaged_task<Result<std::unique_ptr<NbdExport>>()>> launches_;
  bool stop_ = false;
  std::thread launcher_{[this] { launch_loop(); }};
};

// The storage half of a fence: a fenced copy's image files get the
// immutable attribute, so nothing (QEMU run as root included) opens them
// for writing, while they still serve as the seeds of a reprotect's first
// cycle back; a recovery that moves the VMs onto new disks releases them.
TEST_F(BuiltinReplicatorTest, AFencedSourceIsReadOnlyStillSeedsAndIsReleasedAgain) {
  EXPECT_TRUE(replicator_->capabilities().read_only_source);
  write_random(0, 4 << 20);
  auto probe = is_immutable(source_);
  if (probe.status().code() == StatusCode::kUnsupported) GTEST_SKIP() << probe.status().to_string();
  // Readiness asks first, changing nothing.
  EXPECT_TRUE(replicator_->check_read_only_source(spec_).is_ok());
  EXPECT_FALSE(*is_immutable(source_));
  ReplicationGroupSpec device = spec_;
  device.vms[0].disks[0].path = "/dev/null";
  Status no = replicator_->check_read_only_source(device);
  EXPECT_EQ(no.code(), StatusCode::kUnsupported) << no.to_string();
  EXPECT_NE(no.message().find("disk vda of VM 'web01': /dev/null is not a regular file"), std::string::npos) << no.to_string();

  ASSERT_TRUE(replicator_->prepare_failover(spec_).is_ok());
  ASSERT_TRUE(*is_immutable(source_));
  auto refused = run_command({"/usr/bin/qemu-io", "-f", "qcow2", "-c", "write -P 7 0 65536", source_});
  EXPECT_NE(refused.exit_code, 0) << refused.out;
  EXPECT_NE((refused.out + refused.err).find("Operation not permitted"), std::string::npos) << refused.out << refused.err;
  EXPECT_TRUE(replicator_->prepare_failover(spec_).is_ok()) << "asked again, it is so already";

  // Read-only, it is still a seed: the copy at the recovery site starts from it.
  fs::path seed = root_ / "replicas" / "web01.qcow2";
  ASSERT_EQ(qemu_img({"convert", "-O", "raw", source_, seed.string()}), 0);
  ReplicationGroupSpec seed_spec = spec_;
  seed_spec.vms[0].disks[0] = DiskInfo{"vda", seed.string(), "raw", "virtio", "disk", "replicas"};
  ASSERT_TRUE(replicator_->prepare_failover(seed_spec).is_ok());
  auto pit = replicator_->sync_over(*channel_, spec_, nullptr);
  ASSERT_TRUE(pit.is_ok()) << pit.status().to_string();
  EXPECT_LE(channel_->wire_bytes.load(), 64u << 10) << "nothing differs from the frozen seed";
  EXPECT_TRUE(replicator_->verify_pit("g1", "")->ok());

  // A VM still running keeps its open descriptors: refused, left as it is.
  ReplicationGroupSpec running = spec_;
  running.vms[0].state = PowerState::kRunning;
  running.vms[0].disks[0].path = (root_ / "replicas" / "other.qcow2").string();
  ASSERT_EQ(qemu_img({"create", "-q", "-f", "qcow2", running.vms[0].disks[0].path, "1M"}), 0);
  Status st = replicator_->prepare_failover(running);
  EXPECT_EQ(st.code(), StatusCode::kFailedPrecondition) << st.to_string();
  EXPECT_NE(st.message().find("while web01 runs"), std::string::npos) << st.to_string();
  EXPECT_NE(st.hint().find("power them off at site 'site-a'"), std::string::npos) << st.to_string();
  EXPECT_FALSE(*is_immutable(running.vms[0].disks[0].path));

  // Released: writable again; again, or on a file gone, it is a no-op.
  ASSERT_TRUE(replicator_->release_source(spec_).is_ok());
  ASSERT_TRUE(replicator_->release_source(seed_spec).is_ok());
  EXPECT_FALSE(*is_immutable(source_));
  write(0, 65536, 7);
  EXPECT_TRUE(replicator_->release_source(spec_).is_ok());
  ReplicationGroupSpec gone = spec_;
  gone.vms[0].disks[0].path = (root_ / "source" / "gone.qcow2").string();
  EXPECT_TRUE(replicator_->release_source(gone).is_ok());
  EXPECT_TRUE(replicator_->prepare_failover(gone).is_ok()) << "a disk already gone has nothing to protect";
}

class RunningVmReplicationTest : public BuiltinReplicatorTest {
 protected:
  void SetUp() override {
    BuiltinReplicatorTest::SetUp();
    work_ = (root_ / "backup").string();
    SyncOptions options;
    options.work_dir = work_;
    replicator_ = std::make_unique<BuiltinReplicator>(
        receiver_.get(), [this](const std::string& provider) -> ChangeTracking* {
          return provider == "kvm-a" ? &tracking_ : nullptr;
        },
        options);
    spec_.vms[0].provider = "kvm-a";
    spec_.vms[0].state = PowerState::kRunning;
    tracking_.images[spec_.vms[0].uuid] = source_;
  }
  // A second running VM in the group, with its own image.
  std::string add_vm() {
    std::string image = (root_ / "source" / "db01.qcow2").string();
    EXPECT_EQ(qemu_img({"create", "-q", "-f", "qcow2", image, "16M"}), 0);
    VmInfo vm = spec_.vms[0];
    vm.name = "db01";
    vm.uuid = "66666666-7777-4888-8999-000000000000";
    vm.disks[0].path = image;
    spec_.vms.push_back(vm);
    tracking_.images[vm.uuid] = image;
    return vm.uuid;
  }
  std::string work_;
  FakeChangeTracking tracking_;
};

TEST_F(RunningVmReplicationTest, FreezesThenReadsTheExportAndKeepsOneCheckpoint) {
  std::string db01 = add_vm();
  std::string web01 = spec_.vms[0].uuid;
  write(0, 1 << 20, 0x61);
  std::string v1 = snapshot("v1");
  auto pit1 = replicator_->sync_over(*channel_, spec_, nullptr);
  ASSERT_TRUE(pit1.is_ok()) << pit1.status().to_string();
  EXPECT_TRUE(same_content(pit1->disks[0].path, v1));
  // One instant for the group: every VM paused before any backup starts,
  // resumed only after all have started.
  ASSERT_GE(tracking_.events.size(), 6u);
  EXPECT_EQ(tracking_.events[0], "pause " + web01);
  EXPECT_EQ(tracking_.events[1], "pause " + db01);
  EXPECT_EQ(tracking_.events[2], "begin " + web01 + " since=");
  EXPECT_EQ(tracking_.events[3], "begin " + db01 + " since=");
  EXPECT_EQ(tracking_.events[4], "resume " + web01);
  EXPECT_EQ(tracking_.events[5], "resume " + db01);
  EXPECT_EQ(tracking_.checkpoints[web01], std::vector<std::string>{"evac-" + pit1->cycle_id});
  EXPECT_TRUE(tracking_.paused.empty());
  EXPECT_EQ(tracking_.count("end "), 2u);

  // The next cycle asks for the changes since the committed checkpoint; this
  // fake has no change maps, so it reads whole disks, ships only what differs,
  // and ends with the new checkpoint alone.
  write(8 << 20, 1 << 20, 0x62);
  std::string v2 = snapshot("v2");
  tracking_.events.clear();
  channel_->wire_bytes = 0;
  auto pit2 = replicator_->sync_over(*channel_, spec_, nullptr);
  ASSERT_TRUE(pit2.is_ok()) << pit2.status().to_string();
  EXPECT_TRUE(same_content(pit2->disks[0].path, v2));
  EXPECT_EQ(tracking_.count("begin " + web01 + " since=evac-" + pit1->cycle_id), 1u);
  EXPECT_EQ(tracking_.checkpoints[web01], std::vector<std::string>{"evac-" + pit2->cycle_id});
  EXPECT_LE(channel_->wire_bytes.load(), (1u << 20) * 105 / 100);
  EXPECT_TRUE(fs::is_empty(work_)) << "no export folder or journal is left behind";
}

// A periodic full read trusts no change tracking: the backup is asked for
// no changes since the committed checkpoint, every block is hashed against
// the replica, and still only what differs travels.
TEST_F(RunningVmReplicationTest, AFullReadAsksForNoChangesAndStillSendsOnlyWhatDiffers) {
  std::string web01 = spec_.vms[0].uuid;
  write_random(0, 2 << 20);
  auto pit1 = replicator_->sync_over(*channel_, spec_, nullptr);
  ASSERT_TRUE(pit1.is_ok()) << pit1.status().to_string();
  EXPECT_TRUE(pit1->full_read) << "a first cycle reads every block";

  write_random(16 << 20, 1 << 20);
  std::string v2 = snapshot("v2");
  tracking_.events.clear();
  channel_->wire_bytes = 0;
  ReplicationGroupSpec full = spec_;
  full.full_read = true;
  auto pit2 = replicator_->sync_over(*channel_, full, nullptr);
  ASSERT_TRUE(pit2.is_ok()) << pit2.status().to_string();
  EXPECT_TRUE(pit2->full_read);
  EXPECT_EQ(tracking_.count("begin " + web01 + " since=evac-"), 0u) << "no base checkpoint is trusted";
  EXPECT_EQ(tracking_.count("begin " + web01 + " since="), 1u);
  EXPECT_TRUE(same_content(pit2->disks[0].path, v2));
  EXPECT_LE(channel_->wire_bytes.load(), (1u << 20) * 105 / 100) << "only the changed MiB travels";
  EXPECT_EQ(tracking_.checkpoints[web01], std::vector<std::string>{"evac-" + pit2->cycle_id})
      << "the chain of checkpoints goes on from the full read's";
  EXPECT_TRUE(replicator_->verify_pit("g1", "")->ok());
}

// Seen once in CI: a backup job outlived its cycle, and the next cycle's
// backup was refused. A cycle now ends any job of ours first.
TEST_F(RunningVmReplicationTest, ABackupJobLeftByAnEarlierCycleIsEndedFirst) {
  std::string web01 = spec_.vms[0].uuid;
  auto left = tracking_.begin_backup(BackupRequest{web01, "evac-stale", {{"vda", "", true}}, work_ + "/stale"});
  ASSERT_TRUE(left.is_ok()) << left.status().to_string();
  tracking_.events.clear();
  auto pit = replicator_->sync_over(*channel_, spec_, nullptr);
  ASSERT_TRUE(pit.is_ok()) << pit.status().to_string();
  ASSERT_GE(tracking_.events.size(), 3u);
  EXPECT_EQ(tracking_.events[0], "end " + web01) << "the stale job goes first";
  EXPECT_EQ(tracking_.events[1], "delete " + web01 + " evac-stale") << "then its checkpoint, of no committed cycle";
  EXPECT_EQ(tracking_.events[2], "pause " + web01);
}

TEST_F(RunningVmReplicationTest, AFailedBackupStartResumesEveryVmAndLeavesNoCheckpoint) {
  std::string db01 = add_vm();
  std::string web01 = spec_.vms[0].uuid;
  tracking_.fail_begin.insert(db01);
  auto r = replicator_->sync_over(*channel_, spec_, nullptr);
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("db01"), std::string::npos) << r.status().to_string();
  EXPECT_TRUE(tracking_.paused.empty()) << "every paused VM is resumed";
  EXPECT_TRUE(tracking_.checkpoints[web01].empty()) << "the failed cycle's checkpoint is dropped";
  EXPECT_EQ(tracking_.count("end " + web01), 1u);
  auto pits = replicator_->list_pits("g1");
  EXPECT_TRUE(!pits.is_ok() || pits->empty()) << "no point in time was made";
  EXPECT_TRUE(fs::is_empty(work_));
}

TEST_F(RunningVmReplicationTest, ACycleCutShortByACrashIsUndoneByTheNext) {
  std::string web01 = spec_.vms[0].uuid;
  // What a process killed between pause and resume leaves: a journal, a
  // paused VM, an export folder and the cycle's checkpoint.
  fs::create_directories(fs::path(work_) / "deadbeef");
  std::ofstream(fs::path(work_) / "cycle-1-abc.cycle.json")
      << R"({"group":"g1","cycle":"cycle-1-abc","vms":[{"uuid":")" << web01
      << R"(","provider":"kvm-a","work_dir":")" << work_ << R"(/deadbeef","pause":true}]})";
  tracking_.paused.insert(web01);
  tracking_.checkpoints[web01] = {"evac-cycle-1-abc"};

  // evacd's start does this before any sync.
  ASSERT_TRUE(recover_interrupted_cycles(work_, "", [this](const std::string&) -> ChangeTracking* {
                return &tracking_;
              }).is_ok());
  EXPECT_TRUE(tracking_.paused.empty());
  EXPECT_TRUE(tracking_.checkpoints[web01].empty());
  EXPECT_TRUE(fs::is_empty(work_));

  // A checkpoint of a cycle that never committed is no base for the next.
  tracking_.checkpoints[web01] = {"evac-cycle-never-committed"};
  tracking_.events.clear();
  auto pit = replicator_->sync_over(*channel_, spec_, nullptr);
  ASSERT_TRUE(pit.is_ok()) << pit.status().to_string();
  EXPECT_EQ(tracking_.count("delete " + web01 + " evac-cycle-never-committed"), 1u);
  EXPECT_EQ(tracking_.count("begin " + web01 + " since=evac"), 0u);
  EXPECT_EQ(tracking_.checkpoints[web01], std::vector<std::string>{"evac-" + pit->cycle_id});
}

// Seen in CI: libvirtd stopped answering once the guests' instant was
// captured and their disks were being read over NBD (QEMU serves them, not
// libvirtd). The PIT is whole: it commits, the caller hears what was left,
// and the next cycle ends the job and goes on from the new checkpoint.
TEST_F(RunningVmReplicationTest, LibvirtLostAfterCaptureCommits) {
  std::string db01 = add_vm();
  std::string web01 = spec_.vms[0].uuid;
  write_random(0, 2 << 20);
  auto pit1 = replicator_->sync_over(*channel_, spec_, nullptr);
  ASSERT_TRUE(pit1.is_ok()) << pit1.status().to_string();
  EXPECT_TRUE(pit1->warnings.empty());

  write_random(4 << 20, 1 << 20);
  std::string v2 = snapshot("v2");
  tracking_.hang_after_begin.insert(web01);
  tracking_.hang_after_begin.insert(db01);
  tracking_.events.clear();
  auto pit2 = replicator_->sync_over(*channel_, spec_, nullptr);
  ASSERT_TRUE(pit2.is_ok()) << pit2.status().to_string();
  EXPECT_EQ(tracking_.count("end refused "), 1u) << "a hypervisor that did not answer is not asked again";
  EXPECT_TRUE(same_content(pit2->disks[0].path, v2));
  ASSERT_EQ(pit2->warnings.size(), 1u);
  EXPECT_NE(pit2->warnings[0].find("web01"), std::string::npos) << pit2->warnings[0];
  EXPECT_NE(pit2->warnings[0].find("has not answered"), std::string::npos) << pit2->warnings[0];
  EXPECT_FALSE(fs::is_empty(work_)) << "the journal stays for the next cycle";
  EXPECT_TRUE(tracking_.paused.empty());

  // Hours later a restart of evacd undoes what the journal names: it must
  // keep the committed cycle's checkpoint, the replicas' base now.
  tracking_.hang_after_begin.clear();
  tracking_.fail_end.clear();
  ASSERT_TRUE(recover_interrupted_cycles(work_, "", [this](const std::string&) -> ChangeTracking* {
                return &tracking_;
              }).is_ok());
  EXPECT_EQ(tracking_.count("delete " + web01 + " evac-" + pit2->cycle_id), 0u);
  EXPECT_EQ(tracking_.checkpoints[web01].back(), "evac-" + pit2->cycle_id);
  EXPECT_EQ(tracking_.checkpoints[db01].back(), "evac-" + pit2->cycle_id);

  tracking_.events.clear();
  auto pit3 = replicator_->sync_over(*channel_, spec_, nullptr);
  ASSERT_TRUE(pit3.is_ok()) << pit3.status().to_string();
  EXPECT_TRUE(pit3->warnings.empty());
  EXPECT_EQ(tracking_.count("begin " + web01 + " since=evac-" + pit2->cycle_id), 1u)
      << "the next cycle goes on from the committed checkpoint";
  EXPECT_EQ(tracking_.checkpoints[web01], std::vector<std::string>{"evac-" + pit3->cycle_id});
  EXPECT_EQ(tracking_.checkpoints[db01], std::vector<std::string>{"evac-" + pit3->cycle_id});
  EXPECT_TRUE(fs::is_empty(work_));
  EXPECT_TRUE(replicator_->verify_pit("g1", "")->ok());
}

TEST_F(RunningVmReplicationTest, ALinkCutMidCycleLeavesTheLastPitAndTheVmRunning) {
  std::string web01 = spec_.vms[0].uuid;
  write_random(0, 8 << 20);
  auto pit1 = replicator_->sync_over(*channel_, spec_, nullptr);
  ASSERT_TRUE(pit1.is_ok()) << pit1.status().to_string();
  std::string v1 = snapshot("v1");

  write_random(16 << 20, 24 << 20);
  channel_->cut_after_batches = channel_->batches + 1;  // the second batch of the next cycle never arrives
  auto cut = replicator_->sync_over(*channel_, spec_, nullptr);
  ASSERT_FALSE(cut.is_ok());
  EXPECT_TRUE(tracking_.paused.empty()) << "the VM runs on";
  EXPECT_EQ(tracking_.checkpoints[web01], std::vector<std::string>{"evac-" + pit1->cycle_id})
      << "the cut cycle's checkpoint is gone; the committed one stays the base";
  auto pits = replicator_->list_pits("g1");
  ASSERT_TRUE(pits.is_ok());
  ASSERT_EQ(pits->size(), 1u);
  EXPECT_TRUE(same_content(pits->back().disks[0].path, v1)) << "the last complete PIT is intact";
  EXPECT_TRUE(fs::is_empty(work_));

  channel_->cut_after_batches = -1;
  auto pit2 = replicator_->sync_over(*channel_, spec_, nullptr);
  ASSERT_TRUE(pit2.is_ok()) << pit2.status().to_string();
  EXPECT_TRUE(same_content(pit2->disks[0].path, snapshot("v2")));
  EXPECT_EQ(tracking_.count("begin " + web01 + " since=evac-" + pit1->cycle_id), 2u) << "both later cycles start from it";
}

TEST_F(RunningVmReplicationTest, ARunningVmWithoutChangeTrackingIsRefused) {
  spec_.vms[0].provider = "test-driver";
  auto r = replicator_->sync_over(*channel_, spec_, nullptr);
  EXPECT_EQ(r.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(r.status().message().find("no change tracking"), std::string::npos) << r.status().to_string();
  EXPECT_NE(r.status().hint().find("shut the VM down"), std::string::npos);
}

}  // namespace
}  // namespace evac::builtin
