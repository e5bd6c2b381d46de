// Child processes: a request in, an answer out, stderr line by line, and a
// deadline that kills the child's whole process group.
#include "process/child_process.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace evac {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

ChildRequest sh(const std::string& script) {
  ChildRequest r;
  r.argv = {"sh", "-c", script};
  r.timeout = std::chrono::seconds(10);
  return r;
}

TEST(ChildProcess, FeedsStdinAndKeepsStdout) {
  ChildRequest r = sh("cat; echo done");
  r.stdin_data = std::string(1 << 20, 'x');  // more than a pipe holds: written while the child reads
  auto out = run_child(r);
  ASSERT_TRUE(out.is_ok()) << out.status().to_string();
  EXPECT_TRUE(out->exited_cleanly());
  EXPECT_EQ(out->stdout_data, std::string(1 << 20, 'x') + "done\n");
}

TEST(ChildProcess, HandsOverStderrLineByLine) {
  std::vector<std::string> lines;
  ChildRequest r = sh("printf 'one\\ntwo\\n' >&2; printf 'three' >&2; echo answer");
  r.on_stderr_line = [&](std::string_view l) { lines.emplace_back(l); };
  auto out = run_child(r);
  ASSERT_TRUE(out.is_ok());
  EXPECT_THAT(lines, ElementsAre("one", "two", "three"));
  EXPECT_EQ(out->stdout_data, "answer\n");
  EXPECT_THAT(out->stderr_tail, HasSubstr("three"));
}

TEST(ChildProcess, ReportsExitCodesAndSignals) {
  auto exited = run_child(sh("exit 3"));
  ASSERT_TRUE(exited.is_ok());
  EXPECT_EQ(exited->exit_code, 3);
  EXPECT_FALSE(exited->exited_cleanly());
  EXPECT_EQ(exited->describe_end(std::chrono::seconds(1)), "exited with 3");
  auto killed = run_child(sh("kill -SEGV $$"));
  ASSERT_TRUE(killed.is_ok());
  EXPECT_EQ(killed->signal, SIGSEGV);
  EXPECT_THAT(killed->describe_end(std::chrono::seconds(1)), HasSubstr("killed by signal 11"));
}

TEST(ChildProcess, ADeadlineKillsTheWholeGroup) {
  const std::string pidfile = ::testing::TempDir() + "/evac-child-grandchild.pid";
  std::filesystem::remove(pidfile);
  ChildRequest r = sh("sleep 60 & echo $! > " + pidfile + "; sleep 60");
  r.timeout = std::chrono::milliseconds(500);
  auto out = run_child(r);
  ASSERT_TRUE(out.is_ok());
  EXPECT_TRUE(out->timed_out);
  EXPECT_THAT(out->describe_end(r.timeout), HasSubstr("did not finish within 1 s and was killed"));
  std::ifstream in(pidfile);
  pid_t grandchild = 0;
  in >> grandchild;
  ASSERT_GT(grandchild, 0);
  // Reaped by init once killed: gone within a moment.
  for (int i = 0; i < 100 && ::kill(grandchild, 0) == 0; ++i) ::usleep(20000);
  EXPECT_NE(::kill(grandchild, 0), 0) << "the child's own child outlived the deadline";
}

TEST(ChildProcess, AStopKillsIt) {
  std::atomic<int> asked{0};
  ChildRequest r = sh("sleep 60");
  r.should_stop = [&] { return ++asked > 2; };
  auto out = run_child(r);
  ASSERT_TRUE(out.is_ok());
  EXPECT_TRUE(out->stopped);
  EXPECT_FALSE(out->exited_cleanly());
}

TEST(ChildProcess, TooMuchOutputKillsIt) {
  ChildRequest r = sh("yes");
  r.max_stdout = 64 * 1024;
  auto out = run_child(r);
  ASSERT_TRUE(out.is_ok());
  EXPECT_TRUE(out->stdout_overflow);
  EXPECT_LE(out->stdout_data.size(), 64u * 1024 + 16384);
}

TEST(ChildProcess, TailOnlyKeepsTheEnd) {
  ChildRequest r = sh("seq 1 100000");
  r.max_stdout = 100;
  r.stdout_tail_only = true;
  auto out = run_child(r);
  ASSERT_TRUE(out.is_ok());
  EXPECT_TRUE(out->exited_cleanly());
  EXPECT_THAT(out->stdout_data, HasSubstr("100000\n"));
  EXPECT_LE(out->stdout_data.size(), 200u);
}

TEST(ChildProcess, AProgramThatCannotRunIsNamed) {
  ChildRequest r;
  r.argv = {"/nonexistent/evac-adapter"};
  auto out = run_child(r);
  EXPECT_EQ(out.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_THAT(out.status().message(), HasSubstr("/nonexistent/evac-adapter"));
}

TEST(ChildProcess, AChildThatIgnoresItsStdinDoesNotHang) {
  ChildRequest r = sh("exec 0<&-; echo ok");
  r.stdin_data = std::string(4 << 20, 'y');
  auto out = run_child(r);
  ASSERT_TRUE(out.is_ok());
  EXPECT_EQ(out->stdout_data, "ok\n");
}

}  // namespace
}  // namespace evac
