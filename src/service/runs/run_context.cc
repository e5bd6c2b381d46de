#include "service/runs/run_context.h"

#include <limits>

#include "core/json_decode.h"
#include "core/plan_json.h"

namespace evac {

using nlohmann::json;

namespace {

constexpr std::int64_t kAnyInt64 = std::numeric_limits<std::int64_t>::max();

// A map of names to names, as the context writes it (an object of strings).
Result<std::map<std::string, std::string>> name_map(JsonFields& fields, std::string_view key) {
  std::map<std::string, std::string> out;
  const json* value = fields.value(key);
  if (value == nullptr || value->is_null()) return out;
  if (!value->is_object()) return internal_error(fields.what() + ": '" + std::string(key) + "' is not an object");
  for (const auto& [k, v] : value->items()) {
    if (!v.is_string()) return internal_error(fields.what() + ": '" + std::string(key) + "." + k + "' is not a name");
    out[k] = v.get<std::string>();
  }
  return out;
}

Result<RunVm> vm_from_json(const json& j, const std::string& group, const std::string& what) {
  auto f = JsonFields::of(j, what);
  if (!f) return f.status();
  RunVm vm;
  vm.group = group;
  for (auto [field, key] : {std::pair{&vm.name, "name"}, std::pair{&vm.source_uuid, "source_uuid"},
                            std::pair{&vm.source_provider, "source_provider"},
                            std::pair{&vm.placeholder_uuid, "placeholder_uuid"}, std::pair{&vm.provider, "provider"}}) {
    auto v = f->text(key, kMaxTextLength);
    if (!v) return v.status();
    *field = v->value_or("");
  }
  EVAC_RETURN_IF_ERROR(f->finish());
  if (vm.name.empty()) return internal_error(what + " has no name");
  return vm;
}

// Files the group and its VMs under `ctx`.
Status add_group_from_json(const json& j, const std::string& what, const std::string& run_id, RunContext& ctx) {
  auto f = JsonFields::of(j, what);
  if (!f) return f.status();
  RunGroup g;
  for (auto [field, key] : {std::pair{&g.name, "name"}, std::pair{&g.protected_site, "protected_site"},
                            std::pair{&g.pit, "pit"}}) {
    auto v = f->text(key, kMaxTextLength);
    if (!v) return v.status();
    *field = v->value_or("");
  }
  for (auto [field, key] : {std::pair{&g.pit_created_at, "pit_created_at"}, std::pair{&g.pit_created_at_ms, "pit_created_at_ms"},
                            std::pair{&g.protected_last_seen_ms, "protected_last_seen_ms"}}) {
    auto v = f->integer(key, 0, kAnyInt64);
    if (!v) return v.status();
    *field = *v;
  }
  auto epoch = f->integer("epoch", 0, kAnyInt64);
  if (!epoch) return epoch.status();
  g.epoch = epoch->value_or(0);
  for (auto [field, key] : {std::pair{&g.test_networks, "networks"}, std::pair{&g.source_networks, "source_networks"},
                            std::pair{&g.source_pools, "source_pools"}}) {
    auto v = name_map(*f, key);
    if (!v) return v.status();
    *field = std::move(*v);
  }
  if (const json* settings = f->value("settings"); settings != nullptr && !settings->is_null()) {
    if (!settings->is_object()) return internal_error(what + ": 'settings' is not an object");
    g.settings = *settings;
  }
  auto vms = f->list("vms");
  if (!vms) return vms.status();
  EVAC_RETURN_IF_ERROR(f->finish());
  if (g.name.empty()) return internal_error(what + " has no name");
  if (*vms != nullptr)
    for (const auto& jv : **vms) {
      auto vm = vm_from_json(jv, g.name, "a VM of group '" + g.name + "' in run " + run_id + "'s context");
      if (!vm) return vm.status();
      g.vms.push_back(vm->name);
      ctx.vms[vm->name] = std::move(*vm);
    }
  ctx.groups.push_back(std::move(g));
  return Status::ok();
}

Status add_groups_from_row(const std::string& run_id, const std::string& groups, RunContext& ctx) {
  auto list = parse_json_or_discarded(groups);
  if (!list.is_array())
    return internal_error("run " + run_id + "'s context is unreadable in the store",
                          "the store was altered or damaged: restore it from a backup");
  for (const auto& jg : list) EVAC_RETURN_IF_ERROR(add_group_from_json(jg, "a group of run " + run_id + "'s context", run_id, ctx));
  return Status::ok();
}

}  // namespace

Result<const RunVm*> RunContext::vm(const std::string& name) const {
  auto it = vms.find(name);
  if (it == vms.end()) return internal_error("the run has no VM '" + name + "' in its context");
  return &it->second;
}

Result<const RunGroup*> RunContext::group(const std::string& name) const {
  for (const auto& g : groups)
    if (g.name == name) return &g;
  return internal_error("the run has no group '" + name + "' in its context");
}

json run_groups_json(const RunContext& ctx) {
  json out = json::array();
  for (const auto& g : ctx.groups) {
    json vms = json::array();
    for (const auto& name : g.vms) {
      auto it = ctx.vms.find(name);
      if (it == ctx.vms.end()) continue;
      const RunVm& vm = it->second;
      vms.push_back({{"name", vm.name},
                       {"source_uuid", vm.source_uuid},
                       {"source_provider", vm.source_provider},
                       {"placeholder_uuid", vm.placeholder_uuid},
                     {"provider", vm.provider}});
    }
    json jg = {{"name", g.name},
               {"protected_site", g.protected_site},
               {"networks", g.test_networks},
               {"source_networks", g.source_networks},
               {"source_pools", g.source_pools},
               {"settings", g.settings},
               {"pit", g.pit},
               {"epoch", g.epoch},
               {"vms", vms}};
    if (g.pit_created_at) jg["pit_created_at"] = *g.pit_created_at;
    if (g.pit_created_at_ms) jg["pit_created_at_ms"] = *g.pit_created_at_ms;
    if (g.protected_last_seen_ms) jg["protected_last_seen_ms"] = *g.protected_last_seen_ms;
    out.push_back(std::move(jg));
  }
  return out;
}

Result<RunContext> run_context_from_row(const std::string& run_id, const std::string& operation, const std::string& site,
                                        const std::string& plan_document, const std::string& groups) {
  RunContext ctx;
  ctx.operation = operation;
  ctx.site = site;
  auto plan = plan_from_json(parse_json_or_discarded(plan_document));
  if (!plan) return plan.status().with_context("the plan run " + run_id + " started with");
  ctx.plan = std::move(*plan);
  EVAC_RETURN_IF_ERROR(add_groups_from_row(run_id, groups, ctx));
  return ctx;
}

Result<std::vector<RunGroup>> run_groups_from_row(const std::string& run_id, const std::string& groups) {
  RunContext ctx;
  EVAC_RETURN_IF_ERROR(add_groups_from_row(run_id, groups, ctx));
  return std::move(ctx.groups);
}

}  // namespace evac
