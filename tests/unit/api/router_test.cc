#include "fakes/fake_replication_adapter.h"
#include "unit/two_sites.h"

namespace evac::testing {
namespace {

using nlohmann::json;

void expect_error_body(const ApiResponse& r, int status, const std::string& code) {
  EXPECT_EQ(r.status, status) << r.body.dump();
  EXPECT_EQ(r.body.value("code", ""), code);
  EXPECT_FALSE(r.body.value("message", "").empty());
  EXPECT_TRUE(r.body.contains("hint"));
}

TEST_F(TwoSitesTest, OnlyHealthIsPublic) {
  ApiResponse health = a_.router->handle({"GET", "/api/v1/health", {}, "", "", ""});
  EXPECT_EQ(health.status, 200);
  EXPECT_EQ(health.body["site"], "site-a");
  expect_error_body(a_.router->handle({"GET", "/api/v1/openapi.json", {}, "", "", ""}), 401, "unauthenticated");
  ApiResponse doc = a_.call("GET", "/api/v1/openapi.json");
  EXPECT_EQ(doc.status, 200);
  EXPECT_EQ(doc.body["openapi"], "3.1.0");  // mutualTLS security schemes are 3.1
  EXPECT_TRUE(doc.body["paths"].contains("/api/v1/groups/{name}"));
  EXPECT_TRUE(doc.body["paths"]["/api/v1/groups"].contains("post"));
  EXPECT_TRUE(doc.body["paths"]["/api/v1/groups"]["post"].contains("security"));
}

TEST_F(TwoSitesTest, OperatorCallsNeedAValidToken) {
  expect_error_body(a_.router->handle({"GET", "/api/v1/groups", {}, "", "", ""}), 401, "unauthenticated");
  expect_error_body(a_.router->handle({"GET", "/api/v1/groups", {}, "", "wrong", ""}), 401, "unauthenticated");
  // A peer's certificate is no substitute for an operator token.
  expect_error_body(a_.router->handle({"GET", "/api/v1/groups", {}, "", "", "sha256//pin-b"}), 401, "unauthenticated");
  EXPECT_EQ(a_.call("GET", "/api/v1/groups").status, 200);
}

TEST_F(TwoSitesTest, PeerCallsNeedAPairedCertificate) {
  expect_error_body(a_.router->handle({"GET", "/api/v1/peer/inventory", {}, "", a_.token, ""}), 401, "unauthenticated");
  expect_error_body(a_.router->handle({"GET", "/api/v1/peer/inventory", {}, "", "", "sha256//stranger"}), 403,
                    "permission_denied");
  pair();
  EXPECT_EQ(a_.router->handle({"GET", "/api/v1/peer/inventory", {}, "", "", "sha256//pin-b"}).status, 200);
}

TEST_F(TwoSitesTest, UnknownPathsAndMethods) {
  expect_error_body(a_.call("GET", "/api/v1/nothing"), 404, "not_found");
  ApiResponse wrong = a_.call("PATCH", "/api/v1/groups");
  expect_error_body(wrong, 405, "method_not_allowed");
  ASSERT_EQ(wrong.headers.size(), 1u);
  EXPECT_EQ(wrong.headers[0].first, "Allow");
  EXPECT_EQ(wrong.headers[0].second, "GET, POST");
  // Judged before the caller is: nothing about the route is secret.
  EXPECT_EQ(a_.router->handle({"PUT", "/api/v1/health", {}, "", "", ""}).status, 405);
}

// Every check that needs no body happens before the body is read: the
// route, the method, the caller and the announced length.
TEST_F(TwoSitesTest, AdmitJudgesARequestBeforeItsBody) {
  ApiRequest head{"POST", "/api/v1/groups", {}, "", a_.token, ""};
  EXPECT_FALSE(a_.router->admit(head, 1000).has_value());
  EXPECT_FALSE(a_.router->admit(head, std::nullopt).has_value());  // chunked: counted while read
  auto too_big = a_.router->admit(head, 2 * 1024 * 1024);
  ASSERT_TRUE(too_big.has_value());
  expect_error_body(*too_big, 413, "payload_too_large");
  ApiRequest anonymous{"POST", "/api/v1/groups", {}, "", "", ""};
  auto refused = a_.router->admit(anonymous, 100);
  ASSERT_TRUE(refused.has_value());
  EXPECT_EQ(refused->status, 401);
  // Only a paired site's batches may be large, and only on their route: an
  // engine's bulk route, mounted under its kind.
  pair();
  FakeReplicationAdapter engine([] { return std::int64_t{1'000'000}; });
  engine.serve_routes({{"POST", "{group}/cycles/{cycle}/blocks", "A batch", false, true,
                        [](const ReplicationPeerRequest& r) -> Result<nlohmann::json> { return nlohmann::json(r.body.size()); }},
                       {"POST", "{group}/cycles", "Begin", true, false,
                        [](const ReplicationPeerRequest&) -> Result<nlohmann::json> { return nlohmann::json::object(); }}});
  ReplicationService replication(*a_.service, *a_.transport, (dir_ / "a-state").string(), engine.registry("fake"));
  a_.router = std::make_unique<ApiRouter>(RouteServices{*a_.service, *a_.plans, &replication});
  const std::string blocks = "/api/v1/peer/replication/fake/g/cycles/c/blocks";
  ApiRequest batch{"POST", blocks, {}, "", "", "sha256//pin-b"};
  EXPECT_FALSE(a_.router->admit(batch, 16 * 1024 * 1024).has_value());
  EXPECT_EQ(a_.router->body_limit("POST", blocks), 16u * 1024 * 1024 + 64 * 1024);
  EXPECT_EQ(a_.router->body_limit("POST", "/api/v1/peer/replication/fake/g/cycles"), 1024u * 1024);
  EXPECT_EQ(a_.router->body_limit("POST", "/api/v1/groups"), 1024u * 1024);
  // Mounted behind the caller check: site-b protects no group 'g' to site-a.
  ApiResponse unknown_group = a_.router->handle(ApiRequest{"POST", blocks, {}, "xyz", "", "sha256//pin-b"});
  EXPECT_EQ(unknown_group.status, 403) << unknown_group.body.dump();
  ApiRequest stranger{"POST", blocks, {}, "", "", "sha256//stranger"};
  auto not_paired = a_.router->admit(stranger, 16 * 1024 * 1024);
  ASSERT_TRUE(not_paired.has_value());
  EXPECT_EQ(not_paired->status, 403);
  a_.router.reset();  // before the replication service it holds
}

TEST_F(TwoSitesTest, DeeplyNestedBodiesAreRefusedOnEveryRoute) {
  std::string deep = "{\"secret\": " + std::string(100'000, '[') + std::string(100'000, ']') + "}";
  // The pairing route answers any certificate, before any token.
  ApiResponse pairing = a_.router->handle({"POST", "/api/v1/peer/pair", {}, deep, "", "sha256//anyone"});
  expect_error_body(pairing, 400, "invalid_argument");
  EXPECT_NE(pairing.body["message"].get<std::string>().find("deeper than"), std::string::npos);
  for (const char* path : {"/api/v1/plans", "/api/v1/groups", "/api/v1/mappings", "/api/v1/pairings"}) {
    ApiResponse r = a_.router->handle({"POST", path, {}, deep, a_.token, ""});
    expect_error_body(r, 400, "invalid_argument");
  }
  ApiResponse plan = a_.router->handle({"PUT", "/api/v1/plans/p", {}, deep, a_.token, ""});
  expect_error_body(plan, 400, "invalid_argument");
}

TEST_F(TwoSitesTest, UnknownFieldsAreRefusedOnEveryRoute) {
  pair();
  map_all();
  // A misspelt rpo is an error, not the default RPO.
  ApiResponse group = a_.call("POST", "/api/v1/groups", json{{"name", "g1"}, {"vms", {"web01"}}, {"rop", "5m"}});
  expect_error_body(group, 400, "invalid_argument");
  EXPECT_NE(group.body["message"].get<std::string>().find("'rop'"), std::string::npos) << group.body.dump();
  EXPECT_NE(group.body["hint"].get<std::string>().find("rpo"), std::string::npos);
  EXPECT_EQ(a_.call("GET", "/api/v1/groups").body.size(), 0u);
  expect_error_body(a_.call("POST", "/api/v1/mappings",
                            json{{"kind", "network"}, {"source", "prod"}, {"target", "recovery-prod"}, {"tset_network", "x"}}),
                    400, "invalid_argument");
  expect_error_body(a_.call("POST", "/api/v1/pairing-tokens", json{{"ttl", "15m"}, {"tll", "1m"}}), 400,
                    "invalid_argument");
  expect_error_body(a_.call("POST", "/api/v1/pairings", json{{"token", "evac-pair-1.x"}, {"ulr", "https://x"}}), 400,
                    "invalid_argument");
  expect_error_body(a_.router->handle({"POST", "/api/v1/peer/pair", {}, R"({"secret":"s","site":"x","url":"u","extra":1})",
                                       "", "sha256//anyone"}),
                    400, "invalid_argument");
}

TEST_F(TwoSitesTest, NumbersAreNeverNarrowedAndDurationsNeedUnits) {
  pair();
  map_all();
  ASSERT_EQ(a_.call("POST", "/api/v1/groups", json{{"name", "g1"}, {"vms", {"web01"}}, {"keep_pits", 6}}).status, 201);
  // 2^32 + 2 would be stored as 2, and the next cycle would delete the rest.
  ApiResponse huge = a_.call("PUT", "/api/v1/groups/g1/settings", json{{"keep_pits", 4294967298ULL}});
  expect_error_body(huge, 400, "invalid_argument");
  EXPECT_EQ(a_.call("GET", "/api/v1/groups/g1").body["keep_pits"], 6);
  expect_error_body(a_.call("PUT", "/api/v1/groups/g1/settings", json{{"keep_pits", -1}}), 400, "invalid_argument");
  expect_error_body(a_.call("PUT", "/api/v1/groups/g1/settings", json{{"keep_pits", 2.5}}), 400, "invalid_argument");
  expect_error_body(a_.call("POST", "/api/v1/groups", json{{"name", "g2"}, {"vms", {"db01"}}, {"keep_daily", 1ULL << 40}}),
                    400, "invalid_argument");
  expect_error_body(a_.call("PUT", "/api/v1/groups/g1/settings", json{{"max_rate", 1ULL << 60}}), 400, "invalid_argument");
  // Durations: a bare number is not taken as seconds; absurd ones are refused.
  expect_error_body(a_.call("POST", "/api/v1/groups", json{{"name", "g2"}, {"vms", {"db01"}}, {"rpo", 15}}), 400,
                    "invalid_argument");
  expect_error_body(a_.call("POST", "/api/v1/groups", json{{"name", "g2"}, {"vms", {"db01"}}, {"rpo", "15"}}), 400,
                    "invalid_argument");
  expect_error_body(a_.call("POST", "/api/v1/groups", json{{"name", "g2"}, {"vms", {"db01"}}, {"rpo", "9999999999d"}}),
                    400, "invalid_argument");
  expect_error_body(a_.call("POST", "/api/v1/pairing-tokens", json{{"ttl", "900"}}), 400, "invalid_argument");
  expect_error_body(a_.call("POST", "/api/v1/pairing-tokens", json{{"ttl", "400d"}}), 400, "invalid_argument");
}

TEST_F(TwoSitesTest, HugeInputIsNotEchoedBack) {
  std::string name(200'000, 'n');
  ApiResponse r = a_.call("POST", "/api/v1/groups", json{{"name", name}, {"vms", {"web01"}}});
  expect_error_body(r, 400, "invalid_argument");
  EXPECT_LT(r.body.dump().size(), 4096u);
  ApiResponse path = a_.call("GET", "/api/v1/groups/" + name);
  EXPECT_GE(path.status, 400);
  EXPECT_LT(path.body.dump().size(), 4096u);
  ApiResponse missing = a_.call("GET", "/api/v1/nothing/" + name);
  EXPECT_LT(missing.body.dump().size(), 4096u);
}

TEST_F(TwoSitesTest, MalformedBodies) {
  ApiRequest req{"POST", "/api/v1/groups", {}, "{not json", a_.token, ""};
  expect_error_body(a_.router->handle(req), 400, "invalid_argument");
  expect_error_body(a_.call("POST", "/api/v1/groups", json{{"name", "g"}, {"vms", "web01"}}), 400, "invalid_argument");
  expect_error_body(a_.call("POST", "/api/v1/groups", json{{"name", "g"}, {"vms", {"web01"}}, {"rpo", "soon"}}), 400,
                    "invalid_argument");
  expect_error_body(a_.call("POST", "/api/v1/mappings", json{{"kind", "disk"}, {"source", "a"}, {"target", "b"}}), 400,
                    "invalid_argument");
  expect_error_body(a_.call("DELETE", "/api/v1/mappings/abc"), 400, "invalid_argument");
}

TEST_F(TwoSitesTest, GroupLifecycleThroughTheApi) {
  pair();
  map_all();
  ApiResponse created =
      a_.call("POST", "/api/v1/groups", json{{"name", "g1"}, {"vms", {"web01", "db01"}}, {"rpo", "5m"}, {"keep_pits", 6}});
  ASSERT_EQ(created.status, 201) << created.body.dump();
  EXPECT_EQ(created.body["rpo"], "5m");
  EXPECT_EQ(created.body["rpo_seconds"], 300);
  EXPECT_EQ(created.body["vms"].size(), 2u);
  ApiResponse dup = a_.call("POST", "/api/v1/groups", json{{"name", "g1"}, {"vms", {"lonely01"}}});
  expect_error_body(dup, 409, "already_exists");
  ApiResponse shown = a_.call("GET", "/api/v1/groups/g1");
  EXPECT_EQ(shown.status, 200);
  EXPECT_EQ(shown.body["recovery_site"], "site-b");
  ApiResponse placeholders = b_.call("GET", "/api/v1/placeholders");
  EXPECT_EQ(placeholders.body.size(), 2u);
  ApiResponse copies = b_.call("GET", "/api/v1/peer-copies");
  ASSERT_EQ(copies.body.size(), 1u);
  EXPECT_EQ(copies.body[0]["document"]["groups"][0]["name"], "g1");
  EXPECT_EQ(a_.call("DELETE", "/api/v1/groups/g1/vms/db01").status, 200);
  EXPECT_EQ(a_.call("DELETE", "/api/v1/groups/g1").status, 200);
  expect_error_body(a_.call("GET", "/api/v1/groups/g1"), 404, "not_found");
}

TEST_F(TwoSitesTest, InventoryHidesNativeDefinitionInLists) {
  ApiResponse vms = a_.call("GET", "/api/v1/inventory/vms");
  ASSERT_EQ(vms.status, 200);
  EXPECT_EQ(vms.body.size(), 4u);
  expect_error_body(a_.call("GET", "/api/v1/inventory/vms/ghost"), 404, "not_found");
  a_.provider->set_down(true);
  expect_error_body(a_.call("GET", "/api/v1/inventory/vms"), 503, "unavailable");
  ApiResponse providers = a_.call("GET", "/api/v1/inventory/providers");
  EXPECT_EQ(providers.body[0]["reachable"], false);
}

}  // namespace
}  // namespace evac::testing
