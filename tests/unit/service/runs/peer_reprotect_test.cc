// The peer's half of a reprotect (RunService::handle_peer_reprotect, in
// service/runs/peer_reprotect.cc), between two in-process sites.
#include "service/run_service.h"

#include <gtest/gtest.h>

#include "unit/two_sites.h"

namespace evac::testing {
namespace {

using nlohmann::json;

bool contains(const std::string& haystack, const std::string& needle) { return haystack.find(needle) != std::string::npos; }

// A reprotect is read whole before anything happens: an epoch newer than
// this site's would fence its copy, but not from a body with a key the
// sender never sends, or an epoch no int64 holds.
TEST_F(TwoSitesTest, AReprotectIsReadWholeBeforeAnythingIsFenced) {
  ASSERT_NO_FATAL_FAILURE(protect_web01_in_g1());
  RunService runs(*a_.service, *a_.plans, nullptr);
  auto caller = a_.store->find_peer("site-b");
  ASSERT_TRUE(caller.is_ok() && caller->has_value());
  const json good = {{"epoch", 5},
                     {"run", "run-1"},
                     {"vms", {{{"name", "web01"}, {"uuid", "u-live-web01"}, {"source_uuid", "u-web01"}}}}};
  std::vector<json> bad(6, good);
  bad[0]["force"] = true;
  bad[1]["epoch"] = std::uint64_t{1} << 63;  // was -2^63 as an int64
  bad[2]["epoch"] = "5";
  bad[3]["vms"][0]["uuid"] = 7;
  bad[4]["vms"][0]["mac"] = "52:54:00:00:00:01";
  bad[5]["vms"] = {"web01"};  // was skipped
  for (const json& body : bad) {
    auto r = runs.handle_peer_reprotect(**caller, "g1", body);
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << body.dump() << ": " << r.status().to_string();
  }
  auto owner = a_.service->ownership("g1", "site-a", 1);
  ASSERT_TRUE(owner.is_ok()) << owner.status().to_string();
  EXPECT_EQ(owner->owner, "site-a") << "nothing fenced";
  // At the group's own epoch the sender's body is read and goes on to the
  // fence check, which it fails: the group is live here.
  json same_epoch = good;
  same_epoch["epoch"] = 1;
  auto r = runs.handle_peer_reprotect(**caller, "g1", same_epoch);
  EXPECT_EQ(r.status().code(), StatusCode::kFailedPrecondition) << r.status().to_string();
  EXPECT_TRUE(contains(r.status().message(), "not fenced here")) << r.status().message();
}

}  // namespace
}  // namespace evac::testing
