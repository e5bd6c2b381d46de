#include "config/daemon_config.h"
#include "core/duration.h"

#include <gtest/gtest.h>

namespace evac {
namespace {

TEST(DaemonConfigTest, FullConfig) {
  auto cfg = parse_daemon_config(R"(
site: site-a
listen: 0.0.0.0:9443
advertise_url: https://a.example:9443
state_dir: /var/lib/evac/a
heartbeat_interval: 2s
log: {format: json, level: debug}
runs: {max_parallel: 32, per_provider_limit: 4}
compute_providers:
  - {name: local, kind: libvirt, uri: "qemu:///system"}
  - {name: rack2, uri: "qemu+ssh://rack2/system", connect_timeout: 1m, keepalive: 10s}
)",
                                 "test.yaml");
  ASSERT_TRUE(cfg.is_ok()) << cfg.status().to_string();
  EXPECT_EQ(cfg->site, "site-a");
  EXPECT_EQ(cfg->listen_host, "0.0.0.0");
  EXPECT_EQ(cfg->listen_port, 9443);
  EXPECT_EQ(cfg->heartbeat_interval.count(), 2);
  EXPECT_EQ(cfg->log_format, "json");
  ASSERT_EQ(cfg->compute_providers.size(), 2u);
  EXPECT_EQ(cfg->compute_providers[1].kind, "libvirt");  // the default kind
  EXPECT_EQ(cfg->compute_providers[0].connect_timeout.count(), 15);  // the defaults
  EXPECT_EQ(cfg->compute_providers[0].keepalive.count(), 5);
  EXPECT_EQ(cfg->compute_providers[1].connect_timeout.count(), 60);
  EXPECT_EQ(cfg->compute_providers[1].keepalive.count(), 10);
  EXPECT_EQ(cfg->runs_max_parallel, 32);
  EXPECT_EQ(cfg->runs_per_provider_limit, 4);
}

struct BadConfig {
  const char* yaml;
  const char* expected_in_message;
};

class DaemonConfigErrors : public ::testing::TestWithParam<BadConfig> {};

TEST_P(DaemonConfigErrors, NamesTheProblem) {
  auto cfg = parse_daemon_config(GetParam().yaml, "bad.yaml");
  ASSERT_FALSE(cfg.is_ok());
  EXPECT_EQ(cfg.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(cfg.status().message().find(GetParam().expected_in_message), std::string::npos) << cfg.status().to_string();
  EXPECT_NE(cfg.status().message().find("bad.yaml"), std::string::npos);
  EXPECT_FALSE(cfg.status().hint().empty());
}

INSTANTIATE_TEST_SUITE_P(
    Cases, DaemonConfigErrors,
    ::testing::Values(BadConfig{"site: [unclosed", "not valid YAML"}, BadConfig{"state_dir: /x\n", "site"},
                      BadConfig{"site: a\n", "state_dir"}, BadConfig{"site: a\nstate_dir: relative\n", "absolute"},
                      BadConfig{"site: 'bad name'\nstate_dir: /x\n", "not allowed"},
                      BadConfig{"site: a\nstate_dir: /x\nlisten: nohost\n", "HOST:PORT"},
                      BadConfig{"site: a\nstate_dir: /x\nlisten: h:99999\n", "port"},
                      BadConfig{"site: a\nstate_dir: /x\nsurprise: 1\n", "unknown key 'surprise'"},
                      BadConfig{"site: a\nstate_dir: /x\nheartbeat_interval: soon\n", "heartbeat_interval"},
                      BadConfig{"site: a\nstate_dir: /x\ncompute_providers: [{name: p, uri: u}, {name: p, uri: v}]\n",
                                "duplicate"},
                      BadConfig{"site: a\nstate_dir: /x\ncompute_providers: [{name: p}]\n", "uri"},
                      BadConfig{"site: a\nstate_dir: /x\ncompute_providers: [{name: p, uri: u, keepalive: 0s}]\n",
                                "'keepalive' must be longer than 0s"},
                      BadConfig{"site: a\nstate_dir: /x\ncompute_providers: [{name: p, uri: u, timeout: 5s}]\n",
                                "unknown key 'timeout'"},
                      BadConfig{"site: a\nstate_dir: /x\ntls: {cert: /c}\n", "both cert and key"},
                      BadConfig{"site: a\nstate_dir: /x\nruns: {per_provider_limit: 0}\n", "runs.per_provider_limit"},
                      BadConfig{"site: a\nstate_dir: /x\nruns: {parallel: 4}\n", "unknown key 'runs.parallel'"},
                      // A key that is itself a map or a list is refused, not thrown out of the parser.
                      BadConfig{"{{}}~}}", "not a plain word"},
                      BadConfig{"site: a\nstate_dir: /x\nruns: {[max_parallel]: 4}\n", "not a plain word"}),
    // By position: gtest would name a case by the bytes of its pointers,
    // which differ on every run and so on every ctest discovery.
    [](const ::testing::TestParamInfo<BadConfig>& info) { return "case" + std::to_string(info.index); });

TEST(DaemonConfigTest, MissingFile) {
  auto cfg = load_daemon_config("/nonexistent/evacd.yaml");
  ASSERT_FALSE(cfg.is_ok());
  EXPECT_NE(cfg.status().message().find("/nonexistent/evacd.yaml"), std::string::npos);
}

TEST(DaemonConfigTest, ReplicationSchedules) {
  auto defaults = parse_daemon_config("site: a\nstate_dir: /s\n", "t.yaml");
  ASSERT_TRUE(defaults.is_ok());
  EXPECT_TRUE(defaults->replication_schedules);
  EXPECT_EQ(defaults->replication_check_interval.count(), 5);
  auto off = parse_daemon_config("site: a\nstate_dir: /s\nreplication: {schedules: false, check_interval: 2s}\n", "t.yaml");
  ASSERT_TRUE(off.is_ok()) << off.status().to_string();
  EXPECT_FALSE(off->replication_schedules);
  EXPECT_EQ(off->replication_check_interval.count(), 2);
  auto bad = parse_daemon_config("site: a\nstate_dir: /s\nreplication: {schedules: sometimes}\n", "t.yaml");
  ASSERT_FALSE(bad.is_ok());
  EXPECT_NE(bad.status().message().find("replication.schedules"), std::string::npos);
  auto typo = parse_daemon_config("site: a\nstate_dir: /s\nreplication: {schedule: false}\n", "t.yaml");
  ASSERT_FALSE(typo.is_ok());
  EXPECT_NE(typo.status().message().find("replication.schedule'"), std::string::npos) << typo.status().message();
  EXPECT_FALSE(parse_daemon_config("site: a\nstate_dir: /s\nreplication: {check_interval: 0s}\n", "t.yaml").is_ok());
}

TEST(DaemonConfigTest, ReplicationFullReadEvery) {
  auto defaults = parse_daemon_config("site: a\nstate_dir: /s\n", "t.yaml");
  ASSERT_TRUE(defaults.is_ok());
  EXPECT_EQ(defaults->replication_full_read_every.count(), 7 * 24 * 3600);
  auto daily = parse_daemon_config("site: a\nstate_dir: /s\nreplication: {full_read_every: 1d}\n", "t.yaml");
  ASSERT_TRUE(daily.is_ok()) << daily.status().to_string();
  EXPECT_EQ(daily->replication_full_read_every.count(), 24 * 3600);
  auto off = parse_daemon_config("site: a\nstate_dir: /s\nreplication: {full_read_every: off}\n", "t.yaml");
  ASSERT_TRUE(off.is_ok()) << off.status().to_string();
  EXPECT_EQ(off->replication_full_read_every.count(), 0);
  auto bad = parse_daemon_config("site: a\nstate_dir: /s\nreplication: {full_read_every: weekly}\n", "t.yaml");
  ASSERT_FALSE(bad.is_ok());
  EXPECT_NE(bad.status().message().find("full_read_every"), std::string::npos) << bad.status().message();
}

TEST(DaemonConfigTest, ReplicationWaitLimit) {
  auto defaults = parse_daemon_config("site: a\nstate_dir: /s\n", "t.yaml");
  ASSERT_TRUE(defaults.is_ok());
  EXPECT_EQ(defaults->replication_wait_limit.count(), 300);
  auto proxied = parse_daemon_config("site: a\nstate_dir: /s\nreplication: {wait_limit: 50s}\n", "t.yaml");
  ASSERT_TRUE(proxied.is_ok()) << proxied.status().to_string();
  EXPECT_EQ(proxied->replication_wait_limit.count(), 50);
  for (const char* bad : {"0s", "soon"}) {
    auto refused = parse_daemon_config(std::string("site: a\nstate_dir: /s\nreplication: {wait_limit: ") + bad + "}\n", "t.yaml");
    ASSERT_FALSE(refused.is_ok()) << bad;
    EXPECT_NE(refused.status().message().find("wait_limit"), std::string::npos) << refused.status().message();
  }
}

}  // namespace
TEST(DaemonConfigTest, ReplicationAdapters) {
  auto cfg = parse_daemon_config(R"(
site: site-a
state_dir: /var/lib/evac/a
replication_adapters:
  - kind: rbd
    command: [/usr/lib/evac/evac-rbd-adapter, --verbose]
    timeout: 2m
    timeouts: {await_pit: 10m}
    await_limit: 1h
    settings: {cluster: ceph, conf: /etc/ceph/a.conf, pools: [vms, db], snapshots: 3, quoted: "42", flag: true}
)",
                                 "test.yaml");
  ASSERT_TRUE(cfg.is_ok()) << cfg.status().to_string();
  ASSERT_EQ(cfg->replication_adapters.size(), 1u);
  const auto& a = cfg->replication_adapters[0];
  EXPECT_EQ(a.kind, "rbd");
  EXPECT_EQ(a.command, (std::vector<std::string>{"/usr/lib/evac/evac-rbd-adapter", "--verbose"}));
  EXPECT_EQ(a.timeout.count(), 120);
  EXPECT_EQ(a.timeouts.at("await_pit").count(), 600);
  EXPECT_EQ(a.await_limit.count(), 3600);
  EXPECT_EQ(a.settings["conf"], "/etc/ceph/a.conf");
  EXPECT_EQ(a.settings["pools"][1], "db");
  EXPECT_EQ(a.settings["snapshots"], 3);      // a plain number is a number
  EXPECT_EQ(a.settings["quoted"], "42");      // a quoted one stays a string
  EXPECT_EQ(a.settings["flag"], true);
}

TEST(DaemonConfigTest, ReplicationAdaptersRefuseWhatCannotWork) {
  auto with = [](const std::string& adapter) {
    return parse_daemon_config("site: a\nstate_dir: /s\nreplication_adapters:\n  - " + adapter + "\n", "t.yaml");
  };
  EXPECT_TRUE(with("{kind: rbd, command: [/bin/true]}").is_ok());
  auto relative = with("{kind: rbd, command: [evac-rbd-adapter]}");
  EXPECT_NE(relative.status().message().find("absolute path"), std::string::npos) << relative.status().to_string();
  auto builtin = with("{kind: builtin, command: [/bin/true]}");
  EXPECT_NE(builtin.status().message().find("evac's own replicator"), std::string::npos);
  auto no_command = with("{kind: rbd}");
  EXPECT_NE(no_command.status().message().find("'command' must be a list"), std::string::npos);
  auto typo = with("{kind: rbd, command: [/bin/true], timout: 5s}");
  EXPECT_NE(typo.status().message().find("unknown key 'timout'"), std::string::npos);
  auto bad_kind = with("{kind: 'r b d', command: [/bin/true]}");
  EXPECT_FALSE(bad_kind.is_ok());
  auto twice = parse_daemon_config(
      "site: a\nstate_dir: /s\nreplication_adapters:\n  - {kind: rbd, command: [/bin/true]}\n"
      "  - {kind: rbd, command: [/bin/false]}\n",
      "t.yaml");
  EXPECT_NE(twice.status().message().find("a second adapter of kind 'rbd'"), std::string::npos);
  auto zero = with("{kind: rbd, command: [/bin/true], timeouts: {ship: 0s}}");
  EXPECT_FALSE(zero.is_ok());
}

// Aliases can repeat a node: ten levels of ten make 10^10 values from a
// few lines, refused once past the budget rather than built.
TEST(DaemonConfigTest, AdapterSettingsCannotExpandWithoutBound) {
  std::string yaml = "site: a\nstate_dir: /s\nx0: &a0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n";
  for (int i = 1; i < 10; ++i) {
    yaml += "x" + std::to_string(i) + ": &a" + std::to_string(i) + " [";
    for (int k = 0; k < 10; ++k) yaml += std::string(k ? ", " : "") + "*a" + std::to_string(i - 1);
    yaml += "]\n";
  }
  yaml += "replication_adapters:\n  - {kind: rbd, command: [/bin/true], settings: {big: *a9}}\n";
  auto cfg = parse_daemon_config(yaml, "t.yaml");
  ASSERT_FALSE(cfg.is_ok());
  // Either the unknown top-level keys or the budget stop it; never a hang.
  auto only_settings = parse_daemon_config(
      "site: a\nstate_dir: /s\nreplication_adapters:\n  - kind: rbd\n    command: [/bin/true]\n    settings:\n"
      "      x0: &a0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n"
      "      x1: &a1 [*a0, *a0, *a0, *a0, *a0, *a0, *a0, *a0, *a0, *a0]\n"
      "      x2: &a2 [*a1, *a1, *a1, *a1, *a1, *a1, *a1, *a1, *a1, *a1]\n"
      "      x3: &a3 [*a2, *a2, *a2, *a2, *a2, *a2, *a2, *a2, *a2, *a2]\n"
      "      x4: [*a3, *a3, *a3, *a3, *a3, *a3, *a3, *a3, *a3, *a3]\n",
      "t.yaml");
  ASSERT_FALSE(only_settings.is_ok());
  EXPECT_NE(only_settings.status().message().find("more than 10000 values"), std::string::npos)
      << only_settings.status().to_string();
}

}  // namespace evac
