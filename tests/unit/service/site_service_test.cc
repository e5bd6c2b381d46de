#include "unit/two_sites.h"

#include <algorithm>

#include "core/model_json.h"
#include "hostile_answers.h"

namespace evac::testing {
namespace {

using nlohmann::json;

bool contains(const std::string& haystack, const std::string& needle) { return haystack.find(needle) != std::string::npos; }

// ---- pairing -------------------------------------------------------------------

TEST_F(TwoSitesTest, PairingRecordsEachOthersPins) {
  pair();
  auto a_peer = a_.store->find_peer("site-b");
  auto b_peer = b_.store->find_peer("site-a");
  ASSERT_TRUE(a_peer->has_value());
  ASSERT_TRUE(b_peer->has_value());
  EXPECT_EQ((*a_peer)->pin, "sha256//pin-b");
  EXPECT_EQ((*b_peer)->pin, "sha256//pin-a");  // learned from the caller's certificate, not its claim
  EXPECT_EQ((*a_peer)->url, "https://b:1");
  auto statuses = a_.service->peer_statuses();
  ASSERT_EQ(statuses->size(), 1u);
  EXPECT_TRUE((*statuses)[0].connected);
}

TEST_F(TwoSitesTest, PairingTokenWorksOnce) {
  auto token = b_.service->create_pairing_token(std::chrono::minutes(15));
  ASSERT_TRUE(a_.service->pair((*token)["token"], std::nullopt).is_ok());
  ASSERT_TRUE(a_.service->unpair("site-b").is_ok());
  auto again = a_.service->pair((*token)["token"], std::nullopt);
  ASSERT_FALSE(again.is_ok());
  EXPECT_EQ(again.status().code(), StatusCode::kUnauthenticated);
  EXPECT_FALSE(a_.store->find_peer("site-b")->has_value());  // nothing written on failure
}

TEST_F(TwoSitesTest, PairingTokenExpires) {
  auto token = b_.service->create_pairing_token(std::chrono::minutes(1));
  now_ += 61;
  auto r = a_.service->pair((*token)["token"], std::nullopt);
  EXPECT_EQ(r.status().code(), StatusCode::kUnauthenticated);
}

TEST_F(TwoSitesTest, PairingRejectsGarbageAndOwnToken) {
  EXPECT_EQ(a_.service->pair("hello", std::nullopt).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(a_.service->pair("evac-pair-1.%%%", std::nullopt).status().code(), StatusCode::kInvalidArgument);
  auto own = a_.service->create_pairing_token(std::chrono::minutes(1));
  auto r = a_.service->pair((*own)["token"], std::nullopt);
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(contains(r.status().message(), "issued by this site"));
}

TEST_F(TwoSitesTest, PairingPinsTheIssuersKey) {
  // An impostor at the token's URL presents a different key: the call fails.
  b_.transport->connect("https://a:1", "sha256//pin-a", a_.router.get());
  a_.transport->connect("https://b:1", "sha256//impostor", b_.router.get());
  auto token = b_.service->create_pairing_token(std::chrono::minutes(15));
  auto r = a_.service->pair((*token)["token"], std::nullopt);
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), StatusCode::kPermissionDenied);
}

TEST_F(TwoSitesTest, PairingWithUnreachableSite) {
  a_.transport->cut("https://b:1");
  auto token = b_.service->create_pairing_token(std::chrono::minutes(15));
  auto r = a_.service->pair((*token)["token"], std::nullopt);
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable);
  EXPECT_TRUE(contains(r.status().message(), "site-b"));
  EXPECT_FALSE(a_.store->find_peer("site-b")->has_value());
}

TEST_F(TwoSitesTest, DuplicatePairingRefused) {
  pair();
  auto token = b_.service->create_pairing_token(std::chrono::minutes(15));
  EXPECT_EQ(a_.service->pair((*token)["token"], std::nullopt).status().code(), StatusCode::kAlreadyExists);
}

TEST_F(TwoSitesTest, ALongPeerCallThatGetsNoAnswerShowsTheSiteUnreachable) {
  pair();
  a_.service->heartbeat_round();
  a_.transport->cut("https://b:1");
  now_ += 10;
  // A call the peer may take long to answer goes by another path of the
  // transport (call_bytes); its silence counts the same.
  auto r = a_.service->peer_client("site-b").sync_group("g1", nlohmann::json::object(), std::chrono::seconds(30));
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable);
  auto st = a_.service->peer_statuses();
  EXPECT_EQ((*st)[0].record.unreachable_since, now_);
  a_.transport->heal("https://b:1");
  now_ += 10;
  ASSERT_TRUE(a_.service->peer_client("site-b").inventory().is_ok());
  st = a_.service->peer_statuses();
  EXPECT_FALSE((*st)[0].record.unreachable_since.has_value());
  EXPECT_EQ((*st)[0].record.last_seen_at, now_);
}

TEST_F(TwoSitesTest, HeartbeatShowsUnreachableSinceFirstFailure) {
  pair();
  a_.service->heartbeat_round();
  a_.transport->cut("https://b:1");
  now_ += 10;
  std::int64_t cut_at = now_;
  a_.service->heartbeat_round();
  now_ += 10;
  a_.service->heartbeat_round();
  auto st = a_.service->peer_statuses();
  ASSERT_EQ(st->size(), 1u);
  EXPECT_FALSE((*st)[0].connected);
  EXPECT_EQ((*st)[0].record.unreachable_since, cut_at);
  EXPECT_FALSE((*st)[0].record.last_error.empty());
  a_.transport->heal("https://b:1");
  a_.service->heartbeat_round();
  st = a_.service->peer_statuses();
  EXPECT_TRUE((*st)[0].connected);
  // The receiving side saw the heartbeat too.
  auto b_view = b_.service->peer_statuses();
  EXPECT_EQ((*b_view)[0].record.last_seen_at, now_);
}

TEST_F(TwoSitesTest, UnpairIsExplicitAndMutual) {
  pair();
  ASSERT_TRUE(a_.service->unpair("site-b").is_ok());
  EXPECT_FALSE(a_.store->find_peer("site-b")->has_value());
  EXPECT_FALSE(b_.store->find_peer("site-a")->has_value());
  EXPECT_EQ(a_.service->unpair("site-b").code(), StatusCode::kNotFound);
}

// ---- mappings --------------------------------------------------------------------

TEST_F(TwoSitesTest, MappingNeedsPairing) {
  auto m = a_.service->create_mapping({MappingKind::kNetwork, std::nullopt, "prod", "recovery-prod", "test-isolated"});
  EXPECT_EQ(m.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_TRUE(contains(m.status().hint(), "pair"));
}

TEST_F(TwoSitesTest, NetworkMappingNeedsSeparateTestNetwork) {
  pair();
  auto none = a_.service->create_mapping({MappingKind::kNetwork, std::nullopt, "prod", "recovery-prod", ""});
  EXPECT_EQ(none.status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(contains(none.status().hint(), "--test-network"));
  auto same = a_.service->create_mapping({MappingKind::kNetwork, std::nullopt, "prod", "recovery-prod", "recovery-prod"});
  EXPECT_EQ(same.status().code(), StatusCode::kInvalidArgument);
}

TEST_F(TwoSitesTest, MappingChecksBothEnds) {
  pair();
  auto src = a_.service->create_mapping({MappingKind::kNetwork, std::nullopt, "nope", "recovery-prod", "test-isolated"});
  EXPECT_EQ(src.status().code(), StatusCode::kNotFound);
  EXPECT_TRUE(contains(src.status().message(), "site-a"));
  auto dst = a_.service->create_mapping({MappingKind::kNetwork, std::nullopt, "prod", "nope", "test-isolated"});
  EXPECT_EQ(dst.status().code(), StatusCode::kNotFound);
  EXPECT_TRUE(contains(dst.status().message(), "site-b"));
  auto test_net = a_.service->create_mapping({MappingKind::kNetwork, std::nullopt, "prod", "recovery-prod", "nope"});
  EXPECT_EQ(test_net.status().code(), StatusCode::kNotFound);
  auto pool = a_.service->create_mapping({MappingKind::kStorage, std::nullopt, "images", "no-pool", ""});
  EXPECT_EQ(pool.status().code(), StatusCode::kNotFound);
  auto compute = a_.service->create_mapping({MappingKind::kCompute, std::nullopt, "kvm-a", "kvm-zzz", ""});
  EXPECT_EQ(compute.status().code(), StatusCode::kNotFound);
  EXPECT_TRUE(a_.service->list_mappings()->empty());
}

TEST_F(TwoSitesTest, MappingWithPeerDownChangesNothing) {
  pair();
  a_.transport->cut("https://b:1");
  auto m = a_.service->create_mapping({MappingKind::kNetwork, std::nullopt, "prod", "recovery-prod", "test-isolated"});
  EXPECT_EQ(m.status().code(), StatusCode::kUnavailable);
  EXPECT_TRUE(a_.service->list_mappings()->empty());
}

TEST_F(TwoSitesTest, DuplicateMappingRefused) {
  pair();
  map_all();
  auto m = a_.service->create_mapping({MappingKind::kNetwork, std::nullopt, "prod", "recovery-prod", "test-isolated"});
  EXPECT_EQ(m.status().code(), StatusCode::kAlreadyExists);
}

// ---- protection groups -------------------------------------------------------------

TEST_F(TwoSitesTest, GroupNeedsMappingsAndNamesEveryGap) {
  pair();
  auto g = a_.service->create_group({"g1", {"web01", "db01"}, std::nullopt, 900, 24});
  ASSERT_FALSE(g.is_ok());
  EXPECT_EQ(g.status().code(), StatusCode::kFailedPrecondition);
  const std::string& msg = g.status().message();
  EXPECT_TRUE(contains(msg, "web01: compute provider 'kvm-a'"));
  EXPECT_TRUE(contains(msg, "web01: storage pool 'images'"));
  EXPECT_TRUE(contains(msg, "web01: network 'prod'"));
  EXPECT_TRUE(contains(msg, "db01: storage pool 'fast'"));
  EXPECT_TRUE(contains(g.status().hint(), "evac mapping create"));
  EXPECT_TRUE(a_.service->list_groups()->empty());
  EXPECT_TRUE(b_.service->list_hosted_placeholders()->empty());
}

TEST_F(TwoSitesTest, DiskOutsideAnyPoolIsNamed) {
  pair();
  map_all();
  auto g = a_.service->create_group({"g1", {"legacy01"}, std::nullopt, 900, 24});
  ASSERT_FALSE(g.is_ok());
  EXPECT_TRUE(contains(g.status().message(), "/srv/odd/legacy.qcow2"));
  EXPECT_TRUE(contains(g.status().message(), "not in any storage pool"));
}

TEST_F(TwoSitesTest, CreateGroupRegistersMappedPlaceholders) {
  pair();
  map_all();
  auto g = a_.service->create_group({"g1", {"web01", "db01"}, std::nullopt, 300, 12});
  ASSERT_TRUE(g.is_ok()) << g.status().to_string();
  EXPECT_EQ(g->recovery_site, "site-b");
  EXPECT_EQ(g->rpo_seconds, 300);
  EXPECT_EQ(g->keep_pits, 12);
  ASSERT_EQ(g->vms.size(), 2u);
  for (const auto& vm : g->vms) EXPECT_FALSE(vm.placeholder_uuid.empty());

  auto hosted = b_.service->list_hosted_placeholders();
  ASSERT_EQ(hosted->size(), 2u);
  auto specs = b_.provider->defined_specs();
  ASSERT_EQ(specs.size(), 2u);
  const PlaceholderSpec* db = specs[0].vm.name == "db01" ? &specs[0] : &specs[1];
  EXPECT_EQ(db->source_site, "site-a");
  EXPECT_EQ(db->source_uuid, "u-db01");
  EXPECT_EQ(db->group, "g1");
  EXPECT_EQ(db->vm.provider, "kvm-b");
  EXPECT_EQ(db->vm.disks[0].path, "/b/replicas/db01.qcow2");
  EXPECT_EQ(db->vm.disks[1].path, "/b/fast/db01-data.raw");
  EXPECT_EQ(db->vm.disks[1].storage_pool, "replicas-fast");
  EXPECT_EQ(db->vm.nics[0].network, "recovery-prod");
  EXPECT_EQ(db->vm.nics[0].mac, "52:54:00:00:00:02");

  // Placeholders show at the recovery site's inventory as powered off.
  auto b_vms = b_.service->list_vms(std::nullopt);
  int placeholders = 0;
  for (const auto& vm : *b_vms)
    if (vm.is_placeholder) {
      ++placeholders;
      EXPECT_EQ(vm.state, PowerState::kShutOff);
    }
  EXPECT_EQ(placeholders, 2);
}

// A protected VM's disk keeps its source, named where the mapping puts it.
TEST_F(TwoSitesTest, APlaceholdersDiskSourceNamesItsPathAtTheRecoverySite) {
  pair();
  map_all();
  DiskInfo disk{"vda", "/a/images/app01.qcow2", "qcow2", "virtio", "disk", "images"};
  disk.source = DiskSource{"file", "/a/images/app01.qcow2", "", ""};
  a_.provider->add_vm(make_vm("app01", "u-app01", {disk}, {{"52:54:00:00:00:09", "prod", "network", "virtio"}}));
  ASSERT_TRUE(a_.service->create_group({"g1", {"app01"}, std::nullopt, 900, 24}).is_ok());
  auto specs = b_.provider->defined_specs();
  ASSERT_EQ(specs.size(), 1u);
  ASSERT_EQ(specs[0].vm.disks.size(), 1u);
  EXPECT_EQ(specs[0].vm.disks[0].path, "/b/replicas/app01.qcow2");
  EXPECT_EQ(specs[0].vm.disks[0].source.type, "file");
  EXPECT_EQ(specs[0].vm.disks[0].source.path, "/b/replicas/app01.qcow2");
}

// A VM on a host bridge (or a macvtap device) is mapped by that bridge's
// name, which may lead to a libvirt network, and a network may lead to a
// bridge: the placeholder's NIC takes the kind of its target.
TEST_F(TwoSitesTest, BridgedAndMacvtapNicsAreMappedToWhateverKindTheRecoverySiteHas) {
  pair();
  a_.provider->add_host_attachment("bridge", "br-prod");
  a_.provider->add_host_attachment("direct", "eth1");
  b_.provider->add_host_attachment("bridge", "br-recovery");
  b_.provider->add_host_attachment("bridge", "br-test", true);
  b_.provider->add_host_attachment("direct", "eth7");
  a_.provider->add_vm(make_vm("edge01", "u-edge01", {{"vda", "/a/images/edge01.qcow2", "qcow2", "virtio", "disk", "images"}},
                              {{"52:54:00:00:00:0a", "br-prod", "bridge", "virtio"},
                               {"52:54:00:00:00:0b", "prod", "network", "virtio"},
                               {"52:54:00:00:00:0c", "eth1", "direct", "virtio"}}));
  ASSERT_TRUE(a_.service->create_mapping({MappingKind::kCompute, std::nullopt, "kvm-a", "kvm-b", ""}).is_ok());
  ASSERT_TRUE(a_.service->create_mapping({MappingKind::kStorage, std::nullopt, "images", "replicas", ""}).is_ok());
  // A bare bridge name is read as the bridge; the target is a network.
  auto bridged = a_.service->create_mapping({MappingKind::kNetwork, std::nullopt, "br-prod", "recovery-prod", "bridge:br-test"});
  ASSERT_TRUE(bridged.is_ok()) << bridged.status().to_string();
  EXPECT_EQ(bridged->source, "bridge:br-prod");
  EXPECT_EQ(bridged->test_network, "bridge:br-test");
  auto to_bridge = a_.service->create_mapping({MappingKind::kNetwork, std::nullopt, "prod", "br-recovery", "test-isolated"});
  ASSERT_TRUE(to_bridge.is_ok()) << to_bridge.status().to_string();
  EXPECT_EQ(to_bridge->target, "bridge:br-recovery");
  ASSERT_TRUE(a_.service->create_mapping({MappingKind::kNetwork, std::nullopt, "direct:eth1", "eth7", "test-isolated"}).is_ok());
  EXPECT_EQ(a_.service->create_mapping({MappingKind::kNetwork, std::nullopt, "bridge:nope", "recovery-prod", "test-isolated"})
                .status()
                .code(),
            StatusCode::kNotFound);

  auto g = a_.service->create_group({"edge", {"edge01"}, std::nullopt, 300, 12});
  ASSERT_TRUE(g.is_ok()) << g.status().to_string();
  auto specs = b_.provider->defined_specs();
  ASSERT_EQ(specs.size(), 1u);
  std::vector<std::string> nics;
  for (const auto& n : specs[0].vm.nics) nics.push_back(n.mac + " " + n.type + " " + n.network);
  EXPECT_EQ(nics, (std::vector<std::string>{"52:54:00:00:00:0a network recovery-prod", "52:54:00:00:00:0b bridge br-recovery",
                                            "52:54:00:00:00:0c direct eth7"}));
  // A mapping in use stays, found by the NIC's attachment key.
  EXPECT_EQ(a_.service->delete_mapping(bridged->id).code(), StatusCode::kFailedPrecondition);
}

TEST_F(TwoSitesTest, RecoverySiteKeepsACopyOfTheProtection) {
  ASSERT_NO_FATAL_FAILURE(protect_web01_in_g1());
  auto copy = b_.store->find_peer_copy("site-a");
  ASSERT_TRUE(copy.is_ok() && copy->has_value());
  auto doc = nlohmann::json::parse((*copy)->document);
  EXPECT_EQ(doc["site"], "site-a");
  ASSERT_EQ(doc["groups"].size(), 1u);
  EXPECT_EQ(doc["groups"][0]["name"], "g1");
  EXPECT_EQ(doc["mappings"].size(), 4u);
  EXPECT_EQ((*copy)->version, *a_.store->config_version());
}

TEST_F(TwoSitesTest, HeartbeatRepairsAStaleCopy) {
  pair();
  map_all();
  a_.transport->cut("https://b:1");
  // A change the peer cannot hear about right now.
  ASSERT_TRUE(a_.store->bump_config_version().is_ok());
  a_.transport->heal("https://b:1");
  a_.service->heartbeat_round();
  EXPECT_EQ((*b_.store->find_peer_copy("site-a"))->version, *a_.store->config_version());
}

TEST_F(TwoSitesTest, VmInAtMostOneGroup) {
  ASSERT_NO_FATAL_FAILURE(protect_web01_in_g1());
  auto g2 = a_.service->create_group({"g2", {"db01", "web01"}, std::nullopt, 900, 24});
  EXPECT_EQ(g2.status().code(), StatusCode::kAlreadyExists);
  EXPECT_TRUE(contains(g2.status().message(), "'g1'"));
  EXPECT_EQ(b_.service->list_hosted_placeholders()->size(), 1u);  // db01 got no placeholder
}

TEST_F(TwoSitesTest, GroupInputErrors) {
  pair();
  map_all();
  EXPECT_EQ(a_.service->create_group({"g1", {"ghost"}, std::nullopt, 900, 24}).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(a_.service->create_group({"g1", {}, std::nullopt, 900, 24}).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(a_.service->create_group({"bad name", {"web01"}, std::nullopt, 900, 24}).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(a_.service->create_group({"g1", {"web01"}, std::nullopt, 0, 24}).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(a_.service->create_group({"g1", {"web01"}, std::nullopt, 900, 0}).status().code(), StatusCode::kInvalidArgument);
  for (const char* reserved : {"recovered", "test-copies"}) {
    auto r = a_.service->create_group({reserved, {"web01"}, std::nullopt, 900, 24});
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << reserved;
    EXPECT_NE(r.status().message().find("reserved"), std::string::npos) << r.status().to_string();
  }
  EXPECT_EQ(a_.service->create_group({"g1", {"web01", "web01"}, std::nullopt, 900, 24}).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(a_.service->create_group({"g1", {"web01"}, "site-z", 900, 24}).status().code(), StatusCode::kNotFound);
  ASSERT_TRUE(a_.service->create_group({"g1", {"web01"}, std::nullopt, 900, 24}).is_ok());
  EXPECT_EQ(a_.service->create_group({"g1", {"db01"}, std::nullopt, 900, 24}).status().code(), StatusCode::kAlreadyExists);
}

// ---- a group's replication engine -----------------------------------------------

// Named when the group is created (builtin when not), kept in the store,
// shown by the API and sent in the configuration copy, where the recovery
// site reads it back.
TEST_F(TwoSitesTest, AGroupRecordsTheReplicationEngineItIsCreatedWith) {
  pair();
  map_all();
  auto plain = a_.call("POST", "/api/v1/groups", json{{"name", "g1"}, {"vms", {"web01"}}});
  ASSERT_EQ(plain.status, 201) << plain.body.dump();
  EXPECT_EQ(plain.body["replication_engine"], "builtin");
  auto named = a_.call("POST", "/api/v1/groups", json{{"name", "g2"}, {"vms", {"db01"}}, {"replication_engine", "rbd"}});
  ASSERT_EQ(named.status, 201) << named.body.dump();
  EXPECT_EQ(named.body["replication_engine"], "rbd");

  auto got = a_.call("GET", "/api/v1/groups/g2");
  ASSERT_EQ(got.status, 200) << got.body.dump();
  EXPECT_EQ(got.body["replication_engine"], "rbd");
  auto listed = a_.call("GET", "/api/v1/groups");
  ASSERT_EQ(listed.status, 200) << listed.body.dump();
  ASSERT_EQ(listed.body.size(), 2u);
  EXPECT_EQ(listed.body[0]["replication_engine"], "builtin");
  EXPECT_EQ(listed.body[1]["replication_engine"], "rbd");
  EXPECT_EQ((*a_.store->find_group("g2"))->replication, "rbd");

  auto copy = b_.store->find_peer_copy("site-a");
  ASSERT_TRUE(copy.is_ok() && copy->has_value());
  const json doc = json::parse((*copy)->document);
  ASSERT_EQ(doc["groups"].size(), 2u);
  for (const json& g : doc["groups"]) {
    auto read = peer_group_from_json(g);
    ASSERT_TRUE(read.is_ok()) << read.status().to_string();
    EXPECT_EQ(read->replication, read->name == "g2" ? "rbd" : "builtin") << g.dump();
  }
}

// What no engine could be called is refused before anything is registered,
// saying what a kind looks like.
TEST_F(TwoSitesTest, AReplicationEngineKindThatIsNoKindsNameIsRefusedSayingWhatToWrite) {
  pair();
  map_all();
  for (const std::string& bad : {std::string(), std::string("Ceph"), std::string("rbd mirror"), std::string("../rbd"),
                                 std::string(kMaxReplicationKindLength + 1, 'r')}) {
    auto r = a_.call("POST", "/api/v1/groups", json{{"name", "g1"}, {"vms", {"web01"}}, {"replication_engine", bad}});
    EXPECT_EQ(r.status, 400) << bad << ": " << r.body.dump();
    EXPECT_TRUE(contains(r.body.value("message", ""), "replication engine kind")) << r.body.dump();
    EXPECT_TRUE(contains(r.body.value("hint", ""), "--replication builtin")) << r.body.dump();
  }
  EXPECT_EQ(a_.call("POST", "/api/v1/groups", json{{"name", "g1"}, {"vms", {"web01"}}, {"replication_engine", 7}}).status,
            400);
  GroupCreateRequest upper{"g1", {"web01"}, std::nullopt, 900, 24};
  upper.replication = "RBD";
  EXPECT_EQ(a_.service->create_group(upper).status().code(), StatusCode::kInvalidArgument);
  EXPECT_FALSE(a_.store->find_group("g1")->has_value());
  EXPECT_TRUE(b_.service->list_hosted_placeholders()->empty()) << "no placeholder was registered";

  EXPECT_TRUE(check_replication_kind(std::string(kMaxReplicationKindLength, 'r')).is_ok());
  EXPECT_TRUE(check_replication_kind("ext-ceph_2").is_ok());
}

// A group's PITs live in its engine: the kind cannot change, but saying the
// group's own again is no change.
TEST_F(TwoSitesTest, AGroupsReplicationEngineCannotChange) {
  pair();
  map_all();
  GroupCreateRequest req{"g1", {"web01"}, std::nullopt, 900, 24};
  req.replication = "rbd";
  ASSERT_TRUE(a_.service->create_group(req).is_ok());
  auto same = a_.call("PUT", "/api/v1/groups/g1/settings", json{{"replication_engine", "rbd"}});
  EXPECT_EQ(same.status, 200) << same.body.dump();
  EXPECT_EQ(same.body["replication_engine"], "rbd");
  auto other = a_.call("PUT", "/api/v1/groups/g1/settings", json{{"replication_engine", "builtin"}, {"keep_pits", 6}});
  EXPECT_EQ(other.status, 412) << other.body.dump();
  EXPECT_TRUE(contains(other.body.value("message", ""), "replicates with the rbd engine")) << other.body.dump();
  EXPECT_TRUE(contains(other.body.value("hint", ""), "create it again with --replication KIND")) << other.body.dump();
  auto kept = a_.store->find_group("g1");
  EXPECT_EQ((*kept)->replication, "rbd");
  EXPECT_EQ((*kept)->keep_pits, 24) << "nothing of the request was applied";
}

TEST_F(TwoSitesTest, RecoverySiteDownMeansNoGroup) {
  pair();
  map_all();
  a_.transport->cut("https://b:1");
  auto g = a_.service->create_group({"g1", {"web01"}, std::nullopt, 900, 24});
  EXPECT_EQ(g.status().code(), StatusCode::kUnavailable);
  EXPECT_TRUE(a_.service->list_groups()->empty());
}

TEST_F(TwoSitesTest, FailedPlaceholderRollsBackTheOthers) {
  pair();
  map_all();
  b_.provider->fail_placeholders_after(1);
  auto g = a_.service->create_group({"g1", {"web01", "db01"}, std::nullopt, 900, 24});
  ASSERT_FALSE(g.is_ok());
  EXPECT_TRUE(a_.service->list_groups()->empty());
  EXPECT_TRUE(b_.service->list_hosted_placeholders()->empty());
  auto placeholders = b_.provider->list_placeholders();
  EXPECT_TRUE(placeholders->empty());
}

TEST_F(TwoSitesTest, AddAndRemoveVm) {
  ASSERT_NO_FATAL_FAILURE(protect_web01_in_g1());
  auto added = a_.service->add_vm_to_group("g1", "db01");
  ASSERT_TRUE(added.is_ok()) << added.status().to_string();
  EXPECT_EQ(added->vms.size(), 2u);
  EXPECT_EQ(b_.service->list_hosted_placeholders()->size(), 2u);
  auto removed = a_.service->remove_vm_from_group("g1", "web01");
  ASSERT_TRUE(removed.is_ok()) << removed.status().to_string();
  ASSERT_EQ(removed->vms.size(), 1u);
  EXPECT_EQ(removed->vms[0].vm_name, "db01");
  auto hosted = b_.service->list_hosted_placeholders();
  ASSERT_EQ(hosted->size(), 1u);
  EXPECT_EQ((*hosted)[0].name, "db01");
  EXPECT_EQ(a_.service->remove_vm_from_group("g1", "web01").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(a_.service->remove_vm_from_group("g1", "db01").status().code(), StatusCode::kFailedPrecondition);
}

TEST_F(TwoSitesTest, UnmappedNetworkBlocksAddVm) {
  ASSERT_NO_FATAL_FAILURE(protect_web01_in_g1());
  auto r = a_.service->add_vm_to_group("g1", "lonely01");
  ASSERT_FALSE(r.is_ok());
  EXPECT_TRUE(contains(r.status().message(), "network 'backup'"));
  EXPECT_EQ(a_.service->get_group("g1")->vms.size(), 1u);
}

TEST_F(TwoSitesTest, DeleteGroupRemovesPlaceholdersAndRefusesWhenPeerDown) {
  pair();
  map_all();
  ASSERT_TRUE(a_.service->create_group({"g1", {"web01", "db01"}, std::nullopt, 900, 24}).is_ok());
  a_.transport->cut("https://b:1");
  auto refused = a_.service->delete_group("g1");
  EXPECT_EQ(refused.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(refused.status().hint().find("--force"), std::string::npos);
  EXPECT_TRUE(a_.service->get_group("g1").is_ok());  // kept: placeholders still exist there
  a_.transport->heal("https://b:1");
  ASSERT_TRUE(a_.service->delete_group("g1").is_ok());
  EXPECT_TRUE(b_.service->list_hosted_placeholders()->empty());
  EXPECT_TRUE(b_.provider->list_placeholders()->empty());
  EXPECT_EQ(a_.service->delete_group("g1").status().code(), StatusCode::kNotFound);
  EXPECT_TRUE(nlohmann::json::parse((*b_.store->find_peer_copy("site-a"))->document)["groups"].empty());
}

TEST_F(TwoSitesTest, AGroupLiveAtTheOtherSiteIsDeletedHereOnlyByForceNamingItsReadOnlyDisks) {
  ASSERT_NO_FATAL_FAILURE(protect_web01_in_g1());
  // Failed over to site-b: this site's copy is fenced.
  ASSERT_TRUE(a_.store->put_ownership(OwnershipRecord{"g1", "site-b", 2, 100, "run-7"}).is_ok());
  auto refused = a_.service->delete_group("g1");
  ASSERT_EQ(refused.status().code(), StatusCode::kFailedPrecondition) << refused.status().to_string();
  EXPECT_TRUE(contains(refused.status().message(), "live at site 'site-b' since run run-7")) << refused.status().to_string();
  EXPECT_TRUE(contains(refused.status().hint(), "chattr -i")) << refused.status().hint();
  EXPECT_TRUE(a_.service->get_group("g1").is_ok()) << "refused: nothing changed";
  auto left = a_.service->delete_group("g1", /*force=*/true);
  ASSERT_TRUE(left.is_ok()) << left.status().to_string();
  bool named = false;
  for (const auto& l : *left) named = named || (contains(l, "site-a: web01's disk ") && contains(l, "read-only"));
  EXPECT_TRUE(named) << ::testing::PrintToString(*left);
  EXPECT_EQ(a_.service->get_group("g1").status().code(), StatusCode::kNotFound);
}

TEST_F(TwoSitesTest, ForcedDeleteWithRecoverySiteGoneListsLeftovers) {
  pair();
  map_all();
  ASSERT_TRUE(a_.service->create_group({"g1", {"web01", "db01"}, std::nullopt, 900, 24}).is_ok());
  a_.transport->cut("https://b:1");
  auto left = a_.service->delete_group("g1", /*force=*/true);
  ASSERT_TRUE(left.is_ok()) << left.status().to_string();
  ASSERT_EQ(left->size(), 2u);
  EXPECT_NE((*left)[0].find("site-b: placeholder"), std::string::npos);
  EXPECT_EQ(a_.service->get_group("g1").status().code(), StatusCode::kNotFound);
  // With the group gone, the dead site can be unpaired.
  EXPECT_TRUE(a_.service->unpair("site-b").is_ok());
}

TEST_F(TwoSitesTest, UnpairRefusedWhileGroupsUseThePeer) {
  ASSERT_NO_FATAL_FAILURE(protect_web01_in_g1());
  Status s = a_.service->unpair("site-b");
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition);
  EXPECT_TRUE(contains(s.message(), "g1"));
  EXPECT_EQ(b_.service->unpair("site-a").code(), StatusCode::kFailedPrecondition);  // b hosts its placeholders
}

TEST_F(TwoSitesTest, MappingInUseCannotBeDeleted) {
  ASSERT_NO_FATAL_FAILURE(protect_web01_in_g1());
  auto mappings = a_.service->list_mappings();
  for (const auto& m : *mappings) {
    Status s = a_.service->delete_mapping(m.id);
    if (m.kind == MappingKind::kStorage && m.source == "fast") {
      EXPECT_TRUE(s.is_ok()) << s.to_string();  // web01 has no disk there
    } else {
      EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition) << m.source;
    }
  }
}

// ---- a paired site's bodies, read strictly ------------------------------------------------

// A group as the protected site's configuration copy carries it reads back
// whole; settings no operator could set are refused, never narrowed into
// an int (2^40 PITs to keep was 0, which deletes every older PIT).
TEST(PeerGroupSettings, WhatTheProtectedSiteSendsReadsBackAndNumbersOutOfRangeAreRefused) {
  GroupRecord sent{"shop", "site-a", "site-b", 3600, kMaxKeptPits, 7, 1'700'000'000,
                   {GroupVmRecord{"kvm-a", "web01", "u-web01", "p-web01", "kvm-b"}}};
  sent.max_rate_bytes = 50 << 20;
  sent.keep_hourly = 24;
  sent.keep_daily = 7;
  auto read = peer_group_from_json(to_json(sent));
  ASSERT_TRUE(read.is_ok()) << read.status().to_string();
  EXPECT_EQ(read->name, "shop");
  EXPECT_EQ(read->recovery_site, "site-b");
  EXPECT_EQ(read->rpo_seconds, 3600);
  EXPECT_EQ(read->keep_pits, kMaxKeptPits);
  EXPECT_EQ(read->keep_hourly, 24);
  EXPECT_EQ(read->keep_daily, 7);
  EXPECT_EQ(read->max_rate_bytes, 50u << 20);
  EXPECT_EQ(read->epoch, 7);
  ASSERT_EQ(read->vms.size(), 1u);
  EXPECT_EQ(read->vms[0].vm_uuid, "u-web01");
  EXPECT_EQ(read->vms[0].provider, "kvm-a");
  // An older site's group says less: the defaults a group has.
  auto old = peer_group_from_json(json{{"name", "shop"}, {"recovery_site", "site-b"}});
  ASSERT_TRUE(old.is_ok()) << old.status().to_string();
  EXPECT_EQ(old->keep_pits, 24);
  EXPECT_EQ(old->rpo_seconds, 900);
  EXPECT_EQ(old->epoch, 1);

  const std::vector<std::pair<std::string, json>> bad = {
      {"keep_pits", std::uint64_t{1} << 40},       {"keep_pits", (std::uint64_t{1} << 32) + 1},
      {"keep_pits", 0},                            {"keep_pits", "24"},
      {"keep_hourly", -1},                         {"keep_daily", kMaxKeptPits + 1},
      {"rpo_seconds", 0},                          {"rpo_seconds", 31 * 24 * 3600},
      {"rpo_seconds", 900.5},                      {"max_rate_bytes", std::uint64_t{1} << 60},
      {"epoch", std::uint64_t{1} << 63},           {"epoch", (std::int64_t{1} << 62) + 1},
      {"vms", "web01"},                            {"name", 7}};
  for (const auto& [key, value] : bad) {
    json body = to_json(sent);
    body[key] = value;
    auto r = peer_group_from_json(body);
    ASSERT_FALSE(r.is_ok()) << key << " = " << value.dump();
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_TRUE(contains(r.status().message(), "'" + key + "'")) << r.status().message();
  }
  json vm_bad = to_json(sent);
  vm_bad["vms"][0]["uuid"] = 7;
  EXPECT_EQ(peer_group_from_json(vm_bad).status().code(), StatusCode::kInvalidArgument);
}

// A copy from a site older than engine kinds names none: builtin. One
// that names a kind is read strictly.
TEST(PeerGroupSettings, TheReplicationEngineReadsBackAndAnOlderSitesGroupIsBuiltin) {
  GroupRecord sent{"shop", "site-a", "site-b", 3600, 24, 7, 1'700'000'000, {}};
  sent.replication = "rbd";
  json body = to_json(sent);
  EXPECT_EQ(body["replication_engine"], "rbd");
  auto read = peer_group_from_json(body);
  ASSERT_TRUE(read.is_ok()) << read.status().to_string();
  EXPECT_EQ(read->replication, "rbd");
  body.erase("replication_engine");
  auto old = peer_group_from_json(body);
  ASSERT_TRUE(old.is_ok()) << old.status().to_string();
  EXPECT_EQ(old->replication, "builtin");
  for (const json& bad : {json(7), json(""), json("Ceph RBD"), json(std::string(kMaxReplicationKindLength + 1, 'r'))}) {
    body["replication_engine"] = bad;
    auto r = peer_group_from_json(body);
    ASSERT_FALSE(r.is_ok()) << bad.dump();
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_TRUE(contains(r.status().message(), "group 'shop'")) << r.status().message();
  }
}

// A configuration copy whose group keeps 2^40 PITs is refused whole: the
// copy this site holds stays, and with it what its runs would carry over.
TEST_F(TwoSitesTest, AConfigurationCopyWithAGroupOutOfBoundsIsRefusedAndTheCopyHeldStays) {
  ASSERT_NO_FATAL_FAILURE(protect_web01_in_g1());
  auto held = b_.store->find_peer_copy("site-a");
  ASSERT_TRUE(held.is_ok() && held->has_value());
  json copy = json::parse((*held)->document);
  ASSERT_EQ(copy["groups"].size(), 1u);
  copy["version"] = (*held)->version + 1;
  copy["groups"][0]["keep_pits"] = std::uint64_t{1} << 40;
  ApiResponse r = b_.router->handle(ApiRequest{"PUT", "/api/v1/peer/config-copy", {}, copy.dump(), "", "sha256//pin-a"});
  EXPECT_EQ(r.status, 400) << r.body.dump();
  EXPECT_TRUE(contains(r.body.value("message", ""), "group 'g1': field 'keep_pits'")) << r.body.dump();
  EXPECT_TRUE(contains(r.body.value("message", ""), "1099511627776")) << r.body.dump();
  auto still = b_.store->find_peer_copy("site-a");
  ASSERT_TRUE(still.is_ok() && still->has_value());
  EXPECT_EQ((*still)->version, (*held)->version);
  EXPECT_EQ((*still)->document, (*held)->document);

  copy["groups"][0]["keep_pits"] = 24;
  r = b_.router->handle(ApiRequest{"PUT", "/api/v1/peer/config-copy", {}, copy.dump(), "", "sha256//pin-a"});
  EXPECT_EQ(r.status, 200) << r.body.dump();

  // A replication engine no kind's name is out of bounds too; a copy from
  // a site older than engines names none (builtin) and is taken.
  EXPECT_EQ(copy["groups"][0]["replication_engine"], "builtin");
  copy["version"] = (*held)->version + 2;
  copy["groups"][0]["replication_engine"] = "Ceph RBD";
  r = b_.router->handle(ApiRequest{"PUT", "/api/v1/peer/config-copy", {}, copy.dump(), "", "sha256//pin-a"});
  EXPECT_EQ(r.status, 400) << r.body.dump();
  EXPECT_TRUE(contains(r.body.value("message", ""), "group 'g1': replication engine kind 'Ceph RBD'")) << r.body.dump();
  EXPECT_EQ((*b_.store->find_peer_copy("site-a"))->version, (*held)->version + 1);
  copy["groups"][0].erase("replication_engine");
  r = b_.router->handle(ApiRequest{"PUT", "/api/v1/peer/config-copy", {}, copy.dump(), "", "sha256//pin-a"});
  EXPECT_EQ(r.status, 200) << r.body.dump();
}

// Pushing our copy reads the peer's (the plans of its groups go back to
// it): one stored before its groups were checked, with a name that is no
// string, threw there, in evacd's heartbeat thread.
TEST_F(TwoSitesTest, PushingOurCopyReadsAnUncheckedCopyOfThePeersWithoutThrowing) {
  pair();
  const json theirs = {{"site", "site-b"}, {"version", 3}, {"groups", {{{"name", 7}}, "g2", {{"name", "g3"}}}}};
  ASSERT_TRUE(a_.store->put_peer_copy(PeerCopyRecord{"site-b", 3, theirs.dump(), now_}).is_ok());
  Status pushed = a_.service->push_config_to("site-b");
  EXPECT_TRUE(pushed.is_ok()) << pushed.to_string();
}

// A placeholder request reads back whole as the protected site writes it
// (a CD-ROM drive without media, a native definition included); anything
// else is refused and defines nothing.
TEST_F(TwoSitesTest, APlaceholderRequestIsReadStrictly) {
  pair();
  VmInfo vm = make_vm("web01", "u-web01",
                      {{"vda", "/b/replicas/web01.qcow2", "qcow2", "virtio", "disk", "replicas"},
                       {"hdc", "", "raw", "ide", "cdrom", std::nullopt}},
                      {{"52:54:00:00:00:01", "recovery-prod", "network", "virtio"}});
  vm.provider = "kvm-b";
  vm.native = {"libvirt", "<domain type='kvm'><name>web01</name></domain>"};
  const PlaceholderSpec spec{"g1", "site-a", "u-web01", vm};
  auto read = placeholder_spec_from_json(json(spec));
  ASSERT_TRUE(read.is_ok()) << read.status().to_string();
  EXPECT_EQ(read->group, "g1");
  EXPECT_EQ(read->source_uuid, "u-web01");
  EXPECT_EQ(read->vm.name, "web01");
  EXPECT_EQ(read->vm.provider, "kvm-b");
  EXPECT_EQ(read->vm.state, PowerState::kRunning);
  EXPECT_EQ(read->vm.vcpus, 2u);
  EXPECT_EQ(read->vm.memory_kib, 1u << 20);
  EXPECT_EQ(read->vm.firmware, "bios");
  ASSERT_EQ(read->vm.disks.size(), 2u);
  EXPECT_EQ(read->vm.disks[0].storage_pool, "replicas");
  EXPECT_EQ(read->vm.disks[1].path, "");
  EXPECT_EQ(read->vm.disks[1].storage_pool, std::nullopt);
  ASSERT_EQ(read->vm.nics.size(), 1u);
  EXPECT_EQ(read->vm.nics[0].network, "recovery-prod");
  EXPECT_EQ(read->vm.native.document, vm.native.document);

  auto caller = b_.store->find_peer("site-a");
  ASSERT_TRUE(caller.is_ok() && caller->has_value());
  std::vector<json> bad(7, json(spec));
  bad[0]["owner"] = "site-z";
  bad[1]["vm"]["vcpus"] = (std::uint64_t{1} << 32) + 2;  // 2 as an unsigned
  bad[2]["vm"]["memory_kib"] = std::uint64_t{1} << 63;
  bad[3]["vm"]["disks"][0]["readonly"] = true;
  bad[4]["vm"]["nics"] = "recovery-prod";
  bad[5]["vm"]["native"]["xml"] = "<domain/>";
  bad[6].erase("vm");
  for (const json& body : bad) {
    auto r = b_.service->handle_peer_define_placeholder(**caller, body);
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << body.dump() << ": " << r.status().to_string();
  }
  EXPECT_TRUE(b_.provider->defined_specs().empty());
  EXPECT_TRUE(b_.service->list_hosted_placeholders()->empty());
}

// ---- a paired site's answers, read strictly -----------------------------------------------

TEST_F(HostileAnswersTest, APairingAnswerWithoutTheSitesNameIsRefusedAndPairsNothing) {
  auto site_a = scripted_site_a();
  for (const json& answer : {json{{"site", 7}}, json{{"url", "https://b:1"}}, json::array({"site-b"})}) {
    auto token = b_.service->create_pairing_token(std::chrono::minutes(15));
    ASSERT_TRUE(token.is_ok());
    peer_.answers["POST /api/v1/peer/pair"] = answer;
    auto paired = site_a->pair((*token)["token"], std::nullopt);
    ASSERT_FALSE(paired.is_ok()) << answer.dump();
    EXPECT_EQ(paired.status().code(), StatusCode::kInvalidArgument) << paired.status().to_string();
    EXPECT_TRUE(contains(paired.status().message(), "the pairing answer")) << paired.status().message();
    EXPECT_TRUE(contains(paired.status().hint(), "no evacd of this version sends")) << paired.status().hint();
    EXPECT_FALSE(a_.store->find_peer("site-b")->has_value()) << "nothing paired";
  }
  auto token = b_.service->create_pairing_token(std::chrono::minutes(15));
  peer_.answers["POST /api/v1/peer/pair"] = json{{"site", "site-b"}, {"url", "https://b:1"}};
  ASSERT_TRUE(site_a->pair((*token)["token"], std::nullopt).is_ok());
}

// A heartbeat answer whose copy version is no number threw in evacd's
// heartbeat thread (nlohmann's value()), which nothing catches: it is now
// logged and the round goes on; a number out of range is not narrowed.
TEST_F(HostileAnswersTest, AHeartbeatAnswerOfTheWrongShapeIsSkipped) {
  pair();
  auto site_a = scripted_site_a();
  for (const json& answer : {json{{"site", "site-b"}, {"copy_version", "0"}},
                             json{{"site", "site-b"}, {"copy_version", std::uint64_t{1} << 63}},
                             json{{"site", "site-b"}, {"copy_version", -1}}, json("site-b")}) {
    peer_.answers["POST /api/v1/peer/heartbeat"] = answer;
    site_a->heartbeat_round();
    EXPECT_EQ(peer_.times_asked("PUT /api/v1/peer/config-copy"), 0) << answer.dump();
  }
  // A copy there older than ours is replaced.
  peer_.answers["POST /api/v1/peer/heartbeat"] = json{{"site", "site-b"}, {"copy_version", 0}};
  peer_.answers["PUT /api/v1/peer/config-copy"] = json{{"site", "site-b"}, {"copy_version", 1}};
  ASSERT_TRUE(a_.store->bump_config_version().is_ok());
  site_a->heartbeat_round();
  EXPECT_EQ(peer_.times_asked("PUT /api/v1/peer/config-copy"), 1);
}

// Protecting a VM reads the recovery site's inventory (where its pools
// are) and its answer for each placeholder (the UUID that removes it
// again): each read strictly, and a refusal protects nothing.
TEST_F(HostileAnswersTest, InventoryAndPlaceholderAnswersOfTheWrongShapeProtectNothing) {
  pair();
  map_all();
  auto site_a = scripted_site_a();
  const json good = inventory_of_b();
  std::vector<std::pair<json, std::string>> bad;
  json pool_path = good;
  pool_path["providers"][0]["storage_pools"][0]["path"] = 7;
  bad.push_back({pool_path, "field 'path' of a storage pool of compute provider 'kvm-b' of an inventory must be a string"});
  json pools_text = good;
  pools_text["providers"][0]["storage_pools"] = "replicas";
  bad.push_back({pools_text, "field 'storage_pools' of a compute provider of an inventory must be a list"});
  json no_providers = good;
  no_providers.erase("providers");
  bad.push_back({no_providers, "field 'providers' of an inventory is required"});
  json nameless = good;
  nameless["providers"][0]["networks"][0].erase("name");
  bad.push_back({nameless, "field 'name' of a network of compute provider 'kvm-b' of an inventory is required"});
  for (const auto& [answer, says] : bad) {
    peer_.answers["GET /api/v1/peer/inventory"] = answer;
    auto g = site_a->create_group({"g1", {"web01"}, std::nullopt, 900, 24});
    ASSERT_FALSE(g.is_ok()) << answer.dump();
    EXPECT_EQ(g.status().code(), StatusCode::kInvalidArgument) << g.status().to_string();
    EXPECT_TRUE(contains(g.status().message(), "site 'site-b': " + says)) << g.status().message();
    // A mapping's target is checked against the same answer.
    auto m = site_a->create_mapping({MappingKind::kNetwork, std::nullopt, "backup", "recovery-prod", "test-isolated"});
    EXPECT_EQ(m.status().code(), StatusCode::kInvalidArgument) << m.status().to_string();
  }
  EXPECT_EQ(peer_.times_asked("POST /api/v1/peer/placeholders"), 0);

  peer_.answers["GET /api/v1/peer/inventory"] = good;
  for (const json& answer : {json{{"uuid", 5}, {"provider", "kvm-b"}}, json{{"provider", "kvm-b"}}, json("u-1")}) {
    peer_.answers["POST /api/v1/peer/placeholders"] = answer;
    auto g = site_a->create_group({"g1", {"web01"}, std::nullopt, 900, 24});
    ASSERT_FALSE(g.is_ok()) << answer.dump();
    EXPECT_EQ(g.status().code(), StatusCode::kInvalidArgument) << g.status().to_string();
    EXPECT_TRUE(contains(g.status().message(), "registering the placeholder of VM 'web01': site 'site-b': "))
        << g.status().message();
  }
  EXPECT_FALSE(a_.store->find_group("g1")->has_value()) << "nothing protected";

  peer_.answers["POST /api/v1/peer/placeholders"] = json{{"uuid", "p-web01"}, {"provider", "kvm-b"}, {"name", "web01"}};
  auto g = site_a->create_group({"g1", {"web01"}, std::nullopt, 900, 24});
  ASSERT_TRUE(g.is_ok()) << g.status().to_string();
  EXPECT_EQ(g->vms[0].placeholder_uuid, "p-web01");
  EXPECT_EQ(g->vms[0].placeholder_provider, "kvm-b");
}

TEST_F(TwoSitesTest, PlaceholderRemovalOnlyByItsOwner) {
  ASSERT_NO_FATAL_FAILURE(protect_web01_in_g1());
  auto uuid = a_.service->get_group("g1")->vms[0].placeholder_uuid;
  PeerRecord stranger{"site-z", "https://z", "sha256//z", 0, {}, {}, ""};
  auto r = b_.service->handle_peer_remove_placeholder(stranger, uuid);
  EXPECT_EQ(r.status().code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(b_.service->list_hosted_placeholders()->size(), 1u);
}

}  // namespace
}  // namespace evac::testing
