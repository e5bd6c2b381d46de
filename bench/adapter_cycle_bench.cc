// One replication engine's cycles, timed: both sites' halves in this
// process (the conformance kit's InProcessPeerLink instead of the HTTPS
// hop between two evacd's), the same code path evacd runs otherwise. Used
// by bench/replication_rbd.sh to put the Ceph RBD adapter and the built-in
// replicator side by side on the same change.
//
//   adapter_cycle_bench --kind rbd --config-a a.yaml --config-b b.yaml \
//       --disk network:rbd:vms/img [--cycles 1] [--steady SECONDS] [--state DIR]
//   adapter_cycle_bench --kind builtin --disk file:/path/img.qcow2:qcow2 --storage-b DIR ...
//
// Prints, per cycle: its wall time, bytes sent and the PIT's instant; with
// --steady, cycles run back to back and the RPO achieved (the longest a
// write waited to be in a complete PIT: a cycle's end minus the previous
// PIT's instant) closes the output.
#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>

#include "config/daemon_config.h"
#include "core/replication_registry.h"
#include "replication/builtin/builtin_registration.h"
#include "replication/conformance/conformance_kit.h"
#include "replication/external/external_adapter.h"

using namespace evac;

namespace {

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

Result<std::unique_ptr<ReplicationAdapter>> engine(const std::string& kind, const std::string& site, const std::string& config,
                                                   const std::string& state, const std::string& storage) {
  ReplicationRegistry registry;
  builtin::register_builtin_replicator(registry);
  if (!config.empty()) {
    EVAC_ASSIGN_OR_RETURN(DaemonConfig cfg, load_daemon_config(config));
    external::register_external_adapters(registry, cfg.replication_adapters);
  }
  ReplicationSiteContext context;
  context.site_name = site;
  context.state_dir = state + "/" + site;
  context.change_tracking = [](const std::string&) -> ChangeTracking* { return nullptr; };
  context.storage_pool_folders = [storage]() -> Result<std::vector<std::string>> { return std::vector<std::string>{storage}; };
  std::filesystem::create_directories(context.state_dir);
  return registry.create(kind, context);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Times one replication engine's cycles, both halves in this process"};
  std::string kind, config_a, config_b, disk, state = "/var/tmp/evac-adapter-bench", storage_b, group = "bench";
  int cycles = 1, steady = 0;
  app.add_option("--kind", kind, "builtin or an adapter's kind")->required();
  app.add_option("--config-a", config_a, "site a's evacd.yaml (its replication_adapters)");
  app.add_option("--config-b", config_b, "site b's evacd.yaml");
  app.add_option("--disk", disk, "network:rbd:POOL/IMAGE or file:PATH:FORMAT")->required();
  app.add_option("--state", state, "where the engines keep their state");
  app.add_option("--storage-b", storage_b, "site b's storage folder (the built-in replicator's replicas)");
  app.add_option("--group", group, "the group's name (PIT snapshots are named after it)");
  app.add_option("--cycles", cycles, "cycles to time");
  app.add_option("--steady", steady, "run cycles back to back for this many seconds and print the RPO achieved");
  CLI11_PARSE(app, argc, argv);

  VmInfo vm;
  vm.name = "bench";
  vm.uuid = "00000000-0000-4000-8000-0000000000bb";
  vm.state = PowerState::kShutOff;
  DiskInfo d;
  d.target = "vda";
  d.device = "disk";
  if (disk.rfind("network:rbd:", 0) == 0) {
    d.source = DiskSource{"network", "", "rbd", disk.substr(12)};
    d.path = "rbd:" + d.source.name;
    d.format = "raw";
  } else if (disk.rfind("file:", 0) == 0) {
    auto rest = disk.substr(5);
    auto colon = rest.rfind(':');
    d.path = rest.substr(0, colon);
    d.format = rest.substr(colon + 1);
    d.source.path = d.path;
    d.storage_pool = "images";
  } else {
    std::cerr << "--disk: network:rbd:POOL/IMAGE or file:PATH:FORMAT\n";
    return 2;
  }
  vm.disks.push_back(d);
  ReplicationGroupSpec spec;
  spec.group = group;
  spec.protected_site = "bench-a";
  spec.recovery_site = "bench-b";
  spec.vms = {vm};
  spec.retention.keep_last = 4;
  if (!storage_b.empty()) spec.replica_dirs = {{"images", storage_b}};

  auto a = engine(kind, "bench-a", config_a, state, "/nonexistent");
  auto b = engine(kind, "bench-b", config_b, state, storage_b.empty() ? "/nonexistent" : storage_b);
  if (!a || !b) {
    std::cerr << "bench: " << (!a ? a.status() : b.status()).to_string() << "\n";
    return 1;
  }
  conformance::InProcessPeerLink link("bench-b", (*b)->peer_routes());
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(steady);
  std::int64_t previous_instant = 0;
  double worst_rpo = 0;
  int done = 0;
  for (;;) {
    if (steady == 0 && done >= cycles) break;
    if (steady > 0 && done > 0 && std::chrono::steady_clock::now() >= end) break;
    const auto t0 = std::chrono::steady_clock::now();
    auto pit = (*a)->sync_now(spec, link, nullptr);
    const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (!pit) {
      std::cerr << "bench: cycle failed: " << pit.status().to_string() << "\n";
      return 1;
    }
    const std::int64_t finished = now_ms();
    if (previous_instant != 0) worst_rpo = std::max(worst_rpo, (finished - previous_instant) / 1000.0);
    previous_instant = pit->created_at_ms;
    std::printf("cycle %d: %.3f s, %llu bytes sent, instant %lld ms\n", ++done, wall,
                static_cast<unsigned long long>(pit->bytes_sent), static_cast<long long>(pit->created_at_ms));
    std::fflush(stdout);
  }
  if (steady > 0) std::printf("rpo_achieved_s %.2f over %d cycles in %d s\n", worst_rpo, done, steady);
  return 0;
}
