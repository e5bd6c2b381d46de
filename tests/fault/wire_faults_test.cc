// Faults in the middle of a replication cycle between two real evacd
// processes, replicating real qcow2 images (libvirt's test driver, VMs shut
// off, scan mode): a bit flipped on the wire, the link cut, the recovery
// site's replica filesystem full. Each case asserts what an operator relies
// on: the cycle is refused with a clear error (or, where nothing was lost,
// recovers by itself), the point in time before it stays intact and
// verifiable, and the next clean cycle makes a new one equal to the source.
//
// Site-a reaches site-b only through WireProxy, a TCP relay in this test
// that can flip one bit of what it forwards or cut every connection: site-b
// advertises the relay's address, so pairing and every call site-a makes
// to site-b cross it.
#include <poll.h>
#include <sys/mount.h>
#include <sys/statvfs.h>

#include <atomic>
#include <future>
#include <mutex>

#include "../integration/harness.h"
#include "../integration/test_driver_sites.h"

namespace evac::testing {
namespace {

using nlohmann::json;
constexpr std::uint64_t kMiB = 1024 * 1024;

int connect_loopback(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// A TCP relay from its own port to a target port on loopback, one thread
// per connection. It can flip one bit of the next large chunk it forwards
// toward the target, and cut: close every connection and refuse new ones
// until restored.
class WireProxy {
 public:
  explicit WireProxy(int target_port) : target_port_(target_port), port_(free_port()) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<std::uint16_t>(port_));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bound_ = ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 && ::listen(listen_fd_, 64) == 0;
    acceptor_ = std::thread([this] { accept_loop(); });
  }
  ~WireProxy() {
    stopping_ = true;
    ::shutdown(listen_fd_, SHUT_RDWR);
    acceptor_.join();
    ::close(listen_fd_);
    std::lock_guard lock(mu_);
    for (auto& t : relays_) t.join();
  }
  bool bound() const { return bound_; }
  int port() const { return port_; }
  // Bytes forwarded toward the target so far.
  std::uint64_t forwarded() const { return forwarded_; }
  void flip_one_bit() { flip_armed_ = true; }
  bool flipped() const { return flipped_; }
  // Whether the connection that carried the flipped bit has ended.
  bool damaged_stream_ended() const { return damaged_ended_; }
  void cut() { cut_ = true; }
  void restore() { cut_ = false; }

 private:
  void accept_loop() {
    while (!stopping_) {
      pollfd p{listen_fd_, POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0) continue;
      int client = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (client < 0) continue;
      if (cut_) {  // the link is down: nothing gets through
        ::close(client);
        continue;
      }
      std::lock_guard lock(mu_);
      relays_.emplace_back([this, client] { relay(client); });
    }
  }

  void relay(int client) {
    int server = connect_loopback(target_port_);
    if (server < 0) {
      ::close(client);
      return;
    }
    std::vector<char> buf(64 * 1024);
    pollfd fds[2] = {{client, POLLIN, 0}, {server, POLLIN, 0}};
    bool damaged = false;  // this connection carried the flipped bit
    while (!stopping_ && !cut_) {
      if (::poll(fds, 2, 100) <= 0) continue;
      bool closed = false;
      for (int i = 0; i < 2 && !closed; ++i) {
        if (fds[i].revents == 0) continue;
        ssize_t n = ::read(fds[i].fd, buf.data(), buf.size());
        if (n <= 0) {
          closed = true;
          break;
        }
        if (i == 0) {
          // One bit in the middle of a full chunk (a bulk transfer: blocks
          // of a cycle, not a heartbeat): inside a TLS record's ciphertext.
          if (static_cast<std::size_t>(n) == buf.size() && flip_armed_.exchange(false)) {
            buf[static_cast<std::size_t>(n) / 2] ^= 0x10;
            flipped_ = true;
            damaged = true;
          }
          forwarded_ += static_cast<std::uint64_t>(n);
        }
        if (!write_all(i == 0 ? server : client, buf.data(), static_cast<std::size_t>(n))) closed = true;
      }
      if (closed) break;
    }
    // A TLS stream with a flipped bit cannot go on: site-b answers with an
    // alert and hangs up, or resets the connection, or site-a hangs up on
    // reading the alert.
    if (damaged && !stopping_) damaged_ended_ = true;
    ::close(client);
    ::close(server);
  }

  static bool write_all(int fd, const char* data, std::size_t n) {
    while (n > 0) {
      ssize_t w = ::send(fd, data, n, MSG_NOSIGNAL);
      if (w <= 0) return false;
      data += w;
      n -= static_cast<std::size_t>(w);
    }
    return true;
  }

  int target_port_;
  int port_;
  int listen_fd_ = -1;
  bool bound_ = false;
  std::atomic<bool> stopping_{false}, cut_{false}, flip_armed_{false}, flipped_{false}, damaged_ended_{false};
  std::atomic<std::uint64_t> forwarded_{0};
  std::thread acceptor_;
  std::mutex mu_;
  std::vector<std::thread> relays_;
};

class WireFaultTest : public TwoEvacdTest {
 protected:
  void SetUp() override {
    make_root("evac-wire-");
    write_test_driver_sites(root_);
    make_sites("test://" + (root_ / "site-a.xml").string(), "test://" + (root_ / "site-b.xml").string());
    proxy_ = std::make_unique<WireProxy>(port_of(b_->url()));
    ASSERT_TRUE(proxy_->bound());
    std::ofstream(b_->config_path(), std::ios::app)
        << "advertise_url: https://127.0.0.1:" << proxy_->port() << "\n";
  }
  void TearDown() override {
    // Detached first: the folder it hides is removed with the test's.
    if (!mounted_.empty()) ::umount2(mounted_.c_str(), MNT_DETACH);
    TwoEvacdTest::TearDown();
    proxy_.reset();
  }
  static int port_of(const std::string& url) { return std::stoi(url.substr(url.rfind(':') + 1)); }

  // Starts the sites, pairs them (through the relay), protects db01 and
  // web01, makes the first point in time.
  void start_and_protect() {
    ASSERT_NO_FATAL_FAILURE(start_sites());
    ASSERT_NO_FATAL_FAILURE(
        pair_and_protect_shop([this](const std::string& c, std::vector<std::string> a) { return evac_at(c, std::move(a)); }));
    ASSERT_GT(proxy_->forwarded(), 0u) << "site-a did not reach site-b through the relay";
  }

  // Writes `mib` MiB that do not compress into db01's disk, so the next
  // cycle has that much to ship.
  void change_db01(int mib, int at_mib) {
    const fs::path random = root_ / "random.raw";
    ASSERT_EQ(run_command({"dd", "if=/dev/urandom", "of=" + random.string(), "bs=1M", "count=" + std::to_string(mib),
                           "status=none"})
                  .exit_code,
              0);
    auto wrote = run_command({"qemu-io", "-f", "qcow2", "-c",
                              "write -s " + random.string() + " " + std::to_string(at_mib * kMiB) + " " +
                                  std::to_string(mib * kMiB),
                              db01_disk()});
    ASSERT_EQ(wrote.exit_code, 0) << wrote.err;
  }
  std::string db01_disk() const { return (root_ / "a/images/db01.qcow2").string(); }

  json pits() { return evac_at("a", {"group", "pits", "shop", "-o", "json"}).json(); }
  std::string db01_replica(const json& pit) {
    for (const auto& d : pit["disks"])
      if (d["key"].get<std::string>().find("c0000000-0000-4000-8000-000000000001") == 0) return d["path"];
    return "";
  }

  // Runs a cycle that ships slowly (1 MiB/s: its first batch of 8 MiB at
  // once, the next after a wait), calls `fault` once 1 MiB of it has
  // crossed the relay, and returns how the cycle ended.
  CommandResult cycle_with_fault(const std::function<void()>& fault) {
    EXPECT_EQ(evac_at("a", {"group", "set", "shop", "--max-rate", "1MiB/s"}).exit_code, 0);
    const std::uint64_t before = proxy_->forwarded();
    auto sync = std::async(std::launch::async, [this] { return evac_at("a", {"group", "sync", "shop"}); });
    bool injected = false;
    for (int i = 0; i < 600; ++i) {
      if (sync.wait_for(std::chrono::milliseconds(50)) == std::future_status::ready) break;
      if (proxy_->forwarded() >= before + kMiB) {
        fault();
        injected = true;
        break;
      }
    }
    EXPECT_TRUE(injected) << "the cycle ended before 1 MiB of it crossed the wire";
    auto result = sync.get();
    EXPECT_EQ(evac_at("a", {"group", "set", "shop", "--max-rate", "none"}).exit_code, 0);
    return result;
  }

  // What must hold after a cycle a fault cut: `before` is still the newest
  // point in time, it verifies at site-b, and a clean cycle then makes a
  // new one that equals db01's disk.
  // With `answer_may_be_lost`, the fault may have cut the answer to a
  // commit site-b made: then the new point in time must be complete (equal
  // to db01's disk, which has not changed since) and verify.
  void previous_pit_intact_then_clean_cycle(const json& before, bool answer_may_be_lost = false) {
    json now = pits();
    if (answer_may_be_lost && now.size() == before.size() + 1) {
      std::cerr << "the fault cut the answer to a commit site-b made: checking that point in time\n";
      auto compare = run_command({"qemu-img", "compare", "-q", db01_disk(), db01_replica(now.back())});
      EXPECT_EQ(compare.exit_code, 0) << "a point in time committed through the fault differs from db01's disk";
      EXPECT_EQ(evac_at("b", {"group", "verify", "shop"}).exit_code, 0);
      now.erase(now.size() - 1);
    }
    ASSERT_EQ(now.size(), before.size()) << "a cut cycle must not make a point in time";
    EXPECT_EQ(now.back()["id"], before.back()["id"]);
    const std::size_t made_through_fault = pits().size() - before.size();
    auto verify = evac_at("b", {"group", "verify", "shop", "--pit", before.back()["id"]});
    EXPECT_EQ(verify.exit_code, 0) << verify.out << verify.err;
    EXPECT_NE(verify.out.find("every block matches"), std::string::npos) << verify.out;
    auto clean = evac_at("a", {"group", "sync", "shop"});
    ASSERT_EQ(clean.exit_code, 0) << clean.err;
    const json after = pits();
    ASSERT_EQ(after.size(), before.size() + made_through_fault + 1);
    auto compare = run_command({"qemu-img", "compare", "-q", db01_disk(), db01_replica(after.back())});
    EXPECT_EQ(compare.exit_code, 0) << "the new point in time differs from db01's disk: " << compare.out << compare.err;
    EXPECT_EQ(evac_at("b", {"group", "verify", "shop"}).exit_code, 0);
  }

  std::unique_ptr<WireProxy> proxy_;
  std::string mounted_;
};

// TLS at site-b refuses the damaged record and drops the connection, so
// no damaged byte can reach a point in time. What the cycle does then
// depends on where the flip landed: a request sent on a reused connection
// that dies before any answer is sent again on a fresh one (libcurl does
// that, and writing blocks twice is harmless), and the cycle succeeds;
// otherwise the cycle fails. Either way nothing is lost, and what the
// recovery site holds is exactly the source.
TEST_F(WireFaultTest, ABitFlippedOnTheWireNeverReachesAPointInTime) {
  ASSERT_NO_FATAL_FAILURE(start_and_protect());
  ASSERT_NO_FATAL_FAILURE(change_db01(12, 1));
  const json before = pits();
  // Armed before the cycle: the first full chunk of its blocks is hit.
  proxy_->flip_one_bit();
  auto cycle = evac_at("a", {"group", "sync", "shop"});
  ASSERT_TRUE(proxy_->flipped()) << "no bulk transfer crossed the relay";
  for (int i = 0; i < 100 && !proxy_->damaged_stream_ended(); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_TRUE(proxy_->damaged_stream_ended()) << "the sites went on talking over a stream with a flipped bit";
  std::cerr << "cycle with a flipped bit: exit " << cycle.exit_code << "\n" << cycle.err << "\n";
  if (cycle.exit_code == 0) {
    const json after = pits();
    ASSERT_EQ(after.size(), before.size() + 1);
    auto compare = run_command({"qemu-img", "compare", "-q", db01_disk(), db01_replica(after.back())});
    EXPECT_EQ(compare.exit_code, 0) << "the point in time made through the flip differs from db01's disk";
    auto verify = evac_at("b", {"group", "verify", "shop"});
    EXPECT_EQ(verify.exit_code, 0) << verify.out << verify.err;
    auto earlier = evac_at("b", {"group", "verify", "shop", "--pit", before.back()["id"]});
    EXPECT_EQ(earlier.exit_code, 0) << "the point in time before: " << earlier.out << earlier.err;
    return;
  }
  EXPECT_EQ(cycle.exit_code, 1);
  EXPECT_NE(cycle.err.find("site 'site-b'"), std::string::npos) << cycle.err;
  EXPECT_NE(cycle.err.find("hint:"), std::string::npos) << cycle.err;
  previous_pit_intact_then_clean_cycle(before);
}

TEST_F(WireFaultTest, TheLinkCutMidCycleFailsTheCycleAndLosesNothing) {
  ASSERT_NO_FATAL_FAILURE(start_and_protect());
  ASSERT_NO_FATAL_FAILURE(change_db01(12, 1));
  const json before = pits();
  auto cycle = cycle_with_fault([this] { proxy_->cut(); });
  std::cerr << "cycle with the link cut: exit " << cycle.exit_code << "\n" << cycle.err << "\n";
  EXPECT_EQ(cycle.exit_code, 1);
  EXPECT_NE(cycle.err.find("site 'site-b': cannot reach"), std::string::npos) << "the error names the site it lost: " << cycle.err;
  EXPECT_NE(cycle.err.find("hint:"), std::string::npos) << cycle.err;
  EXPECT_EQ(cycle.err.find("certificate"), std::string::npos) << "a cut link is no certificate problem: " << cycle.err;
  proxy_->restore();
  previous_pit_intact_then_clean_cycle(before, /*answer_may_be_lost=*/true);
}

TEST_F(WireFaultTest, AFullReplicaFilesystemMidCycleFailsTheCycleAndLosesNothing) {
  if (::geteuid() != 0) GTEST_SKIP() << "mounting a small filesystem for site-b's replicas needs root";
  // Site-b's replicas pool on a filesystem of its own, 64 MiB.
  const fs::path replicas = root_ / "b/replicas";
  ASSERT_EQ(::mount("tmpfs", replicas.c_str(), "tmpfs", 0, "size=64m,mode=0700"), 0) << std::strerror(errno);
  mounted_ = replicas.string();
  ASSERT_NO_FATAL_FAILURE(start_and_protect());
  ASSERT_NO_FATAL_FAILURE(change_db01(12, 1));
  const json before = pits();
  // All but 2 MiB taken: the cycle starts (its staging images fit) and
  // the filesystem fills up under its blocks, a few MiB in.
  const fs::path filler = replicas / "filler";
  struct statvfs st {};
  ASSERT_EQ(::statvfs(replicas.c_str(), &st), 0);
  const std::uint64_t free_bytes = st.f_bavail * st.f_frsize;
  ASSERT_GT(free_bytes, 4 * kMiB);
  auto filled = run_command({"fallocate", "-l", std::to_string(free_bytes - 2 * kMiB), filler.string()});
  ASSERT_EQ(filled.exit_code, 0) << filled.err;
  auto cycle = evac_at("a", {"group", "sync", "shop"});
  std::cerr << "cycle with site-b's replicas full: exit " << cycle.exit_code << "\n" << cycle.err << "\n";
  EXPECT_EQ(cycle.exit_code, 1);
  EXPECT_NE(cycle.err.find("No space left on device"), std::string::npos) << cycle.err;
  EXPECT_NE(cycle.err.find("is full: free space and retry"), std::string::npos) << cycle.err;
  fs::remove(filler);
  previous_pit_intact_then_clean_cycle(before);
}

// A qemu-nbd an earlier evacd left running (recorded under its state
// folder) is stopped when evacd starts again, and its image is usable.
TEST_F(WireFaultTest, ARestartStopsTheExportsAKilledLifeLeft) {
  ASSERT_NO_FATAL_FAILURE(start_and_protect());
  const fs::path record = a_->state_dir() / "nbd-exports";
  ASSERT_TRUE(fs::is_directory(record));
  const std::string socket = (root_ / "orphan.sock").string();
  // As a killed evacd leaves one: not our child, recorded, exporting db01.
  auto started = run_command({"setsid", "--fork", "qemu-nbd", "--socket=" + socket, "--persistent", "--read-only",
                              "--format=qcow2", "--pid-file=" + (root_ / "orphan.pid").string(), "--", db01_disk()});
  ASSERT_EQ(started.exit_code, 0) << started.err;
  pid_t orphan = 0;
  for (int i = 0; i < 100 && orphan <= 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    std::string text = trim(read_file(root_ / "orphan.pid"));
    if (!text.empty()) orphan = std::stoi(text);
  }
  ASSERT_GT(orphan, 0);
  std::ofstream(record / std::to_string(orphan)) << socket << "\n";
  ASSERT_EQ(a_->stop(SIGKILL), SIGKILL);
  ASSERT_TRUE(a_->start()) << a_->log();
  bool gone = false;
  for (int i = 0; i < 100 && !gone; ++i) {
    gone = !fs::exists("/proc/" + std::to_string(orphan) + "/cmdline") ||
           read_file("/proc/" + std::to_string(orphan) + "/cmdline").empty();
    if (!gone) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_TRUE(gone) << "qemu-nbd " << orphan << " still runs after evacd's restart";
  if (!gone) ::kill(orphan, SIGKILL);
  EXPECT_NE(a_->log().find("stopped 1 qemu-nbd export(s) an earlier evacd left running"), std::string::npos);
  EXPECT_TRUE(fs::is_empty(record));
  ASSERT_NO_FATAL_FAILURE(change_db01(1, 1));
  auto sync = evac_at("a", {"group", "sync", "shop"});
  EXPECT_EQ(sync.exit_code, 0) << "db01's disk is free again: " << sync.err;
}

}  // namespace
}  // namespace evac::testing
