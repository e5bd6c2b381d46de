#include "two_sites.h"

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
  EXPECT_EQ(doc.body["openapi"], "3.0.3");
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
  expect_error_body(a_.call("PATCH", "/api/v1/groups"), 400, "invalid_argument");
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
