#include "service/run_service.h"

#include <algorithm>
#include <chrono>
#include <ctime>
#include <map>
#include <random>
#include <set>

#include <spdlog/spdlog.h>

#include "core/json_decode.h"
#include "core/plan_json.h"
#include "core/text.h"
#include "engine/plan_compiler.h"
#include "service/runs/run_context.h"

namespace evac {

using engine::Step;
using engine::StepSpec;
using nlohmann::json;

namespace {

constexpr std::string_view kOperations[] = {"test", "cleanup", "migrate", "failover", "reprotect", "failback"};

std::string new_run_id() {
  std::time_t now = std::time(nullptr);
  std::tm tm{};
  ::gmtime_r(&now, &tm);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", &tm);
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  char suffix[8];
  std::snprintf(suffix, sizeof suffix, "%04x", static_cast<unsigned>(rng() & 0xffff));
  return std::string(stamp) + "-" + suffix;
}

// A run whose groups cannot be read could hold any group: the caller refuses.
Result<std::vector<std::string>> run_group_names(const RunRow& run) {
  EVAC_ASSIGN_OR_RETURN(auto groups, run_groups_from_row(run.id, run.groups));
  std::vector<std::string> out;
  for (const auto& g : groups) out.push_back(g.name);
  return out;
}

}  // namespace

// ---- the service -------------------------------------------------------------------

RunService::RunService(SiteService& site, PlanService& plans, ReplicationService* replication,
                       engine::EngineOptions options)
    : site_(site),
      replication_(replication),
      plans_(plans),
      steps_(std::make_unique<RunSteps>(site, plans_, replication)),
      engine_(std::make_unique<engine::RunEngine>(site.store(), *steps_, options)) {}

RunService::~RunService() {
  engine_.reset();  // joins the runs' workers before the runner goes
}

Status RunService::resume_interrupted() { return engine_->resume_interrupted(); }

Result<std::vector<std::string>> RunService::check_no_conflicting_run(const std::string& plan, const std::string& operation,
                                                                      const std::vector<std::string>& groups) {
  auto open = site_.store().runs_in_state({"running", "waiting", "failed"});
  if (!open) return open.status();
  std::vector<std::string> failed_tests;
  for (const auto& other : *open) {
    EVAC_ASSIGN_OR_RETURN(auto names, run_group_names(other));
    for (const auto& g : names) {
      if (std::find(groups.begin(), groups.end(), g) == groups.end()) continue;
      // A failed test is what cleanup is for: cleanup closes it.
      if (operation == "cleanup" && other.operation == "test" && other.state == "failed") {
        failed_tests.push_back(other.id);
        break;
      }
      return failed_precondition("run " + other.id + " (" + other.operation + " of plan '" + other.plan + "') over group '" +
                                     g + "' is " + other.state + "; plan '" + plan + "' cannot " + operation + " it meanwhile",
                                 other.state == "failed" ? "resume it (`evac run resume " + other.id + "`) or cancel it (`evac run cancel " +
                                                               other.id + "`)"
                                                         : "wait for it (`evac run show " + other.id + " --follow`) or cancel it");
    }
  }
  return failed_tests;
}

Status RunService::check_no_test_left(const RunContext& ctx) {
  const auto& groups = ctx.groups;
  std::set<std::string> names;
  for (const auto& g : groups) names.insert(g.name);
  std::vector<std::string> left;
  if (replication_)
    for (const auto& g : groups) {
      auto copies = replication_->test_copies_held_here(g.name);
      if (copies)
        for (const auto& c : *copies)
          if (!c.live) left.push_back("test copy " + c.id + " of group '" + g.name + "'");
    }
  auto placeholders = site_.store().list_hosted_placeholders();
  if (!placeholders) return placeholders.status();
  std::set<std::string> providers;
  for (const auto& p : *placeholders)
    if (names.count(p.group)) providers.insert(p.provider);
  for (const auto& name : providers) {
    auto provider = site_.provider(name);
    if (!provider) continue;
    auto vms = (*provider)->list_test_vms();
    if (!vms) continue;  // a provider that cannot list them has none of ours
    for (const auto& t : *vms)
      if (names.count(t.group)) left.push_back("test VM " + t.name + " (run " + t.run + ")");
  }
  if (left.empty()) return Status::ok();
  std::string what;
  for (std::size_t i = 0; i < left.size() && i < 5; ++i) what += (i ? ", " : "") + left[i];
  if (left.size() > 5) what += ", and " + std::to_string(left.size() - 5) + " more";
  return failed_precondition("an earlier test is still set up: " + what, "clean it up first: `evac plan cleanup <plan>`");
}

Status RunService::check_request(const RunRequest& request, const RecoveryPlan& plan) {
  const std::string& op = request.operation;
  if (op == "reprotect")
    for (const auto& name : plan.groups) {
      EVAC_ASSIGN_OR_RETURN(auto own, site_.store().find_group(name));
      if (own.has_value())
        return failed_precondition("group '" + name + "' is protected from here to '" + own->recovery_site +
                                       "' already: there is nothing to reprotect",
                                   "to bring its VMs back, run `evac plan failback " + plan.name + "` at '" +
                                       own->recovery_site + "'");
    }
  if (!request.pit.empty() && op != "test" && op != "failover")
    return invalid_argument("--pit applies to test and failover runs only", "a migration recovers the final sync's PIT");
  return Status::ok();
}

Result<RunGroup> RunService::resolve_group(const RunRequest& request, const RecoveredGroup& g) {
  const std::string& op = request.operation;
  RunGroup out;
  out.name = g.name;
  out.protected_site = g.protected_site;
  out.test_networks = g.test_networks;
  out.source_networks = g.source_networks;
  out.source_pools = g.source_pools;
  out.settings = {{"rpo_seconds", g.rpo_seconds},
                  {"keep_pits", g.keep_pits},
                  {"keep_hourly", g.keep_hourly},
                  {"keep_daily", g.keep_daily},
                  {"max_rate_bytes", g.max_rate_bytes},
                  {"replication_engine", g.replication}};
  // Every operation checks first who owns the group's live copy.
  EVAC_ASSIGN_OR_RETURN(auto owner, site_.ownership(g.name, g.protected_site, g.epoch));
  const bool live_here = owner.owner == site_.identity().name;
  if (op == "reprotect") {
    if (!live_here)
      return failed_precondition("group '" + g.name + "' is not live here: its VMs run at '" + owner.owner + "'",
                                 "reprotect follows a migration or failover to this site: `evac plan migrate` or `failover`");
    out.epoch = owner.epoch;  // reprotect keeps the owner and its epoch
  } else {
    if (live_here && op != "cleanup")
      return failed_precondition("group '" + g.name + "' is already live here, recovered by run " + owner.run +
                                     " (epoch " + std::to_string(owner.epoch) + ")",
                                 "reprotect it to replicate back to '" + g.protected_site + "'");
    out.epoch = owner.epoch + 1;
  }
  if ((op == "test" || op == "failover") && replication_) {
    auto pits = replication_->pits_held_here(g.name);
    if (pits && !pits->empty()) {
      const PointInTime* chosen = &pits->back();
      if (!request.pit.empty()) {
        chosen = nullptr;
        for (const auto& p : *pits)
          if (p.id == request.pit) chosen = &p;
        if (!chosen)
          return not_found("group '" + g.name + "' has no point in time '" + request.pit + "' here",
                           "list them with `evac group pits " + g.name + "`");
      }
      out.pit = chosen->id;
      out.pit_created_at = chosen->created_at;
      out.pit_created_at_ms = chosen->created_at_ms;
    }
  }
  if (op == "failover") {
    // How long the protected site is known to have lived: what a failover
    // loses is at most what it took between the PIT's instant and then.
    auto peer = site_.store().find_peer(g.protected_site);
    if (peer && peer->has_value()) {
      const PeerRecord& p = **peer;
      if (p.last_seen_at_ms)
        out.protected_last_seen_ms = *p.last_seen_at_ms;
      else if (p.last_seen_at)
        out.protected_last_seen_ms = *p.last_seen_at * 1000;
    }
  }
  return out;
}

Result<RunContext> RunService::resolve_context(const RunRequest& request, const RecoveryPlan& plan) {
  RunContext ctx;
  ctx.operation = request.operation;
  ctx.site = site_.identity().name;
  ctx.plan = plan;
  EVAC_ASSIGN_OR_RETURN(auto groups, plans_.recovered_groups(plan));
  EVAC_ASSIGN_OR_RETURN(auto hosted, site_.store().list_hosted_placeholders());
  for (const auto& g : groups) {
    EVAC_ASSIGN_OR_RETURN(auto resolved, resolve_group(request, g));
    for (const auto& v : g.vms) {
      RunVm vm{v.name, g.name, v.uuid, v.provider, "", ""};
      for (const auto& h : hosted)
        if (h.group == g.name && h.source_uuid == v.uuid) {
          vm.placeholder_uuid = h.uuid;
          vm.provider = h.provider;
        }
      resolved.vms.push_back(v.name);
      ctx.vms[v.name] = std::move(vm);
    }
    ctx.groups.push_back(std::move(resolved));
  }
  return ctx;
}

Result<std::vector<StepSpec>> RunService::compile_steps(const RunContext& ctx) {
  std::vector<engine::RecoveryVm> vms;
  for (const auto& g : ctx.groups)
    for (const auto& name : g.vms) vms.push_back({name, g.name});
  const std::string& op = ctx.operation;
  EVAC_ASSIGN_OR_RETURN(auto steps, op == "test"        ? engine::compile_test(ctx.plan, vms)
                                    : op == "failover"  ? engine::compile_failover(ctx.plan, vms)
                                    : op == "migrate"   ? engine::compile_migrate(ctx.plan, vms)
                                    : op == "reprotect" ? engine::compile_reprotect(ctx.plan, vms)
                                    : op == "failback"  ? engine::compile_failback(ctx.plan, vms)
                                                        : engine::compile_cleanup(ctx.plan, vms));
  const std::map<std::string, int> took = earlier_step_times(ctx.plan.name, steps);
  for (auto& s : steps) {
    s.timeout_s = engine::default_step_timeout_s(s);
    if (auto t = took.find(s.name); t != took.end()) s.expected_ms = t->second;
    // Steps that call a VM's compute provider hold it: the engine runs at
    // most per_resource_limit of them at once per provider.
    if (!engine::step_kind_info(s.kind).calls_provider) continue;
    auto it = ctx.vms.find(s.params.value("vm", ""));
    if (it != ctx.vms.end() && !it->second.provider.empty()) s.resource = "provider:" + it->second.provider;
  }
  return steps;
}

// How long each step took before (by step name, the newest first): the
// engine starts the longest chains of a tier first. The plan's own last
// runs first; then the site's last runs of other plans, since a step's
// name is its VM's ("Wait for guest heartbeat: db01"), whatever plan ran
// it: a new plan over VMs drilled under another does not start blind.
std::map<std::string, int> RunService::earlier_step_times(const std::string& plan, const std::vector<StepSpec>& steps) {
  std::map<std::string, int> took;
  auto learn_from = [&](const std::vector<RunRow>& runs) {
    for (const auto& r : runs)
      if (auto done = site_.store().run_steps(r.id))
        for (const auto& st : *done)
          if (st.state == "succeeded" && st.started_at_ms && st.ended_at_ms && !took.count(st.name))
            took[st.name] = static_cast<int>(std::min<std::int64_t>(*st.ended_at_ms - *st.started_at_ms, 86'400'000));
  };
  if (auto own = site_.store().list_runs(plan, 3)) learn_from(*own);
  // Other plans' runs are read only for steps the plan's own did not time:
  // reading thousands of step records is on the way to the run's start.
  const bool all_timed = std::all_of(steps.begin(), steps.end(), [&](const StepSpec& s) { return took.count(s.name) > 0; });
  if (!all_timed) {
    if (auto recent = site_.store().list_runs(std::nullopt, 6)) {
      std::vector<RunRow> others;
      for (auto& r : *recent)
        if (r.plan != plan && others.size() < 3) others.push_back(std::move(r));
      learn_from(others);
    }
  }
  return took;
}

Result<RunRow> RunService::start(const RunRequest& request) {
  const std::string& op = request.operation;
  if (std::find(std::begin(kOperations), std::end(kOperations), op) == std::end(kOperations))
    return invalid_argument("unknown operation '" + op + "'", "use test, cleanup, migrate, failover, reprotect or failback");
  if ((op == "migrate" || op == "failover" || op == "failback") && request.confirm != request.plan)
    return invalid_argument(op + " changes which site runs the VMs of plan '" + request.plan + "': confirm it by naming the plan",
                            "add --confirm " + request.plan);
  EVAC_ASSIGN_OR_RETURN(auto plan, plans_.runnable_plan(request.plan));
  EVAC_RETURN_IF_ERROR(check_request(request, plan));
  EVAC_ASSIGN_OR_RETURN(auto ctx, resolve_context(request, plan));
  EVAC_ASSIGN_OR_RETURN(auto steps, compile_steps(ctx));
  std::vector<std::string> group_names;
  for (const auto& g : ctx.groups) group_names.push_back(g.name);

  std::lock_guard lock(start_mu_);
  EVAC_ASSIGN_OR_RETURN(auto closed_by_cleanup, check_no_conflicting_run(plan.name, op, group_names));
  if (op == "test") EVAC_RETURN_IF_ERROR(check_no_test_left(ctx));
  RunRow run;
  run.id = new_run_id();
  run.plan = plan.name;
  run.operation = op;
  run.started_by = request.started_by;
  run.created_at = site_.now();
  run.plan_document = plan_to_json(plan).dump();
  run.groups = run_groups_json(ctx).dump();
  EVAC_RETURN_IF_ERROR(engine_->start(run, std::move(steps)));
  for (const auto& id : closed_by_cleanup) EVAC_RETURN_IF_ERROR(engine_->cancel(id));
  EVAC_ASSIGN_OR_RETURN(auto stored, site_.store().find_run(run.id));
  if (!stored.has_value()) return internal_error("run " + run.id + " was started but is not in the store");
  return *stored;
}

Result<std::vector<RunRow>> RunService::list_runs(const std::optional<std::string>& plan, int limit) {
  return site_.store().list_runs(plan, limit);
}

Result<RunRow> RunService::get_run(const std::string& id) {
  auto r = site_.store().find_run(id);
  if (!r) return r.status();
  if (!r->has_value()) return not_found("no run " + id, "list runs with `evac run list`");
  return **r;
}

json RunService::step_progress(const std::string& run_id, const Step& step) {
  if (step.state == engine::StepState::kRunning && step.spec.kind == engine::StepKind::kSyncProtected)
    return steps_->peer_progress(run_id, step.idx);
  return evac::step_progress(step, replication_);
}

Result<std::vector<Step>> RunService::steps(const std::string& id) {
  auto run = get_run(id);
  if (!run) return run.status();
  return engine_->steps(id);
}

Status RunService::resume(const std::string& id) {
  auto run = get_run(id);
  if (!run) return run.status();
  // Under start_mu_: a failed run being resumed must not race a new run
  // over its groups.
  std::lock_guard lock(start_mu_);
  return engine_->resume(id);
}

Status RunService::ack(const std::string& id, int step) { return engine_->ack(id, step); }
Status RunService::cancel(const std::string& id) { return engine_->cancel(id); }
void RunService::wait_idle(const std::string& id) { engine_->wait_idle(id); }

json to_json(const RunRow& run) {
  json j = {{"id", run.id},
            {"plan", run.plan},
            {"operation", run.operation},
            {"state", run.state},
            {"started_by", run.started_by},
            {"created_at", run.created_at},
            {"ended_at", run.ended_at ? json(*run.ended_at) : json()},
            {"error", run.error}};
  j["groups"] = json::array();
  auto groups = run_groups_from_row(run.id, run.groups);
  if (!groups) {
    // Listed still, so the operator sees which run the store damaged.
    j["groups_error"] = groups.status().message();
    return j;
  }
  auto optional = [](const std::optional<std::int64_t>& v) { return v ? json(*v) : json(); };
  for (const auto& g : *groups)
    j["groups"].push_back({{"name", g.name},
                           {"pit", g.pit},
                           {"pit_created_at", optional(g.pit_created_at)},
                           {"pit_created_at_ms", optional(g.pit_created_at_ms)},
                           {"protected_last_seen_ms", optional(g.protected_last_seen_ms)}});
  return j;
}

json step_progress(const Step& step, ReplicationService* replication) {
  if (!replication || step.state != engine::StepState::kRunning || step.spec.kind != engine::StepKind::kSyncReverse) return nullptr;
  json sync = replication->sync_progress(step.spec.params.value("group", ""));
  // Another cycle of the group may still be ending before the reverse one
  // starts: that one is not the resync's progress.
  if (!sync.value("running", false) || sync.value("trigger", "") != "reverse") return nullptr;
  return sync;
}

json to_json(const Step& s, std::int64_t now_ms) {
  json j{{"idx", s.idx},
              {"name", s.spec.name},
              {"kind", engine::step_kind_name(s.spec.kind)},
              {"state", engine::step_state_name(s.state)},
              {"after", s.spec.after},
              {"resource", s.spec.resource},
              {"timeout_s", s.spec.timeout_s},
              {"expected_ms", s.spec.expected_ms},
              {"attempts", s.attempts},
              {"started_at_ms", s.started_at_ms ? json(*s.started_at_ms) : json()},
              {"ended_at_ms", s.ended_at_ms ? json(*s.ended_at_ms) : json()},
              {"error", s.error},
              {"result", s.result}};
  if (s.state == engine::StepState::kRunning && s.spec.timeout_s > 0 && s.started_at_ms) {
    const std::int64_t past_ms = now_ms - *s.started_at_ms - std::int64_t{s.spec.timeout_s} * 1000;
    if (past_ms > 0) j["overdue_s"] = past_ms / 1000;
  }
  return j;
}

}  // namespace evac
