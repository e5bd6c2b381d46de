// The PIT store against real qemu-img and qemu-io on image files in a temp
// folder: every PIT is checked byte for byte against a reference image the
// test builds alongside, and every chain with `qemu-img info --backing-chain`.
#include "replication/builtin/pit_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <ostream>
#include <set>
#include <sstream>
#include <string>
#include <memory>
#include <vector>

#include <xxhash.h>

#include <gtest/gtest.h>

#include "harness.h"
#include <nlohmann/json.hpp>

namespace evac::builtin {

// Found by argument-dependent lookup when gtest prints a parameter.
void PrintTo(PitStore::CrashPoint point, std::ostream* os) { *os << "crash point " << static_cast<int>(point); }

namespace {

namespace fs = std::filesystem;
using CrashPoint = PitStore::CrashPoint;

constexpr std::uint64_t kMiB = 1024 * 1024;

using Run = evac::testing::CommandResult;
Run run(const std::vector<std::string>& argv) { return evac::testing::run_command(argv); }

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A digest of a file's bytes, read in pieces: the 4 GiB images some tests
// compare would cost several copies of 4 GiB in memory through slurp().
std::string digest_of(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::unique_ptr<XXH3_state_t, decltype(&XXH3_freeState)> state(XXH3_createState(), &XXH3_freeState);
  XXH3_128bits_reset(state.get());
  std::vector<char> piece(4 << 20);
  while (in) {
    in.read(piece.data(), static_cast<std::streamsize>(piece.size()));
    XXH3_128bits_update(state.get(), piece.data(), static_cast<std::size_t>(in.gcount()));
  }
  XXH128_hash_t h = XXH3_128bits_digest(state.get());
  return std::to_string(h.high64) + ":" + std::to_string(h.low64) + ":" + std::to_string(fs::file_size(p));
}

std::string hex_byte(int v) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "0x%02x", v);
  return buf;
}

// Another process holding an image open as a VM would (qemu-io reading
// commands from a pipe): qemu takes its image locks on the whole chain.
class HeldOpen {
 public:
  HeldOpen(const std::string& image, bool read_only) : image_(image) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) return;
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(fds[0], 0);
      int null = ::open("/dev/null", O_WRONLY);
      ::dup2(null, 1);
      ::dup2(null, 2);
      std::vector<std::string> argv = {"qemu-io", "-f", "qcow2"};
      if (read_only) argv.push_back("-r");
      argv.push_back(image);
      std::vector<char*> args;
      for (auto& a : argv) args.push_back(a.data());
      args.push_back(nullptr);
      ::execvp(args[0], args.data());
      ::_exit(127);
    }
    ::close(fds[0]);
    stdin_ = fds[1];
  }
  ~HeldOpen() { release(); }

  // True once qemu's locks on the image show in /proc/locks.
  bool wait_until_locked() const {
    struct stat st;
    if (::stat(image_.c_str(), &st) != 0) return false;
    const std::string suffix = ":" + std::to_string(st.st_ino);
    for (int i = 0; i < 400; ++i) {
      std::ifstream locks("/proc/locks");
      std::string line;
      while (std::getline(locks, line)) {
        std::istringstream fields(line);
        std::string field;
        for (int f = 0; f < 6 && (fields >> field); ++f) {
        }
        if (field.size() > suffix.size() && field.compare(field.size() - suffix.size(), suffix.size(), suffix) == 0)
          return true;
      }
      ::usleep(25 * 1000);
    }
    return false;
  }

  void release() {
    if (stdin_ >= 0) ::close(stdin_);  // EOF: qemu-io quits
    stdin_ = -1;
    if (pid_ > 0) ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

 private:
  std::string image_;
  pid_t pid_ = -1;
  int stdin_ = -1;
};

// One guest write: a byte pattern (or zeroes) over [offset, offset + length).
struct Write {
  std::string key;
  int pattern = 0;
  std::uint64_t offset = 0;
  std::uint64_t length = 0;
  bool zero = false;  // `write -z`: an explicit zero cluster in the overlay
};

class PitStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    static std::atomic<int> counter{0};
    root_ = fs::temp_directory_path() /
            ("evac-pit-store-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    fs::remove_all(root_);
    fs::create_directories(replica_dir());
    fs::create_directories(index_dir());
    fs::create_directories(test_dir());
  }
  void TearDown() override { fs::remove_all(root_); }

  fs::path replica_dir() const { return root_ / "replica"; }
  fs::path index_dir() const { return root_ / "state"; }
  fs::path test_dir() const { return root_ / "tests"; }
  fs::path disk_dir(const std::string& group, const std::string& key_dir) const {
    return replica_dir() / ".evac-pits" / group / key_dir;
  }

  std::vector<DiskToStage> disks(const std::vector<std::string>& keys, std::uint64_t size = kMiB) const {
    std::vector<DiskToStage> out;
    for (const auto& k : keys) out.push_back({k, size, replica_dir().string()});
    return out;
  }

  // Stages a cycle, writes into its staging files with qemu-io (mirroring
  // the writes into the reference images), optionally saves a blob per
  // disk, and commits. Returns the PIT and remembers its expected content.
  PointInTime cycle(PitStore& store, const std::string& group, const std::string& cycle_id,
                    const std::vector<std::string>& keys, const std::vector<Write>& writes, std::int64_t created_at,
                    bool save_blobs = true) {
    auto staged = store.begin_cycle(group, cycle_id, disks(keys));
    EXPECT_TRUE(staged.is_ok()) << staged.status().to_string();
    if (!staged.is_ok()) return {};
    std::map<std::string, std::string> staging;
    for (const auto& s : *staged) {
      staging[s.key] = s.staging_path;
      if (!reference_.count(s.key) || !current_keys_.count(s.key)) reference_[s.key] = std::string(s.size_bytes, '\0');
    }
    current_keys_ = std::set<std::string>(keys.begin(), keys.end());
    for (const auto& w : writes) write_staging(staging.at(w.key), w, reference_[w.key]);
    if (save_blobs)
      for (const auto& k : keys) {
        auto st = store.save_disk_blob(group, cycle_id, k, "manifest of " + k + " in " + cycle_id);
        EXPECT_TRUE(st.is_ok()) << st.to_string();
      }
    auto pit = store.commit_cycle(group, cycle_id, created_at * 1000, 1000 + created_at);
    EXPECT_TRUE(pit.is_ok()) << pit.status().to_string();
    if (!pit.is_ok()) return {};
    for (const auto& k : keys) expected_[pit->id][k] = reference_[k];
    return *pit;
  }

  void write_staging(const std::string& path, const Write& w, std::string& ref) {
    std::string cmd = w.zero ? "write -z " : "write -P " + hex_byte(w.pattern) + " ";
    cmd += std::to_string(w.offset) + " " + std::to_string(w.length);
    auto r = run({"qemu-io", "-f", "qcow2", "-c", cmd, path});
    ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
    for (std::uint64_t i = 0; i < w.length; ++i) ref[w.offset + i] = static_cast<char>(w.zero ? 0 : w.pattern);
  }

  // The image reads exactly as `content`: qemu-img compare against a raw
  // reference file.
  ::testing::AssertionResult reads_as(const std::string& image, const std::string& content) {
    fs::path raw = root_ / "reference.raw";
    {
      std::ofstream out(raw, std::ios::binary | std::ios::trunc);
      out.write(content.data(), static_cast<std::streamsize>(content.size()));
    }
    auto r = run({"qemu-img", "compare", "-q", "-f", "qcow2", "-F", "raw", image, raw.string()});
    fs::remove(raw);
    if (r.exit_code == 0) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << image << " differs from its expected content (qemu-img compare exit "
                                         << r.exit_code << ") " << r.err;
  }

  // Every disk of every listed PIT reads as it did when its cycle committed.
  void expect_pits_unchanged(const std::vector<PointInTime>& pits) {
    for (const auto& p : pits)
      for (const auto& d : p.disks) {
        ASSERT_TRUE(expected_.count(p.id) && expected_[p.id].count(d.key)) << p.id << " " << d.key;
        EXPECT_TRUE(reads_as(d.path, expected_[p.id][d.key])) << "PIT " << p.id << " disk " << d.key;
      }
  }

  // `qemu-img info --backing-chain`: the chain from `image` down is exactly
  // `files` (top first), ends in a standalone image, and every file passes
  // qemu-img check.
  void expect_chain(const std::string& image, const std::vector<std::string>& files) {
    auto r = run({"qemu-img", "info", "--backing-chain", "--output=json", image});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    auto chain = nlohmann::json::parse(r.out);
    ASSERT_EQ(chain.size(), files.size()) << r.out;
    for (std::size_t i = 0; i < files.size(); ++i) {
      EXPECT_EQ(chain[i]["filename"].get<std::string>(), files[i]);
      EXPECT_EQ(chain[i]["format"].get<std::string>(), "qcow2");
      if (i + 1 < files.size())
        EXPECT_EQ(chain[i].value("full-backing-filename", ""), files[i + 1]);
      else
        EXPECT_FALSE(chain[i].contains("backing-filename")) << files[i] << " should be standalone";
      auto check = run({"qemu-img", "check", "-q", files[i]});
      EXPECT_EQ(check.exit_code, 0) << files[i] << ": " << check.err << check.out;
    }
  }

  static std::string path_of(const PointInTime& p, const std::string& key) {
    for (const auto& d : p.disks)
      if (d.key == key) return d.path;
    return {};
  }

  static std::vector<std::string> ids(const std::vector<PointInTime>& pits) {
    std::vector<std::string> out;
    for (const auto& p : pits) out.push_back(p.id);
    return out;
  }

  static std::set<std::string> files_in(const fs::path& dir) {
    std::set<std::string> out;
    if (!fs::exists(dir)) return out;
    for (const auto& e : fs::directory_iterator(dir)) out.insert(e.path().filename().string());
    return out;
  }

  // Every file under the test root with its bytes: "nothing changed".
  std::map<std::string, std::string> snapshot_tree() const {
    std::map<std::string, std::string> out;
    for (const auto& e : fs::recursive_directory_iterator(root_))
      out[e.path().string()] = e.is_regular_file() ? slurp(e.path()) : std::string("<dir>");
    return out;
  }

  fs::path root_;
  std::map<std::string, std::string> reference_;                         // key -> current content
  std::set<std::string> current_keys_;                                   // disks of the last cycle
  std::map<std::string, std::map<std::string, std::string>> expected_;  // PIT -> key -> content
};

void expect_error(const Status& st, StatusCode code, const std::string& what) {
  EXPECT_EQ(st.code(), code) << what << ": " << st.to_string();
  EXPECT_FALSE(st.message().empty()) << what;
  EXPECT_FALSE(st.hint().empty()) << what << ": " << st.to_string();
}
template <typename T>
void expect_error(const Result<T>& r, StatusCode code, const std::string& what) {
  EXPECT_FALSE(r.is_ok()) << what;
  expect_error(r.status(), code, what);
}

// Suite names carry "pit_store" so that `ctest -R pit_store` selects them.
using pit_store = PitStoreTest;

const std::string kVda = "0f8e2c1a-vm1/vda";
const std::string kVdb = "0f8e2c1a-vm1/vdb";

// ------------------------------------------------------------------ cycles ---

TEST_F(pit_store, ThreeCyclesGiveThreePitsEachReadingAsOfItsCycle) {
  PitStore store(index_dir().string());
  auto p1 = cycle(store, "g1", "c1", {kVda, kVdb},
                  {{kVda, 0x11, 0, 512 * 1024}, {kVdb, 0x21, 256 * 1024, 128 * 1024}}, 1700000000);
  auto p2 = cycle(store, "g1", "c2", {kVda, kVdb},
                  {{kVda, 0x12, 64 * 1024, 64 * 1024}, {kVda, 0, 128 * 1024, 64 * 1024, true}, {kVdb, 0x22, 0, 4096}},
                  1700000600);
  auto p3 = cycle(store, "g1", "c3", {kVda, kVdb},
                  {{kVda, 0x13, 1000 * 1024, 24 * 1024}, {kVdb, 0x23, 300 * 1024, 8 * 1024}}, 1700001200);

  auto pits = store.list("g1");
  ASSERT_TRUE(pits.is_ok()) << pits.status().to_string();
  ASSERT_EQ(ids(*pits), (std::vector<std::string>{p1.id, p2.id, p3.id}));
  EXPECT_EQ(p1.id, "pit-00000001-1700000000");
  EXPECT_LT(p1.id, p2.id);
  EXPECT_LT(p2.id, p3.id);
  EXPECT_EQ((*pits)[1].created_at, 1700000600);
  EXPECT_EQ((*pits)[1].bytes_sent, 1000u + 1700000600u);
  EXPECT_EQ((*pits)[1].group, "g1");
  expect_pits_unchanged(*pits);

  auto newest = store.newest("g1");
  ASSERT_TRUE(newest.is_ok() && newest->has_value());
  EXPECT_EQ((*newest)->id, p3.id);

  // Layout: one folder per disk under the replica folder, the index in the state folder.
  auto vda_dir = disk_dir("g1", "0f8e2c1a-vm1_vda");
  EXPECT_EQ(path_of(p1, kVda), (vda_dir / (p1.id + ".qcow2")).string());
  EXPECT_EQ(files_in(vda_dir), (std::set<std::string>{p1.id + ".qcow2", p1.id + ".manifest", p2.id + ".qcow2",
                                                      p2.id + ".manifest", p3.id + ".qcow2", p3.id + ".manifest"}));
  EXPECT_TRUE(fs::exists(index_dir() / "g1.pits.json"));
  expect_chain(path_of(p3, kVda), {path_of(p3, kVda), path_of(p2, kVda), path_of(p1, kVda)});
  expect_chain(path_of(p3, kVdb), {path_of(p3, kVdb), path_of(p2, kVdb), path_of(p1, kVdb)});

  // The blob is the newest PIT's; a newest PIT without one answers nothing.
  auto blob = store.load_newest_disk_blob("g1", kVdb);
  ASSERT_TRUE(blob.is_ok() && blob->has_value()) << blob.status().to_string();
  EXPECT_EQ(**blob, "manifest of " + kVdb + " in c3");
  cycle(store, "g1", "c4", {kVda, kVdb}, {{kVda, 0x14, 0, 4096}}, 1700001800, /*save_blobs=*/false);
  blob = store.load_newest_disk_blob("g1", kVdb);
  ASSERT_TRUE(blob.is_ok());
  EXPECT_FALSE(blob->has_value());

  // A second store on the same folders (a restarted daemon) sees the same.
  PitStore again(index_dir().string());
  auto relisted = again.list("g1");
  ASSERT_TRUE(relisted.is_ok());
  EXPECT_EQ(relisted->size(), 4u);
}

TEST_F(pit_store, DisksJoiningAndLeavingTheGroupGetTheirOwnChains) {
  PitStore store(index_dir().string());
  auto p1 = cycle(store, "g1", "c1", {kVda, kVdb}, {{kVda, 0x31, 0, 8192}, {kVdb, 0x41, 0, 8192}}, 100);
  auto p2 = cycle(store, "g1", "c2", {kVda}, {{kVda, 0x32, 4096, 4096}}, 200);  // vdb left
  auto p3 = cycle(store, "g1", "c3", {kVda, kVdb}, {{kVdb, 0x43, 8192, 4096}}, 300);  // vdb is back: fresh image
  EXPECT_EQ(p2.disks.size(), 1u);
  expect_chain(path_of(p3, kVdb), {path_of(p3, kVdb)});
  expect_chain(path_of(p3, kVda), {path_of(p3, kVda), path_of(p2, kVda), path_of(p1, kVda)});
  auto pits = store.list("g1");
  ASSERT_TRUE(pits.is_ok());
  expect_pits_unchanged(*pits);

  ASSERT_TRUE(store.retain("g1", 1).is_ok());
  pits = store.list("g1");
  ASSERT_TRUE(pits.is_ok());
  ASSERT_EQ(ids(*pits), std::vector<std::string>{p3.id});
  expect_pits_unchanged(*pits);
  expect_chain(path_of(p3, kVda), {path_of(p3, kVda)});
  EXPECT_EQ(files_in(disk_dir("g1", "0f8e2c1a-vm1_vdb")), (std::set<std::string>{p3.id + ".qcow2", p3.id + ".manifest"}));
}

// ----------------------------------------------------------- abort/recover ---

TEST_F(pit_store, AbortedAndUncommittedCyclesDisappearAndTheNewestPitStays) {
  std::string newest_file_bytes;
  PointInTime p1;
  {
    PitStore store(index_dir().string());
    p1 = cycle(store, "g1", "c1", {kVda}, {{kVda, 0x51, 0, 64 * 1024}}, 100);
    newest_file_bytes = slurp(path_of(p1, kVda));

    auto staged = store.begin_cycle("g1", "c2", disks({kVda}));
    ASSERT_TRUE(staged.is_ok()) << staged.status().to_string();
    std::string scratch(kMiB, '\0');
    write_staging((*staged)[0].staging_path, {kVda, 0x52, 0, 4096}, scratch);
    ASSERT_TRUE(store.save_disk_blob("g1", "c2", kVda, "c2 manifest").is_ok());
    ASSERT_TRUE(store.abort_cycle("g1", "c2").is_ok());
    EXPECT_FALSE(fs::exists((*staged)[0].staging_path));
    EXPECT_EQ(store.abort_cycle("g1", "c2").code(), StatusCode::kNotFound);

    // A cycle the daemon never finished: the process just goes away.
    staged = store.begin_cycle("g1", "c3", disks({kVda}));
    ASSERT_TRUE(staged.is_ok()) << staged.status().to_string();
    write_staging((*staged)[0].staging_path, {kVda, 0x53, 0, 4096}, scratch);
    ASSERT_TRUE(store.save_disk_blob("g1", "c3", kVda, "c3 manifest").is_ok());
    EXPECT_TRUE(fs::exists((*staged)[0].staging_path));
  }
  PitStore restarted(index_dir().string());
  ASSERT_TRUE(restarted.recover("g1").is_ok());
  EXPECT_EQ(files_in(disk_dir("g1", "0f8e2c1a-vm1_vda")), (std::set<std::string>{p1.id + ".qcow2", p1.id + ".manifest"}));
  auto pits = restarted.list("g1");
  ASSERT_TRUE(pits.is_ok());
  ASSERT_EQ(ids(*pits), std::vector<std::string>{p1.id});
  expect_pits_unchanged(*pits);
  EXPECT_EQ(slurp(path_of(p1, kVda)), newest_file_bytes);
  EXPECT_EQ(restarted.commit_cycle("g1", "c3", 200'000, 0).status().code(), StatusCode::kNotFound);
  auto blob = restarted.load_newest_disk_blob("g1", kVda);
  ASSERT_TRUE(blob.is_ok() && blob->has_value());
  EXPECT_EQ(**blob, "manifest of " + kVda + " in c1");

  // Recovering twice, or a group that never ran, is harmless.
  EXPECT_TRUE(restarted.recover("g1").is_ok());
  EXPECT_TRUE(restarted.recover("never-ran").is_ok());

  // Replication carries on from the untouched newest PIT.
  auto p2 = cycle(restarted, "g1", "c4", {kVda}, {{kVda, 0x54, 32 * 1024, 4096}}, 300);
  expect_chain(path_of(p2, kVda), {path_of(p2, kVda), path_of(p1, kVda)});
  pits = restarted.list("g1");
  ASSERT_TRUE(pits.is_ok());
  expect_pits_unchanged(*pits);
}

std::string crash_point_name(const ::testing::TestParamInfo<CrashPoint>& info) {
  switch (info.param) {
    case CrashPoint::kNone: return "None";
    case CrashPoint::kBeginAfterIndexWrite: return "BeginAfterIndexWrite";
    case CrashPoint::kCommitAfterFirstRename: return "CommitAfterFirstRename";
    case CrashPoint::kCommitBeforeIndexWrite: return "CommitBeforeIndexWrite";
    case CrashPoint::kRetainAfterMark: return "RetainAfterMark";
    case CrashPoint::kRetainAfterMerge: return "RetainAfterMerge";
    case CrashPoint::kRetainAfterRename: return "RetainAfterRename";
    case CrashPoint::kReleaseAfterIndexWrite: return "ReleaseAfterIndexWrite";
  }
  return "Unknown";
}

class pit_store_commit_crash : public PitStoreTest, public ::testing::WithParamInterface<CrashPoint> {};

TEST_P(pit_store_commit_crash, RecoverLeavesTheOldSetOfPits) {
  PointInTime p1;
  std::string index_before;
  {
    PitStore store(index_dir().string());
    p1 = cycle(store, "g1", "c1", {kVda, kVdb}, {{kVda, 0x61, 0, 8192}, {kVdb, 0x71, 0, 8192}}, 100);
    index_before = slurp(index_dir() / "g1.pits.json");
    store.set_crash_point_for_testing(GetParam());
    auto staged = store.begin_cycle("g1", "c2", disks({kVda, kVdb}));
    if (GetParam() == CrashPoint::kBeginAfterIndexWrite) {
      ASSERT_FALSE(staged.is_ok());
    } else {
      ASSERT_TRUE(staged.is_ok()) << staged.status().to_string();
      std::string scratch(kMiB, '\0');
      for (const auto& s : *staged) write_staging(s.staging_path, {s.key, 0x62, 0, 4096}, scratch);
      ASSERT_TRUE(store.save_disk_blob("g1", "c2", kVda, "c2").is_ok());
      auto pit = store.commit_cycle("g1", "c2", 200'000, 5);
      ASSERT_FALSE(pit.is_ok());
      EXPECT_NE(pit.status().message().find("simulated crash"), std::string::npos);
      // As a crash would leave it: renamed files no index names.
      bool renamed = false;
      for (const auto& f : files_in(disk_dir("g1", "0f8e2c1a-vm1_vda")))
        renamed |= f.rfind("pit-00000002-", 0) == 0;
      EXPECT_TRUE(renamed);
    }
  }
  PitStore restarted(index_dir().string());
  auto st = restarted.recover("g1");
  ASSERT_TRUE(st.is_ok()) << st.to_string();
  auto pits = restarted.list("g1");
  ASSERT_TRUE(pits.is_ok());
  ASSERT_EQ(ids(*pits), std::vector<std::string>{p1.id});
  expect_pits_unchanged(*pits);
  EXPECT_EQ(slurp(index_dir() / "g1.pits.json"), index_before);
  for (const auto* dir : {"0f8e2c1a-vm1_vda", "0f8e2c1a-vm1_vdb"})
    EXPECT_EQ(files_in(disk_dir("g1", dir)), (std::set<std::string>{p1.id + ".qcow2", p1.id + ".manifest"})) << dir;
  auto blob = restarted.load_newest_disk_blob("g1", kVda);
  ASSERT_TRUE(blob.is_ok() && blob->has_value());
  EXPECT_EQ(**blob, "manifest of " + kVda + " in c1");

  // The next cycle commits normally on top of the old newest PIT.
  auto p2 = cycle(restarted, "g1", "c3", {kVda, kVdb}, {{kVda, 0x63, 4096, 4096}}, 300);
  expect_chain(path_of(p2, kVda), {path_of(p2, kVda), path_of(p1, kVda)});
  pits = restarted.list("g1");
  ASSERT_TRUE(pits.is_ok());
  EXPECT_EQ(pits->size(), 2u);
  expect_pits_unchanged(*pits);
}

INSTANTIATE_TEST_SUITE_P(CrashPoints, pit_store_commit_crash,
                         ::testing::Values(CrashPoint::kBeginAfterIndexWrite, CrashPoint::kCommitAfterFirstRename,
                                           CrashPoint::kCommitBeforeIndexWrite),
                         crash_point_name);

// --------------------------------------------------------------- retention ---

TEST_F(pit_store, RetainTwoAfterFourCyclesKeepsTheNewestTwoUnchanged) {
  PitStore store(index_dir().string());
  std::vector<PointInTime> made;
  for (int i = 1; i <= 4; ++i)
    made.push_back(cycle(store, "g1", "c" + std::to_string(i), {kVda, kVdb},
                         {{kVda, 0x80 + i, static_cast<std::uint64_t>(i) * 96 * 1024, 160 * 1024},
                          {kVdb, 0x90 + i, static_cast<std::uint64_t>(4 - i) * 64 * 1024, 100 * 1024},
                          {kVda, 0, static_cast<std::uint64_t>(i - 1) * 96 * 1024 + 8192, 4096, true}},
                         100 * i));
  std::string newest_bytes = slurp(path_of(made[3], kVda));

  auto st = store.retain("g1", 2);
  ASSERT_TRUE(st.is_ok()) << st.to_string();
  auto pits = store.list("g1");
  ASSERT_TRUE(pits.is_ok());
  ASSERT_EQ(ids(*pits), (std::vector<std::string>{made[2].id, made[3].id}));
  expect_pits_unchanged(*pits);
  for (const auto& key : {kVda, kVdb})
    expect_chain(path_of(made[3], key), {path_of(made[3], key), path_of(made[2], key)});
  // The newest PIT's file was never opened for writing; the dropped ones' files are gone.
  EXPECT_EQ(slurp(path_of(made[3], kVda)), newest_bytes);
  EXPECT_EQ(files_in(disk_dir("g1", "0f8e2c1a-vm1_vda")),
            (std::set<std::string>{made[2].id + ".qcow2", made[2].id + ".manifest", made[3].id + ".qcow2",
                                   made[3].id + ".manifest"}));
  auto blob = store.load_newest_disk_blob("g1", kVda);
  ASSERT_TRUE(blob.is_ok() && blob->has_value());
  EXPECT_EQ(**blob, "manifest of " + kVda + " in c4");

  // Nothing more to drop; the next cycle stacks on the newest.
  ASSERT_TRUE(store.retain("g1", 2).is_ok());
  auto p5 = cycle(store, "g1", "c5", {kVda, kVdb}, {{kVda, 0x95, 0, 4096}}, 500);
  expect_chain(path_of(p5, kVda), {path_of(p5, kVda), path_of(made[3], kVda), path_of(made[2], kVda)});
  ASSERT_TRUE(store.retain("g1", 1).is_ok());
  pits = store.list("g1");
  ASSERT_TRUE(pits.is_ok());
  ASSERT_EQ(ids(*pits), std::vector<std::string>{p5.id});
  expect_pits_unchanged(*pits);
  expect_chain(path_of(p5, kVda), {path_of(p5, kVda)});
}

class pit_store_retain_crash : public PitStoreTest, public ::testing::WithParamInterface<CrashPoint> {};

TEST_P(pit_store_retain_crash, RecoverFinishesTheInterruptedStep) {
  std::vector<PointInTime> made;
  {
    PitStore store(index_dir().string());
    for (int i = 1; i <= 3; ++i)
      made.push_back(cycle(store, "g1", "c" + std::to_string(i), {kVda, kVdb},
                           {{kVda, 0xa0 + i, static_cast<std::uint64_t>(i) * 128 * 1024, 192 * 1024},
                            {kVdb, 0xb0 + i, 0, static_cast<std::uint64_t>(4 - i) * 64 * 1024}},
                           100 * i));
    store.set_crash_point_for_testing(GetParam());
    auto st = store.retain("g1", 2);
    ASSERT_FALSE(st.is_ok());
    EXPECT_NE(st.message().find("simulated crash"), std::string::npos) << st.to_string();
    // Mid-step, the PIT being dropped is already gone for readers.
    auto pits = store.list("g1");
    ASSERT_TRUE(pits.is_ok());
    EXPECT_EQ(ids(*pits), (std::vector<std::string>{made[1].id, made[2].id}));
    EXPECT_EQ(store.create_test_copy("g1", made[0].id, test_dir().string()).status().code(), StatusCode::kNotFound);
  }
  PitStore restarted(index_dir().string());
  auto st = restarted.recover("g1");
  ASSERT_TRUE(st.is_ok()) << st.to_string();
  auto pits = restarted.list("g1");
  ASSERT_TRUE(pits.is_ok());
  ASSERT_EQ(ids(*pits), (std::vector<std::string>{made[1].id, made[2].id}));
  expect_pits_unchanged(*pits);
  for (const auto& key : {kVda, kVdb})
    expect_chain(path_of(made[2], key), {path_of(made[2], key), path_of(made[1], key)});
  EXPECT_EQ(files_in(disk_dir("g1", "0f8e2c1a-vm1_vdb")),
            (std::set<std::string>{made[1].id + ".qcow2", made[1].id + ".manifest", made[2].id + ".qcow2",
                                   made[2].id + ".manifest"}));
  auto index = nlohmann::json::parse(slurp(index_dir() / "g1.pits.json"));
  EXPECT_TRUE(index["retention_step"].is_null());
}

INSTANTIATE_TEST_SUITE_P(CrashPoints, pit_store_retain_crash,
                         ::testing::Values(CrashPoint::kRetainAfterMark, CrashPoint::kRetainAfterMerge,
                                           CrashPoint::kRetainAfterRename),
                         crash_point_name);

TEST_F(pit_store, RetentionSkipsPitsPinnedByATestCopy) {
  PitStore store(index_dir().string());
  std::vector<PointInTime> made;
  for (int i = 1; i <= 4; ++i)
    made.push_back(cycle(store, "g1", "c" + std::to_string(i), {kVda},
                         {{kVda, 0xc0 + i, static_cast<std::uint64_t>(i) * 100 * 1024, 150 * 1024}}, 100 * i));
  auto tc = store.create_test_copy("g1", made[0].id, test_dir().string());
  ASSERT_TRUE(tc.is_ok()) << tc.status().to_string();

  // P1 is pinned and kept on top of the 2: P2 merges into P3 instead.
  ASSERT_TRUE(store.retain("g1", 2).is_ok());
  auto pits = store.list("g1");
  ASSERT_TRUE(pits.is_ok());
  ASSERT_EQ(ids(*pits), (std::vector<std::string>{made[0].id, made[2].id, made[3].id}));
  expect_pits_unchanged(*pits);
  expect_chain(path_of(made[3], kVda), {path_of(made[3], kVda), path_of(made[2], kVda), path_of(made[0], kVda)});
  EXPECT_TRUE(reads_as(tc->disks[0].path, expected_[made[0].id][kVda]));
  expect_chain(tc->disks[0].path, {tc->disks[0].path, path_of(made[0], kVda)});

  // Unpinned, it goes too.
  ASSERT_TRUE(store.drop_test_copy("g1", tc->id).is_ok());
  ASSERT_TRUE(store.retain("g1", 2).is_ok());
  pits = store.list("g1");
  ASSERT_TRUE(pits.is_ok());
  ASSERT_EQ(ids(*pits), (std::vector<std::string>{made[2].id, made[3].id}));
  expect_pits_unchanged(*pits);
  expect_chain(path_of(made[3], kVda), {path_of(made[3], kVda), path_of(made[2], kVda)});
}

TEST_F(pit_store, ATestCopyPinsItsWholeChainAndAMiddlePitMergesAround) {
  PitStore store(index_dir().string());
  std::vector<PointInTime> made;
  for (int i = 1; i <= 5; ++i)
    made.push_back(cycle(store, "g1", "c" + std::to_string(i), {kVda},
                         {{kVda, 0xd0 + i, static_cast<std::uint64_t>(5 - i) * 120 * 1024, 200 * 1024}}, 100 * i));
  // A test VM on P3 reads through P3, P2 and P1: none of them can change
  // under it (qemu would refuse the merge), so nothing is dropped.
  {
    auto on_p3 = store.create_test_copy("g1", made[2].id, test_dir().string());
    ASSERT_TRUE(on_p3.is_ok()) << on_p3.status().to_string();
    HeldOpen test_vm(on_p3->disks[0].path, /*read_only=*/false);
    ASSERT_TRUE(test_vm.wait_until_locked());
    auto st = store.retain("g1", 2);
    ASSERT_TRUE(st.is_ok()) << st.to_string();
    auto pits = store.list("g1");
    ASSERT_TRUE(pits.is_ok());
    EXPECT_EQ(pits->size(), 5u);
    test_vm.release();
    ASSERT_TRUE(store.drop_test_copy("g1", on_p3->id).is_ok());
  }

  auto tc = store.create_test_copy("g1", made[1].id, test_dir().string());
  ASSERT_TRUE(tc.is_ok()) << tc.status().to_string();

  // The test copy reads through P2 and P1: both stay, P3 merges into P4,
  // and that works while a test VM has the copy open.
  HeldOpen test_vm(tc->disks[0].path, /*read_only=*/false);
  ASSERT_TRUE(test_vm.wait_until_locked());
  auto st = store.retain("g1", 2);
  ASSERT_TRUE(st.is_ok()) << st.to_string();
  test_vm.release();
  auto pits = store.list("g1");
  ASSERT_TRUE(pits.is_ok());
  ASSERT_EQ(ids(*pits), (std::vector<std::string>{made[0].id, made[1].id, made[3].id, made[4].id}));
  expect_pits_unchanged(*pits);
  expect_chain(path_of(made[4], kVda),
               {path_of(made[4], kVda), path_of(made[3], kVda), path_of(made[1], kVda), path_of(made[0], kVda)});
  EXPECT_TRUE(reads_as(tc->disks[0].path, expected_[made[1].id][kVda]));

  ASSERT_TRUE(store.drop_test_copy("g1", tc->id).is_ok());
  ASSERT_TRUE(store.retain("g1", 2).is_ok());
  pits = store.list("g1");
  ASSERT_TRUE(pits.is_ok());
  ASSERT_EQ(ids(*pits), (std::vector<std::string>{made[3].id, made[4].id}));
  expect_pits_unchanged(*pits);
  expect_chain(path_of(made[4], kVda), {path_of(made[4], kVda), path_of(made[3], kVda)});
}

TEST_F(pit_store, AMergeBlockedByAnotherProcessStaysHiddenUntilRetried) {
  PitStore store(index_dir().string());
  std::vector<PointInTime> made;
  for (int i = 1; i <= 3; ++i)
    made.push_back(cycle(store, "g1", "c" + std::to_string(i), {kVda},
                         {{kVda, 0x40 + i, static_cast<std::uint64_t>(i) * 64 * 1024, 128 * 1024}}, 100 * i));
  {
    // Something outside the store (an operator's VM on the PIT) reads P2.
    HeldOpen reader(path_of(made[1], kVda), /*read_only=*/true);
    ASSERT_TRUE(reader.wait_until_locked());
    auto st = store.retain("g1", 2);
    expect_error(st, StatusCode::kUnavailable, "merge into a locked image");
    EXPECT_NE(st.message().find("lock"), std::string::npos) << st.to_string();
    auto pits = store.list("g1");
    ASSERT_TRUE(pits.is_ok());
    EXPECT_EQ(ids(*pits), (std::vector<std::string>{made[1].id, made[2].id}));
    expect_pits_unchanged(*pits);
    // A restart meanwhile: recovery does not hold replication up for it.
    PitStore restarted(index_dir().string());
    EXPECT_TRUE(restarted.recover("g1").is_ok());
    EXPECT_FALSE(nlohmann::json::parse(slurp(index_dir() / "g1.pits.json"))["retention_step"].is_null());
  }
  auto st = store.retain("g1", 2);
  ASSERT_TRUE(st.is_ok()) << st.to_string();
  auto pits = store.list("g1");
  ASSERT_TRUE(pits.is_ok());
  EXPECT_EQ(ids(*pits), (std::vector<std::string>{made[1].id, made[2].id}));
  expect_pits_unchanged(*pits);
  expect_chain(path_of(made[2], kVda), {path_of(made[2], kVda), path_of(made[1], kVda)});
}

// ----------------------------------------------------------------- release ---

// Reprotect at the site that held the replicas: the recovered VM's disk (a
// live copy) stops reading through the PITs, which are then deleted.
TEST_F(pit_store, ReleaseFlattensTheLiveCopyThenDeletesEveryPit) {
  PitStore store(index_dir().string());
  std::vector<PointInTime> made;
  for (int i = 1; i <= 3; ++i)
    made.push_back(cycle(store, "g1", "c" + std::to_string(i), {kVda},
                         {{kVda, 0x30 + i, static_cast<std::uint64_t>(i) * 128 * 1024, 192 * 1024}}, 100 * i));
  auto live = store.create_test_copy("g1", made[2].id, test_dir().string(), "run-1", /*live=*/true);
  ASSERT_TRUE(live.is_ok()) << live.status().to_string();
  const std::string disk = live->disks[0].path;
  // The recovered VM writes after its recovery.
  std::string expected = expected_[made[2].id][kVda];
  write_staging(disk, {kVda, 0x77, 512 * 1024, 64 * 1024}, expected);

  {
    // A VM running on it holds the image: nothing can be flattened offline,
    // so its chain stays whole and is named.
    HeldOpen vm(disk, /*read_only=*/false);
    ASSERT_TRUE(vm.wait_until_locked());
    auto kept = store.release("g1");
    ASSERT_TRUE(kept.is_ok()) << kept.status().to_string();
    EXPECT_TRUE(kept->released_copies.empty());
    EXPECT_TRUE(kept->removed_pits.empty());
    EXPECT_EQ(kept->kept_pits, ids(made));
    EXPECT_NE(kept->kept_because.find("blockpull"), std::string::npos) << kept->kept_because;
    auto pits = store.list("g1");
    ASSERT_TRUE(pits.is_ok());
    EXPECT_EQ(ids(*pits), ids(made));
    expect_pits_unchanged(*pits);
  }

  auto released = store.release("g1");
  ASSERT_TRUE(released.is_ok()) << released.status().to_string();
  EXPECT_EQ(released->flattened, std::vector<std::string>{disk});
  EXPECT_EQ(released->released_copies, std::vector<std::string>{live->id});
  EXPECT_EQ(released->removed_pits, ids(made));
  EXPECT_TRUE(released->kept_pits.empty());
  EXPECT_TRUE(released->kept_because.empty()) << released->kept_because;
  expect_chain(disk, {disk});
  EXPECT_TRUE(reads_as(disk, expected));
  EXPECT_TRUE(files_in(replica_dir() / ".evac-pits" / "g1").empty()) << "no PIT folder is left";
  auto pits = store.list("g1");
  ASSERT_TRUE(pits.is_ok()) << "the index stays, empty";
  EXPECT_TRUE(pits->empty());
  EXPECT_TRUE(store.list_test_copies("g1")->empty()) << "the live copy is the VM's now, not the store's";

  // Releasing again changes nothing; a later recovery here (after the group
  // came back the other way) never reuses the released copy's name.
  auto again = store.release("g1");
  ASSERT_TRUE(again.is_ok()) << again.status().to_string();
  EXPECT_TRUE(again->removed_pits.empty() && again->released_copies.empty() && again->flattened.empty());
  auto next = cycle(store, "g1", "c4", {kVda}, {{kVda, 0x44, 0, 64 * 1024}}, 400);
  auto second = store.create_test_copy("g1", next.id, test_dir().string(), "run-2", /*live=*/true);
  ASSERT_TRUE(second.is_ok()) << second.status().to_string();
  EXPECT_NE(second->id, live->id);
  EXPECT_NE(second->disks[0].path, disk);
  EXPECT_TRUE(reads_as(disk, expected)) << "the released copy is untouched";
}

TEST_F(pit_store, ReleaseKeepsWhatATestCopyReadsAndFinishesAfterACrash) {
  PitStore store(index_dir().string());
  std::vector<PointInTime> made;
  for (int i = 1; i <= 4; ++i)
    made.push_back(cycle(store, "g1", "c" + std::to_string(i), {kVda},
                         {{kVda, 0x50 + i, static_cast<std::uint64_t>(i) * 64 * 1024, 128 * 1024}}, 100 * i));
  auto test = store.create_test_copy("g1", made[1].id, test_dir().string(), "test-run");
  ASSERT_TRUE(test.is_ok()) << test.status().to_string();
  auto live = store.create_test_copy("g1", made[3].id, test_dir().string(), "run-1", /*live=*/true);
  ASSERT_TRUE(live.is_ok()) << live.status().to_string();

  store.set_crash_point_for_testing(CrashPoint::kReleaseAfterIndexWrite);
  expect_error(store.release("g1"), StatusCode::kInternal, "a crash between the index and the files");
  for (const auto& p : {made[2], made[3]}) EXPECT_TRUE(fs::exists(path_of(p, kVda))) << p.id;

  PitStore restarted(index_dir().string());
  ASSERT_TRUE(restarted.recover("g1").is_ok());
  for (const auto& p : {made[2], made[3]}) EXPECT_FALSE(fs::exists(path_of(p, kVda))) << p.id << " was left behind";
  EXPECT_FALSE(nlohmann::json::parse(slurp(index_dir() / "g1.pits.json")).contains("discarding"));
  auto pits = restarted.list("g1");
  ASSERT_TRUE(pits.is_ok());
  EXPECT_EQ(ids(*pits), (std::vector<std::string>{made[0].id, made[1].id})) << "the test copy still reads them";
  expect_pits_unchanged(*pits);
  EXPECT_TRUE(reads_as(test->disks[0].path, expected_[made[1].id][kVda]));
  EXPECT_TRUE(reads_as(live->disks[0].path, expected_[made[3].id][kVda]));
  expect_chain(live->disks[0].path, {live->disks[0].path});

  auto again = restarted.release("g1");
  ASSERT_TRUE(again.is_ok()) << again.status().to_string();
  EXPECT_EQ(again->kept_pits, (std::vector<std::string>{made[0].id, made[1].id}));
  EXPECT_NE(again->kept_because.find("evac plan cleanup"), std::string::npos) << again->kept_because;
  // Cleaned up, the rest goes.
  ASSERT_TRUE(restarted.drop_test_copy("g1", test->id).is_ok());
  again = restarted.release("g1");
  ASSERT_TRUE(again.is_ok()) << again.status().to_string();
  EXPECT_EQ(again->removed_pits, (std::vector<std::string>{made[0].id, made[1].id}));
  EXPECT_TRUE(restarted.list("g1")->empty());
}

// -------------------------------------------------------------- test copies ---

TEST_F(pit_store, TestCopyIsAWritableOverlayThatNeverTouchesThePit) {
  constexpr std::uint64_t kFourGiB = 4ull * 1024 * kMiB;
  PitStore store(index_dir().string());
  auto staged = store.begin_cycle("g1", "c1", disks({kVda}, kFourGiB));
  ASSERT_TRUE(staged.is_ok()) << staged.status().to_string();
  const std::string staging = (*staged)[0].staging_path;
  for (auto [pattern, offset] : {std::pair{0x11, 0ull}, std::pair{0x22, 3ull * 1024 * kMiB}}) {
    auto r = run({"qemu-io", "-f", "qcow2", "-c", "write -P " + hex_byte(pattern) + " " + std::to_string(offset) + " 65536", staging});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  auto pit = store.commit_cycle("g1", "c1", 100'123, 0);
  ASSERT_TRUE(pit.is_ok()) << pit.status().to_string();
  EXPECT_EQ(pit->created_at, 100);
  EXPECT_EQ(pit->created_at_ms, 100'123) << "the instant is kept to the millisecond";
  auto pits = store.list("g1");
  ASSERT_TRUE(pits.is_ok() && pits->size() == 1u);
  EXPECT_EQ(pits->front().created_at_ms, 100'123) << "and read back from the index";
  const std::string pit_path = pit->disks[0].path;
  const std::string pit_digest = digest_of(pit_path);

  auto tc = store.create_test_copy("g1", pit->id, test_dir().string());
  ASSERT_TRUE(tc.is_ok()) << tc.status().to_string();
  EXPECT_EQ(tc->pit_id, pit->id);
  ASSERT_EQ(tc->disks.size(), 1u);
  const std::string overlay = tc->disks[0].path;
  EXPECT_EQ(overlay, (test_dir() / "g1" / tc->id / "0f8e2c1a-vm1_vda.qcow2").string());
  EXPECT_EQ(tc->disks[0].size_bytes, kFourGiB);
  EXPECT_LT(fs::file_size(overlay), kMiB);  // an overlay, not a copy of 4 GiB
  expect_chain(overlay, {overlay, pit_path});

  // Reads show the PIT; writes land in the overlay only.
  auto r = run({"qemu-io", "-f", "qcow2", "-c", "read -P 0x22 3221225472 65536", "-c", "write -P 0x99 0 4096", "-c",
                "read -P 0x99 0 4096", overlay});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  r = run({"qemu-io", "-r", "-f", "qcow2", "-c", "read -P 0x11 0 65536", pit_path});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(digest_of(pit_path), pit_digest);

  auto listed = store.list_test_copies("g1");
  ASSERT_TRUE(listed.is_ok());
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ((*listed)[0].id, tc->id);

  // Two test copies of one PIT are independent.
  auto second = store.create_test_copy("g1", pit->id, test_dir().string());
  ASSERT_TRUE(second.is_ok()) << second.status().to_string();
  EXPECT_NE(second->id, tc->id);

  // A copy with an owner (a test run) is made once: a step run again after
  // a crash gets the same copy, and a half-made one (its overlay lost) is
  // made again under a new id.
  auto owned = store.create_test_copy("g1", pit->id, test_dir().string(), "run-7");
  ASSERT_TRUE(owned.is_ok()) << owned.status().to_string();
  EXPECT_EQ(owned->owner, "run-7");
  auto owned_again = store.create_test_copy("g1", pit->id, test_dir().string(), "run-7");
  ASSERT_TRUE(owned_again.is_ok());
  EXPECT_EQ(owned_again->id, owned->id);
  fs::remove(owned->disks[0].path);
  auto remade = store.create_test_copy("g1", pit->id, test_dir().string(), "run-7");
  ASSERT_TRUE(remade.is_ok()) << remade.status().to_string();
  EXPECT_NE(remade->id, owned->id);
  EXPECT_TRUE(fs::exists(remade->disks[0].path));
  listed = store.list_test_copies("g1");
  ASSERT_TRUE(listed.is_ok());
  EXPECT_EQ(listed->size(), 3u) << "the half-made copy is forgotten, not kept beside the new one";
  ASSERT_TRUE(store.drop_test_copy("g1", remade->id).is_ok());

  ASSERT_TRUE(store.drop_test_copy("g1", tc->id).is_ok());
  EXPECT_FALSE(fs::exists(overlay));
  EXPECT_FALSE(fs::exists(test_dir() / "g1" / tc->id));
  EXPECT_EQ(store.drop_test_copy("g1", tc->id).code(), StatusCode::kNotFound);
  ASSERT_TRUE(store.drop_test_copy("g1", second->id).is_ok());
  EXPECT_TRUE(files_in(test_dir()).empty());
  listed = store.list_test_copies("g1");
  ASSERT_TRUE(listed.is_ok());
  EXPECT_TRUE(listed->empty());
  EXPECT_EQ(digest_of(pit_path), pit_digest);
}

// ------------------------------------------------------------------ modes ---

unsigned mode_of(const fs::path& p) {
  struct stat st {};
  EXPECT_EQ(::lstat(p.c_str(), &st), 0) << p;
  return st.st_mode & 07777;
}

// Every file and folder below `top` (itself not included) with its mode.
std::map<std::string, unsigned> modes_below(const fs::path& top) {
  std::map<std::string, unsigned> out;
  for (const auto& e : fs::recursive_directory_iterator(top)) out[e.path().string()] = mode_of(e.path());
  return out;
}

// Files 0600, folders 0711: what QEMU, as libvirt's unprivileged user, needs
// to open a test copy and the PITs it reads through once libvirt has handed
// it the images; nobody else reads, writes or lists anything.
void expect_private_below(const fs::path& top) {
  auto modes = modes_below(top);
  EXPECT_FALSE(modes.empty()) << top;
  for (const auto& [path, mode] : modes)
    EXPECT_EQ(mode, fs::is_directory(path) ? 0711u : 0600u) << path;
}

// Sets the process's umask for one test.
struct UmaskForTest {
  explicit UmaskForTest(mode_t mask) : old(::umask(mask)) {}
  ~UmaskForTest() { ::umask(old); }
  mode_t old;
};

TEST_F(pit_store, ReplicasPitsAndTestCopiesArePrivateWhateverTheUmaskAndTheSeedsMode) {
  UmaskForTest open_to_all(0);
  // A seed at the recovery site as an operator may have copied it: readable by all.
  const fs::path seed = replica_dir() / "vdb.raw";
  ASSERT_EQ(run({"qemu-img", "create", "-q", "-f", "raw", seed.string(), "1M"}).exit_code, 0);
  fs::permissions(seed, fs::perms(0644));
  PitStore store(index_dir().string());
  std::vector<PointInTime> made;
  for (int c = 1; c <= 3; ++c) {
    const std::string cycle_id = "c" + std::to_string(c);
    auto staging_disks = disks({kVda, kVdb});
    staging_disks[1].seed_path = seed.string();
    auto staged = store.begin_cycle("g1", cycle_id, staging_disks);
    ASSERT_TRUE(staged.is_ok()) << staged.status().to_string();
    if (c == 1) {
      EXPECT_TRUE((*staged)[0].preallocated) << "the fresh image, made whole up front";
      EXPECT_TRUE((*staged)[1].seeded) << "the image copied from the seed";
    }
    for (const auto& sd : *staged) {
      EXPECT_EQ(mode_of(sd.staging_path), 0600u) << sd.staging_path << " while the cycle writes it";
      ASSERT_TRUE(store.save_disk_blob("g1", cycle_id, sd.key, "manifest").is_ok());
    }
    auto pit = store.commit_cycle("g1", cycle_id, c * 1000, 0);
    ASSERT_TRUE(pit.is_ok()) << pit.status().to_string();
    made.push_back(*pit);
  }
  ASSERT_TRUE(store.retain("g1", 2).is_ok()) << "the merged PIT keeps the mode of its files";
  auto tc = store.create_test_copy("g1", made[1].id, test_dir().string(), "test-run");
  ASSERT_TRUE(tc.is_ok()) << tc.status().to_string();
  auto live = store.create_test_copy("g1", made[2].id, test_dir().string(), "failover-run", /*live=*/true);
  ASSERT_TRUE(live.is_ok()) << live.status().to_string();

  expect_private_below(replica_dir() / ".evac-pits");
  EXPECT_EQ(mode_of(replica_dir() / ".evac-pits"), 0711u);
  expect_private_below(test_dir());
  EXPECT_EQ(mode_of(index_dir() / "g1.pits.json"), 0600u);
  EXPECT_EQ(mode_of(seed), 0644u) << "the seed is the operator's and never written";
}

TEST_F(pit_store, RecoverClosesWhatAnOlderEvacLeftReadableByAll) {
  PitStore store(index_dir().string());
  cycle(store, "g1", "c1", {kVda}, {{kVda, 0x11, 0, 4096}}, 100);
  auto pit = cycle(store, "g1", "c2", {kVda}, {{kVda, 0x22, 0, 4096}}, 200);
  auto tc = store.create_test_copy("g1", pit.id, test_dir().string());
  ASSERT_TRUE(tc.is_ok()) << tc.status().to_string();
  // As an evacd before modes were set left them under umask 022.
  for (const fs::path& top : {replica_dir() / ".evac-pits", test_dir()}) {
    fs::permissions(top, fs::perms(0755));
    for (const auto& [path, mode] : modes_below(top)) fs::permissions(path, fs::perms(fs::is_directory(path) ? 0755 : 0644));
  }
  fs::permissions(index_dir() / "g1.pits.json", fs::perms(0644));
  fs::permissions(replica_dir(), fs::perms(0755));

  PitStore restarted(index_dir().string());
  ASSERT_TRUE(restarted.recover("g1").is_ok());
  expect_private_below(replica_dir() / ".evac-pits");
  expect_private_below(test_dir());
  EXPECT_EQ(mode_of(index_dir() / "g1.pits.json"), 0600u);
  EXPECT_EQ(mode_of(replica_dir()), 0755u) << "the replica folder is the operator's";
  expect_pits_unchanged({pit});
}

// ---------------------------------------------------------------- bad input ---

TEST_F(pit_store, BadInputGetsClearErrorsAndChangesNothing) {
  PitStore store(index_dir().string());
  auto p1 = cycle(store, "g1", "c1", {kVda}, {{kVda, 0xe1, 0, 4096}}, 100);

  // Refusals that need a staged cycle, checked first and cleaned up.
  ASSERT_TRUE(store.begin_cycle("g1", "c2", disks({kVda})).is_ok());
  expect_error(store.begin_cycle("g1", "c2", disks({kVda})), StatusCode::kAlreadyExists, "same cycle twice");
  expect_error(store.begin_cycle("g1", "c3", disks({kVda})), StatusCode::kFailedPrecondition, "second cycle");
  expect_error(store.retain("g1", 1), StatusCode::kFailedPrecondition, "retain while staged");
  expect_error(store.save_disk_blob("g1", "c2", "other-vm/vda", "x"), StatusCode::kNotFound, "blob for a foreign disk");
  ASSERT_TRUE(store.abort_cycle("g1", "c2").is_ok());
  auto tc = store.create_test_copy("g1", p1.id, test_dir().string());
  ASSERT_TRUE(tc.is_ok());

  const auto before = snapshot_tree();

  // Unknown things.
  expect_error(store.list("nope"), StatusCode::kNotFound, "unknown group");
  expect_error(store.retain("nope", 2), StatusCode::kNotFound, "retain unknown group");
  expect_error(store.create_test_copy("nope", p1.id, test_dir().string()), StatusCode::kNotFound, "test copy of unknown group");
  expect_error(store.create_test_copy("g1", "pit-00000099-100", test_dir().string()), StatusCode::kNotFound, "unknown PIT");
  expect_error(store.drop_test_copy("g1", "tc-000099"), StatusCode::kNotFound, "unknown test copy");
  expect_error(store.commit_cycle("g1", "c9", 200'000, 0), StatusCode::kNotFound, "commit of an unstaged cycle");
  expect_error(store.abort_cycle("g1", "c9"), StatusCode::kNotFound, "abort of an unstaged cycle");
  expect_error(store.save_disk_blob("g1", "c9", kVda, "x"), StatusCode::kNotFound, "blob for an unstaged cycle");
  auto nothing_yet = store.newest("nope");
  ASSERT_TRUE(nothing_yet.is_ok());
  EXPECT_FALSE(nothing_yet->has_value());

  // Names that would reach outside their folders.
  for (const std::string bad : {"../g1", "g1/../../etc", "..", ".hidden", "", "a/b", "g1\n"}) {
    expect_error(store.list(bad), StatusCode::kInvalidArgument, "list group '" + bad + "'");
    expect_error(store.recover(bad), StatusCode::kInvalidArgument, "recover group '" + bad + "'");
    expect_error(store.begin_cycle(bad, "c2", disks({kVda})), StatusCode::kInvalidArgument, "group '" + bad + "'");
    expect_error(store.begin_cycle("g1", bad, disks({kVda})), StatusCode::kInvalidArgument, "cycle '" + bad + "'");
    expect_error(store.create_test_copy("g1", bad, test_dir().string()), StatusCode::kInvalidArgument, "PIT '" + bad + "'");
    expect_error(store.drop_test_copy("g1", bad), StatusCode::kInvalidArgument, "test copy '" + bad + "'");
    expect_error(store.commit_cycle("g1", bad, 1'000, 0), StatusCode::kInvalidArgument, "commit '" + bad + "'");
  }
  for (const std::string bad_key : {"vm1/../../x", "../vda", "vm1//vda", "/vda", "vm1/vda/", ""})
    expect_error(store.begin_cycle("g1", "c2", disks({bad_key})), StatusCode::kInvalidArgument, "key '" + bad_key + "'");
  expect_error(store.load_newest_disk_blob("g1", "vm1/../x"), StatusCode::kInvalidArgument, "blob key");

  // Inputs that cannot make a PIT.
  expect_error(store.begin_cycle("g1", "c2", {{kVda, kMiB, "relative/dir"}}), StatusCode::kInvalidArgument, "relative replica folder");
  expect_error(store.begin_cycle("g1", "c2", {{kVda, kMiB, (root_ / "missing").string()}}), StatusCode::kFailedPrecondition,
               "missing replica folder");
  expect_error(store.begin_cycle("g1", "c2", disks({kVda}, 1000)), StatusCode::kInvalidArgument, "size not a multiple of 512");
  expect_error(store.begin_cycle("g1", "c2", {}), StatusCode::kInvalidArgument, "no disks");
  expect_error(store.begin_cycle("g1", "c2", disks({kVda, kVda})), StatusCode::kInvalidArgument, "same disk twice");
  expect_error(store.begin_cycle("g1", "c2", disks({kVda, "0f8e2c1a_vm1/vda", "0f8e2c1a/vm1_vda"})),
               StatusCode::kInvalidArgument, "keys sharing a folder");
  expect_error(store.create_test_copy("g1", p1.id, "relative"), StatusCode::kInvalidArgument, "relative test folder");
  expect_error(store.retain("g1", 0), StatusCode::kInvalidArgument, "keep 0");
  expect_error(store.commit_cycle("g1", "c2", -5, 0), StatusCode::kInvalidArgument, "negative time");

  // A disk that changed size since the newest PIT: refused, never silently resynced.
  auto resized = store.begin_cycle("g1", "c2", disks({kVda}, 2 * kMiB));
  expect_error(resized, StatusCode::kFailedPrecondition, "resized disk");
  EXPECT_NE(resized.status().message().find("changed size from 1048576 to 2097152"), std::string::npos)
      << resized.status().to_string();
  EXPECT_NE(resized.status().hint().find("full resync"), std::string::npos);

  EXPECT_EQ(snapshot_tree(), before);
  EXPECT_FALSE(fs::exists(root_.parent_path() / "etc"));
  auto pits = store.list("g1");
  ASSERT_TRUE(pits.is_ok());
  EXPECT_EQ(ids(*pits), std::vector<std::string>{p1.id});
  expect_pits_unchanged(*pits);
}

TEST_F(pit_store, ACorruptIndexIsReportedNotGuessed) {
  PitStore store(index_dir().string());
  cycle(store, "g1", "c1", {kVda}, {{kVda, 0xf1, 0, 4096}}, 100);
  {
    std::ofstream out(index_dir() / "g1.pits.json", std::ios::trunc);
    out << "{ not json";
  }
  auto pits = store.list("g1");
  expect_error(pits, StatusCode::kInternal, "corrupt index");
  EXPECT_NE(pits.status().message().find("g1.pits.json"), std::string::npos);
  expect_error(store.recover("g1"), StatusCode::kInternal, "recover with a corrupt index");
  EXPECT_TRUE(fs::exists(disk_dir("g1", "0f8e2c1a-vm1_vda")));
}

// Thinning: the newest two, plus the newest of each of the last three hours
// and the last two days that have PITs; the others merge into their
// successors, and every kept PIT still reads as it did (middle PITs merge too).
TEST_F(pit_store, ThinningKeepsTheNewestPerHourAndPerDay) {
  PitStore store(index_dir().string());
  constexpr std::int64_t kHour = 3600, kDay = 86400;
  const std::int64_t day0 = 20000 * kDay;
  // (created_at, name): two days, several PITs an hour.
  const std::vector<std::pair<std::int64_t, std::string>> when = {
      {day0 + 1 * kHour + 10, "d0h1a"}, {day0 + 1 * kHour + 50, "d0h1b"}, {day0 + 5 * kHour, "d0h5"},
      {day0 + kDay + 2 * kHour, "d1h2"}, {day0 + kDay + 3 * kHour + 1, "d1h3a"}, {day0 + kDay + 3 * kHour + 9, "d1h3b"},
      {day0 + kDay + 4 * kHour, "d1h4a"}, {day0 + kDay + 4 * kHour + 5, "d1h4b"}};
  std::map<std::string, std::string> id_of;
  std::uint8_t pattern = 0x10;
  for (const auto& [at, name] : when) {
    auto p = cycle(store, "g1", "c-" + name, {kVda}, {{kVda, pattern++, 0, 4096}}, at);
    id_of[name] = p.id;
  }
  ASSERT_TRUE(store.retain("g1", RetentionPolicy{2, 3, 2}).is_ok());
  auto pits = store.list("g1");
  ASSERT_TRUE(pits.is_ok());
  // newest two: d1h4b, d1h4a; hours: d1h4b (h4), d1h3b (h3), d1h2 (h2);
  // days: d1h4b (day 1), d0h5 (day 0).
  EXPECT_EQ(ids(*pits), (std::vector<std::string>{id_of["d0h5"], id_of["d1h2"], id_of["d1h3b"], id_of["d1h4a"],
                                                  id_of["d1h4b"]}));
  expect_pits_unchanged(*pits);
  expect_chain(path_of(pits->back(), kVda), [&] {
    std::vector<std::string> chain;
    for (auto it = pits->rbegin(); it != pits->rend(); ++it) chain.push_back(path_of(*it, kVda));
    return chain;
  }());
  expect_error(store.retain("g1", RetentionPolicy{2, -1, 0}), StatusCode::kInvalidArgument, "negative hourly");
}

}  // namespace
}  // namespace evac::builtin
