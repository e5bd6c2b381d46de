// Recovery plans through the REST API of two in-process sites: stored,
// validated against the groups each site knows, and copied to the peer.
#include <gtest/gtest.h>

#include "hostile_answers.h"
#include "service/run_service.h"
#include "unit/two_sites.h"

namespace evac::testing {
namespace {

using nlohmann::json;

bool contains(const std::string& haystack, const std::string& needle) { return haystack.find(needle) != std::string::npos; }

class PlanApiTest : public TwoSitesTest {
 protected:
  void SetUp() override {
    TwoSitesTest::SetUp();
    pair();
    map_all();
    auto g = a_.service->create_group({"shop", {"web01", "db01"}, std::nullopt, 900, 24});
    ASSERT_TRUE(g.is_ok()) << g.status().to_string();
  }
  // Site-b, where shop runs after a recovery (run-9), holds plan shop-dr
  // and a copy of site-a's configuration whose group has `key` set to
  // `value`, as an older evacd stored it, unchecked: where a reprotect of
  // the plan starts.
  void hold_copy_for_reprotect_with(const std::string& key, const json& value) {
    ASSERT_EQ(b_.call("POST", "/api/v1/plans", shop_plan()).status, 201);
    ASSERT_TRUE(b_.store->put_ownership(OwnershipRecord{"shop", "site-b", 2, now_, "run-9"}).is_ok());
    auto held = b_.store->find_peer_copy("site-a");
    ASSERT_TRUE(held.is_ok() && held->has_value());
    json copy = json::parse((*held)->document);
    ASSERT_EQ(copy["groups"].size(), 1u);
    copy["groups"][0][key] = value;
    ASSERT_TRUE(b_.store->put_peer_copy(PeerCopyRecord{"site-a", (*held)->version, copy.dump(), now_}).is_ok());
  }
  // Asks site-b for a reprotect of shop-dr, which must be refused as bad
  // input before anything is done: no run, the group not protected from
  // here, site-a not called. Returns the refusal.
  Status refused_reprotect() {
    const int calls_before = b_.transport->calls();
    RunService runs(*b_.service, *b_.plans, nullptr);
    auto r = runs.start(RunRequest{"shop-dr", "reprotect", "admin", "", ""});
    EXPECT_FALSE(r.is_ok());
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << r.status().to_string();
    EXPECT_TRUE(runs.list_runs(std::nullopt, 10)->empty());
    auto here = b_.store->find_group("shop");
    EXPECT_TRUE(here.is_ok() && !here->has_value()) << "not protected from here";
    EXPECT_EQ(b_.transport->calls(), calls_before) << "site-a was not called";
    return r.is_ok() ? Status::ok() : r.status();
  }
  static json shop_plan() {
    return {{"name", "shop-dr"},
            {"groups", {"shop"}},
            {"ordering", "strict-tiers"},
            {"vms",
             {{{"vm", "db01"}, {"priority", 1}, {"checks", {{{"tcp", {{"port", 5432}}}}}}},
              {{"vm", "web01"}, {"priority", 2}, {"depends_on", {"db01"}}}}}};
  }
};

TEST_F(PlanApiTest, CreateGetListDelete) {
  auto created = a_.call("POST", "/api/v1/plans", shop_plan());
  ASSERT_EQ(created.status, 201) << created.body.dump();
  EXPECT_EQ(created.body["name"], "shop-dr");
  EXPECT_EQ(created.body["created_at"], now_);

  auto again = a_.call("POST", "/api/v1/plans", shop_plan());
  EXPECT_EQ(again.status, 409) << again.body.dump();

  auto got = a_.call("GET", "/api/v1/plans/shop-dr");
  ASSERT_EQ(got.status, 200);
  EXPECT_EQ(got.body["vms"][1]["depends_on"], json::array({"db01"}));
  EXPECT_EQ(got.body["vms"][0]["checks"][0]["tcp"]["port"], 5432);

  auto list = a_.call("GET", "/api/v1/plans");
  ASSERT_EQ(list.status, 200);
  ASSERT_EQ(list.body.size(), 1u);

  EXPECT_EQ(a_.call("DELETE", "/api/v1/plans/shop-dr").status, 200);
  EXPECT_EQ(a_.call("GET", "/api/v1/plans/shop-dr").status, 404);
  EXPECT_EQ(a_.call("DELETE", "/api/v1/plans/shop-dr").status, 404);
}

TEST_F(PlanApiTest, ApplyCreatesThenReplacesKeepingCreatedAt) {
  json plan = shop_plan();
  plan["kind"] = "RecoveryPlan";
  auto first = a_.call("PUT", "/api/v1/plans/shop-dr", plan);
  ASSERT_EQ(first.status, 200) << first.body.dump();
  now_ += 60;
  plan["ordering"] = "dependencies";
  plan["vms"][1]["priority"] = 1;
  auto second = a_.call("PUT", "/api/v1/plans/shop-dr", plan);
  ASSERT_EQ(second.status, 200) << second.body.dump();
  EXPECT_EQ(second.body["ordering"], "dependencies");
  EXPECT_EQ(second.body["created_at"], now_ - 60);
  EXPECT_EQ(second.body["updated_at"], now_);

  // What GET returns is accepted back unchanged.
  auto got = a_.call("GET", "/api/v1/plans/shop-dr");
  auto third = a_.call("PUT", "/api/v1/plans/shop-dr", got.body);
  ASSERT_EQ(third.status, 200) << third.body.dump();
  json a = got.body, b = third.body;
  a.erase("updated_at");
  b.erase("updated_at");
  EXPECT_EQ(a, b);

  auto renamed = a_.call("PUT", "/api/v1/plans/other", shop_plan());
  EXPECT_EQ(renamed.status, 400);
  EXPECT_NE(renamed.body["message"].get<std::string>().find("named 'shop-dr' but was sent to 'other'"), std::string::npos);
}

TEST_F(PlanApiTest, BadPlansChangeNothingAndSayWhy) {
  json unknown_group = shop_plan();
  unknown_group["groups"] = {"shop", "crm"};
  auto r = a_.call("POST", "/api/v1/plans", unknown_group);
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body["message"].get<std::string>().find("group 'crm' is not known at this site"), std::string::npos)
      << r.body.dump();

  json stranger = shop_plan();
  stranger["vms"].push_back({{"vm", "lonely01"}});
  r = a_.call("POST", "/api/v1/plans", stranger);
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body["message"].get<std::string>().find("VM 'lonely01' is not in the plan's groups"), std::string::npos);

  json cycle = shop_plan();
  cycle["ordering"] = "dependencies";
  cycle["vms"][0]["depends_on"] = {"web01"};
  r = a_.call("POST", "/api/v1/plans", cycle);
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body["message"].get<std::string>().find("dependency cycle: "), std::string::npos) << r.body.dump();

  json typo = shop_plan();
  typo["vms"][0]["prority"] = 1;
  r = a_.call("POST", "/api/v1/plans", typo);
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body["message"].get<std::string>().find("unknown key 'prority'"), std::string::npos) << r.body.dump();

  EXPECT_EQ(a_.call("GET", "/api/v1/plans").body.size(), 0u) << "nothing was stored";
}

TEST_F(PlanApiTest, IpRulesARunCouldNotApplyAreRefusedAtBothSites) {
  const json rule = {{"network", "prod"}, {"from", "10.0.0.0/24"}, {"to", "10.1.0.0/24"}};
  // A VM on the re-addressed network that is not waited for would come up
  // with its production address.
  json unwaited = shop_plan();
  unwaited["ip_rules"] = {rule};
  unwaited["vms"][1]["wait_for_guest"] = false;
  for (TestSite* site : {&a_, &b_}) {  // site-a knows the VMs, site-b their placeholders
    auto r = site->call("POST", "/api/v1/plans", unwaited);
    EXPECT_EQ(r.status, 400) << r.body.dump();
    EXPECT_NE(r.body["message"].get<std::string>().find("VM 'web01' is on network 'prod', which an IP rule re-addresses"),
              std::string::npos)
        << r.body.dump();
  }
  // A rule for a network none of the VMs is on is a typo, not a no-op. (One
  // for the recovery side's network is the way back's, after a reprotect.)
  json both_ways = shop_plan();
  both_ways["name"] = "both-ways";
  both_ways["ip_rules"] = {rule, {{"network", "recovery-prod"}, {"from", "10.1.0.0/24"}, {"to", "10.0.0.0/24"}}};
  EXPECT_EQ(b_.call("POST", "/api/v1/plans", both_ways).status, 201);
  EXPECT_EQ(a_.call("POST", "/api/v1/plans", both_ways).status, 201);
  json typo = shop_plan();
  typo["ip_rules"] = {{{"network", "prdo"}, {"from", "10.0.0.0/24"}, {"to", "10.1.0.0/24"}}};
  auto r = b_.call("POST", "/api/v1/plans", typo);
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body["message"].get<std::string>().find("IP rule for network 'prdo' names a network none of the plan's VMs is on at either site (they are on: prod, recovery-prod)"),
            std::string::npos)
      << r.body.dump();
  // Left off, the VM is not started by the run: allowed, and the report
  // says it was not re-addressed.
  json left_off = shop_plan();
  left_off["ip_rules"] = {rule};
  left_off["vms"][1]["startup"] = "leave-off";
  ASSERT_EQ(b_.call("POST", "/api/v1/plans", left_off).status, 201);
  auto readiness = b_.call("GET", "/api/v1/plans/shop-dr/readiness");
  ASSERT_EQ(readiness.status, 200);
  bool ip_ok = false;
  for (const auto& f : readiness.body["findings"])
    if (f["check"] == "ip-rules") ip_ok = f["severity"] == "ok";
  EXPECT_TRUE(ip_ok) << readiness.body.dump(2);
}

TEST_F(PlanApiTest, NamesThatDifferOnlyInCaseDoNotCoexist) {
  // Plan names are lower case; group names may mix cases, but not to make
  // a second group of the same name.
  auto g = a_.call("POST", "/api/v1/groups", json{{"name", "SHOP"}, {"vms", {"lonely01"}}});
  EXPECT_EQ(g.status, 409) << g.body.dump();
  EXPECT_NE(g.body["message"].get<std::string>().find("differs from it only in case"), std::string::npos);
  EXPECT_EQ(a_.call("POST", "/api/v1/groups", json{{"name", "Recovered"}, {"vms", {"lonely01"}}}).status, 400)
      << "a reserved folder name in any case";
}

TEST_F(PlanApiTest, RecoverySiteCanHoldThePlanAndGetsCopiesOfTheProtectedSites) {
  // Written where it runs: site-b knows "shop" from site-a's configuration copy.
  auto at_b = b_.call("POST", "/api/v1/plans", shop_plan());
  ASSERT_EQ(at_b.status, 201) << at_b.body.dump();

  // One written at the protected site travels to the recovery site with the
  // next heartbeat, so a recovery there has it with site-a gone.
  json mine = shop_plan();
  mine["name"] = "shop-from-a";
  ASSERT_EQ(a_.call("POST", "/api/v1/plans", mine).status, 201);
  a_.service->heartbeat_round();
  auto copy = b_.store->find_peer_copy("site-a");
  ASSERT_TRUE(copy.is_ok() && copy->has_value());
  auto doc = json::parse((*copy)->document);
  ASSERT_EQ(doc["plans"].size(), 1u) << doc.dump();
  EXPECT_EQ(doc["plans"][0]["name"], "shop-from-a");

  // And site-b's own plan over site-a's group goes back to site-a (failback).
  b_.service->heartbeat_round();
  auto back = a_.store->find_peer_copy("site-b");
  ASSERT_TRUE(back.is_ok() && back->has_value());
  auto back_doc = json::parse((*back)->document);
  ASSERT_EQ(back_doc["plans"].size(), 1u) << back_doc.dump();
  EXPECT_EQ(back_doc["plans"][0]["name"], "shop-dr");
}

TEST_F(PlanApiTest, ReadinessAtTheRecoverySiteNamesWhatIsMissingAndWhatToDo) {
  json plan = shop_plan();
  ASSERT_EQ(b_.call("POST", "/api/v1/plans", plan).status, 201);
  auto r = b_.call("GET", "/api/v1/plans/shop-dr/readiness");
  ASSERT_EQ(r.status, 200) << r.body.dump();
  auto has = [](const json& body, const std::string& severity, const std::string& check, const std::string& text) {
    for (const auto& f : body["findings"])
      if (f["severity"] == severity && f["check"] == check && f["message"].get<std::string>().find(text) != std::string::npos)
        return true;
    return false;
  };
  EXPECT_TRUE(has(r.body, "ok", "placeholders", "every VM of group 'shop' has its placeholder here")) << r.body.dump(2);
  EXPECT_TRUE(has(r.body, "ok", "networks", "isolated test network 'test-isolated'")) << r.body.dump(2);
  EXPECT_TRUE(r.body["ready"].get<bool>()) << r.body.dump(2);

  // A placeholder removed by hand, a callout whose command is not here.
  auto hosted = b_.service->list_hosted_placeholders();
  ASSERT_TRUE(hosted.is_ok() && !hosted->empty());
  const auto gone = hosted->front();
  ASSERT_TRUE(b_.provider->remove_placeholder(gone.uuid).is_ok());
  plan["vms"][0]["before_power_on"] = {{{"host", {"/nonexistent/notify-dba"}}}};
  ASSERT_EQ(b_.call("PUT", "/api/v1/plans/shop-dr", plan).status, 200);
  r = b_.call("GET", "/api/v1/plans/shop-dr/readiness");
  ASSERT_EQ(r.status, 200);
  EXPECT_FALSE(r.body["ready"].get<bool>());
  EXPECT_TRUE(has(r.body, "error", "placeholders", "placeholder of VM '" + gone.name + "'")) << r.body.dump(2);
  EXPECT_TRUE(has(r.body, "error", "callouts", "'/nonexistent/notify-dba' is not found")) << r.body.dump(2);
  // The list shows the plan's state.
  auto list = b_.call("GET", "/api/v1/plans");
  EXPECT_EQ(list.body[0]["ready"], false);
}

// Readiness answers for each run: a finding stops only the runs it
// concerns, and the runs that apply change with where the group is live.
TEST_F(PlanApiTest, ReadinessAnswersForEachRun) {
  ASSERT_EQ(b_.call("POST", "/api/v1/plans", shop_plan()).status, 201);
  auto ops = [&] {
    auto r = b_.call("GET", "/api/v1/plans/shop-dr/readiness");
    EXPECT_EQ(r.status, 200) << r.body.dump();
    std::map<std::string, std::string> out;
    for (const auto& [op, v] : r.body["operations"].items())
      out[op] = !v["applicable"].get<bool>() ? "n/a" : v["ready"].get<bool>() ? "ready" : "NOT";
    return out;
  };
  using Ops = std::map<std::string, std::string>;
  EXPECT_EQ(ops(), (Ops{{"test", "ready"}, {"migrate", "ready"}, {"failover", "ready"}, {"failback", "ready"}, {"reprotect", "n/a"}}));

  // A placeholder that would not start stops the runs that power it on,
  // not a test (test VMs are copies on test networks).
  b_.provider->set_start_problems("web01", {"NIC 52:54:00:00:00:01 is on network 'recovery-prod', which is not active"});
  EXPECT_EQ(ops(), (Ops{{"test", "ready"}, {"migrate", "NOT"}, {"failover", "NOT"}, {"failback", "NOT"}, {"reprotect", "n/a"}}));
  auto r = b_.call("GET", "/api/v1/plans/shop-dr/readiness");
  bool named = false;
  for (const auto& f : r.body["findings"])
    named |= f["severity"] == "error" && f["check"] == "placeholders" &&
             f["message"].get<std::string>().find("placeholder of VM 'web01' would not start") != std::string::npos;
  EXPECT_TRUE(named) << r.body.dump(2);
  b_.provider->set_start_problems("web01", {});

  // Too little memory at the recovery site: the VMs would still start
  // (libvirt admits them, Linux overcommits), so every recovery is warned,
  // none stopped: readiness predicts the run, not a failure it would not have.
  b_.provider->set_free_memory_kib(1024 * 1024);  // 1 GiB; the two VMs want 2
  EXPECT_EQ(ops(), (Ops{{"test", "ready"}, {"migrate", "ready"}, {"failover", "ready"}, {"failback", "ready"}, {"reprotect", "n/a"}}));
  r = b_.call("GET", "/api/v1/plans/shop-dr/readiness");
  bool warned = false;
  for (const auto& f : r.body["findings"])
    warned |= f["severity"] == "warning" && f["check"] == "capacity" &&
              f["message"].get<std::string>().find("1024 MiB free; the plan's VMs need 2048 MiB for 2 VMs") != std::string::npos;
  EXPECT_TRUE(warned) << r.body.dump(2);
  b_.provider->set_free_memory_kib(32ull << 20);

  // The protected site gone: a migration cannot run, a test or failover can.
  b_.transport->cut("https://a:1");
  b_.service->heartbeat_round();
  EXPECT_EQ(ops(), (Ops{{"test", "ready"}, {"migrate", "NOT"}, {"failover", "ready"}, {"failback", "NOT"}, {"reprotect", "n/a"}}));

  // Recovered here (a failover took it over): what applies now is a
  // reprotect, which needs mappings from here back, named exactly.
  ASSERT_TRUE(b_.store->put_ownership(OwnershipRecord{"shop", "site-b", 2, now_, "run-9"}).is_ok());
  b_.transport->heal("https://a:1");
  b_.service->heartbeat_round();
  EXPECT_EQ(ops(), (Ops{{"test", "n/a"}, {"migrate", "n/a"}, {"failover", "n/a"}, {"failback", "n/a"}, {"reprotect", "NOT"}}));
  r = b_.call("GET", "/api/v1/plans/shop-dr/readiness");
  std::string hint;
  for (const auto& f : r.body["findings"])
    if (f["severity"] == "error" && f["check"] == "mappings") hint = f["hint"];
  EXPECT_NE(hint.find("evac mapping create network recovery-prod prod --test-network"), std::string::npos) << r.body.dump(2);
  EXPECT_NE(hint.find("evac mapping create storage replicas images"), std::string::npos) << hint;
  a_.provider->add_network("test-isolated-a", true);
  for (auto req : {MappingCreateRequest{MappingKind::kNetwork, std::nullopt, "recovery-prod", "prod", "test-isolated-a"},
                   MappingCreateRequest{MappingKind::kStorage, std::nullopt, "replicas", "images", ""},
                   MappingCreateRequest{MappingKind::kStorage, std::nullopt, "replicas-fast", "fast", ""}}) {
    auto m = b_.service->create_mapping(req);
    ASSERT_TRUE(m.is_ok()) << m.status().to_string();
  }
  EXPECT_EQ(ops(), (Ops{{"test", "n/a"}, {"migrate", "n/a"}, {"failover", "n/a"}, {"failback", "n/a"}, {"reprotect", "ready"}}));
}

// A reprotect makes this site protect the group with the settings its
// former protected site's copy names. One keeping 2^40 PITs (0 as an int,
// which deletes every older PIT) is refused when the run is asked for:
// before the former protected site is told anything, and with nothing
// recorded here. (The copy came from an evacd that stored it unchecked;
// one arriving now is refused at once.)
TEST_F(PlanApiTest, AReprotectFromACopyKeepingMorePitsThanAnOperatorMayIsRefusedAndChangesNothing) {
  ASSERT_NO_FATAL_FAILURE(hold_copy_for_reprotect_with("keep_pits", std::uint64_t{1} << 40));
  Status refused = refused_reprotect();
  EXPECT_TRUE(contains(refused.message(), "group 'shop': field 'keep_pits'")) << refused.message();
  EXPECT_TRUE(contains(refused.message(), "1099511627776")) << refused.message();
  EXPECT_TRUE(contains(refused.hint(), "from 1 to 1000")) << refused.hint();
  auto there = a_.store->find_group("shop");
  ASSERT_TRUE(there.is_ok() && there->has_value()) << "still protected there";
  EXPECT_EQ((*there)->keep_pits, 24);

  // Readiness names the group's copy as what stops the runs.
  auto readiness = b_.call("GET", "/api/v1/plans/shop-dr/readiness");
  ASSERT_EQ(readiness.status, 200) << readiness.body.dump();
  EXPECT_FALSE(readiness.body["ready"].get<bool>());
  bool named = false;
  for (const auto& f : readiness.body["findings"])
    named |= f["severity"] == "error" && f["check"] == "groups" &&
             contains(f["message"].get<std::string>(), "field 'keep_pits'");
  EXPECT_TRUE(named) << readiness.body.dump(2);
}

// A reprotect keeps the group's replication engine for the way back; a copy
// (stored unchecked by an older evacd) naming no kind's name is refused
// before anything is done, as an out-of-bounds setting is.
TEST_F(PlanApiTest, AReprotectFromACopyNamingNoEngineKindIsRefusedAndChangesNothing) {
  ASSERT_NO_FATAL_FAILURE(hold_copy_for_reprotect_with("replication_engine", "Ceph RBD"));
  Status refused = refused_reprotect();
  EXPECT_TRUE(contains(refused.message(), "group 'shop': replication engine kind 'Ceph RBD'")) << refused.message();
}

TEST_F(PlanApiTest, ReadinessAtTheProtectedSiteWantsAPointInTime) {
  ASSERT_EQ(a_.call("POST", "/api/v1/plans", shop_plan()).status, 201);
  auto r = a_.call("GET", "/api/v1/plans/shop-dr/readiness");
  ASSERT_EQ(r.status, 200);
  EXPECT_FALSE(r.body["ready"].get<bool>());
  bool named = false;
  for (const auto& f : r.body["findings"])
    if (f["severity"] == "error" && f["check"] == "points-in-time")
      named = f["hint"].get<std::string>().find("evac group sync shop") != std::string::npos;
  EXPECT_TRUE(named) << r.body.dump(2);
  EXPECT_EQ(a_.call("GET", "/api/v1/plans/nope/readiness").status, 404);
}

// A readiness check (also a run's first step, in its thread) asks the
// protected site about guest agents, fencing and backups: an answer of
// the wrong shape threw there; it is now a warning that says so.
TEST_F(HostileAnswersTest, ReadinessAnswersOfTheWrongShapeAreWarningsNotThrows) {
  pair();
  map_all();
  ASSERT_TRUE(a_.service->create_group({"shop", {"web01"}, std::nullopt, 900, 24}).is_ok());
  const json plan = {{"name", "shop-dr"}, {"groups", {"shop"}}, {"vms", {{{"vm", "web01"}, {"wait_for_guest", "5m"}}}}};
  ASSERT_EQ(b_.call("POST", "/api/v1/plans", plan).status, 201);
  auto provider = std::make_unique<FakeComputeProvider>("kvm-b");
  provider->add_network("recovery-prod");
  std::map<std::string, std::unique_ptr<ComputeProvider>> providers;
  providers.emplace("kvm-b", std::move(provider));
  SiteService site_b(SiteIdentity{"site-b", "https://b:1", "sha256//pin-b"}, *b_.store, std::move(providers), peer_,
                     [this] { return now_; });
  PlanService plans(site_b);
  peer_.answers["GET /api/v1/peer/groups/shop/guest-agents"] = json::array({{{"vm", 7}, {"state", "running"}}});
  peer_.answers["GET /api/v1/peer/groups/shop/fence-check"] = json{{"read_only", "yes"}};
  peer_.answers["GET /api/v1/peer/groups/shop/backup-probe"] = json{{"busy", false}, {"vms", "web01"}};
  auto r = plans.check_plan("shop-dr");
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  std::map<std::string, std::string> said;  // check -> message of its warning
  for (const auto& f : r->findings)
    if (f.severity == "warning") said[f.check] = f.message + " / " + f.hint;
  EXPECT_TRUE(contains(said["guest-agents"], "answered the guest-agent check unreadably: field 'vm' of a VM of the guest-agent answer must be a string"))
      << said["guest-agents"];
  EXPECT_TRUE(contains(said["fencing"], "answered the fence check unreadably: field 'read_only' of the fence-check answer"))
      << said["fencing"];
  EXPECT_TRUE(contains(said["backups"], "answered the backup probe unreadably: field 'vms' of the backup-probe answer must be a list"))
      << said["backups"];
  EXPECT_TRUE(contains(said["backups"], "no evacd of this version sends")) << said["backups"];

  // As the protected site writes them, they are read.
  peer_.answers["GET /api/v1/peer/groups/shop/guest-agents"] =
      json::array({{{"vm", "web01"}, {"state", "running"}, {"agent", false}, {"error", "no agent channel"}}});
  peer_.answers["GET /api/v1/peer/groups/shop/fence-check"] = json{{"read_only", true}, {"error", ""}, {"hint", ""}};
  peer_.answers["GET /api/v1/peer/groups/shop/backup-probe"] =
      json{{"busy", false}, {"vms", {{{"vm", "web01"}, {"state", "running"}, {"ok", true}, {"error", ""}, {"hint", ""}}}}};
  r = plans.check_plan("shop-dr");
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  said.clear();
  std::map<std::string, std::string> ok;
  for (const auto& f : r->findings) (f.severity == "ok" ? ok : said)[f.check] += f.message;
  EXPECT_TRUE(contains(said["guest-agents"], "VM 'web01' at 'site-a' does not answer its guest agent: no agent channel"))
      << said["guest-agents"];
  EXPECT_TRUE(contains(ok["fencing"], "can make group 'shop''s disks read-only")) << ok["fencing"];
  EXPECT_TRUE(contains(ok["backups"], "can replicate every VM of group 'shop' now (1 probed")) << ok["backups"];
}

}  // namespace
}  // namespace evac::testing
