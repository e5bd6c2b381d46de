// Integration harness: real evacd processes on loopback, driven through the
// real evac CLI, each site with its own state folder and libvirt inventory.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "net/https_client.h"
#include "replication/builtin/host_io.h"

namespace evac::testing {

namespace fs = std::filesystem;

inline std::string evacd_binary() { return std::string(EVAC_BINARY_DIR) + "/src/daemon/evacd"; }
inline std::string evac_binary() { return std::string(EVAC_BINARY_DIR) + "/src/cli/evac"; }

inline int free_port() {
  int s = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  ::getsockname(s, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(s);
  return ntohs(addr.sin_port);
}

inline std::string read_file(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

struct CommandResult {
  int exit_code = -1;
  std::string out;
  std::string err;
  nlohmann::json json() const { return nlohmann::json::parse(out, nullptr, false); }
};

// Runs a program (looked up in PATH unless absolute) with arguments, no
// shell, capturing stdout and stderr.
inline CommandResult run_command(const std::vector<std::string>& argv, const std::vector<std::string>& env = {}) {
  fs::path tmp = fs::temp_directory_path() / ("evac-cmd-" + std::to_string(::getpid()) + "-" +
                                              std::to_string(std::chrono::steady_clock::now().time_since_epoch().count()));
  std::string out_path = tmp.string() + ".out", err_path = tmp.string() + ".err";
  pid_t pid = ::fork();
  if (pid == 0) {
    int out = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int err = ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ::dup2(out, 1);
    ::dup2(err, 2);
    for (const auto& e : env) ::putenv(const_cast<char*>(e.c_str()));
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execvp(args[0], args.data());
    ::_exit(127);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  CommandResult r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = read_file(out_path);
  r.err = read_file(err_path);
  fs::remove(out_path);
  fs::remove(err_path);
  return r;
}

// One evacd process with its own config and state folder.
class EvacdProcess {
 public:
  EvacdProcess(fs::path root, std::string site, std::vector<std::pair<std::string, std::string>> providers,
               const std::string& heartbeat_interval = "1s")
      : root_(std::move(root)), site_(std::move(site)), port_(free_port()) {
    fs::create_directories(root_);
    std::ofstream cfg(config_path());
    cfg << "site: " << site_ << "\n"
        << "listen: 127.0.0.1:" << port_ << "\n"
        << "state_dir: " << state_dir().string() << "\n"
        << "heartbeat_interval: " << heartbeat_interval << "\n"
        << "peer_timeout: 2s\n"
        << "log: {format: json, level: debug}\n"
        << "compute_providers:\n";
    for (const auto& [name, uri] : providers) cfg << "  - {name: " << name << ", kind: libvirt, uri: \"" << uri << "\"}\n";
  }
  ~EvacdProcess() { stop(SIGKILL); }

  fs::path config_path() const { return root_ / (site_ + ".yaml"); }
  fs::path state_dir() const { return root_ / (site_ + "-state"); }
  fs::path log_path() const { return root_ / (site_ + ".log"); }
  std::string url() const { return "https://127.0.0.1:" + std::to_string(port_); }
  const std::string& site() const { return site_; }
  std::string token() const { return trim(read_file(state_dir() / "admin.token")); }
  std::string pin() const { return trim(read_file(state_dir() / "pin")); }
  pid_t pid() const { return pid_; }

  // Starts and waits until /api/v1/health answers; false if it died first.
  bool start() {
    pid_ = ::fork();
    if (pid_ == 0) {
      // If the test process dies (a crash, a sanitizer abort), its sites die too.
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      int log = ::open(log_path().c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
      ::dup2(log, 1);
      ::dup2(log, 2);
      std::string bin = evacd_binary(), flag = "--config", cfg = config_path().string();
      char* args[] = {bin.data(), flag.data(), cfg.data(), nullptr};
      ::execv(args[0], args);
      ::_exit(127);
    }
    HttpsClientOptions options;
    options.base_url = url();
    options.timeout = std::chrono::milliseconds(1000);
    HttpsClient client(options);
    for (int i = 0; i < 200; ++i) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        exit_status_ = status;
        pid_ = -1;
        return false;
      }
      auto r = client.request("GET", "/api/v1/health");
      if (r.is_ok() && r->status == 200) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  }

  // Sends `sig` and waits; returns the exit status as waitpid reports it.
  int stop(int sig = SIGTERM) {
    if (pid_ <= 0) return exit_status_;
    ::kill(pid_, sig);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    exit_status_ = status;
    return status;
  }

  std::string log() const { return read_file(log_path()); }

 private:
  fs::path root_;
  std::string site_;
  int port_;
  pid_t pid_ = -1;
  int exit_status_ = 0;
};

// Removes a test's folder. A fence makes the stale copy's disk files
// immutable (a failback releases them, a test that ends before leaves them
// so): the attribute is lifted first.
inline void remove_tree(const fs::path& root) {
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(root, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec))
    if (it->is_regular_file(ec)) (void)evac::builtin::set_immutable(it->path().string(), false);
  fs::remove_all(root);
}

// Two evacd's (site-a, site-b) and the evac CLI with a context for each
// ("a", "b"); a fixture's SetUp calls make_root, make_sites, start_sites.
class TwoEvacdTest : public ::testing::Test {
 protected:
  // A fresh folder for this test under the temp directory.
  void make_root(const std::string& prefix) {
    root_ = fs::temp_directory_path() /
            (prefix + std::to_string(::getpid()) + "-" + ::testing::UnitTest::GetInstance()->current_test_info()->name());
    remove_tree(root_);
    fs::create_directories(root_);
  }
  // How often site-b sends heartbeats (and with them its configuration) to
  // site-a; a fixture that needs site-a to stay unaware sets it long.
  std::string b_heartbeat_interval_ = "1s";
  // The two sites' evacd processes in root_, one libvirt provider each.
  void make_sites(const std::string& uri_a, const std::string& uri_b) {
    a_ = std::make_unique<EvacdProcess>(root_, "site-a", std::vector<std::pair<std::string, std::string>>{{"kvm-a", uri_a}});
    b_ = std::make_unique<EvacdProcess>(root_, "site-b", std::vector<std::pair<std::string, std::string>>{{"kvm-b", uri_b}},
                                        b_heartbeat_interval_);
    cli_config_ = (root_ / "cli.yaml").string();
  }
  // Starts both and adds the CLI contexts "a" (current) and "b".
  void start_sites() {
    ASSERT_TRUE(a_->start()) << a_->log();
    ASSERT_TRUE(b_->start()) << b_->log();
    for (auto [ctx, site] : {std::pair{"a", a_.get()}, std::pair{"b", b_.get()}}) {
      std::vector<std::string> args = {"context", "add", ctx, "--url", site->url(), "--token-file",
                                       (site->state_dir() / "admin.token").string(), "--pin-file",
                                       (site->state_dir() / "pin").string()};
      if (std::string(ctx) == "a") args.push_back("--use");
      auto added = evac(args);
      ASSERT_EQ(added.exit_code, 0) << added.err;
    }
  }
  void TearDown() override {
    if (HasFailure() && a_ && b_)
      std::cerr << "---- site-a log\n" << a_->log() << "\n---- site-b log\n" << b_->log() << "\n";
    a_.reset();
    b_.reset();
    remove_tree(root_);
  }

  CommandResult evac(std::vector<std::string> args) {
    args.insert(args.begin(), {evac_binary(), "--config", cli_config_});
    return run_command(args);
  }
  CommandResult evac_at(const std::string& context, std::vector<std::string> args) {
    args.insert(args.begin(), {"--context", context});
    return evac(std::move(args));
  }

  fs::path root_;
  std::string cli_config_;
  std::unique_ptr<EvacdProcess> a_, b_;
};

}  // namespace evac::testing
