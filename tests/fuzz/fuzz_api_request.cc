// Fuzz target: a request to evacd's REST API, through the router with its
// real decoders, services and a real SQLite store (fakes behind: the
// compute provider, the peer transport and the replication engine, as in
// the unit tests). The first input byte picks the route and who calls it
// (an operator, a paired site, any certificate); the rest is the body.
// Requests change the site's state as they would in evacd, so later inputs
// meet groups and plans that earlier ones created.
//
// The site starts as site-a paired with site-b, protecting group g1 (VM
// web01) to it and holding site-b's configuration copy with group h1
// recovering here, so a paired site's replication calls (a sync of g1, a
// cycle of h1) and its reprotect of g1 get past the group checks to their
// decoders. New routes go at the end of kRoutes: the corpus names routes
// by their index.
#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>

#include "api/router.h"
#include "fakes/fake_compute_provider.h"
#include "fakes/fake_peer_transport.h"
#include "fakes/fake_replication_adapter.h"
#include "replication/builtin/builtin_registration.h"
#include "service/plan_service.h"
#include "service/replication_service.h"
#include "service/run_service.h"
#include "service/site_service.h"
#include "store/store.h"
#include "tls/tls.h"

namespace {

using namespace evac;

struct Route {
  const char* method;
  const char* path;
  enum { kOperator, kPeer, kStranger } caller;
  // Through the router that has the RunService. Only the reprotect: a
  // run's start would go on in the engine's threads after the input
  // (steps that wait for guests, prompts), so the operator's route to it
  // stays on the router without runs, which answers it "unsupported".
  bool runs = false;
};

constexpr Route kRoutes[] = {
    {"POST", "/api/v1/groups", Route::kOperator},
    {"PUT", "/api/v1/groups/g1/settings", Route::kOperator},
    {"POST", "/api/v1/groups/g1/vms", Route::kOperator},
    {"POST", "/api/v1/mappings", Route::kOperator},
    {"POST", "/api/v1/pairing-tokens", Route::kOperator},
    {"POST", "/api/v1/pairings", Route::kOperator},
    {"POST", "/api/v1/plans", Route::kOperator},
    {"PUT", "/api/v1/plans/p1", Route::kOperator},
    {"POST", "/api/v1/plans/p1/runs", Route::kOperator},
    {"POST", "/api/v1/runs/r1/ack", Route::kOperator},
    {"POST", "/api/v1/peer/pair", Route::kStranger},
    {"POST", "/api/v1/peer/heartbeat", Route::kPeer},
    {"POST", "/api/v1/peer/placeholders", Route::kPeer},
    {"POST", "/api/v1/peer/groups/g1/shutdown", Route::kPeer},
    {"POST", "/api/v1/peer/groups/g1/handover", Route::kPeer},
    {"PUT", "/api/v1/peer/config-copy", Route::kPeer},
    {"POST", "/api/v1/peer/groups/g1/sync", Route::kPeer},
    {"POST", "/api/v1/peer/groups/g1/reprotect", Route::kPeer, true},
    {"POST", "/api/v1/peer/replication/builtin/h1/cycles", Route::kPeer},
    {"POST", "/api/v1/peer/replication/builtin/h1/cycles/c1/commit", Route::kPeer},
};

struct Site {
  static std::int64_t now() { return 1'000'000; }

  std::filesystem::path dir;
  std::unique_ptr<Store> store;
  std::unique_ptr<testing::FakePeerTransport> transport;
  std::unique_ptr<SiteService> service;
  testing::FakeReplicationAdapter adapter{&Site::now};
  std::unique_ptr<ReplicationService> replication;
  std::unique_ptr<PlanService> plans;
  std::unique_ptr<RunService> runs;
  std::unique_ptr<ApiRouter> router;       // every route but the reprotect
  std::unique_ptr<ApiRouter> runs_router;  // the same, with the RunService

  Site() {
    dir = std::filesystem::temp_directory_path() / ("evac-fuzz-api-" + std::to_string(::getpid()));
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    auto opened = Store::open((dir / "evac.db").string());
    if (!opened) __builtin_trap();
    store = std::move(*opened);
    (void)store->add_api_token("admin", sha256_hex("token"));
    (void)store->add_peer(PeerRecord{"site-b", "https://b:1", "sha256//pin-b", 1, 1, std::nullopt, ""});
    auto provider = std::make_unique<testing::FakeComputeProvider>("kvm-a");
    provider->add_network("prod");
    provider->add_pool("images", "/a/images");
    VmInfo vm;
    vm.name = "web01";
    vm.uuid = "u-web01";
    vm.state = PowerState::kRunning;
    vm.disks = {{"vda", "/a/images/web01.qcow2", "qcow2", "virtio", "disk", "images"}};
    vm.nics = {{"52:54:00:00:00:01", "prod", "network", "virtio"}};
    provider->add_vm(vm);
    std::map<std::string, std::unique_ptr<ComputeProvider>> providers;
    providers.emplace("kvm-a", std::move(provider));
    transport = std::make_unique<testing::FakePeerTransport>("sha256//pin-a");
    service = std::make_unique<SiteService>(SiteIdentity{"site-a", "https://a:1", "sha256//pin-a"}, *store,
                                            std::move(providers), *transport, &Site::now);
    GroupRecord g1{"g1", "site-a", "site-b", 900, 24, 1, now(),
                   {GroupVmRecord{"kvm-a", "web01", "u-web01", "p-web01", "kvm-b"}}};
    g1.replication = "fake";
    (void)store->add_group(g1);
    const nlohmann::json copy = {
        {"site", "site-b"},
        {"version", 1},
        {"mappings", nlohmann::json::array()},
        {"groups",
         {{{"name", "h1"},
           {"protected_site", "site-b"},
           {"recovery_site", "site-a"},
           {"epoch", 1},
           {"vms", {{{"name", "db01"}, {"uuid", "u-db01"}, {"provider", "kvm-b"}}}}}}},
        {"plans", nlohmann::json::array()},
        {"ownership", nlohmann::json::array()}};
    (void)store->put_peer_copy(PeerCopyRecord{"site-b", 1, copy.dump(), now()});
    ReplicationOptions options;
    options.clock = &Site::now;
    options.schedules = false;
    // A sync call holds the input no longer than this (its cycle goes on
    // in the service's thread, against the fake engine).
    options.wait_limit = std::chrono::milliseconds(20);
    // The built-in engine serves the recovery half (group h1: its cycles'
    // bodies are fuzzed); group g1, protected here, names the fake.
    ReplicationRegistry engines = adapter.registry("fake");
    builtin::register_builtin_replicator(engines);
    replication = std::make_unique<ReplicationService>(*service, *transport, (dir / "state").string(), engines,
                                                       std::move(options));
    plans = std::make_unique<PlanService>(*service, replication.get());
    runs = std::make_unique<RunService>(*service, *plans, replication.get());
    router = std::make_unique<ApiRouter>(RouteServices{*service, *plans, replication.get()});
    runs_router = std::make_unique<ApiRouter>(RouteServices{*service, *plans, replication.get(), runs.get()});
  }
  ~Site() {
    runs_router.reset();
    router.reset();
    runs.reset();
    plans.reset();
    if (replication) replication->shutdown();
    replication.reset();
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static Site site;
  if (size == 0) return 0;
  const Route& route = kRoutes[data[0] % (sizeof kRoutes / sizeof kRoutes[0])];
  ApiRequest request{route.method, route.path, {}, std::string(reinterpret_cast<const char*>(data) + 1, size - 1),
                     route.caller == Route::kOperator ? "token" : "",
                     route.caller == Route::kPeer ? "sha256//pin-b" : route.caller == Route::kStranger ? "sha256//x" : ""};
  ApiResponse response = (route.runs ? site.runs_router : site.router)->handle(request);
  // Every answer is JSON with a status evac gives; errors carry a hint.
  if (response.status >= 400 &&
      (!response.body.is_object() || !response.body.contains("code") || !response.body.contains("hint")))
    __builtin_trap();
  if (response.status == 500) __builtin_trap();  // an internal error is a bug the input found
  return 0;
}
