#include "service/runs/steps/reprotect_steps.h"

#include "core/json_decode.h"

namespace evac {

using engine::Step;
using nlohmann::json;

Result<json> reprotect_peer(StepEnv& env, const Step& step, const RunRow& run, const RunContext& ctx, const RunGroup& g) {
  json vms = json::array();
  for (const auto& [name, vm] : ctx.vms)
    if (vm.group == g.name) vms.push_back({{"name", name}, {"uuid", vm.placeholder_uuid}, {"source_uuid", vm.source_uuid}});
  // It defines a placeholder per VM there: minutes for a large group, but
  // no longer than the step has left.
  auto wait = within(step, std::chrono::duration_cast<std::chrono::seconds>(kBulkCallTimeout));
  if (!wait) return wait.status();
  auto r = env.site.peer_client(g.protected_site)
               .reprotect(g.name, json{{"epoch", g.epoch}, {"run", run.id}, {"vms", vms}}, *wait);
  if (!r) return r.status();
  return *r;
}

Result<json> protect_here(StepEnv& env, const RunContext& ctx, const RunGroup& g) {
  auto existing = env.site.store().find_group(g.name);
  if (!existing) return existing.status();
  if (existing->has_value()) {
    if ((*existing)->protected_site == ctx.site && (*existing)->recovery_site == g.protected_site)
      return json{{"group", g.name}, {"recovery_site", g.protected_site}, {"epoch", (*existing)->epoch}};
    return failed_precondition("site '" + ctx.site + "' already has a group '" + g.name + "' toward '" +
                               (*existing)->recovery_site + "'");
  }
  GroupRecord rec;
  rec.name = g.name;
  rec.protected_site = ctx.site;
  rec.recovery_site = g.protected_site;
  // The settings came from the former protected site's configuration,
  // checked when the run started (not by an older evacd, which started
  // runs whose context is read here again): in an operator's bounds, or
  // refused before the group is recorded.
  auto settings = JsonFields::of(g.settings, "the settings of group '" + g.name + "' a reprotect carries over");
  if (!settings) return settings.status();
  auto rpo = settings->integer("rpo_seconds", 1, kMaxRpo.count());
  auto keep_pits = settings->integer_as<int>("keep_pits", 1, kMaxKeptPits);
  auto keep_hourly = settings->integer_as<int>("keep_hourly", 0, kMaxKeptPits);
  auto keep_daily = settings->integer_as<int>("keep_daily", 0, kMaxKeptPits);
  auto max_rate = settings->integer_as<std::uint64_t>("max_rate_bytes", 0, kMaxByteRate);
  // Absent from the contexts of runs started before groups had engines.
  auto replication = settings->text("replication_engine");
  for (const Status& s : {rpo.status(), keep_pits.status(), keep_hourly.status(), keep_daily.status(),
                          max_rate.status(), replication.status(), settings->finish()})
    if (!s) return s;
  // The reverse direction keeps the engine: the replicas it reads back from
  // are that engine's.
  if (*replication) {
    EVAC_RETURN_IF_ERROR(check_replication_kind(**replication));
    rec.replication = **replication;
  }
  rec.rpo_seconds = rpo->value_or(rec.rpo_seconds);
  rec.keep_pits = keep_pits->value_or(rec.keep_pits);
  rec.keep_hourly = keep_hourly->value_or(rec.keep_hourly);
  rec.keep_daily = keep_daily->value_or(rec.keep_daily);
  rec.max_rate_bytes = max_rate->value_or(rec.max_rate_bytes);
  rec.epoch = g.epoch;
  rec.created_at = env.site.now();
  for (const auto& [name, vm] : ctx.vms)
    if (vm.group == g.name)
      rec.vms.push_back(GroupVmRecord{vm.provider, name, vm.placeholder_uuid, vm.source_uuid, vm.source_provider});
  Status st = env.site.store().transaction([&]() -> Status {
    EVAC_RETURN_IF_ERROR(env.site.store().add_group(rec));
    // They are protected VMs now, no longer placeholders kept for the peer.
    for (const auto& v : rec.vms) EVAC_RETURN_IF_ERROR(env.site.store().remove_hosted_placeholder(v.vm_uuid));
    return env.site.store().bump_config_version();
  });
  if (!st.is_ok()) return st;
  return json{{"group", g.name}, {"recovery_site", g.protected_site}, {"epoch", g.epoch}, {"vms", rec.vms.size()}};
}

Result<json> release_replicas(StepEnv& env, const RunGroup& g) {
  if (!env.replication) return json{{"released", false}, {"why", "this site does not replicate"}};
  auto released = env.replication->release_replicas_here(g.name);
  if (!released) return released.status();
  json out = released_json(*released);
  if (!released->kept_because.empty()) {
    EVAC_RETURN_IF_ERROR(env.site.store().add_event(
        EventRecord{0, env.site.now(), "warning", "replicas_kept", g.name,
                    "kept " + std::to_string(released->kept_pits.size()) + " PIT(s) of group '" + g.name +
                        "' that a VM still reads through: " + released->kept_because}));
  }
  return out;
}

Result<json> sync_reverse(StepEnv& env, const RunGroup& g) {
  if (!env.replication) return unsupported("this site does not replicate");
  // The peer accepts cycles of groups its copy of our configuration
  // names: make sure it has the one with this group.
  EVAC_RETURN_IF_ERROR(env.site.push_config_to(g.protected_site));
  auto pit = env.replication->reverse_group(g.name);
  if (!pit) return pit.status();
  std::uint64_t size = 0;
  for (const auto& d : pit->disks) size += d.size_bytes;
  return json{{"pit", pit->id}, {"bytes_sent", pit->bytes_sent}, {"disk_bytes", size}};
}

Result<json> flatten_disks(const Target& t) { return flatten_vm_disks(*t.provider, t.id); }

}  // namespace evac
