// Two real evacd processes on loopback, each with its own libvirt test-driver
// inventory, driven only through the evac CLI, as an operator would.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <fstream>

#include "harness.h"
#include "tls/tls.h"

namespace evac::testing {
namespace {

using nlohmann::json;

std::string fixture_uri(const std::string& file) { return "test://" + std::string(EVAC_SOURCE_DIR) + "/tests/fixtures/" + file; }

class TwoSitesCliTest : public TwoEvacdTest {
 protected:
  void SetUp() override {
    make_root("evac-it-");
    make_sites(fixture_uri("site-a.xml"), fixture_uri("site-b.xml"));
    start_sites();
  }

  void pair_sites() {
    auto token = evac_at("b", {"site", "pairing-token", "-o", "json"});
    ASSERT_EQ(token.exit_code, 0) << token.err;
    auto paired = evac_at("a", {"site", "pair", token.json()["token"]});
    ASSERT_EQ(paired.exit_code, 0) << paired.err;
    EXPECT_NE(paired.out.find("paired with site 'site-b'"), std::string::npos);
  }

  void map_sites() {
    for (auto args : std::vector<std::vector<std::string>>{
             {"mapping", "create", "compute", "kvm-a", "kvm-b"},
             {"mapping", "create", "network", "prod", "recovery-prod", "--test-network", "test-isolated"},
             {"mapping", "create", "network", "backup", "recovery-backup", "--test-network", "test-isolated"},
             {"mapping", "create", "storage", "images", "replicas"},
             {"mapping", "create", "storage", "fast", "replicas-fast"}}) {
      auto r = evac_at("a", args);
      ASSERT_EQ(r.exit_code, 0) << r.err;
    }
  }

};

TEST_F(TwoSitesCliTest, FirstStartCreatesIdentityAndPrivateToken) {
  struct stat st {};
  ASSERT_EQ(::stat((a_->state_dir() / "admin.token").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_EQ(::stat((a_->state_dir() / "tls/key.pem").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto pin = public_key_pin_of_file((a_->state_dir() / "tls/cert.pem").string());
  ASSERT_TRUE(pin.is_ok());
  EXPECT_EQ(*pin, a_->pin());
  EXPECT_TRUE(fs::exists(a_->state_dir() / "evac.db-wal"));
  auto show = evac_at("a", {"site", "show", "-o", "json"});
  ASSERT_EQ(show.exit_code, 0) << show.err;
  EXPECT_EQ(show.json()["name"], "site-a");
  EXPECT_EQ(show.json()["pin"], a_->pin());
}

TEST_F(TwoSitesCliTest, LogsAreJsonLines) {
  ASSERT_EQ(evac_at("a", {"inventory", "vms"}).exit_code, 0);
  std::istringstream lines(a_->log());
  std::string line;
  int parsed = 0;
  while (std::getline(lines, line)) {
    auto j = json::parse(line, nullptr, false);
    ASSERT_FALSE(j.is_discarded()) << line;
    EXPECT_TRUE(j.contains("level") && j.contains("msg") && j.contains("ts"));
    ++parsed;
  }
  EXPECT_GT(parsed, 1);
}

TEST_F(TwoSitesCliTest, InventoryThroughTheCli) {
  auto vms = evac_at("a", {"inventory", "vms", "-o", "json"});
  ASSERT_EQ(vms.exit_code, 0) << vms.err;
  std::set<std::string> names;
  for (const auto& vm : vms.json()) names.insert(vm["name"]);
  EXPECT_TRUE(names.count("web01") && names.count("db01") && names.count("app01"));
  auto table = evac_at("a", {"inventory", "vms"});
  EXPECT_NE(table.out.find("NAME"), std::string::npos);
  EXPECT_NE(table.out.find("web01"), std::string::npos);
  auto yaml = evac_at("a", {"inventory", "vm", "web01", "-o", "yaml"});
  ASSERT_EQ(yaml.exit_code, 0) << yaml.err;
  EXPECT_NE(yaml.out.find("name: web01"), std::string::npos);
  auto nets = evac_at("b", {"inventory", "networks", "-o", "json"});
  bool isolated_seen = false;
  for (const auto& n : nets.json()) isolated_seen |= n["name"] == "test-isolated" && n["isolated"] == true;
  EXPECT_TRUE(isolated_seen);
  auto ghost = evac_at("a", {"inventory", "vm", "ghost"});
  EXPECT_EQ(ghost.exit_code, 1);
  EXPECT_NE(ghost.err.find("hint:"), std::string::npos);
}

TEST_F(TwoSitesCliTest, PairProtectAndUnprotect) {
  pair_sites();
  for (const char* ctx : {"a", "b"}) {
    auto status = evac_at(ctx, {"site", "status", "-o", "json"});
    ASSERT_EQ(status.exit_code, 0) << status.err;
    ASSERT_EQ(status.json().size(), 1u);
    EXPECT_EQ(status.json()[0]["state"], "connected") << ctx;
  }
  // Without mappings the group is refused and the error names what is missing.
  auto refused = evac_at("a", {"group", "create", "g1", "--vm", "web01"});
  EXPECT_EQ(refused.exit_code, 1);
  EXPECT_NE(refused.err.find("network 'prod' is not mapped"), std::string::npos) << refused.err;
  EXPECT_NE(refused.err.find("evac mapping create"), std::string::npos);

  map_sites();
  auto created = evac_at("a", {"group", "create", "g1", "--vm", "web01", "--vm", "db01", "--rpo", "5m", "--keep-pits", "12", "-o", "json"});
  ASSERT_EQ(created.exit_code, 0) << created.err;
  EXPECT_EQ(created.json()["rpo"], "5m");
  EXPECT_EQ(created.json()["keep_pits"], 12);
  EXPECT_EQ(created.json()["vms"].size(), 2u);

  // The recovery site now has powered-off placeholders on mapped resources.
  auto b_vms = evac_at("b", {"inventory", "vms", "-o", "json"});
  int placeholders = 0;
  for (const auto& vm : b_vms.json()) {
    if (!vm["is_placeholder"].get<bool>()) continue;
    ++placeholders;
    EXPECT_EQ(vm["state"], "shut off");
    for (const auto& nic : vm["nics"]) EXPECT_TRUE(nic["network"] == "recovery-prod" || nic["network"] == "recovery-backup");
  }
  EXPECT_EQ(placeholders, 2);
  auto web_placeholder = evac_at("b", {"inventory", "vm", "web01", "-o", "json"});
  ASSERT_EQ(web_placeholder.exit_code, 0);
  json web = web_placeholder.json();
  ASSERT_EQ(web["disks"].size(), 2u);
  for (const auto& d : web["disks"])
    EXPECT_EQ(d["path"].get<std::string>().rfind("/var/lib/evac-fixture/b/", 0), 0u) << d.dump();

  auto hosted = evac_at("b", {"placeholder", "list", "-o", "json"});
  EXPECT_EQ(hosted.json().size(), 2u);

  // A VM belongs to one group only.
  auto twice = evac_at("a", {"group", "create", "g2", "--vm", "web01"});
  EXPECT_EQ(twice.exit_code, 1);
  EXPECT_NE(twice.err.find("already belongs to protection group 'g1'"), std::string::npos);

  auto removed = evac_at("a", {"group", "remove-vm", "g1", "db01", "-o", "json"});
  ASSERT_EQ(removed.exit_code, 0) << removed.err;
  EXPECT_EQ(evac_at("b", {"placeholder", "list", "-o", "json"}).json().size(), 1u);
  auto added = evac_at("a", {"group", "add-vm", "g1", "app01", "-o", "json"});
  ASSERT_EQ(added.exit_code, 0) << added.err;
  EXPECT_EQ(added.json()["vms"].size(), 2u);

  // The recovery site keeps a copy of the protection for a recovery without site-a.
  auto copies = evac_at("b", {"site", "copies", "-o", "json"});
  ASSERT_EQ(copies.exit_code, 0) << copies.err;
  json copy_list = copies.json();
  ASSERT_EQ(copy_list.size(), 1u);
  EXPECT_EQ(copy_list[0]["site"], "site-a");
  const json& doc = copy_list[0]["document"];
  ASSERT_EQ(doc["groups"].size(), 1u);
  EXPECT_EQ(doc["groups"][0]["vms"].size(), 2u);
  EXPECT_EQ(doc["mappings"].size(), 5u);
  EXPECT_EQ(evac_at("b", {"group", "list", "-o", "json"}).json().size(), 0u);  // site-b protects nothing itself

  auto deleted = evac_at("a", {"group", "delete", "g1"});
  ASSERT_EQ(deleted.exit_code, 0) << deleted.err;
  EXPECT_EQ(evac_at("b", {"placeholder", "list", "-o", "json"}).json().size(), 0u);
  auto unpaired = evac_at("a", {"site", "unpair", "site-b"});
  ASSERT_EQ(unpaired.exit_code, 0) << unpaired.err;
  EXPECT_EQ(evac_at("b", {"site", "status", "-o", "json"}).json().size(), 0u);
}

TEST_F(TwoSitesCliTest, PlansAreAppliedFromYamlAndRoundTrip) {
  pair_sites();
  map_sites();
  ASSERT_EQ(evac_at("a", {"group", "create", "shop", "--vm", "web01", "--vm", "db01"}).exit_code, 0);

  // Written at the recovery site, where it will run.
  const fs::path file = root_ / "shop-dr.yaml";
  {
    std::ofstream out(file);
    out << R"(kind: RecoveryPlan
name: shop-dr
description: database first
groups: [shop]
ordering: strict-tiers
vms:
  - vm: db01
    priority: 1
    wait_for_guest: 2m
    checks:
      - tcp: {port: 5432}
    before_power_on:
      - prompt: Is the licence server up?
  - vm: web01
    priority: 2
    depends_on: [db01]
    checks:
      - http: {port: 80, path: /health}
ip_rules:
  - {network: prod, from: 10.0.0.0/24, to: 10.1.0.0/24, gateway: 10.1.0.1}
)";
  }
  auto applied = evac_at("b", {"apply", "-f", file.string()});
  ASSERT_EQ(applied.exit_code, 0) << applied.err;
  EXPECT_NE(applied.out.find("recovery plan 'shop-dr' created"), std::string::npos) << applied.out;

  auto shown = evac_at("b", {"plan", "show", "shop-dr"});
  ASSERT_EQ(shown.exit_code, 0) << shown.err;
  EXPECT_NE(shown.out.find("strict-tiers"), std::string::npos) << shown.out;
  EXPECT_NE(shown.out.find("db01"), std::string::npos) << shown.out;

  // get -o yaml, apply that file again: the same plan.
  auto got = evac_at("b", {"get", "plan", "shop-dr", "-o", "yaml"});
  ASSERT_EQ(got.exit_code, 0) << got.err;
  EXPECT_NE(got.out.find("kind: RecoveryPlan"), std::string::npos) << got.out;
  const fs::path round = root_ / "round.yaml";
  {
    std::ofstream out(round);
    out << got.out;
  }
  ASSERT_EQ(evac_at("b", {"apply", "-f", round.string()}).exit_code, 0);
  auto again = evac_at("b", {"get", "plan", "shop-dr", "-o", "json"});
  ASSERT_EQ(again.exit_code, 0);
  auto first_json = evac_at("b", {"plan", "show", "shop-dr", "-o", "json"}).json();
  nlohmann::json a = again.json(), b = first_json;
  for (auto* j : {&a, &b}) {
    j->erase("updated_at");
    j->erase("kind");
  }
  EXPECT_EQ(a, b);

  // A plan with a cycle is refused, names it, and changes nothing.
  {
    std::ofstream out(file);
    out << "kind: RecoveryPlan\nname: shop-dr\ngroups: [shop]\nordering: dependencies\nvms:\n"
           "  - {vm: db01, depends_on: [web01]}\n  - {vm: web01, depends_on: [db01]}\n";
  }
  auto cyclic = evac_at("b", {"apply", "-f", file.string()});
  EXPECT_EQ(cyclic.exit_code, 1);
  EXPECT_NE(cyclic.err.find("dependency cycle: "), std::string::npos) << cyclic.err;
  EXPECT_EQ(evac_at("b", {"get", "plan", "shop-dr", "-o", "json"}).json()["ordering"], "strict-tiers");

  // Not YAML, or not a plan: usage errors before anything is sent.
  {
    std::ofstream out(file);
    out << "kind: Pizza\nname: x\n";
  }
  EXPECT_EQ(evac_at("b", {"apply", "-f", file.string()}).exit_code, 2);

  // Readiness at the recovery site: nothing replicated yet, so not ready,
  // saying what to do; the list shows the same.
  auto check = evac_at("b", {"plan", "check", "shop-dr"});
  EXPECT_EQ(check.exit_code, 1) << check.out << check.err;
  EXPECT_NE(check.out.find("ERROR   points-in-time [test, failover]: group 'shop' has no point in time here yet"),
            std::string::npos)
      << check.out;
  EXPECT_NE(check.out.find("evac group sync shop"), std::string::npos) << check.out;
  EXPECT_NE(check.out.find("ok      placeholders: every VM of group 'shop' has its placeholder here"), std::string::npos)
      << check.out;
  EXPECT_NE(check.out.find("plan 'shop-dr' is not ready"), std::string::npos) << check.out;
  // The test driver's guests have no agent: the plan waits for them, so
  // the protected site's answer is a warning naming the VM.
  EXPECT_NE(check.out.find("WARNING guest-agents: VM 'db01' at 'site-a' does not answer its guest agent"), std::string::npos)
      << check.out;
  // The fixture's disks are names only: a fence at site-a could power the
  // VMs off but not make their disks read-only, and the check says so now.
  EXPECT_NE(check.out.find("WARNING fencing: site 'site-a' could not make group 'shop''s disks read-only when fenced: "
                           "disk vda of VM "),
            std::string::npos)
      << check.out;
  EXPECT_NE(check.out.find("does not exist"), std::string::npos) << check.out;
  EXPECT_NE(check.out.find("a fence there would only power the VMs off"), std::string::npos) << check.out;

  auto listed = evac_at("b", {"plan", "list"});
  EXPECT_NE(listed.out.find("shop-dr"), std::string::npos) << listed.out;
  EXPECT_NE(listed.out.find("not ready"), std::string::npos) << listed.out;
  ASSERT_EQ(evac_at("b", {"plan", "delete", "shop-dr"}).exit_code, 0);
  EXPECT_EQ(evac_at("b", {"plan", "show", "shop-dr"}).exit_code, 1);
}

// `evac apply` of several documents (one file, or a folder of files) is all
// or nothing against a real site: a document the site would refuse stops
// every document before the first is sent, and success says per document
// what changed. (Rolling back what a later refusal finds applied is
// tested in tests/unit/cli/apply_test.cc, against a site that refuses on
// cue.)
TEST_F(TwoSitesCliTest, ApplyingSeveralDocumentsIsAllOrNothing) {
  pair_sites();
  map_sites();
  ASSERT_EQ(evac_at("a", {"group", "create", "shop", "--vm", "web01", "--vm", "db01"}).exit_code, 0);
  auto write = [&](const fs::path& path, const std::string& text) {
    fs::create_directories(path.parent_path());
    std::ofstream(path) << text;
    return path.string();
  };
  const std::string shop = "kind: RecoveryPlan\nname: shop-dr\ngroups: [shop]\nvms:\n  - {vm: db01, priority: 1}\n";
  const std::string web = "kind: RecoveryPlan\nname: web-dr\ngroups: [shop]\nvms:\n  - {vm: web01, priority: 2}\n";
  const std::string shop2 = "kind: RecoveryPlan\nname: shop-dr\ngroups: [shop]\nvms:\n  - {vm: db01, priority: 2}\n";
  // The recovery site learns of the group from site-a's configuration copy.
  for (int i = 0; i < 100; ++i) {
    auto first = evac_at("b", {"apply", "-f", write(root_ / "shop.yaml", shop)});
    if (first.exit_code == 0) {
      EXPECT_NE(first.out.find("recovery plan 'shop-dr' created"), std::string::npos) << first.out;
      break;
    }
    ASSERT_TRUE(i < 99 && first.err.find("not known at this site") != std::string::npos) << first.err;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  auto stored = [&](const std::string& plan) {
    auto got = evac_at("b", {"plan", "show", plan, "-o", "json"});
    return got.exit_code == 0 ? got.json() : json();
  };
  const json shop_before = stored("shop-dr");
  ASSERT_TRUE(shop_before.is_object());

  // The third document names a VM its group does not have, the fourth has
  // a misspelt key: the first two are not applied either.
  const std::string mixed = write(root_ / "mixed.yaml", shop2 + "---\n" + web + "---\n" +
                                                            "kind: RecoveryPlan\nname: ghost-dr\ngroups: [shop]\n"
                                                            "vms:\n  - {vm: ghost01}\n---\n" +
                                                            "kind: RecoveryPlan\nname: typo-dr\ngroups: [shop]\nordring: dependencies\n");
  auto refused = evac_at("b", {"apply", "-f", mixed});
  EXPECT_EQ(refused.exit_code, 1) << refused.out << refused.err;
  EXPECT_NE(refused.err.find("mixed.yaml document 3: "), std::string::npos) << refused.err;
  EXPECT_NE(refused.err.find("VM 'ghost01' is not in the plan's groups"), std::string::npos) << refused.err;
  EXPECT_NE(refused.err.find("mixed.yaml document 4: "), std::string::npos) << refused.err;
  EXPECT_NE(refused.err.find("ordring"), std::string::npos) << refused.err;
  EXPECT_NE(refused.err.find("nothing was changed"), std::string::npos) << refused.err;
  EXPECT_EQ(stored("shop-dr"), shop_before) << "document 1 was not applied";
  EXPECT_TRUE(stored("web-dr").is_null()) << "document 2 was not applied";

  // A dry run says what would change, and changes nothing.
  const std::string good = write(root_ / "good.yaml", shop2 + "---\n" + web);
  auto dry = evac_at("b", {"apply", "-f", good, "--dry-run"});
  EXPECT_EQ(dry.exit_code, 0) << dry.err;
  EXPECT_NE(dry.out.find("recovery plan 'shop-dr' would be replaced"), std::string::npos) << dry.out;
  EXPECT_NE(dry.out.find("recovery plan 'web-dr' would be created"), std::string::npos) << dry.out;
  EXPECT_EQ(stored("shop-dr"), shop_before);

  // All valid: each says what it did; applied again, nothing changes.
  auto applied = evac_at("b", {"apply", "-f", good});
  ASSERT_EQ(applied.exit_code, 0) << applied.err;
  EXPECT_NE(applied.out.find("recovery plan 'shop-dr' replaced (" + good + " document 1)"), std::string::npos) << applied.out;
  EXPECT_NE(applied.out.find("recovery plan 'web-dr' created (" + good + " document 2)"), std::string::npos) << applied.out;
  EXPECT_EQ(stored("shop-dr")["vms"][0]["priority"], 2);
  const json web_stored = stored("web-dr");
  auto again = evac_at("b", {"apply", "-f", good, "-o", "json"});
  ASSERT_EQ(again.exit_code, 0) << again.err;
  const json report = again.json();  // kept: a range-for over a temporary's member would read freed memory
  ASSERT_TRUE(report.contains("documents")) << again.out;
  for (const auto& d : report["documents"]) EXPECT_EQ(d["result"], "unchanged") << again.out;
  EXPECT_EQ(stored("web-dr"), web_stored) << "an unchanged plan is not written again";

  // A folder is its .yaml/.yml/.json files in name order, as one set.
  const fs::path folder = root_ / "plans";
  write(folder / "1-shop.yaml", shop);
  write(folder / "2-web.yml", "kind: RecoveryPlan\nname: web-dr\ngroups: [shop]\nvms:\n  - {vm: web01, priorty: 3}\n");
  write(folder / "README.md", "not read");
  auto bad_folder = evac_at("b", {"apply", "-f", folder.string()});
  EXPECT_EQ(bad_folder.exit_code, 1) << bad_folder.out << bad_folder.err;
  EXPECT_NE(bad_folder.err.find("2-web.yml: "), std::string::npos) << bad_folder.err;
  EXPECT_EQ(stored("shop-dr")["vms"][0]["priority"], 2) << "1-shop.yaml was not applied";
  write(folder / "2-web.yml", web);
  auto folder_applied = evac_at("b", {"apply", "-f", folder.string()});
  ASSERT_EQ(folder_applied.exit_code, 0) << folder_applied.err;
  EXPECT_NE(folder_applied.out.find("recovery plan 'shop-dr' replaced (" + (folder / "1-shop.yaml").string() + ")"),
            std::string::npos)
      << folder_applied.out;
  EXPECT_NE(folder_applied.out.find("recovery plan 'web-dr' unchanged"), std::string::npos) << folder_applied.out;
  fs::create_directories(root_ / "empty");
  auto empty = evac_at("b", {"apply", "-f", (root_ / "empty").string()});
  EXPECT_EQ(empty.exit_code, 2);
  EXPECT_NE(empty.err.find("is a folder with no .yaml, .yml or .json file in it"), std::string::npos) << empty.err;

  // Hostile files: refused at once with the limit named, exit 2, no crash.
  std::string bomb = "kind: RecoveryPlan\nname: bomb\na0: &a0 [x, x, x, x, x, x, x, x, x, x]\n";
  for (int i = 1; i < 10; ++i) {
    bomb += "a" + std::to_string(i) + ": &a" + std::to_string(i) + " [";
    for (int k = 0; k < 10; ++k) bomb += std::string(k ? ", " : "") + "*a" + std::to_string(i - 1);
    bomb += "]\n";
  }
  auto bombed = evac_at("b", {"apply", "-f", write(root_ / "bomb.yaml", bomb)});
  EXPECT_EQ(bombed.exit_code, 2) << bombed.err;
  EXPECT_NE(bombed.err.find("more than 100000 values once its aliases (*name) are expanded"), std::string::npos)
      << bombed.err;
  auto deep = evac_at("b", {"apply", "-f", write(root_ / "deep.json", std::string(100000, '[') + std::string(100000, ']'))});
  EXPECT_EQ(deep.exit_code, 2) << deep.err;
  EXPECT_NE(deep.err.find("nested more than 64 deep"), std::string::npos) << deep.err;
  EXPECT_EQ(stored("shop-dr")["vms"][0]["priority"], 1);

  // Durations on the command line need their unit.
  auto unitless = evac_at("a", {"group", "create", "g2", "--vm", "app01", "--rpo", "15"});
  EXPECT_EQ(unitless.exit_code, 2);
  EXPECT_NE(unitless.err.find("--rpo 15 has no unit: write 15s or 15m"), std::string::npos) << unitless.err;
  auto ttl = evac_at("b", {"site", "pairing-token", "--ttl", "10"});
  EXPECT_EQ(ttl.exit_code, 2);
  EXPECT_NE(ttl.err.find("--ttl 10 has no unit: write 10s or 10m"), std::string::npos) << ttl.err;
}

TEST_F(TwoSitesCliTest, DeadPeerIsReportedAndBlocksProtection) {
  pair_sites();
  map_sites();
  int status = b_->stop(SIGTERM);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "evacd must shut down cleanly on SIGTERM";
  // Heartbeats run every second; wait for one to notice.
  json peer;
  for (int i = 0; i < 50; ++i) {
    peer = evac_at("a", {"site", "status", "-o", "json"}).json()[0];
    if (peer["state"] == "unreachable") break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(peer["state"], "unreachable");
  EXPECT_TRUE(peer["unreachable_since"].is_number());
  auto table = evac_at("a", {"site", "status"});
  EXPECT_NE(table.out.find("unreachable"), std::string::npos);

  auto g = evac_at("a", {"group", "create", "g1", "--vm", "web01"});
  EXPECT_EQ(g.exit_code, 1);
  EXPECT_NE(g.err.find("cannot reach"), std::string::npos) << g.err;
  EXPECT_EQ(evac_at("a", {"group", "list", "-o", "json"}).json().size(), 0u);

  // Back again: the pairing survived the restart and the peer is connected.
  ASSERT_TRUE(b_->start()) << b_->log();
  for (int i = 0; i < 50; ++i) {
    peer = evac_at("a", {"site", "status", "-o", "json"}).json()[0];
    if (peer["state"] == "connected") break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(peer["state"], "connected");
  auto copy_ok = evac_at("a", {"group", "create", "g1", "--vm", "web01"});
  EXPECT_EQ(copy_ok.exit_code, 0) << copy_ok.err;
}

TEST_F(TwoSitesCliTest, WrongCredentialsAndUsage) {
  auto wrong_token = evac({"--context", "a", "--token", "nope", "group", "list"});
  EXPECT_EQ(wrong_token.exit_code, 1);
  EXPECT_NE(wrong_token.err.find("not valid"), std::string::npos) << wrong_token.err;
  auto wrong_pin = evac({"--context", "a", "--pin", b_->pin(), "group", "list"});
  EXPECT_EQ(wrong_pin.exit_code, 1);
  EXPECT_NE(wrong_pin.err.find("pinned"), std::string::npos) << wrong_pin.err;
  EXPECT_EQ(evac({"group"}).exit_code, 2);
  EXPECT_EQ(evac({"group", "create"}).exit_code, 2);
  EXPECT_EQ(evac({"-o", "xml", "group", "list"}).exit_code, 2);
  EXPECT_EQ(evac({"--context", "nowhere", "group", "list"}).exit_code, 2);
  auto help = evac({"group", "create", "--help"});
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_NE(help.out.find("--keep-pits"), std::string::npos);
  auto bad_token = evac_at("a", {"site", "pair", "garbage"});
  EXPECT_EQ(bad_token.exit_code, 1);
  EXPECT_NE(bad_token.err.find("pairing token"), std::string::npos);
  auto dead = evac({"--url", "https://127.0.0.1:1", "--pin", "sha256//AAAA", "--token", "x", "group", "list"});
  EXPECT_EQ(dead.exit_code, 1);
  EXPECT_NE(dead.err.find("cannot reach"), std::string::npos);
}

// Replication operations through the CLI. The libvirt test driver's disks are
// not real files, so every cycle fails here: what is checked is how a cycle's
// outcome reaches the operator (sync, --follow, group show, events, metrics).
TEST_F(TwoSitesCliTest, ReplicationOperationsThroughTheCli) {
  pair_sites();
  map_sites();
  auto created = evac_at("a", {"group", "create", "g1", "--vm", "web01", "--rpo", "10m", "--max-rate", "50MiB/s", "-o", "json"});
  ASSERT_EQ(created.exit_code, 0) << created.err;
  EXPECT_EQ(created.json()["max_rate"], "50MiB/s");
  EXPECT_EQ(created.json()["replication_engine"], "builtin") << "the default engine";
  auto bad_engine = evac_at("a", {"group", "create", "g2", "--vm", "web01", "--replication", "Ceph RBD"});
  EXPECT_EQ(bad_engine.exit_code, 1);
  EXPECT_NE(bad_engine.err.find("replication engine kind 'Ceph RBD'"), std::string::npos) << bad_engine.err;
  EXPECT_NE(bad_engine.err.find("hint: give the engine's kind in lower case"), std::string::npos) << bad_engine.err;
  auto bad_rate = evac_at("a", {"group", "set", "g1", "--max-rate", "fast"});
  EXPECT_EQ(bad_rate.exit_code, 1);
  EXPECT_NE(bad_rate.err.find("not a byte rate"), std::string::npos) << bad_rate.err;
  EXPECT_NE(bad_rate.err.find("hint:"), std::string::npos);
  auto set = evac_at("a", {"group", "set", "g1", "--max-rate", "none"});
  ASSERT_EQ(set.exit_code, 0) << set.err;
  EXPECT_NE(set.out.find("max rate unlimited"), std::string::npos) << set.out;
  EXPECT_EQ(evac_at("a", {"group", "set", "ghost", "--max-rate", "1M"}).exit_code, 1);
  auto thin = evac_at("a", {"group", "set", "g1", "--keep-pits", "6", "--keep-hourly", "24", "--keep-daily", "7", "-o", "json"});
  ASSERT_EQ(thin.exit_code, 0) << thin.err;
  EXPECT_EQ(thin.json()["keep_pits"], 6);
  EXPECT_EQ(thin.json()["keep_hourly"], 24);
  EXPECT_EQ(thin.json()["keep_daily"], 7);
  EXPECT_EQ(thin.json()["max_rate"], "unlimited") << "settings not named stay as they are";
  auto bad_thin = evac_at("a", {"group", "set", "g1", "--keep-daily", "-3", "--max-rate", "1MiB/s"});
  EXPECT_EQ(bad_thin.exit_code, 1);
  EXPECT_NE(bad_thin.err.find("--keep-daily"), std::string::npos) << bad_thin.err;
  EXPECT_EQ(evac_at("a", {"group", "show", "g1", "-o", "json"}).json()["max_rate"], "unlimited")
      << "a refused change changes nothing";
  EXPECT_EQ(evac_at("a", {"group", "set", "g1"}).exit_code, 2) << "nothing to change is a usage error";
  auto shown = evac_at("a", {"group", "show", "g1"});
  EXPECT_NE(shown.out.find("last 24 hours and 7 days"), std::string::npos) << shown.out;

  // web01 runs on libvirt's test driver, which has no backups to track
  // changes with: the cycle fails and says what to do.
  auto sync = evac_at("a", {"group", "sync", "g1"});
  EXPECT_EQ(sync.exit_code, 1);
  EXPECT_NE(sync.err.find("error:"), std::string::npos) << sync.err;
  EXPECT_NE(sync.err.find("shut the VM down"), std::string::npos) << sync.err;
  auto follow = evac_at("a", {"group", "sync", "g1", "--follow"});
  EXPECT_EQ(follow.exit_code, 1);
  EXPECT_NE(follow.err.find("error:"), std::string::npos) << follow.err;
  EXPECT_EQ(follow.out.find("\033["), std::string::npos) << "no terminal control codes into a pipe";
  EXPECT_EQ(evac_at("a", {"group", "sync", "ghost"}).exit_code, 1);

  // Nothing to verify yet, at either site, and no such group: clear errors.
  auto verify = evac_at("a", {"group", "verify", "g1"});
  EXPECT_EQ(verify.exit_code, 1);
  EXPECT_NE(verify.err.find("no PITs"), std::string::npos) << verify.err;
  auto verify_b = evac_at("b", {"group", "verify", "g1"});
  EXPECT_EQ(verify_b.exit_code, 1);
  EXPECT_NE(verify_b.err.find("error:"), std::string::npos) << verify_b.err;
  auto verify_ghost = evac_at("b", {"group", "verify", "ghost"});
  EXPECT_EQ(verify_ghost.exit_code, 1);
  EXPECT_NE(verify_ghost.err.find("hint:"), std::string::npos) << verify_ghost.err;

  auto show = evac_at("a", {"group", "show", "g1", "-o", "json"});
  ASSERT_EQ(show.exit_code, 0) << show.err;
  const json r = show.json()["replication"];
  EXPECT_EQ(r["cycles"]["failed"], 2);
  EXPECT_EQ(r["consecutive_failures"], 2);
  EXPECT_FALSE(r["last_failure"].is_null());
  EXPECT_EQ(r["lag_since"], "group_created");
  EXPECT_EQ(r["rpo_met"], true);
  EXPECT_EQ(r["sync"]["running"], false);
  auto table = evac_at("a", {"group", "show", "g1"});
  EXPECT_NE(table.out.find("LAST-FAILURE"), std::string::npos) << table.out;
  EXPECT_NE(table.out.find("2 in a row"), std::string::npos) << table.out;
  EXPECT_NE(table.out.find("within RPO"), std::string::npos) << table.out;

  auto events = evac_at("a", {"events", "list", "--group", "g1", "-o", "json"});
  ASSERT_EQ(events.exit_code, 0) << events.err;
  int failed = 0;
  for (const auto& e : events.json()) failed += e["kind"] == "cycle_failed";
  EXPECT_EQ(failed, 1);  // the second failed the same way: counted, not raised again
  auto ghost = evac_at("a", {"events", "list", "--group", "ghost"});
  EXPECT_EQ(ghost.exit_code, 1);
  EXPECT_NE(ghost.err.find("hint:"), std::string::npos);

  HttpsClientOptions options;
  options.base_url = a_->url();
  options.server_pin = a_->pin();
  HttpsClient anonymous(options);
  auto denied = anonymous.request("GET", "/metrics");
  ASSERT_TRUE(denied.is_ok()) << denied.status().to_string();
  EXPECT_EQ(denied->status, 401);
  options.bearer_token = a_->token();
  auto metrics = HttpsClient(options).request("GET", "/metrics");
  ASSERT_TRUE(metrics.is_ok()) << metrics.status().to_string();
  EXPECT_EQ(metrics->status, 200);
  EXPECT_EQ(metrics->content_type.rfind("text/plain; version=0.0.4", 0), 0u) << metrics->content_type;
  EXPECT_NE(metrics->body.find("evac_group_cycles_total{group=\"g1\",recovery_site=\"site-b\",result=\"failure\"} 2\n"),
            std::string::npos)
      << metrics->body;
  EXPECT_NE(metrics->body.find("evac_peer_connected{site=\"site-b\"} 1\n"), std::string::npos) << metrics->body;
}

// The scheduler of a real evacd: a group with a 2 s RPO is due after 1 s; its
// cycles fail here, so an alarm for the failure and one for the breach follow.
TEST_F(TwoSitesCliTest, SchedulerStartsCyclesAndRaisesAlarms) {
  pair_sites();
  map_sites();
  ASSERT_EQ(a_->stop(SIGTERM), 0);
  std::ofstream(a_->config_path(), std::ios::app) << "replication: {check_interval: 1s}\n";
  ASSERT_TRUE(a_->start()) << a_->log();
  auto created = evac_at("a", {"group", "create", "g1", "--vm", "web01", "--rpo", "2s"});
  ASSERT_EQ(created.exit_code, 0) << created.err;
  std::set<std::string> kinds;
  for (int i = 0; i < 100 && !(kinds.count("cycle_failed") && kinds.count("rpo_breached")); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    for (const auto& e : evac_at("a", {"events", "list", "-o", "json"}).json()) kinds.insert(e["kind"].get<std::string>());
  }
  EXPECT_TRUE(kinds.count("cycle_failed"));
  EXPECT_TRUE(kinds.count("rpo_breached"));
  auto show = evac_at("a", {"group", "show", "g1", "-o", "json"}).json()["replication"];
  EXPECT_EQ(show["rpo_met"], false);
  EXPECT_GE(show["cycles"]["failed"].get<int>(), 1);
  auto table = evac_at("a", {"events", "list"});
  EXPECT_NE(table.out.find("rpo_breached"), std::string::npos) << table.out;
}

TEST(EvacdStartup, BadConfigExitsWithClearError) {
  fs::path dir = fs::temp_directory_path() / ("evac-badcfg-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::ofstream(dir / "bad.yaml") << "site: a\nstate_dir: relative/path\n";
  auto r = run_command({evacd_binary(), "--config", (dir / "bad.yaml").string()});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("absolute"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("hint:"), std::string::npos);
  auto missing = run_command({evacd_binary()});
  EXPECT_EQ(missing.exit_code, 2);
  fs::remove_all(dir);
}

TEST(EvacdStartup, BrokenLibvirtUriDoesNotStopTheSite) {
  fs::path dir = fs::temp_directory_path() / ("evac-baduri-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  EvacdProcess site(dir, "site-x", {{"broken", "qemu+unix:///system?socket=/nonexistent/sock"}});
  ASSERT_TRUE(site.start()) << site.log();
  std::string cfg = (dir / "cli.yaml").string();
  auto r = run_command({evac_binary(), "--config", cfg, "--url", site.url(), "--pin", site.pin(), "--token", site.token(),
                        "inventory", "vms"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("broken"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("hint:"), std::string::npos);
  auto providers = run_command({evac_binary(), "--config", cfg, "--url", site.url(), "--pin", site.pin(), "--token",
                                site.token(), "-o", "json", "inventory", "providers"});
  ASSERT_EQ(providers.exit_code, 0);
  EXPECT_EQ(providers.json()[0]["reachable"], false);
  EXPECT_EQ(WEXITSTATUS(site.stop(SIGTERM)), 0);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace evac::testing
