// Two in-process sites wired through fake transports: site-a protects VMs
// on a FakeComputeProvider, site-b is its recovery site. Real SQLite stores
// in a temporary folder; no network.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "api/router.h"
#include "fakes/fake_compute_provider.h"
#include "fakes/fake_peer_transport.h"
#include "service/plan_service.h"
#include "service/site_service.h"
#include "store/store.h"
#include "tls/tls.h"

namespace evac::testing {

struct TestSite {
  std::unique_ptr<Store> store;
  FakeComputeProvider* provider = nullptr;
  std::unique_ptr<FakePeerTransport> transport;
  std::unique_ptr<SiteService> service;
  std::unique_ptr<PlanService> plans;  // the site's one, as evacd has it: its router's and runs'
  std::unique_ptr<ApiRouter> router;
  std::string token;  // admin bearer token

  // "?a=b&c=d" in `path` becomes the query, as the HTTPS server splits it.
  ApiResponse call(const std::string& method, const std::string& path, const nlohmann::json& body = nullptr) {
    ApiRequest req{method, path.substr(0, path.find('?')), {}, body.is_null() ? "" : body.dump(), token, ""};
    if (auto q = path.find('?'); q != std::string::npos) {
      std::string rest = path.substr(q + 1);
      while (!rest.empty()) {
        std::string pair = rest.substr(0, rest.find('&'));
        rest = rest.find('&') == std::string::npos ? "" : rest.substr(rest.find('&') + 1);
        auto eq = pair.find('=');
        req.query[pair.substr(0, eq)] = eq == std::string::npos ? "" : pair.substr(eq + 1);
      }
    }
    return router->handle(req);
  }
};

inline VmInfo make_vm(std::string name, std::string uuid, std::vector<DiskInfo> disks, std::vector<NicInfo> nics) {
  VmInfo vm;
  vm.name = std::move(name);
  vm.uuid = std::move(uuid);
  vm.state = PowerState::kRunning;
  vm.vcpus = 2;
  vm.memory_kib = 1 << 20;
  vm.firmware = "bios";
  vm.disks = std::move(disks);
  vm.nics = std::move(nics);
  return vm;
}

class TwoSitesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("evac-two-sites-" + std::to_string(::getpid()) + "-" + ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    make_site(a_, "site-a", "https://a:1", "sha256//pin-a", "kvm-a");
    make_site(b_, "site-b", "https://b:1", "sha256//pin-b", "kvm-b");
    a_.transport->connect("https://b:1", "sha256//pin-b", b_.router.get());
    b_.transport->connect("https://a:1", "sha256//pin-a", a_.router.get());

    a_.provider->add_network("prod");
    a_.provider->add_network("backup");
    a_.provider->add_pool("images", "/a/images");
    a_.provider->add_pool("fast", "/a/fast");
    a_.provider->add_vm(make_vm("web01", "u-web01", {{"vda", "/a/images/web01.qcow2", "qcow2", "virtio", "disk", "images"}},
                                {{"52:54:00:00:00:01", "prod", "network", "virtio"}}));
    a_.provider->add_vm(make_vm("db01", "u-db01",
                                {{"vda", "/a/images/db01.qcow2", "qcow2", "virtio", "disk", "images"},
                                 {"vdb", "/a/fast/db01-data.raw", "raw", "virtio", "disk", "fast"}},
                                {{"52:54:00:00:00:02", "prod", "network", "virtio"}}));
    a_.provider->add_vm(make_vm("legacy01", "u-legacy01", {{"vda", "/srv/odd/legacy.qcow2", "qcow2", "virtio", "disk", std::nullopt}},
                                {}));
    a_.provider->add_vm(make_vm("lonely01", "u-lonely01", {{"vda", "/a/images/lonely.qcow2", "qcow2", "virtio", "disk", "images"}},
                                {{"52:54:00:00:00:03", "backup", "network", "virtio"}}));

    b_.provider->add_network("recovery-prod");
    b_.provider->add_network("test-isolated", true);
    b_.provider->add_pool("replicas", "/b/replicas");
    b_.provider->add_pool("replicas-fast", "/b/fast");
  }
  void TearDown() override {
    for (TestSite* s : {&a_, &b_}) {
      s->router.reset();
      s->plans.reset();
      s->service.reset();
      s->store.reset();
    }
    std::filesystem::remove_all(dir_);
  }

  void make_site(TestSite& s, const std::string& name, const std::string& url, const std::string& pin,
                 const std::string& provider_name) {
    auto store = Store::open((dir_ / (name + ".db")).string());
    ASSERT_TRUE(store.is_ok()) << store.status().to_string();
    s.store = std::move(*store);
    s.token = "token-" + name;
    ASSERT_TRUE(s.store->add_api_token("admin", sha256_hex(s.token)).is_ok());
    auto provider = std::make_unique<FakeComputeProvider>(provider_name);
    s.provider = provider.get();
    std::map<std::string, std::unique_ptr<ComputeProvider>> providers;
    providers.emplace(provider_name, std::move(provider));
    s.transport = std::make_unique<FakePeerTransport>(pin);
    s.service = std::make_unique<SiteService>(SiteIdentity{name, url, pin}, *s.store, std::move(providers), *s.transport,
                                              [this] { return now_; });
    s.plans = std::make_unique<PlanService>(*s.service);
    s.router = std::make_unique<ApiRouter>(RouteServices{*s.service, *s.plans});
  }

  // Pairs a with b: b issues the token, a redeems it.
  void pair() {
    auto token = b_.service->create_pairing_token(std::chrono::minutes(15));
    ASSERT_TRUE(token.is_ok());
    auto peer = a_.service->pair((*token)["token"], std::nullopt);
    ASSERT_TRUE(peer.is_ok()) << peer.status().to_string();
  }

  void map_all() {
    for (auto req : {MappingCreateRequest{MappingKind::kCompute, std::nullopt, "kvm-a", "kvm-b", ""},
                     MappingCreateRequest{MappingKind::kNetwork, std::nullopt, "prod", "recovery-prod", "test-isolated"},
                     MappingCreateRequest{MappingKind::kStorage, std::nullopt, "images", "replicas", ""},
                     MappingCreateRequest{MappingKind::kStorage, std::nullopt, "fast", "replicas-fast", ""}}) {
      auto m = a_.service->create_mapping(req);
      ASSERT_TRUE(m.is_ok()) << m.status().to_string();
    }
  }

  // Paired and mapped, and group g1 (web01, RPO 15 min, 24 PITs) protected
  // from site-a to site-b: where most replication cases start.
  void protect_web01_in_g1() {
    ASSERT_NO_FATAL_FAILURE(pair());
    ASSERT_NO_FATAL_FAILURE(map_all());
    auto made = a_.service->create_group({"g1", {"web01"}, std::nullopt, 900, 24});
    ASSERT_TRUE(made.is_ok()) << made.status().to_string();
  }

  std::int64_t now_ = 1'000'000;
  std::filesystem::path dir_;
  TestSite a_, b_;
};

}  // namespace evac::testing
