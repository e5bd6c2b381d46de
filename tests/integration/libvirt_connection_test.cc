// libvirt::Connection against a daemon that never answers: libvirt's real
// remote driver on a real unix socket, whose other end accepts and then says
// nothing (a hung libvirtd, as far as the client can tell). libvirt's own
// open would wait on it forever; evac's must not.
#include "providers/libvirt/libvirt_connection.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <mutex>
#include <thread>
#include <vector>

namespace evac {
namespace {

using ::testing::HasSubstr;

// A listening unix socket that accepts connections and holds them without
// a word: the silent half of a hung libvirtd. Named as the fake it is.
class FakeSilentDaemon {
 public:
  explicit FakeSilentDaemon(std::filesystem::path path) : path_(std::move(path)) {
    listener_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path_.c_str());
    EXPECT_EQ(::bind(listener_, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    EXPECT_EQ(::listen(listener_, 8), 0);
    acceptor_ = std::thread([this] {
      for (;;) {
        int fd = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
        if (fd < 0) return;
        std::lock_guard lock(mu_);
        held_.push_back(fd);
      }
    });
  }
  ~FakeSilentDaemon() {
    ::shutdown(listener_, SHUT_RDWR);
    acceptor_.join();
    ::close(listener_);
    hang_up();
  }
  int accepted() {
    std::lock_guard lock(mu_);
    return accepted_before_ + static_cast<int>(held_.size());
  }
  // Closes every connection it holds, as a daemon that finally gives up would.
  void hang_up() {
    std::lock_guard lock(mu_);
    for (int fd : held_) ::close(fd);
    accepted_before_ += static_cast<int>(held_.size());
    held_.clear();
  }

 private:
  std::filesystem::path path_;
  int listener_ = -1;
  std::thread acceptor_;
  std::mutex mu_;
  std::vector<int> held_;
  int accepted_before_ = 0;
};

TEST(LibvirtConnectionTest, ADaemonThatNeverAnswersIsGivenUpOnAndTriedOnceAtATime) {
  auto dir = std::filesystem::temp_directory_path() / ("evac-silent-libvirtd-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  {
    FakeSilentDaemon daemon(dir / "libvirt-sock");
    const std::string uri = "qemu+unix:///system?socket=" + (dir / "libvirt-sock").string();
    libvirt::Connection connection(uri, {.open_timeout = std::chrono::milliseconds(300)});

    auto first = connection.acquire();
    ASSERT_FALSE(first.is_ok());
    EXPECT_EQ(first.status().code(), StatusCode::kUnavailable);
    EXPECT_THAT(first.status().message(), HasSubstr("has not answered a connection"));
    EXPECT_THAT(first.status().hint(), HasSubstr("virsh -c " + uri));

    // The open still waits on the daemon: a second caller waits on that one
    // rather than pile another connection onto a daemon that is not answering.
    auto second = connection.acquire();
    ASSERT_FALSE(second.is_ok());
    EXPECT_EQ(second.status().code(), StatusCode::kUnavailable);
    EXPECT_EQ(daemon.accepted(), 1);

    // The daemon hangs up: that open ends, its failure is what the next caller
    // hears, and the caller after that tries afresh.
    daemon.hang_up();
    Status ended = Status::ok();
    for (int i = 0; i < 100 && ended.is_ok(); ++i) {
      auto got = connection.acquire();
      ASSERT_FALSE(got.is_ok());
      if (got.status().message().find("has not answered") == std::string::npos) ended = got.status();
    }
    EXPECT_EQ(ended.code(), StatusCode::kUnavailable);
    EXPECT_THAT(ended.message(), HasSubstr("cannot connect to libvirt at " + uri));
    EXPECT_EQ(daemon.accepted(), 1);
    auto again = connection.acquire();
    EXPECT_FALSE(again.is_ok());
    EXPECT_EQ(daemon.accepted(), 2);
    daemon.hang_up();
  }
  std::filesystem::remove_all(dir);
}

TEST(LibvirtConnectionTest, ALocalDriverOpensWithinTheBoundAndIsShared) {
  libvirt::Connection connection("test:///default", {.open_timeout = std::chrono::milliseconds(5000)});
  auto a = connection.acquire();
  ASSERT_TRUE(a.is_ok()) << a.status().to_string();
  auto b = connection.acquire();
  ASSERT_TRUE(b.is_ok()) << b.status().to_string();
  EXPECT_EQ(a->get(), b->get());
  EXPECT_GE(virConnectNumOfDefinedDomains(a->get()) + virConnectNumOfDomains(a->get()), 1);
}

}  // namespace
}  // namespace evac
