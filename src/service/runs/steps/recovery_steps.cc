#include "service/runs/steps/recovery_steps.h"

#include "service/peer_cycle.h"

namespace evac {

using engine::Step;
using nlohmann::json;

namespace {

Result<std::string> pit_to_recover(StepEnv& env, const RunGroup& g) {
  if (!g.pit.empty()) return g.pit;
  if (!env.replication) return unsupported("this site does not replicate: no points in time to recover");
  auto pits = env.replication->pits_held_here(g.name);
  if (!pits) return pits.status();
  if (pits->empty()) return failed_precondition("group '" + g.name + "' has no point in time here");
  return pits->back().id;
}

// The run's promoted copy of the group (kNotFound before promote ran).
Result<TestCopy> live_copy(StepEnv& env, const RunRow& run, const RunGroup& g) {
  auto copies = env.replication->test_copies_held_here(g.name);
  if (!copies) return copies.status();
  for (const auto& c : *copies)
    if (c.live && c.owner == run.id) return c;
  return not_found("run " + run.id + " has not promoted group '" + g.name + "' yet");
}

}  // namespace

Result<json> sync_protected(StepEnv& env, const RunRow& run, const Step& step, const RunGroup& g) {
  PeerClient peer = env.site.peer_client(g.protected_site);
  auto followed = follow_peer_cycle(
      [&](const json& body, std::chrono::milliseconds answer_within) {
        return peer.sync_group(g.name, body, answer_within);
      },
      [&]() -> Result<std::chrono::milliseconds> {
        auto wait = within(step, kPeerFollowWait);
        if (!wait) return wait.status();
        return std::chrono::milliseconds(*wait);
      },
      kPeerAnswerMargin, 3, [&](const json& progress) { env.peer_progress.set(run.id, step.idx, progress); });
  env.peer_progress.erase(run.id, step.idx);
  return followed;
}

Result<json> shutdown_protected(StepEnv& env, const Step& step, const RunGroup& g, bool best_effort) {
  // A disaster: the site is probably gone, so a short, hard try whose
  // outcome is recorded. A migration: a graceful shutdown that must work.
  auto graceful = within(step, std::chrono::seconds(300));
  if (!graceful) return graceful.status();
  json body = best_effort ? json{{"graceful", false}, {"timeout_s", 0}}
                          : json{{"graceful", true}, {"timeout_s", graceful->count()}};
  // A graceful shutdown is waited for as long as the peer may take over it.
  const std::chrono::milliseconds wait = best_effort ? std::chrono::milliseconds(0) : *graceful + kPeerAnswerMargin;
  auto r = env.site.peer_client(g.protected_site).shutdown_group(g.name, body, wait);
  // Recorded as the peer said it, never indexed blindly: operator[] throws
  // on an answer that is no object.
  if (r) return json{{"reached", true}, {"stopped", r->is_object() ? r->value("stopped", json()) : json()}};
  if (!best_effort) return r.status();
  return engine::unreached_outcome("protected site '" + g.protected_site + "' did not answer (" +
                                       r.status().message() + "): its VMs of group '" + g.name +
                                       "' were not shut down there; it fences them when it comes back",
                                   json{{"reached", false}});
}

Result<json> handover(StepEnv& env, const RunRow& run, const RunContext& ctx, const RunGroup& g, bool best_effort) {
  auto r = env.site.peer_client(g.protected_site)
               .handover(g.name, json{{"owner", ctx.site}, {"epoch", g.epoch}, {"run", run.id}});
  if (r) return json{{"reached", true}, {"fenced", true}};
  if (!best_effort) return r.status();
  return engine::unreached_outcome("protected site '" + g.protected_site + "' did not answer (" +
                                       r.status().message() + ")",
                                   json{{"reached", false}});
}

Result<json> promote(StepEnv& env, const RunRow& run, const RunGroup& g) {
  if (!env.replication) return unsupported("this site does not replicate: no points in time to recover");
  // Asked again (a crash after it), the run's live copy is found, even if
  // a newer PIT arrived meanwhile: it is the copy the VMs will use.
  auto live = live_copy(env, run, g);
  if (!live && live.status().code() != StatusCode::kNotFound) return live.status();
  if (!live) {
    auto pit = pit_to_recover(env, g);
    if (!pit) return pit.status();
    live = env.replication->promote(g.name, *pit, run.id);
    if (!live) return live.status();
  }
  json out = {{"pit", live->pit_id}, {"disks", live->disks.size()}};
  // The PIT's instant, for the run report's RPO.
  if (auto pits = env.replication->pits_held_here(g.name)) {
    for (const auto& p : *pits) {
      if (p.id != live->pit_id) continue;
      out["pit_created_at"] = p.created_at;
      out["pit_created_at_ms"] = p.created_at_ms;
    }
  }
  return out;
}

Result<json> take_ownership(StepEnv& env, const RunRow& run, const RunContext& ctx, const RunGroup& g) {
  Status st = env.site.store().transaction([&]() -> Status {
    EVAC_RETURN_IF_ERROR(env.site.store().put_ownership(OwnershipRecord{g.name, ctx.site, g.epoch, env.site.now(), run.id}));
    return env.site.store().bump_config_version();  // so the protected site learns it when it comes back
  });
  if (!st.is_ok()) return st;
  json out = {{"owner", ctx.site}, {"epoch", g.epoch}};
  // A migration handed over already; a failover tells the old site if it
  // answers, else it learns from our configuration when it is back.
  if (ctx.operation == "failover") {
    auto told = handover(env, run, ctx, g, true);
    if (told) out["protected_site"] = *told;
  }
  return out;
}

Result<json> recover_vm(StepEnv& env, const RunRow& run, const RunContext& ctx, const RunVm& vm) {
  if (!env.replication) return unsupported("this site does not replicate: no points in time to recover");
  auto g = ctx.group(vm.group);
  if (!g) return g.status();
  if (vm.placeholder_uuid.empty())
    return failed_precondition("VM '" + vm.name + "' has no placeholder here", "protect it again at '" + (*g)->protected_site + "'");
  auto live = live_copy(env, run, **g);
  if (!live) return live.status();
  const std::map<std::string, std::string> disks = disks_of(vm, *live);
  auto provider = env.site.provider(vm.provider);
  if (!provider) return provider.status();
  // A placeholder that was once this VM's fenced copy (a failback) sits on
  // disks made read-only then. The group is live here now (ownership was
  // taken) and the VM is leaving them: they are released first, so that
  // a crash between the two leaves nothing read-only for good.
  auto before = (*provider)->get_vm(vm.placeholder_uuid);
  if (!before) return before.status();
  VmInfo leaving = *before;
  std::erase_if(leaving.disks, [&](const DiskInfo& d) {
    return std::any_of(disks.begin(), disks.end(), [&](const auto& target_path) { return target_path.second == d.path; });
  });
  Status released = leaving.disks.empty() ? Status::ok()
                                          : env.replication->release_old_disks(vm.group, (*g)->protected_site, {leaving});
  auto recovered = (*provider)->recover_placeholder(vm.placeholder_uuid, disks, run.id);
  if (!recovered) return recovered.status();
  json out = {{"vm", recovered->name}, {"uuid", recovered->uuid}, {"pit", live->pit_id}, {"disks", disks}};
  if (!released.is_ok()) out["old_disks"] = released.message();  // recorded; the VM is recovered either way
  return out;
}

}  // namespace evac
