// evac's side of an external adapter, against small shell adapters: what
// goes in, what comes out, and what happens when an adapter misbehaves.
#include "replication/external/external_adapter.h"

#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "core/json_decode.h"

namespace evac::external {
namespace {

using ::testing::HasSubstr;
using nlohmann::json;

class ExternalAdapterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "/evac-external-" + std::to_string(::getpid()) + "-" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  // An adapter whose answers are `cases` (a shell case body on the request).
  ExternalAdapterConfig adapter(const std::string& cases) {
    const std::string path = dir_ + "/adapter.sh";
    std::ofstream(path) << "#!/bin/sh\nreq=$(cat)\nprintf '%s' \"$req\" > " << dir_ << "/request.json\n"
                        << "case \"$req\" in\n"
                        << "  *'\"operation\":\"capabilities\"'*) echo '{\"protocol\":1,\"result\":{\"capabilities\":"
                           "{\"points_in_time\":true,\"test_copies\":true}}}' ;;\n"
                        << cases << "\nesac\n";
    ::chmod(path.c_str(), 0755);
    ExternalAdapterConfig c;
    c.kind = "shell";
    c.command = {path};
    c.timeout = std::chrono::seconds(10);
    c.settings = json{{"pool", "vms"}};
    return c;
  }
  ReplicationSiteContext site() {
    ReplicationSiteContext s;
    s.site_name = "site-b";
    s.state_dir = dir_ + "/state";
    return s;
  }
  json last_request() {
    std::ifstream in(dir_ + "/request.json");
    return json::parse(std::string(std::istreambuf_iterator<char>(in), {}));
  }
  std::string dir_;
};

TEST_F(ExternalAdapterTest, StartsWithTheAdaptersCapabilities) {
  auto a = ExternalAdapter::start(adapter(""), site());
  ASSERT_TRUE(a.is_ok()) << a.status().to_string();
  EXPECT_EQ((*a)->kind(), "shell");
  EXPECT_TRUE((*a)->capabilities().points_in_time);
  EXPECT_FALSE((*a)->capabilities().reverse);
  json req = last_request();
  EXPECT_EQ(req["operation"], "capabilities");
  EXPECT_EQ(req["site"]["name"], "site-b");
  EXPECT_EQ(req["site"]["state_dir"], dir_ + "/state/adapters/shell");
  EXPECT_EQ(req["settings"]["pool"], "vms");
  EXPECT_TRUE(std::filesystem::is_directory(dir_ + "/state/adapters/shell"));
}

TEST_F(ExternalAdapterTest, AnAdapterThatCannotStartIsRefusedByName) {
  ExternalAdapterConfig c = adapter("");
  c.command = {dir_ + "/missing"};
  auto a = ExternalAdapter::start(c, site());
  EXPECT_EQ(a.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_THAT(a.status().message(), HasSubstr("replication adapter 'shell' (capabilities)"));
  EXPECT_FALSE(check_adapter_config(c).is_ok());
}

TEST_F(ExternalAdapterTest, AnErrorAnswerKeepsItsCodeAndAction) {
  auto a = ExternalAdapter::start(
      adapter("  *'\"operation\":\"list_pits\"'*) echo '{\"protocol\":1,\"error\":{\"code\":\"unavailable\","
              "\"message\":\"cluster unreachable\",\"action\":\"start the mons\"}}' ;;"),
      site());
  ASSERT_TRUE(a.is_ok()) << a.status().to_string();
  auto pits = (*a)->list_pits("g1");
  EXPECT_EQ(pits.status().code(), StatusCode::kUnavailable);
  EXPECT_THAT(pits.status().message(), HasSubstr("replication adapter 'shell' (list_pits): cluster unreachable"));
  EXPECT_EQ(pits.status().hint(), "start the mons");
  EXPECT_EQ(last_request()["request"]["group"], "g1");
}

TEST_F(ExternalAdapterTest, AHungAdapterIsKilledAtItsOperationsTimeout) {
  ExternalAdapterConfig c = adapter("  *'\"operation\":\"list_pits\"'*) sleep 60 ;;");
  c.timeouts["list_pits"] = std::chrono::seconds(1);
  auto a = ExternalAdapter::start(c, site());
  ASSERT_TRUE(a.is_ok()) << a.status().to_string();
  auto pits = (*a)->list_pits("g1");
  EXPECT_EQ(pits.status().code(), StatusCode::kUnavailable);
  EXPECT_THAT(pits.status().message(), HasSubstr("replication adapter 'shell' (list_pits) did not finish within 1 s"));
  EXPECT_THAT(pits.status().hint(), HasSubstr("timeouts.list_pits"));
}

TEST_F(ExternalAdapterTest, ACrashOrAnExitNamesTheOperationAndItsLastWords) {
  auto a = ExternalAdapter::start(
      adapter("  *'\"operation\":\"list_test_copies\"'*) echo 'lost the array' >&2; exit 4 ;;\n"
              "  *'\"operation\":\"drop_test_copy\"'*) kill -KILL $$ ;;"),
      site());
  ASSERT_TRUE(a.is_ok()) << a.status().to_string();
  auto copies = (*a)->list_test_copies("g1");
  EXPECT_THAT(copies.status().message(),
              HasSubstr("replication adapter 'shell' (list_test_copies) exited with 4; it said: lost the array"));
  Status dropped = (*a)->drop_test_copy("g1", "c1");
  EXPECT_THAT(dropped.message(), HasSubstr("(drop_test_copy) was killed by signal 9"));
}

TEST_F(ExternalAdapterTest, AnAnswerOfTheWrongShapeNamesTheField) {
  auto a = ExternalAdapter::start(
      adapter("  *'\"operation\":\"list_pits\"'*) echo '{\"protocol\":1,\"result\":{\"pits\":[{\"id\":\"p1\",\"group\":\"g2\","
              "\"created_at\":1,\"disks\":[]}]}}' ;;\n"
              "  *'\"operation\":\"drop_test_copy\"'*) echo '{\"protocol\":1,\"result\":{\"dropped\":true}}' ;;\n"
              "  *'\"operation\":\"create_test_copy\"'*) echo '{\"protocol\":1,\"result\":{\"copy\":{\"id\":\"c1\","
              "\"pit_id\":\"p9\",\"disks\":[]}}}' ;;"),
      site());
  ASSERT_TRUE(a.is_ok()) << a.status().to_string();
  auto pits = (*a)->list_pits("g1");
  EXPECT_THAT(pits.status().message(), HasSubstr("is of group g2"));
  EXPECT_THAT(pits.status().message(), HasSubstr("malformed"));
  Status dropped = (*a)->drop_test_copy("g1", "c1");
  EXPECT_THAT(dropped.message(), HasSubstr("dropped"));
  // A copy of another PIT than asked for is a lie, not a copy.
  auto copy = (*a)->create_test_copy("g1", "p1", "run-1");
  EXPECT_THAT(copy.status().message(), HasSubstr("when asked for a test copy of p1"));
}

TEST_F(ExternalAdapterTest, ProgressLinesReachTheCaller) {
  auto a = ExternalAdapter::start(
      adapter("  *'\"operation\":\"ship\"'*) echo '{\"progress\":{\"bytes_total\":100,\"bytes_sent\":50}}' >&2;"
              " echo 'plain words' >&2; echo '{\"progress\":{\"bytes_total\":100,\"bytes_sent\":100}}' >&2;"
              " echo '{\"protocol\":1,\"result\":{\"bytes_sent\":100}}' ;;"),
      site());
  ASSERT_TRUE(a.is_ok()) << a.status().to_string();
  std::vector<std::uint64_t> sent;
  auto r = (*a)->invoke("ship", json::object(), [&](const SyncProgress& p) { sent.push_back(p.bytes_sent); });
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ(sent, (std::vector<std::uint64_t>{50, 100}));
  EXPECT_EQ((*r)["bytes_sent"], 100);
}

TEST_F(ExternalAdapterTest, TimeoutsMayOnlyNameOperationsOfTheProtocol) {
  ExternalAdapterConfig c = adapter("");
  c.timeouts["shipp"] = std::chrono::seconds(5);
  Status s = check_adapter_config(c);
  EXPECT_THAT(s.message(), HasSubstr("operation 'shipp'"));
  EXPECT_THAT(s.hint(), HasSubstr("await_pit"));
}

}  // namespace
}  // namespace evac::external
