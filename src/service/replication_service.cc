#include "service/replication_service.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <limits>
#include <sstream>
#include <utility>

#include <spdlog/spdlog.h>

#include "core/duration.h"
#include "core/json_decode.h"
#include "service/replication_schedule.h"

namespace evac {
using nlohmann::json;

namespace {

// A cycle's link to the same engine at the recovery site, over the paired
// sites' mutual-TLS API.
class PeerLink : public ReplicationPeerLink {
 public:
  PeerLink(PeerTransport& transport, PeerRecord peer, std::string kind, TokenBucket* limiter,
           const std::atomic<bool>* stopping)
      : transport_(transport), peer_(std::move(peer)), kind_(std::move(kind)), limiter_(limiter), stopping_(stopping) {}

  std::string site() const override { return peer_.site; }
  bool stopping() const override { return stopping_ && stopping_->load(); }
  Result<json> call(const std::string& method, const std::string& path, const std::optional<json>& body) override {
    EVAC_RETURN_IF_ERROR(check_not_stopping());
    auto r = transport_.call(endpoint(), method, peer_paths::replication_engine(kind_, path), body);
    if (!r) return with_site(r.status());
    return r;
  }
  // Every batch of a cycle travels here, so this is where --max-rate holds
  // (the small JSON calls around a cycle do not count).
  Result<std::string> call_bytes(const std::string& method, const std::string& path, const std::string& body) override {
    EVAC_RETURN_IF_ERROR(check_not_stopping());
    EVAC_RETURN_IF_ERROR(pass_limiter(body.size()));
    auto r = transport_.call_bytes(endpoint(), method, peer_paths::replication_engine(kind_, path), body,
                                   kBulkCallTimeout);
    if (!r) return with_site(r.status());
    return r;
  }

 private:
  PeerEndpoint endpoint() const { return PeerEndpoint{peer_.url, peer_.pin}; }
  Status with_site(const Status& s) const { return s.with_context("site '" + peer_.site + "'"); }
  // Waits for the rate limit (a wait cut short means evacd is stopping,
  // which the check after it reports).
  Status pass_limiter(std::size_t bytes) {
    if (limiter_ && bytes > 0) (void)limiter_->acquire(bytes);
    return check_not_stopping();
  }
  Status check_not_stopping() const {
    if (stopping_ && stopping_->load())
      return unavailable("evacd is shutting down: the cycle was aborted", "the next cycle starts over from the newest PIT");
    return Status::ok();
  }

  PeerTransport& transport_;
  PeerRecord peer_;
  std::string kind_;
  TokenBucket* limiter_;
  const std::atomic<bool>* stopping_;
};

std::int64_t system_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace

std::unique_ptr<ReplicationPeerLink> make_peer_link(PeerTransport& transport, PeerRecord peer, std::string kind,
                                                    TokenBucket* limiter, const std::atomic<bool>* stopping) {
  return std::make_unique<PeerLink>(transport, std::move(peer), std::move(kind), limiter, stopping);
}

ReplicationService::ReplicationService(SiteService& site, PeerTransport& transport, const std::string& state_dir,
                                       const ReplicationRegistry& engines, ReplicationOptions options)
    : site_(site), transport_(transport), options_(std::move(options)) {
  if (!options_.clock) options_.clock = system_now;
  if (!options_.steady_clock) options_.steady_clock = [] { return std::chrono::steady_clock::now(); };
  ReplicationSiteContext context;
  context.site_name = site_.identity().name;
  context.state_dir = state_dir;
  context.change_tracking = change_tracking_lookup();
  context.storage_pool_folders = [this]() -> Result<std::vector<std::string>> {
    EVAC_ASSIGN_OR_RETURN(auto pools, site_.list_storage_pools(std::nullopt));
    std::vector<std::string> folders;
    for (const auto& p : pools)
      if (!p.path.empty()) folders.push_back(p.path);
    return folders;
  };
  for (const std::string& kind : engines.kinds()) {
    auto adapter = engines.create(kind, context);
    if (adapter) {
      engines_[kind] = std::move(*adapter);
    } else {
      spdlog::error("replication engine {} did not start: {}", kind, adapter.status().to_string());
      engine_failures_[kind] = adapter.status();
    }
  }
  site_.set_storage_fence(this, [this](const GroupRecord& g) { return make_source_read_only(g); });
}

ReplicationService::~ReplicationService() {
  site_.clear_storage_fence(this);
  shutdown();
}

ChangeTrackingLookup ReplicationService::change_tracking_lookup() {
  return [this](const std::string& provider) -> ChangeTracking* {
    auto p = site_.provider(provider);
    return p ? (*p)->change_tracking() : nullptr;
  };
}

std::string ReplicationService::engine_kind(const std::string& group) {
  if (auto g = site_.get_group(group); g.is_ok()) return g->replication;
  // A recovery site may know the group only from the configuration its
  // protected site sent (a recovery runs with that site gone).
  auto peers = site_.store().list_peers();
  for (const auto& peer : peers.is_ok() ? *peers : std::vector<PeerRecord>{}) {
    auto g = group_protected_by(peer.site, group);
    if (g.is_ok() && g->has_value()) return (*g)->replication;
  }
  return kDefaultReplicationKind;
}

Result<ReplicationAdapter*> ReplicationService::engine(const std::string& kind) {
  if (auto it = engines_.find(kind); it != engines_.end()) return it->second.get();
  if (auto it = engine_failures_.find(kind); it != engine_failures_.end())
    return Status(it->second.code(), "replication engine '" + kind + "' did not start: " + it->second.message(),
                  it->second.hint().empty() ? "see evacd's log, fix the cause and restart evacd" : it->second.hint());
  std::string known;
  for (const auto& [k, _] : engines_) known += (known.empty() ? "" : ", ") + k;
  return unsupported("replication engine '" + kind + "' is not built into the evacd of site '" +
                         site_.identity().name + "'",
                     known.empty() ? "this evacd runs without replication engines" : "its engines: " + known);
}

std::vector<MountedPeerRoute> ReplicationService::engine_peer_routes() {
  std::vector<MountedPeerRoute> out;
  for (auto& [kind, adapter] : engines_) {
    for (ReplicationPeerRoute& route : adapter->peer_routes()) {
      MountedPeerRoute mounted;
      mounted.method = route.method;
      mounted.pattern = peer_paths::replication_engine(kind, route.path);
      mounted.summary = route.summary;
      mounted.bulk = route.bulk;
      const bool writes = route.writes;
      mounted.handle = [this, writes, handle = std::move(route.handle)](
                           const PeerRecord& caller, const std::vector<std::string>& params,
                           const std::string& body) -> Result<json> {
        if (params.empty()) return internal_error("an engine route without a group");
        EVAC_RETURN_IF_ERROR(writes ? check_caller_may_write(caller, params[0]) : check_caller_protects(caller, params[0]));
        return handle(ReplicationPeerRequest{params, body});
      };
      out.push_back(std::move(mounted));
    }
  }
  return out;
}

Result<ReplicationGroupSpec> ReplicationService::group_spec(const GroupRecord& group, const PeerRecord& peer) {
  ReplicationGroupSpec spec;
  spec.group = group.name;
  spec.protected_site = group.protected_site;
  spec.recovery_site = group.recovery_site;
  spec.retention = RetentionPolicy{group.keep_pits, group.keep_hourly, group.keep_daily};
  std::vector<std::string> uuids;
  for (const auto& gvm : group.vms) uuids.push_back(gvm.vm_uuid);
  auto vms = site_.find_vms(uuids);
  if (!vms) return vms.status().with_context("group '" + group.name + "'");
  spec.vms = std::move(*vms);
  // Storage mappings name pools; the recovery site says where they are.
  auto answer = site_.peer_client(peer).inventory();
  if (!answer) return answer.status();  // names the site already
  auto inventory = peer_inventory_from_json(*answer);
  if (!inventory)
    return inventory.status().with_context("site '" + peer.site + "'")
        .with_hint("it answered what no evacd of this version sends: check the evacd there (its version, its log)");
  auto mappings = site_.store().list_mappings(peer.site);
  if (!mappings) return mappings.status();
  for (const auto& m : *mappings) {
    if (m.kind != MappingKind::kStorage) continue;
    for (const auto& p : inventory->providers)
      if (const PeerInventory::Pool* pool = p.pool(m.target)) spec.replica_dirs[m.source] = pool->path;
  }
  return spec;
}

// ---- fences: the stale copy's disks read-only ---------------------------------------------


ReplicationGroupSpec ReplicationService::spec_here(const GroupRecord& group, std::string& missing) {
  ReplicationGroupSpec spec;
  spec.group = group.name;
  spec.protected_site = group.protected_site;
  spec.recovery_site = group.recovery_site;
  for (const auto& gvm : group.vms) {
    auto provider = site_.provider(gvm.provider);
    auto vm = provider ? (*provider)->get_vm(gvm.vm_uuid) : Result<VmInfo>(provider.status());
    if (vm)
      spec.vms.push_back(std::move(*vm));
    else
      missing += (missing.empty() ? "" : ", ") + gvm.vm_name + " (" + vm.status().message() + ")";
  }
  return spec;
}

Status ReplicationService::make_source_read_only(const GroupRecord& group) {
  std::string missing;
  ReplicationGroupSpec spec = spec_here(group, missing);
  EVAC_ASSIGN_OR_RETURN(ReplicationAdapter * adapter, engine(group.replication));
  Status st = adapter->prepare_failover(spec);
  if (st.is_ok() && !missing.empty())
    return not_found("not found here, so not made read-only: " + missing, "check the hypervisor at this site");
  return st;
}

Result<json> ReplicationService::handle_peer_fence_check(const PeerRecord& caller, const std::string& group) {
  auto g = site_.get_group(group);
  if (!g) return g.status();
  if (g->recovery_site != caller.site)
    return permission_denied("group '" + group + "' recovers to '" + g->recovery_site + "', not '" + caller.site + "'");
  std::string missing;
  ReplicationGroupSpec spec = spec_here(*g, missing);
  auto adapter = engine(g->replication);
  Status st = adapter ? (*adapter)->check_read_only_source(spec) : adapter.status();
  if (st.is_ok() && !missing.empty())
    st = not_found("VMs not found at this site: " + missing, "check the hypervisor at this site");
  return json{{"read_only", st.is_ok()}, {"error", st.message()}, {"hint", st.hint()}};
}

Result<json> ReplicationService::handle_peer_backup_probe(const PeerRecord& caller, const std::string& group) {
  auto g = site_.get_group(group);
  if (!g) return g.status();
  if (g->recovery_site != caller.site)
    return permission_denied("group '" + group + "' recovers to '" + g->recovery_site + "', not '" + caller.site + "'");
  {
    // A cycle holds the VMs' backup jobs: probing now would only collide.
    std::lock_guard lock(mu_);
    auto it = runs_.find(group);
    if (it != runs_.end() && it->second.running) return json{{"busy", true}, {"vms", json::array()}};
  }
  std::string missing;
  ReplicationGroupSpec spec = spec_here(*g, missing);
  EVAC_ASSIGN_OR_RETURN(ReplicationAdapter * adapter, engine(g->replication));
  auto probes = adapter->probe_sources(spec);
  if (!probes) return probes.status();
  json vms = json::array();
  for (const auto& p : *probes)
    vms.push_back({{"vm", p.vm},
                   {"state", p.state},
                   {"ok", p.outcome.is_ok()},
                   {"error", p.outcome.message()},
                   {"hint", p.outcome.hint()}});
  if (!missing.empty())
    vms.push_back({{"vm", missing}, {"state", "missing"}, {"ok", false}, {"error", "not found at this site"},
                   {"hint", "check the hypervisor at this site"}});
  return json{{"busy", false}, {"vms", vms}};
}

Status ReplicationService::release_old_disks(const std::string& group, const std::string& peer_site,
                                             const std::vector<VmInfo>& vms) {
  ReplicationGroupSpec spec;
  spec.group = group;
  spec.recovery_site = peer_site;
  spec.protected_site = site_.identity().name;
  spec.vms = vms;
  EVAC_ASSIGN_OR_RETURN(ReplicationAdapter * adapter, engine_of(group));
  return adapter->release_source(spec);
}

// ---- protected site: cycles ------------------------------------------------------------

Result<GroupRecord> ReplicationService::protected_group(const std::string& name) {
  auto group = site_.get_group(name);
  if (!group) return group.status();
  if (group->protected_site != site_.identity().name)
    return failed_precondition("site '" + site_.identity().name + "' does not protect group '" + name + "'",
                               "sync it at its protected site, '" + group->protected_site + "'");
  auto peer = site_.store().find_peer(group->recovery_site);
  if (!peer) return peer.status();
  if (!peer->has_value()) return failed_precondition("recovery site '" + group->recovery_site + "' is not paired");
  return group;
}

Result<std::uint64_t> ReplicationService::request_sync(const std::string& name, SyncTrigger trigger) {
  auto group = protected_group(name);
  if (!group) return group.status();
  // A fenced copy is stale: replicating it would overwrite the live one's past.
  EVAC_RETURN_IF_ERROR(site_.check_not_fenced(*group));
  std::lock_guard lock(mu_);
  if (stopping_) return unavailable("evacd is shutting down", "sync again once it is back");
  GroupRun& run = runs_[name];
  if (run.running) {
    if (trigger == SyncTrigger::kScheduled)
      return failed_precondition("a cycle of group '" + name + "' is already running");
    run.follow_up = true;
    if (trigger == SyncTrigger::kReverse) run.reverse_next = true;
    return run.started + 1;
  }
  if (run.thread.joinable()) run.thread.join();  // the previous thread has ended its last cycle
  run.running = true;
  run.started += 1;
  run.trigger = trigger == SyncTrigger::kScheduled ? "scheduled" : trigger == SyncTrigger::kReverse ? "reverse" : "manual";
  if (trigger == SyncTrigger::kReverse) run.reverse_next = true;
  run.thread = std::thread([this, name] { run_cycles(name); });
  return run.started;
}

Result<PointInTime> ReplicationService::wait_cycle(const std::string& name, std::uint64_t cycle) {
  for (;;) {
    auto ended = wait_cycle_for(name, cycle, std::chrono::hours(1));
    if (!ended) return ended.status();
    if (ended->has_value()) return **ended;
  }
}

Result<std::optional<PointInTime>> ReplicationService::wait_cycle_for(const std::string& name, std::uint64_t cycle,
                                                                      std::chrono::milliseconds at_most) {
  std::unique_lock lock(mu_);
  if (auto it = runs_.find(name); it != runs_.end() && cycle > it->second.started + (it->second.follow_up ? 1 : 0))
    return not_found("no cycle " + std::to_string(cycle) + " of group '" + name + "' was asked for here",
                     "ask for a new cycle");
  const bool ended = cv_.wait_for(lock, at_most, [&] {
    auto it = runs_.find(name);
    return it == runs_.end() || it->second.finished >= cycle || (stopping_ && !it->second.running);
  });
  if (!ended) return std::optional<PointInTime>();
  auto it = runs_.find(name);
  if (it == runs_.end()) return not_found("no cycle " + std::to_string(cycle) + " of group '" + name + "'");
  auto result = it->second.results.find(cycle);
  if (result == it->second.results.end() && it->second.finished < cycle)
    return unavailable("evacd shut down before cycle " + std::to_string(cycle) + " of group '" + name + "' ran",
                       "sync again once it is back");
  if (result == it->second.results.end())
    return not_found("the outcome of cycle " + std::to_string(cycle) + " of group '" + name + "' is no longer kept",
                     "see `evac group show " + name + "` for the last cycle");
  if (!result->second) return result->second.status();
  return std::optional<PointInTime>(*result->second);
}

Result<PointInTime> ReplicationService::sync_group(const std::string& name) {
  auto cycle = request_sync(name, SyncTrigger::kManual);
  if (!cycle) return cycle.status();
  return wait_cycle(name, *cycle);
}

Result<PointInTime> ReplicationService::reverse_group(const std::string& name) {
  auto cycle = request_sync(name, SyncTrigger::kReverse);
  if (!cycle) return cycle.status();
  return wait_cycle(name, *cycle);
}

void ReplicationService::run_cycles(const std::string& name) {
  for (;;) {
    std::uint64_t number = 0;
    {
      std::lock_guard lock(mu_);
      GroupRun& run = runs_[name];
      number = run.started;
      run.phase = "preparing";
      run.progress = SyncProgress{};
      run.started_at = now();
      run.started_steady = options_.steady_clock();
    }
    std::size_t known_pits = 0;
    spdlog::info("replication: cycle {} of group {} started", number, name);
    // A cycle that throws fails like any other (an alarm, a retry later)
    // instead of ending evacd with every other group's cycles.
    Result<PointInTime> result = internal_error("cycle " + std::to_string(number) + " of group " + name + " did not run");
    try {
      result = run_one_cycle(name, known_pits);
    } catch (const std::exception& e) {
      result = internal_error("cycle " + std::to_string(number) + " of group " + name + " stopped on an unexpected error: " +
                                  e.what(),
                              "this is a bug in evac: report it with evacd's log; the next cycle starts over");
    }
    std::lock_guard lock(mu_);
    GroupRun& run = runs_[name];
    run.finished = number;
    run.results.insert_or_assign(number, result);
    while (run.results.size() > 16) run.results.erase(run.results.begin());
    if (result) run.known_pits = known_pits;
    run.phase = "idle";
    if (run.follow_up && !stopping_) {
      run.follow_up = false;
      run.started += 1;
      run.trigger = "manual";
      cv_.notify_all();
      continue;
    }
    run.running = false;
    cv_.notify_all();
    return;
  }
}

Result<PointInTime> ReplicationService::run_one_cycle(const std::string& name, std::size_t& known_pits) {
  auto started = options_.steady_clock();
  auto outcome = [&]() -> Result<PointInTime> {
    auto group = protected_group(name);
    if (!group) return group.status();
    auto peer = site_.store().find_peer(group->recovery_site);
    if (!peer) return peer.status();
    if (!peer->has_value()) return failed_precondition("recovery site '" + group->recovery_site + "' is not paired");
    auto spec = group_spec(*group, **peer);
    if (!spec) return spec.status();
    {
      auto record = site_.store().find_replication(name);
      auto due = full_read_due_at(record.is_ok() ? *record : std::nullopt);
      spec->full_read = due && *due <= now();
    }
    std::shared_ptr<TokenBucket> limiter;
    bool reverse = false;
    {
      std::lock_guard lock(mu_);
      GroupRun& run = runs_[name];
      reverse = std::exchange(run.reverse_next, false);
      if (!run.limiter) run.limiter = std::make_shared<TokenBucket>(group->max_rate_bytes, options_.steady_clock);
      run.limiter->set_rate(group->max_rate_bytes);
      limiter = run.limiter;
      run.phase = "replicating";
    }
    EVAC_ASSIGN_OR_RETURN(ReplicationAdapter * adapter, engine(group->replication));
    PeerLink link(transport_, **peer, group->replication, limiter.get(), &stopping_);
    auto progress = [this, name](const SyncProgress& p) {
      std::lock_guard lock(mu_);
      GroupRun& run = runs_[name];
      run.progress = p;
      run.phase = p.bytes_total > 0 && p.bytes_scanned >= p.bytes_total ? "committing" : "replicating";
    };
    auto pit = reverse ? adapter->reverse(*spec, link, progress) : adapter->sync_now(*spec, link, progress);
    if (pit) {
      // The PIT count for metrics and `group show`; best effort, the cycle succeeded either way.
      auto all = pits_at(**peer, name);
      if (all) known_pits = all->size();
    }
    return pit;
  }();
  auto duration_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(options_.steady_clock() - started).count();
  if (outcome) {
    Status s = site_.store().record_cycle_success(name, outcome->id, outcome->created_at, outcome->bytes_sent, duration_ms,
                                                  now(), outcome->full_read);
    if (!s.is_ok()) spdlog::warn("replication: cannot record cycle of group {}: {}", name, s.to_string());
    spdlog::info("replication: group {} has point in time {} ({} bytes sent in {} ms)", name, outcome->id,
                 outcome->bytes_sent, duration_ms);
    for (const auto& w : outcome->warnings)
      raise_event("warning", "cycle_left_cleanup", name,
                  "replication cycle of group '" + name + "' made point in time " + outcome->id + " but left work: " + w);
  } else if (outcome.status().code() != StatusCode::kNotFound) {  // a group deleted meanwhile has nothing to record
    (void)site_.store().record_cycle_failure(name, now(), outcome.status().message());
    spdlog::warn("replication: cycle of group {} failed: {}", name, outcome.status().to_string());
    // Retries failing the same way are counted on one event (the store
    // compares them without the folder names and numbers that vary), so a
    // dead link does not flood the list; a new reason is a new event.
    raise_event("error", "cycle_failed", name,
                "replication cycle of group '" + name + "' failed: " + outcome.status().message());
  }
  if (auto group = site_.get_group(name); group.is_ok()) check_compliance(*group);
  return outcome;
}

// ---- protected site: lag, compliance, alarms --------------------------------------------

void ReplicationService::raise_event(const std::string& severity, const std::string& kind, const std::string& group,
                                     const std::string& message) {
  auto e = site_.store().add_event(EventRecord{0, now(), severity, kind, group, message});
  if (!e) spdlog::error("cannot record event {}: {}", kind, e.status().to_string());
  if (severity == "error")
    spdlog::error("event {}: {}", kind, message);
  else if (severity == "warning")
    spdlog::warn("event {}: {}", kind, message);
  else
    spdlog::info("event {}: {}", kind, message);
}

std::optional<std::string> ReplicationService::not_replicating_why(const GroupRecord& group) {
  if (group.protected_site != site_.identity().name)
    return "replicated from its protected site, " + group.protected_site;
  auto standing = site_.standing(group);
  if (!standing) return std::nullopt;  // unknown: go on as protected (a cycle checks the fence itself)
  if (standing->state == "protected") return std::nullopt;
  return standing->text;
}

void ReplicationService::check_compliance(const GroupRecord& group) {
  // A fenced copy has no RPO to keep: the live copy is elsewhere.
  if (not_replicating_why(group)) return;
  std::lock_guard lock(compliance_mu_);
  auto record = site_.store().find_replication(group.name);
  if (!record) return;
  std::optional<std::int64_t> newest = record->has_value() ? (*record)->last_pit_created_at : std::nullopt;
  std::int64_t lag = replication_lag(now(), group.created_at, newest);
  bool breached = lag > group.rpo_seconds;
  bool was_breached = record->has_value() && (*record)->rpo_breached;
  if (breached == was_breached) return;
  if (Status s = site_.store().set_rpo_breached(group.name, breached); !s.is_ok()) return;  // group gone meanwhile
  std::string lag_text = format_duration(std::chrono::seconds(lag));
  std::string rpo_text = format_duration(std::chrono::seconds(group.rpo_seconds));
  if (breached)
    raise_event("warning", "rpo_breached", group.name,
                "group '" + group.name + "' is out of its RPO: " +
                    (newest ? "the newest point in time is " + lag_text + " old" : "no point in time after " + lag_text) +
                    ", RPO " + rpo_text);
  else
    raise_event("info", "rpo_restored", group.name,
                "group '" + group.name + "' is within its RPO again: lag " + lag_text + ", RPO " + rpo_text);
}

void ReplicationService::tick() {
  auto groups = site_.list_groups();
  if (!groups) {
    spdlog::warn("replication scheduler: {}", groups.status().to_string());
    return;
  }
  for (const auto& g : *groups) {
    if (not_replicating_why(g)) continue;  // not protected from here, or fenced here
    check_compliance(g);
    if (!options_.schedules || stopping_) continue;
    auto record = site_.store().find_replication(g.name);
    if (!record) continue;
    ScheduleInput in;
    in.now = now();
    in.rpo_seconds = g.rpo_seconds;
    in.group_created_at = g.created_at;
    if (record->has_value()) {
      in.newest_pit_at = (*record)->last_pit_created_at;
      in.consecutive_failures = (*record)->consecutive_failures;
      in.last_failure_at = (*record)->last_failure_at;
    }
    {
      std::lock_guard lock(mu_);
      auto it = runs_.find(g.name);
      in.cycle_running = it != runs_.end() && it->second.running;
    }
    auto decision = decide_schedule(in);
    if (!decision.start) continue;
    auto cycle = request_sync(g.name, SyncTrigger::kScheduled);
    if (cycle)
      spdlog::info("replication scheduler: group {}: cycle {} ({})", g.name, *cycle, decision.reason);
    else
      spdlog::debug("replication scheduler: group {}: {}", g.name, cycle.status().to_string());
  }
}

void ReplicationService::rate_changed(const std::string& group, std::uint64_t bytes_per_second) {
  std::lock_guard lock(mu_);
  auto it = runs_.find(group);
  if (it != runs_.end() && it->second.limiter) it->second.limiter->set_rate(bytes_per_second);
}

void ReplicationService::shutdown() {
  std::vector<std::thread> threads;
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    cv_.notify_all();
    for (auto& [name, run] : runs_) {
      if (run.limiter) run.limiter->cancel();
      if (run.thread.joinable()) threads.push_back(std::move(run.thread));
    }
  }
  for (auto& t : threads) t.join();
}

std::optional<std::int64_t> ReplicationService::full_read_due_at(const std::optional<ReplicationRecord>& record) const {
  if (options_.full_read_every.count() <= 0) return std::nullopt;
  if (!record || !record->last_full_read_at) return now();
  return *record->last_full_read_at + options_.full_read_every.count();
}

namespace {
// A group's "sync" state with no cycle running.
json idle_sync() { return {{"running", false}, {"phase", "idle"}}; }
}  // namespace

json ReplicationService::replication_state(const GroupRecord& group) {
  if (auto why = not_replicating_why(group); why && group.protected_site == site_.identity().name) {
    // Fenced here: the stale copy neither replicates nor keeps an RPO.
    return {{"active", false}, {"inactive_reason", *why}, {"rpo_seconds", group.rpo_seconds}, {"lag_seconds", nullptr},
            {"rpo_met", nullptr}, {"schedules", options_.schedules}, {"next_cycle_at", nullptr}, {"sync", idle_sync()},
            {"last_success", nullptr}, {"last_failure", nullptr}};
  }
  std::int64_t t = now();
  auto record = site_.store().find_replication(group.name);
  std::optional<ReplicationRecord> r = record.is_ok() ? *record : std::nullopt;
  std::optional<std::int64_t> newest = r ? r->last_pit_created_at : std::nullopt;
  std::int64_t lag = replication_lag(t, group.created_at, newest);
  json out = {{"active", true},
              {"rpo_seconds", group.rpo_seconds},
              {"lag_seconds", lag},
              {"lag_since", newest ? "newest_pit" : "group_created"},
              {"rpo_met", lag <= group.rpo_seconds},
              {"max_rate_bytes", group.max_rate_bytes},
              {"max_rate", format_byte_rate(group.max_rate_bytes)},
              {"schedules", options_.schedules},
              {"last_success", nullptr},
              {"last_failure", nullptr},
              {"consecutive_failures", r ? r->consecutive_failures : 0},
              {"cycles", {{"succeeded", r ? r->cycles_succeeded : 0}, {"failed", r ? r->cycles_failed : 0}}},
              {"bytes_sent_total", r ? r->bytes_sent_total : 0}};
  if (r && r->last_pit_created_at)
    out["last_success"] = {{"pit_id", r->last_pit_id},
                           {"pit_created_at", *r->last_pit_created_at},
                           {"finished_at", r->last_success_at ? json(*r->last_success_at) : json(nullptr)},
                           {"bytes_sent", r->last_bytes_sent},
                           {"duration_seconds", static_cast<double>(r->last_duration_ms) / 1000.0}};
  if (r && r->last_failure_at) out["last_failure"] = {{"at", *r->last_failure_at}, {"error", r->last_error}};
  ScheduleInput in{t, group.rpo_seconds, group.created_at, newest, false, r ? r->consecutive_failures : 0,
                   r ? r->last_failure_at : std::nullopt};
  out["next_cycle_at"] = options_.schedules ? json(std::max(t, decide_schedule(in).not_before)) : json(nullptr);
  // Change tracking is trusted between full reads; this says when the last
  // one captured and when a cycle will read every block again.
  out["last_full_read_at"] = r && r->last_full_read_at ? json(*r->last_full_read_at) : json(nullptr);
  auto full_due = full_read_due_at(r);
  out["full_read_due_at"] = full_due ? json(std::max(t, *full_due)) : json(nullptr);

  std::lock_guard lock(mu_);
  json sync = idle_sync();
  auto it = runs_.find(group.name);
  if (it != runs_.end()) {
    const GroupRun& run = it->second;
    if (run.known_pits) out["known_pits"] = *run.known_pits;
    sync = sync_json(run);
    if (!run.results.empty()) {
      const auto& [number, result] = *run.results.rbegin();
      json last = {{"cycle", number}, {"ok", result.is_ok()}};
      if (result)
        last["pit_id"] = result->id;
      else
        last["error"] = {{"code", status_code_name(result.status().code())},
                         {"message", result.status().message()},
                         {"hint", result.status().hint()}};
      out["last_cycle"] = last;
    }
  }
  out["sync"] = sync;
  return out;
}

json ReplicationService::sync_json(const GroupRun& run) const {
  if (!run.running) return idle_sync();
  double elapsed = std::chrono::duration<double>(options_.steady_clock() - run.started_steady).count();
  const SyncProgress& p = run.progress;
  double scan_rate = elapsed > 0 ? static_cast<double>(p.bytes_scanned) / elapsed : 0;
  double send_rate = elapsed > 0 ? static_cast<double>(p.bytes_sent) / elapsed : 0;
  json sync = {{"running", true},
               {"cycle", run.started},
               {"trigger", run.trigger},
               {"phase", run.phase},
               {"started_at", run.started_at},
               {"elapsed_seconds", elapsed},
               {"bytes_total", p.bytes_total},
               {"bytes_scanned", p.bytes_scanned},
               {"bytes_sent", p.bytes_sent},
               {"scan_rate_bytes", scan_rate},
               {"send_rate_bytes", send_rate},
               {"eta_seconds", nullptr},
               // The group's --max-rate as the cycle applies it now (0: none).
               {"rate_limit_bytes", run.limiter ? run.limiter->rate() : 0},
               {"follow_up_queued", run.follow_up}};
  if (scan_rate > 0 && p.bytes_total >= p.bytes_scanned)
    sync["eta_seconds"] = static_cast<double>(p.bytes_total - p.bytes_scanned) / scan_rate;
  return sync;
}

json ReplicationService::sync_progress(const std::string& group) {
  std::lock_guard lock(mu_);
  auto it = runs_.find(group);
  return it == runs_.end() ? idle_sync() : sync_json(it->second);
}

Result<std::vector<PointInTime>> ReplicationService::group_pits(const std::string& name) {
  auto group = site_.get_group(name);
  if (!group) return group.status();
  auto peer = site_.store().find_peer(group->recovery_site);
  if (!peer) return peer.status();
  if (!peer->has_value()) return failed_precondition("recovery site '" + group->recovery_site + "' is not paired");
  return pits_at(**peer, name);
}

Result<std::vector<PointInTime>> ReplicationService::pits_at(const PeerRecord& peer, const std::string& group) {
  auto answer = site_.peer_client(peer).pits(group);
  if (!answer) return answer.status();
  auto pits = pits_from_json(*answer);
  if (!pits) return pits.status().with_context("site '" + peer.site + "'");
  return pits;
}

Result<std::vector<PointInTime>> ReplicationService::pits_held_here(const std::string& group) {
  EVAC_ASSIGN_OR_RETURN(ReplicationAdapter * adapter, engine_of(group));
  return adapter->list_pits(group);
}

Result<TestCopy> ReplicationService::create_test_copy(const std::string& group, const std::string& pit_id,
                                                     const std::string& owner) {
  EVAC_ASSIGN_OR_RETURN(ReplicationAdapter * adapter, engine_of(group));
  return adapter->create_test_copy(group, pit_id, owner);
}

Result<json> ReplicationService::handle_peer_sync(const PeerRecord& caller, const std::string& group, const json& body) {
  auto g = site_.get_group(group);
  if (!g) return g.status();
  if (g->recovery_site != caller.site)
    return permission_denied("group '" + group + "' recovers to '" + g->recovery_site + "', not '" + caller.site + "'");
  auto f = JsonFields::of(body, "a sync request");
  if (!f) return f.status();
  // A cycle number this site gave; absent: start one.
  auto cycle = f->integer_as<std::uint64_t>("cycle", 0, std::numeric_limits<std::int64_t>::max());
  // No wait_ms: as long as the limit allows (and never longer, whatever it says).
  auto wait_ms = f->integer("wait_ms", 0, std::numeric_limits<std::int64_t>::max());
  for (const Status& s : {cycle.status(), wait_ms.status(), f->finish()})
    if (!s) return s;
  const std::int64_t limit = options_.wait_limit.count();
  return follow_cycle(group, *cycle, std::chrono::milliseconds(std::min(wait_ms->value_or(limit), limit)));
}

Result<json> ReplicationService::follow_cycle(const std::string& group, std::optional<std::uint64_t> cycle,
                                              std::chrono::milliseconds wait) {
  if (!cycle) {
    auto started = request_sync(group, SyncTrigger::kManual);
    if (!started) return started.status();
    cycle = *started;
  }
  // A waiting call holds one of the API server's threads: never longer than
  // the limit, whatever the caller asked (or if it asked for no bound).
  auto ended = wait_cycle_for(group, *cycle, std::min(wait, options_.wait_limit));
  if (!ended) return ended.status();
  if (!ended->has_value()) {
    // The group's running cycle, unless the one followed still waits behind it.
    json progress = sync_progress(group);
    if (!progress.value("running", false) || progress["cycle"] != *cycle) progress = nullptr;
    return json{{"cycle", *cycle}, {"done", false}, {"progress", std::move(progress)}};
  }
  json out = to_json(**ended);
  out["cycle"] = *cycle;
  out["done"] = true;
  if (!(*ended)->warnings.empty()) out["warnings"] = (*ended)->warnings;
  return out;
}

Result<TestCopy> ReplicationService::promote(const std::string& group, const std::string& pit_id, const std::string& owner) {
  EVAC_ASSIGN_OR_RETURN(ReplicationAdapter * adapter, engine_of(group));
  return adapter->failover(group, pit_id, owner);
}

Result<ReleasedReplicas> ReplicationService::release_replicas_here(const std::string& group) {
  EVAC_ASSIGN_OR_RETURN(ReplicationAdapter * adapter, engine_of(group));
  return adapter->release_replicas(group);
}

Status ReplicationService::set_seeds(const std::string& group, const std::map<std::string, std::string>& seeds) {
  EVAC_ASSIGN_OR_RETURN(ReplicationAdapter * adapter, engine_of(group));
  return adapter->set_seeds(group, seeds);
}

Status ReplicationService::drop_test_copy(const std::string& group, const std::string& test_copy_id) {
  EVAC_ASSIGN_OR_RETURN(ReplicationAdapter * adapter, engine_of(group));
  return adapter->drop_test_copy(group, test_copy_id);
}

Result<std::vector<TestCopy>> ReplicationService::test_copies_held_here(const std::string& group) {
  EVAC_ASSIGN_OR_RETURN(ReplicationAdapter * adapter, engine_of(group));
  return adapter->list_test_copies(group);
}

json ReplicationService::group_replication_status(const GroupRecord& group) {
  json status = replication_state(group);
  if (!status.value("active", true)) return status;
  status["pits"] = nullptr;
  status["newest_pit"] = nullptr;
  if (!status["last_success"].is_null())
    status["newest_pit"] = {{"id", status["last_success"]["pit_id"]}, {"created_at", status["last_success"]["pit_created_at"]}};
  auto pits = group_pits(group.name);
  if (!pits && pits.status().code() == StatusCode::kNotFound)
    pits = std::vector<PointInTime>{};  // the recovery site holds none yet
  if (!pits) {
    status["peer_error"] = pits.status().message();
    return status;
  }
  status["pits"] = pits->size();
  {
    std::lock_guard lock(mu_);
    runs_[group.name].known_pits = pits->size();
  }
  // PITs made before this site kept its own record (an upgraded evacd) still
  // count: the recovery site's newest is as good as ours.
  if (!pits->empty() && (status["newest_pit"].is_null() ||
                         pits->back().created_at > status["newest_pit"]["created_at"].get<std::int64_t>())) {
    const PointInTime& newest = pits->back();
    std::int64_t lag = std::max<std::int64_t>(0, now() - newest.created_at);
    status["newest_pit"] = {{"id", newest.id}, {"created_at", newest.created_at}};
    status["lag_seconds"] = lag;
    status["lag_since"] = "newest_pit";
    status["rpo_met"] = lag <= group.rpo_seconds;
  }
  return status;
}

// ---- metrics -----------------------------------------------------------------------------

namespace {

std::string label_value(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

// Collects samples per metric so each family prints under one HELP/TYPE.
class Exposition {
 public:
  void add(const std::string& name, const std::string& type, const std::string& help, const std::string& labels,
           double value) {
    auto& f = families_[name];
    if (f.type.empty()) {
      order_.push_back(name);
      f.type = type;
      f.help = help;
    }
    std::ostringstream line;
    line << name << "{" << labels << "} ";
    if (value == static_cast<double>(static_cast<std::int64_t>(value)))
      line << static_cast<std::int64_t>(value);
    else
      line << value;
    f.samples.push_back(line.str());
  }
  std::string text() const {
    std::string out;
    for (const auto& name : order_) {
      const auto& f = families_.at(name);
      out += "# HELP " + name + " " + f.help + "\n# TYPE " + name + " " + f.type + "\n";
      for (const auto& s : f.samples) out += s + "\n";
    }
    return out;
  }

 private:
  struct Family {
    std::string type, help;
    std::vector<std::string> samples;
  };
  std::vector<std::string> order_;
  std::map<std::string, Family> families_;
};

}  // namespace

std::string ReplicationService::prometheus_metrics() {
  Exposition m;
  auto groups = site_.list_groups();
  if (groups) {
    for (const auto& g : *groups) {
      if (g.protected_site != site_.identity().name) continue;
      json st = replication_state(g);
      std::string labels = "group=\"" + label_value(g.name) + "\",recovery_site=\"" + label_value(g.recovery_site) + "\"";
      m.add("evac_group_rpo_seconds", "gauge", "The group's recovery point objective.", labels,
            static_cast<double>(g.rpo_seconds));
      m.add("evac_group_lag_seconds", "gauge",
            "Age of the newest point in time (before the first: time since the group was created).", labels,
            st["lag_seconds"].get<double>());
      m.add("evac_group_rpo_met", "gauge", "1 if the lag is within the RPO, else 0.", labels, st["rpo_met"].get<bool>() ? 1 : 0);
      if (st.contains("known_pits"))
        m.add("evac_group_points_in_time", "gauge", "Points in time at the recovery site, as last seen.", labels,
              st["known_pits"].get<double>());
      m.add("evac_group_cycles_total", "counter", "Replication cycles ended, by result.", labels + ",result=\"success\"",
            st["cycles"]["succeeded"].get<double>());
      m.add("evac_group_cycles_total", "counter", "Replication cycles ended, by result.", labels + ",result=\"failure\"",
            st["cycles"]["failed"].get<double>());
      m.add("evac_group_bytes_sent_total", "counter", "Bytes sent to the recovery site by completed cycles.", labels,
            st["bytes_sent_total"].get<double>());
      if (!st["last_success"].is_null())
        m.add("evac_group_last_cycle_duration_seconds", "gauge", "Duration of the newest successful cycle.", labels,
              st["last_success"]["duration_seconds"].get<double>());
      m.add("evac_group_sync_in_progress", "gauge", "1 while a cycle of the group runs.", labels,
            st["sync"]["running"].get<bool>() ? 1 : 0);
      if (st["sync"]["running"].get<bool>())
        m.add("evac_group_sync_bytes_sent", "gauge", "Bytes sent so far by the running cycle.", labels,
              st["sync"]["bytes_sent"].get<double>());
      m.add("evac_group_max_rate_bytes", "gauge", "The group's --max-rate in bytes per second (0: unlimited).", labels,
            static_cast<double>(g.max_rate_bytes));
    }
  }
  auto peers = site_.peer_statuses();
  if (peers)
    for (const auto& p : *peers)
      m.add("evac_peer_connected", "gauge", "1 if the paired site answered the last heartbeat.",
            "site=\"" + label_value(p.record.site) + "\"", p.connected ? 1 : 0);
  m.add("evac_up", "gauge", "1: this evacd answers; the scrape error counts if it does not.",
        "site=\"" + label_value(site_.identity().name) + "\"", 1);
  return m.text();
}

Result<json> ReplicationService::verify_group(const std::string& name, const std::string& pit_id) {
  auto group = site_.get_group(name);
  if (group && group->protected_site == site_.identity().name) {
    auto peer = site_.store().find_peer(group->recovery_site);
    if (!peer) return peer.status();
    if (!peer->has_value()) return failed_precondition("recovery site '" + group->recovery_site + "' is not paired");
    // Reading every block of a large PIT takes as long as reading the disks
    // there (minutes per 100 GiB): waited for as long as the CLI waits for
    // this call, with TCP keepalive noticing a peer host gone meanwhile.
    return site_.peer_client(**peer).verify_replica(name, pit_id, std::chrono::hours(1));
  }
  if (!group && group.status().code() != StatusCode::kNotFound) return group.status();
  // Not protected here: the PITs this site holds as a recovery site.
  EVAC_ASSIGN_OR_RETURN(ReplicationAdapter * adapter, engine_of(name));
  auto v = adapter->verify_pit(name, pit_id);
  if (!v) {
    if (v.status().code() == StatusCode::kNotFound && !group)
      return not_found("this site neither protects a group '" + name + "' nor holds points in time of one",
                       "list groups with `evac group list` here, or at the other site");
    return v.status();
  }
  return to_json(*v);
}

// ---- recovery site ---------------------------------------------------------------------

Result<std::optional<GroupRecord>> ReplicationService::group_protected_by(const std::string& peer_site,
                                                                         const std::string& group) {
  auto copy = site_.store().find_peer_copy(peer_site);
  if (!copy) return copy.status();
  if (!copy->has_value()) return std::optional<GroupRecord>();
  auto doc = parse_json_or_discarded((*copy)->document);
  const auto groups = doc.is_object() ? doc.find("groups") : doc.end();
  if (groups == doc.end() || !groups->is_array()) return std::optional<GroupRecord>();
  for (const auto& g : *groups) {
    if (!g.is_object() || g.value("name", json()) != group) continue;
    // The epoch fences this site's PITs: read strictly, never narrowed.
    auto read = peer_group_from_json(g);
    if (!read) return read.status().with_context("the configuration of site '" + peer_site + "'");
    if (read->recovery_site == site_.identity().name) return std::optional<GroupRecord>(std::move(*read));
  }
  return std::optional<GroupRecord>();
}

Result<std::int64_t> ReplicationService::caller_group_epoch(const PeerRecord& caller, const std::string& group) {
  EVAC_ASSIGN_OR_RETURN(auto g, group_protected_by(caller.site, group));
  if (g) return g->epoch;
  return permission_denied("site '" + caller.site + "' does not protect a group '" + group + "' to site '" +
                               site_.identity().name + "'",
                           "create the group at the protected site first; its configuration reaches this site with it");
}

Status ReplicationService::check_caller_protects(const PeerRecord& caller, const std::string& group) {
  return caller_group_epoch(caller, group).status();
}

Status ReplicationService::check_caller_may_write(const PeerRecord& caller, const std::string& group) {
  auto epoch = caller_group_epoch(caller, group);
  if (!epoch) return epoch.status();
  // The caller's copy is stale once this site took the group over at an
  // epoch not older than the caller's (a failover while it was away): its
  // cycles must not become PITs here, where a test or a later recovery
  // would take them for the newest state.
  auto owner = site_.ownership(group, caller.site, *epoch);
  if (!owner) return owner.status();
  if (owner->owner != site_.identity().name) return Status::ok();
  return failed_precondition("group '" + group + "' is live at site '" + site_.identity().name + "' since run " + owner->run +
                                 " (epoch " + std::to_string(owner->epoch) + "): site '" + caller.site +
                                 "''s copy is stale and fenced",
                             "reprotect at '" + site_.identity().name + "' to replicate the other way");
}

Result<json> ReplicationService::handle_verify(const PeerRecord& caller, const std::string& group,
                                               const std::string& pit_id) {
  EVAC_RETURN_IF_ERROR(check_caller_protects(caller, group));
  EVAC_ASSIGN_OR_RETURN(ReplicationAdapter * adapter, engine_of(group));
  auto v = adapter->verify_pit(group, pit_id);
  if (!v) return v.status();
  return to_json(*v);
}

Result<json> ReplicationService::handle_pits(const PeerRecord& caller, const std::string& group) {
  EVAC_RETURN_IF_ERROR(check_caller_protects(caller, group));
  EVAC_ASSIGN_OR_RETURN(ReplicationAdapter * adapter, engine_of(group));
  EVAC_ASSIGN_OR_RETURN(auto pits, adapter->list_pits(group));
  return to_json(pits);
}

}  // namespace evac
