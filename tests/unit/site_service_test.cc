#include "two_sites.h"

#include "service/replication_service.h"

namespace evac::testing {
namespace {

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
  auto r = a_.service->call_paired_site("site-b", "GET", "/api/v1/peer/inventory", std::nullopt, std::chrono::seconds(30));
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable);
  auto st = a_.service->peer_statuses();
  EXPECT_EQ((*st)[0].record.unreachable_since, now_);
  a_.transport->heal("https://b:1");
  now_ += 10;
  ASSERT_TRUE(a_.service->call_paired_site("site-b", "GET", "/api/v1/peer/inventory", std::nullopt, std::chrono::seconds(30)).is_ok());
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
  pair();
  map_all();
  ASSERT_TRUE(a_.service->create_group({"g1", {"web01"}, std::nullopt, 900, 24}).is_ok());
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
  pair();
  map_all();
  ASSERT_TRUE(a_.service->create_group({"g1", {"web01"}, std::nullopt, 900, 24}).is_ok());
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
  pair();
  map_all();
  ASSERT_TRUE(a_.service->create_group({"g1", {"web01"}, std::nullopt, 900, 24}).is_ok());
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
  pair();
  map_all();
  ASSERT_TRUE(a_.service->create_group({"g1", {"web01"}, std::nullopt, 900, 24}).is_ok());
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
  pair();
  map_all();
  ASSERT_TRUE(a_.service->create_group({"g1", {"web01"}, std::nullopt, 900, 24}).is_ok());
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
  pair();
  map_all();
  ASSERT_TRUE(a_.service->create_group({"g1", {"web01"}, std::nullopt, 900, 24}).is_ok());
  Status s = a_.service->unpair("site-b");
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition);
  EXPECT_TRUE(contains(s.message(), "g1"));
  EXPECT_EQ(b_.service->unpair("site-a").code(), StatusCode::kFailedPrecondition);  // b hosts its placeholders
}

TEST_F(TwoSitesTest, MappingInUseCannotBeDeleted) {
  pair();
  map_all();
  ASSERT_TRUE(a_.service->create_group({"g1", {"web01"}, std::nullopt, 900, 24}).is_ok());
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

TEST_F(TwoSitesTest, ReplicaFolderMustBeARecoverySitePool) {
  pair();
  map_all();
  ASSERT_TRUE(a_.service->create_group({"g1", {"web01"}, std::nullopt, 900, 24}).is_ok());
  ReplicationService replication(*b_.service, *b_.transport, dir_.string());
  auto caller = b_.store->find_peer("site-a");
  ASSERT_TRUE(caller.is_ok() && caller->has_value());
  nlohmann::json body = {{"cycle_id", "cycle-1"},
                         {"disks", {{{"vm_uuid", "u-web01"}, {"disk", "vda"}, {"replica_dir", "/etc"}, {"size_bytes", 1 << 20}}}}};
  auto r = replication.handle_begin(**caller, "g1", body);
  EXPECT_EQ(r.status().code(), StatusCode::kPermissionDenied);
  EXPECT_NE(r.status().message().find("/etc"), std::string::npos);
  // A group the caller does not protect to this site is refused before anything else.
  body["disks"][0]["replica_dir"] = "/b/replicas";
  EXPECT_EQ(replication.handle_begin(**caller, "not-a-group", body).status().code(), StatusCode::kPermissionDenied);
}

TEST_F(TwoSitesTest, PlaceholderRemovalOnlyByItsOwner) {
  pair();
  map_all();
  ASSERT_TRUE(a_.service->create_group({"g1", {"web01"}, std::nullopt, 900, 24}).is_ok());
  auto uuid = a_.service->get_group("g1")->vms[0].placeholder_uuid;
  PeerRecord stranger{"site-z", "https://z", "sha256//z", 0, {}, {}, ""};
  auto r = b_.service->handle_peer_remove_placeholder(stranger, uuid);
  EXPECT_EQ(r.status().code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(b_.service->list_hosted_placeholders()->size(), 1u);
}

}  // namespace
}  // namespace evac::testing
