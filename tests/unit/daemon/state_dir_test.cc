#include "daemon/state_dir.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>

namespace evac {
namespace {
namespace fs = std::filesystem;

unsigned mode_of(const fs::path& p) {
  struct stat st {};
  EXPECT_EQ(::lstat(p.c_str(), &st), 0) << p;
  return st.st_mode & 07777;
}

class StateDirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() / ("evac-state-dir-test-" + std::to_string(::getpid()));
    fs::remove_all(root_);
    fs::create_directories(root_ / "tls");
    fs::create_directories(root_ / "replication" / "deep");
    fs::create_directories(root_ / "backup" / "ab12cd34");
    std::ofstream(root_ / "evac.db") << "x";
    std::ofstream(root_ / "tls" / "key.pem") << "x";
    std::ofstream(root_ / "replication" / "deep" / "g.pits.json") << "{}";
    // As an older evacd or a default umask left them: readable by all.
    for (const auto& p : {root_, root_ / "tls", root_ / "replication", root_ / "replication" / "deep",
                          root_ / "backup", root_ / "backup" / "ab12cd34"})
      fs::permissions(p, fs::perms(0755));
    for (const auto& p : {root_ / "evac.db", root_ / "tls" / "key.pem", root_ / "replication" / "deep" / "g.pits.json"})
      fs::permissions(p, fs::perms(0644));
  }
  void TearDown() override { fs::remove_all(root_); }
  fs::path root_;
};

TEST_F(StateDirTest, OpensOnlyTheWayToQemusFolder) {
  ASSERT_TRUE(keep_state_dir_private(root_.string(), "backup").is_ok());
  EXPECT_EQ(mode_of(root_), 0711u);  // passable, not listable
  EXPECT_EQ(mode_of(root_ / "evac.db"), 0600u);
  EXPECT_EQ(mode_of(root_ / "tls"), 0700u);
  EXPECT_EQ(mode_of(root_ / "tls" / "key.pem"), 0600u);
  EXPECT_EQ(mode_of(root_ / "replication" / "deep"), 0700u);
  EXPECT_EQ(mode_of(root_ / "replication" / "deep" / "g.pits.json"), 0600u);
  // QEMU's folder is the replicator's to set: left as it is.
  EXPECT_EQ(mode_of(root_ / "backup"), 0755u);
  EXPECT_EQ(mode_of(root_ / "backup" / "ab12cd34"), 0755u);
}

TEST_F(StateDirTest, LeavesWhatALinkPointsAtAlone) {
  const fs::path outside = root_.string() + "-outside";
  fs::create_directories(outside);
  fs::permissions(outside, fs::perms(0755));
  fs::create_directory_symlink(outside, root_ / "link");
  ASSERT_TRUE(keep_state_dir_private(root_.string(), "backup").is_ok());
  EXPECT_EQ(mode_of(outside), 0755u);
  fs::remove_all(outside);
}

TEST_F(StateDirTest, MakesTheStateDirClosedAndTheFoldersAbovePassableWhateverTheUmask) {
  const mode_t old_mask = ::umask(0);
  const fs::path above = root_ / "var" / "lib" / "evac";
  const Status made = make_state_dir((above / "site-a").string() + "/");
  ::umask(old_mask);
  ASSERT_TRUE(made.is_ok()) << made.to_string();
  EXPECT_EQ(mode_of(above / "site-a"), 0700u) << "closed while evacd creates its files";
  for (const auto& p : {root_ / "var", root_ / "var" / "lib", above})
    EXPECT_EQ(mode_of(p), 0711u) << p << ": QEMU passes on its way to the backup folder, nobody lists";
  EXPECT_EQ(mode_of(root_), 0755u) << "a folder that was there is the operator's";
  // At the next start: closed again, whatever an operator did to it.
  fs::permissions(above / "site-a", fs::perms(0755));
  ASSERT_TRUE(make_state_dir((above / "site-a").string()).is_ok());
  EXPECT_EQ(mode_of(above / "site-a"), 0700u);
}

TEST_F(StateDirTest, AStateDirThatIsAFileIsAnError) {
  EXPECT_FALSE(make_state_dir((root_ / "evac.db").string()).is_ok());
}

TEST_F(StateDirTest, AMissingStateDirIsAnError) {
  EXPECT_FALSE(keep_state_dir_private((root_ / "missing").string(), "backup").is_ok());
}

}  // namespace
}  // namespace evac
