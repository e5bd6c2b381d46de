// The external adapter protocol's decoding: an adapter is another program,
// and whatever it prints is checked before evac believes it.
#include "replication/external/adapter_protocol.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace evac::external {
namespace {

using ::testing::HasSubstr;
using nlohmann::json;

TEST(AdapterProtocol, TheEnvelopeCarriesEverythingAnAdapterNeeds) {
  json e = envelope("list_pits", "rbd", InvocationSite{"site-b", "/var/lib/evac/b/adapters/rbd"}, json{{"conf", "/c"}},
                    json{{"group", "g1"}});
  EXPECT_EQ(e["protocol"], 1);
  EXPECT_EQ(e["operation"], "list_pits");
  EXPECT_EQ(e["kind"], "rbd");
  EXPECT_EQ(e["site"]["name"], "site-b");
  EXPECT_EQ(e["site"]["state_dir"], "/var/lib/evac/b/adapters/rbd");
  EXPECT_EQ(e["settings"]["conf"], "/c");
  EXPECT_EQ(e["request"]["group"], "g1");
}

TEST(AdapterProtocol, AResultIsItsObject) {
  auto r = decode_answer(R"({"protocol": 1, "result": {"pits": []}})");
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ((*r)["pits"], json::array());
}

TEST(AdapterProtocol, AnErrorAnswerBecomesThatStatus) {
  auto r = decode_answer(
      R"({"protocol": 1, "error": {"code": "unavailable", "message": "cluster site-a unreachable", "action": "start its mons"}})");
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable);
  EXPECT_EQ(r.status().message(), "cluster site-a unreachable");
  EXPECT_EQ(r.status().hint(), "start its mons");
}

TEST(AdapterProtocol, MalformedAnswersAreRefusedNamingWhatIsWrong) {
  struct Case {
    const char* text;
    const char* says;
  } cases[] = {
      {"", "printed no answer"},
      {"{\"protocol\": 1, \"result\": {", "not valid JSON"},
      {"[1, 2]", "must be a JSON object"},
      {"{\"result\": {}}", "protocol"},
      {"{\"protocol\": 2, \"result\": {}}", "speaks protocol 2"},
      {"{\"protocol\": 1}", "neither"},
      {"{\"protocol\": 1, \"result\": {}, \"error\": {\"code\": \"internal\", \"message\": \"x\"}}", "both"},
      {"{\"protocol\": 1, \"result\": []}", "not an object"},
      {"{\"protocol\": 1, \"result\": {}, \"extra\": 1}", "extra"},
      {"{\"protocol\": 1, \"error\": {\"code\": \"ok\", \"message\": \"x\"}}", "is not one of"},
      {"{\"protocol\": 1, \"error\": {\"code\": \"sorry\", \"message\": \"x\"}}", "is not one of"},
      {"{\"protocol\": 1, \"error\": {\"code\": \"internal\"}}", "message"},
  };
  for (const auto& c : cases) {
    auto r = decode_answer(c.text);
    EXPECT_FALSE(r.is_ok()) << c.text;
    EXPECT_EQ(r.status().code(), StatusCode::kFailedPrecondition) << c.text;
    EXPECT_THAT(r.status().message(), HasSubstr(c.says)) << c.text << " -> " << r.status().to_string();
  }
}

TEST(AdapterProtocol, CapabilitiesAreStrict) {
  auto caps = capabilities_from_json(json{{"capabilities", {{"points_in_time", true}, {"test_copies", true}}},
                                          {"adapter_version", "1.0"}});
  ASSERT_TRUE(caps.is_ok()) << caps.status().to_string();
  EXPECT_TRUE(caps->points_in_time);
  EXPECT_TRUE(caps->test_copies);
  EXPECT_FALSE(caps->reverse);
  auto typo = capabilities_from_json(json{{"capabilities", {{"point_in_time", true}}}});
  EXPECT_THAT(typo.status().message(), HasSubstr("point_in_time"));
  auto wrong = capabilities_from_json(json{{"capabilities", {{"reverse", "yes"}}}});
  EXPECT_THAT(wrong.status().message(), HasSubstr("reverse"));
}

ReplicationGroupSpec one_vm_group() {
  ReplicationGroupSpec spec;
  spec.group = "g1";
  VmInfo vm;
  vm.name = "web";
  vm.uuid = "u1";
  DiskInfo d;
  d.target = "vda";
  d.format = "raw";
  d.source.type = "network";
  d.source.protocol = "rbd";
  d.source.name = "vms/web";
  vm.disks.push_back(d);
  spec.vms.push_back(vm);
  return spec;
}

TEST(AdapterProtocol, DevicesMustBeDisksOfTheGroup) {
  auto spec = one_vm_group();
  auto ok = devices_from_json(json{{"devices", {{{"vm_uuid", "u1"}, {"disk", "vda"}, {"size_bytes", 1024}}}}}, spec);
  ASSERT_TRUE(ok.is_ok()) << ok.status().to_string();
  ASSERT_EQ(ok->size(), 1u);
  EXPECT_EQ((*ok)[0].key(), "u1/vda");
  EXPECT_EQ((*ok)[0].vm_name, "web");
  EXPECT_EQ((*ok)[0].source.name, "vms/web");  // from the group, not from the adapter
  EXPECT_EQ((*ok)[0].size_bytes, 1024u);
  auto stranger = devices_from_json(json{{"devices", {{{"vm_uuid", "u9"}, {"disk", "vda"}, {"size_bytes", 1}}}}}, spec);
  EXPECT_THAT(stranger.status().message(), HasSubstr("names no VM of group 'g1'"));
  auto no_disk = devices_from_json(json{{"devices", {{{"vm_uuid", "u1"}, {"disk", "vdz"}, {"size_bytes", 1}}}}}, spec);
  EXPECT_THAT(no_disk.status().message(), HasSubstr("has no disk vdz"));
  json twice = {{"devices", {{{"vm_uuid", "u1"}, {"disk", "vda"}, {"size_bytes", 1}},
                             {{"vm_uuid", "u1"}, {"disk", "vda"}, {"size_bytes", 1}}}}};
  EXPECT_THAT(devices_from_json(twice, spec).status().message(), HasSubstr("listed twice"));
  auto negative = devices_from_json(json{{"devices", {{{"vm_uuid", "u1"}, {"disk", "vda"}, {"size_bytes", -1}}}}}, spec);
  EXPECT_THAT(negative.status().message(), HasSubstr("size_bytes"));
}

TEST(AdapterProtocol, AwaitNeedsThePitOnceComplete) {
  auto waiting = await_answer_from_json(json{{"complete", false}, {"progress", {{"bytes_sent", 10}}}});
  ASSERT_TRUE(waiting.is_ok()) << waiting.status().to_string();
  EXPECT_FALSE(waiting->complete);
  EXPECT_EQ(waiting->progress->bytes_sent, 10u);
  auto no_pit = await_answer_from_json(json{{"complete", true}});
  EXPECT_THAT(no_pit.status().message(), HasSubstr("pit"));
  json pit = {{"id", "p1"}, {"group", "g1"}, {"created_at", 1700000000}, {"created_at_ms", 1700000000123},
              {"disks", {{{"key", "u1/vda"}, {"path", "rbd:vms/web@p1"}, {"size_bytes", 1024}}}}};
  auto done = await_answer_from_json(json{{"complete", true}, {"pit", pit}});
  ASSERT_TRUE(done.is_ok()) << done.status().to_string();
  EXPECT_EQ(done->pit->disks[0].path, "rbd:vms/web@p1");
}

TEST(AdapterProtocol, StderrLinesAreProgressLogsOrText) {
  auto p = decode_stderr_line(R"({"progress": {"bytes_total": 100, "bytes_sent": 40}})");
  ASSERT_TRUE(p.progress.has_value());
  EXPECT_EQ(p.progress->bytes_sent, 40u);
  auto l = decode_stderr_line(R"({"log": {"level": "warn", "message": "slow OSD"}})");
  ASSERT_TRUE(l.log.has_value());
  EXPECT_EQ(l.log->first, "warn");
  EXPECT_EQ(l.log->second, "slow OSD");
  EXPECT_FALSE(decode_stderr_line("rbd: connecting...").progress.has_value());
  EXPECT_FALSE(decode_stderr_line(R"({"progress": {"bytes_sent": -5}})").progress.has_value());
  EXPECT_FALSE(decode_stderr_line("{not json").log.has_value());
}

TEST(AdapterProtocol, CopiesAndReleasesAreStrict) {
  json copy = {{"id", "c1"}, {"pit_id", "p1"}, {"owner", "run-1"}, {"live", false},
               {"disks", {{{"key", "u1/vda"}, {"path", "/x"}}}}};
  auto ok = test_copies_from_json(json{{"copies", {copy}}});
  ASSERT_TRUE(ok.is_ok()) << ok.status().to_string();
  EXPECT_EQ((*ok)[0].owner, "run-1");
  copy["disks"][0].erase("path");
  EXPECT_THAT(test_copies_from_json(json{{"copies", {copy}}}).status().message(), HasSubstr("path"));
  auto released = released_from_json(json{{"removed_pits", {"p1", "p2"}}, {"kept_pits", json::array()}});
  ASSERT_TRUE(released.is_ok());
  EXPECT_EQ(released->removed_pits.size(), 2u);
  EXPECT_THAT(released_from_json(json{{"removed", {"p1"}}}).status().message(), HasSubstr("removed"));
}

}  // namespace
}  // namespace evac::external
