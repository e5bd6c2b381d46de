// evacd: one per site. Loads its YAML config, opens the site's SQLite state,
// makes sure it has a TLS identity and an admin token, connects its compute
// providers, serves the REST API over HTTPS and keeps heartbeats with the
// paired sites until SIGTERM.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include <condition_variable>
#include <functional>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <string_view>
#include <thread>

#include "api/https_server.h"
#include "api/router.h"
#include "config/daemon_config.h"
#include "core/provider_registry.h"
#include "daemon/logging.h"
#include "daemon/state_dir.h"
#include "replication/builtin/builtin_registration.h"
#include "replication/builtin/nbd_image.h"
#include "replication/external/external_adapter.h"
#include "peer/peer_transport.h"
#include "providers/libvirt/libvirt_provider.h"
#include "service/plan_service.h"
#include "service/replication_service.h"
#include "service/site_service.h"
#include "store/store.h"
#include "tls/tls.h"

namespace evac {
namespace {

namespace fs = std::filesystem;

int fail(const Status& s) {
  std::cerr << "evacd: " << s.message() << "\n";
  if (!s.hint().empty()) std::cerr << "  hint: " << s.hint() << "\n";
  spdlog::error("{}", s.to_string());
  return 1;
}

// Writes `content` to `path` readable by the owner only, replacing any old file.
Status write_private_file(const std::string& path, const std::string& content) {
  std::string tmp = path + ".tmp";
  ::unlink(tmp.c_str());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return failed_precondition("cannot create " + tmp, "check the state directory's permissions");
  bool ok = ::write(fd, content.data(), content.size()) == static_cast<ssize_t>(content.size()) && ::fsync(fd) == 0;
  ::close(fd);
  if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0) return failed_precondition("cannot write " + path, "is the disk full?");
  return Status::ok();
}

// The admin token is shown once, through a file only the owner can read;
// the database keeps only its digest.
Status ensure_admin_token(Store& store, const std::string& state_dir) {
  auto count = store.api_token_count();
  if (!count) return count.status();
  std::string path = state_dir + "/admin.token";
  if (*count > 0) {
    if (!fs::exists(path)) spdlog::warn("admin token file {} is gone; existing tokens stay valid", path);
    return Status::ok();
  }
  std::string token = random_token();
  EVAC_RETURN_IF_ERROR(write_private_file(path, token + "\n"));
  EVAC_RETURN_IF_ERROR(store.add_api_token("admin", sha256_hex(token)));
  spdlog::info("created admin token in {} (mode 0600)", path);
  return Status::ok();
}

Status check_site_identity(Store& store, const std::string& site) {
  auto recorded = store.get_meta("site");
  if (!recorded) return recorded.status();
  if (!recorded->has_value()) return store.set_meta("site", site);
  if (**recorded != site)
    return failed_precondition("the state directory belongs to site '" + **recorded + "', but the config says '" + site + "'",
                               "point state_dir at this site's own folder; a site cannot be renamed in place");
  return Status::ok();
}

// Runs `round` now and then every `interval` on its own thread until
// destroyed; destruction wakes the thread and waits for the round in progress.
class PeriodicTask {
 public:
  PeriodicTask(std::function<void()> round, std::chrono::seconds interval)
      : round_(std::move(round)), interval_(interval) {
    thread_ = std::thread([this] { loop(); });
  }
  ~PeriodicTask() {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }

 private:
  void loop() {
    std::unique_lock lock(mu_);
    while (!stopping_) {
      lock.unlock();
      // One failed round (a bug, an answer no decoder caught) is logged;
      // the heartbeat and the scheduler must go on for the next one.
      try {
        round_();
      } catch (const std::exception& e) {
        spdlog::error("a periodic task stopped on an unexpected error: {}", e.what());
      }
      lock.lock();
      cv_.wait_for(lock, interval_, [this] { return stopping_; });
    }
  }
  std::function<void()> round_;
  std::chrono::seconds interval_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::thread thread_;
};

// Stops the qemu-nbd exports a previous evacd left (one killed with -9 may
// have left processes holding images a cycle needs: a source's read lock, a
// staging image), then records this one's exports in the state directory.
// Runs before anything starts exports.
Status stop_orphaned_exports(const DaemonConfig& cfg) {
  const std::string exports_record = cfg.state_dir + "/nbd-exports";
  EVAC_ASSIGN_OR_RETURN(auto reaped, builtin::NbdExport::reap_orphaned_exports(exports_record));
  if (reaped > 0) spdlog::warn("stopped {} qemu-nbd export(s) an earlier evacd left running", reaped);
  builtin::NbdExport::record_exports_in(exports_record);
  return Status::ok();
}

// The site's state database, checked to be this site's, with an admin
// token made on first start.
Result<std::unique_ptr<Store>> open_site_store(const DaemonConfig& cfg) {
  EVAC_ASSIGN_OR_RETURN(auto store, Store::open(cfg.state_dir + "/evac.db", std::chrono::seconds(5)));
  EVAC_RETURN_IF_ERROR(check_site_identity(*store, cfg.site));
  EVAC_RETURN_IF_ERROR(ensure_admin_token(*store, cfg.state_dir));
  return store;
}

// The URL paired sites and the CLI reach this site at.
std::string site_url(const DaemonConfig& cfg) {
  std::string listen_host = cfg.listen_host.find(':') != std::string::npos ? "[" + cfg.listen_host + "]" : cfg.listen_host;
  return cfg.advertise_url.empty() ? "https://" + listen_host + ":" + std::to_string(cfg.listen_port) : cfg.advertise_url;
}

// The site's TLS identity (made on first start), its pin written to
// state_dir/pin.
Result<TlsIdentity> site_tls_identity(const DaemonConfig& cfg) {
  std::vector<std::string> alt_names = {"localhost", cfg.listen_host};
  EVAC_ASSIGN_OR_RETURN(auto tls,
                        ensure_tls_identity(cfg.tls_cert.value_or(cfg.state_dir + "/tls/cert.pem"),
                                            cfg.tls_key.value_or(cfg.state_dir + "/tls/key.pem"),
                                            "evac site " + cfg.site, alt_names));
  // The pin is no secret (operators hand it to `evac context add --pin`),
  // but like everything in state_dir but QEMU's folder, the file is private.
  EVAC_RETURN_IF_ERROR(write_private_file(cfg.state_dir + "/pin", tls.pin + "\n"));
  return tls;
}

// The configured compute providers, by name; one that cannot be created
// fails the start, one that does not answer now only warns.
Result<std::map<std::string, std::unique_ptr<ComputeProvider>>> connect_providers(const DaemonConfig& cfg) {
  register_libvirt_provider();
  std::map<std::string, std::unique_ptr<ComputeProvider>> providers;
  for (const auto& pc : cfg.compute_providers) {
    EVAC_ASSIGN_OR_RETURN(auto p, ProviderRegistry::instance().create(pc));
    // A hypervisor that is down now must not keep the site from starting:
    // inventory calls report it until it is back.
    if (Status s = p->ping(); !s.is_ok()) spdlog::warn("compute provider {}: {}", pc.name, s.to_string());
    providers.emplace(pc.name, std::move(p));
  }
  return providers;
}

ReplicationOptions replication_options(const DaemonConfig& cfg) {
  ReplicationOptions options;
  options.schedules = cfg.replication_schedules;
  options.full_read_every = cfg.replication_full_read_every;
  options.wait_limit = cfg.replication_wait_limit;
  return options;
}

// The replication engines this evacd was built with: the built-in
// replicator. Another engine is registered here, next to it.
ReplicationRegistry replication_engines(const DaemonConfig& cfg) {
  builtin::SyncOptions builtin_options;
  // Crash tests only (tests/e2e): die while a cycle holds running VMs paused.
  if (const char* v = std::getenv("EVAC_FAULT_EXIT_WHILE_PAUSED"); v && std::string_view(v) == "1") {
    builtin_options.exit_while_paused = true;
    spdlog::warn("fault injection on: evacd exits while a replication cycle holds VMs paused");
  }
  ReplicationRegistry engines;
  builtin::register_builtin_replicator(engines, builtin_options);
  external::register_external_adapters(engines, cfg.replication_adapters);
  return engines;
}

engine::EngineOptions run_options(const DaemonConfig& cfg) {
  engine::EngineOptions options = RunService::default_options();
  options.max_parallel = cfg.runs_max_parallel;
  options.per_resource_limit = cfg.runs_per_provider_limit;
  // Crash tests only (tests/e2e): die right after the Nth step's side effect.
  if (const char* n = std::getenv("EVAC_FAULT_EXIT_AFTER_STEPS"); n && std::atoi(n) > 0) {
    options.exit_after_steps = std::atoi(n);
    spdlog::warn("fault injection on: evacd exits after {} steps of runs", options.exit_after_steps);
  }
  return options;
}

ApiLimits api_limits(const DaemonConfig& cfg) {
  ApiLimits limits;
  limits.max_body = cfg.api_max_request_body;
  limits.read_timeout = cfg.api_read_timeout;
  limits.max_connections = cfg.api_max_connections;
  return limits;
}

// Serves the bound `server`, with heartbeats and the replication scheduler
// going, until SIGTERM or SIGINT (or the listener fails); then stops
// running cycles and returns. Says it listens (at `url`, with `pin`) only
// once those signals are taken, so a SIGTERM sent on that line is an
// orderly shutdown.
void serve_until_stopped(const DaemonConfig& cfg, const std::string& url, const std::string& pin, SiteService& service,
                         ReplicationService& replication, HttpsServer& server) {
  // Signals are taken by one thread with sigwait; every other thread blocks
  // them, so SIGTERM always leads to the same orderly shutdown.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  std::thread signal_thread([&] {
    int sig = 0;
    sigwait(&signals, &sig);
    spdlog::info("received {}, shutting down", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    // First abort running cycles, so API calls waiting on them return and
    // the server's workers can end.
    replication.shutdown();
    server.stop();
  });

  spdlog::info("evacd for site {} listening on {} (pin {}), state in {}", cfg.site, url, pin, cfg.state_dir);
  {
    // Heartbeats both ways; every check interval, RPO compliance of every
    // group this site protects (alarms) and, with schedules on, due cycles.
    PeriodicTask heartbeat([&service] { service.heartbeat_round(); }, cfg.heartbeat_interval);
    PeriodicTask scheduler([&replication] { replication.tick(); }, cfg.replication_check_interval);
    if (!cfg.replication_schedules) spdlog::info("replication schedules are off: groups sync only by hand");
    server.serve();
  }
  // Running cycles stop at their next batch; the recovery site drops them.
  replication.shutdown();
  // serve() also returns if the listener fails; make the signal thread exit.
  pthread_kill(signal_thread.native_handle(), SIGTERM);
  signal_thread.join();
}

int run(const std::string& config_path) {
  auto config = load_daemon_config(config_path);
  if (!config) {
    std::cerr << "evacd: " << config.status().message() << "\n  hint: " << config.status().hint() << "\n";
    return 2;
  }
  const DaemonConfig& cfg = *config;
  setup_logging(cfg.log_format, cfg.log_level, cfg.site);
  for (const auto& adapter : cfg.replication_adapters)
    if (Status s = external::check_adapter_config(adapter); !s) return fail(s.with_context(config_path));

  // Closed while the start creates its files; opened to QEMU's backup
  // folder alone once they are there (keep_state_dir_private below).
  if (Status s = make_state_dir(cfg.state_dir); !s) return fail(s);
  if (Status s = stop_orphaned_exports(cfg); !s) return fail(s);
  auto store = open_site_store(cfg);
  if (!store) return fail(store.status());
  const std::string url = site_url(cfg);
  auto tls = site_tls_identity(cfg);
  if (!tls) return fail(tls.status());
  auto providers = connect_providers(cfg);
  if (!providers) return fail(providers.status());

  HttpsPeerTransport transport(tls->cert_path, tls->key_path, cfg.peer_timeout);
  SiteService service(SiteIdentity{cfg.site, url, tls->pin}, **store, std::move(*providers), transport);
  ReplicationService replication(service, transport, cfg.state_dir, replication_engines(cfg), replication_options(cfg));
  if (Status s = keep_state_dir_private(cfg.state_dir, builtin::kBackupFolder); !s) return fail(s);
  // One PlanService for the site: runs and the API share it.
  PlanService plans(service, &replication);
  RunService runs(service, plans, &replication, run_options(cfg));
  // Runs a previous evacd left going (a crash, a kill -9) go on where they
  // were: steps are idempotent, so one cut mid-way runs again safely.
  if (Status s = runs.resume_interrupted(); !s.is_ok()) spdlog::error("resuming interrupted runs: {}", s.to_string());
  ApiRouter router(RouteServices{service, plans, &replication, &runs}, api_limits(cfg));
  HttpsServer server(router, *tls);
  auto bound = server.bind(cfg.listen_host, cfg.listen_port);
  if (!bound) return fail(bound.status());

  serve_until_stopped(cfg, url, tls->pin, service, replication, server);
  spdlog::info("evacd for site {} stopped", cfg.site);
  return 0;
}

}  // namespace
}  // namespace evac

int main(int argc, char** argv) {
  CLI::App app{"evacd: the evac site daemon. One per site; see docs/configuration.md."};
  std::string config_path;
  app.add_option("-c,--config", config_path, "YAML configuration file")->required();
  app.set_version_flag("--version", "evacd 0.1.0");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }
  // Whatever evacd or a tool it runs (qemu-img, qemu-nbd) creates is its
  // own unless said otherwise. Defence in depth: every file and folder
  // evacd makes also gets its mode explicitly, so an inherited umask of 000
  // opens nothing.
  ::umask(077);
  return evac::run(config_path);
}
