// The RBD adapter's side of the protocol without a cluster: what it
// accepts, what it refuses, and its answers' shape. Its work on real
// clusters is tests/ceph/rbd_adapter_test.sh.
#include "replication/rbd/rbd_adapter.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "core/json_decode.h"
#include "replication/external/adapter_protocol.h"
#include "replication/external/adapter_side.h"
#include "replication/rbd/rbd_cluster.h"

namespace evac::rbd {
namespace {

using ::testing::HasSubstr;
using nlohmann::json;

std::string request(const std::string& operation, const json& settings, const json& req = json::object()) {
  return json{{"protocol", 1}, {"operation", operation}, {"kind", "rbd"},
              {"site", {{"name", "site-b"}, {"state_dir", "/tmp/evac-rbd-unit"}}}, {"settings", settings}, {"request", req}}
      .dump();
}

TEST(RbdAdapter, ImageNamesArePoolSlashImage) {
  auto ok = parse_image_name("vms/db01");
  ASSERT_TRUE(ok.is_ok());
  EXPECT_EQ(ok->pool, "vms");
  EXPECT_EQ(ok->image, "db01");
  for (const char* bad : {"db01", "/db01", "vms/", "vms/ns/db01", "vms/db01@snap", ""})
    EXPECT_FALSE(parse_image_name(bad).is_ok()) << bad;
}

TEST(RbdAdapter, CapabilitiesNeedNoCluster) {
  auto inv = external::read_invocation(request("capabilities", json::object()));
  ASSERT_TRUE(inv.is_ok()) << inv.status().to_string();
  auto answer = run_operation(*inv);
  ASSERT_TRUE(answer.is_ok()) << answer.status().to_string();
  // What evac's side decodes from it.
  auto caps = external::capabilities_from_json(*answer);
  ASSERT_TRUE(caps.is_ok()) << caps.status().to_string();
  EXPECT_TRUE(caps->points_in_time);
  EXPECT_TRUE(caps->test_copies);
  EXPECT_TRUE(caps->reverse);
  EXPECT_TRUE(caps->read_only_source);
}

TEST(RbdAdapter, SettingsAreCheckedBeforeAnyClusterIsTouched) {
  auto missing = run_operation(*external::read_invocation(request("list_pits", json::object(), {{"group", "g1"}})));
  EXPECT_EQ(missing.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(missing.status().message(), HasSubstr("conf"));
  auto typo = run_operation(*external::read_invocation(
      request("list_pits", {{"conf", "/etc/ceph/b.conf"}, {"usr", "evac"}}, {{"group", "g1"}})));
  EXPECT_THAT(typo.status().message(), HasSubstr("usr"));
  auto no_conf = run_operation(*external::read_invocation(
      request("list_pits", {{"conf", "/nonexistent/ceph.conf"}, {"timeout_seconds", 2}}, {{"group", "g1"}})));
  EXPECT_FALSE(no_conf.is_ok());
  EXPECT_THAT(no_conf.status().message(), HasSubstr("/nonexistent/ceph.conf"));
}

TEST(RbdAdapter, TheEnvelopeIsReadStrictly) {
  EXPECT_THAT(external::read_invocation("{").status().message(), HasSubstr("not valid JSON"));
  EXPECT_EQ(external::read_invocation(request("fly", json::object())).status().code(), StatusCode::kUnsupported);
  json two = json::parse(request("capabilities", json::object()));
  two["protocol"] = 2;
  EXPECT_THAT(external::read_invocation(two.dump()).status().message(), HasSubstr("protocol 2"));
  json extra = json::parse(request("capabilities", json::object()));
  extra["surprise"] = true;
  EXPECT_THAT(external::read_invocation(extra.dump()).status().message(), HasSubstr("surprise"));
}

TEST(RbdAdapter, AnswersAreWhatEvacDecodes) {
  auto result = external::decode_answer(external::result_answer(json{{"pits", json::array()}}));
  ASSERT_TRUE(result.is_ok());
  auto error = external::decode_answer(external::error_answer(unavailable("cluster gone", "start its mons")));
  EXPECT_EQ(error.status().code(), StatusCode::kUnavailable);
  EXPECT_EQ(error.status().hint(), "start its mons");
  auto progress = external::decode_stderr_line(external::progress_line(SyncProgress{100, 50, 10, 0}));
  ASSERT_TRUE(progress.progress.has_value());
  EXPECT_EQ(progress.progress->bytes_sent, 10u);
}

}  // namespace
}  // namespace evac::rbd
