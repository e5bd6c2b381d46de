// Protection groups: the VMs this site protects toward a paired site, and
// their operational settings.
#include <chrono>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <utility>

#include "api/request.h"
#include "api/routes/routes.h"
#include "core/duration.h"

namespace evac {
using nlohmann::json;

namespace {
using Access = ApiRouter::Access;
using Context = ApiRouter::Context;

// Retention counts: only what fits an int gets to the service, which
// judges the value itself (and names the CLI flag in its answer).
constexpr int kMinKept = std::numeric_limits<int>::min();
constexpr int kMaxKept = std::numeric_limits<int>::max();

// Rates arrive as "50MiB/s" strings (or "0", "none") or as whole bytes per second.
Result<std::optional<std::uint64_t>> rate_field(JsonFields& fields, const char* key) {
  const json* v = fields.value(key);
  if (!v) return std::optional<std::uint64_t>();
  if (v->is_number()) {
    // Up to 1 TiB/s: beyond any link, and far from overflowing a byte count.
    EVAC_ASSIGN_OR_RETURN(std::int64_t n, checked_integer(*v, std::string("field '") + key + "'", 0, std::int64_t{1} << 40));
    return std::optional<std::uint64_t>(static_cast<std::uint64_t>(n));
  }
  if (!v->is_string())
    return invalid_argument(std::string("field '") + key + "' must be a rate like \"50MiB/s\", or 0 for unlimited");
  auto r = parse_byte_rate(v->get<std::string>());
  if (!r) return r.status().with_context(std::string("field '") + key + "'");
  return std::optional<std::uint64_t>(*r);
}

Result<json> create_group(SiteService& site, ReplicationService* replication, Context& c) {
  EVAC_ASSIGN_OR_RETURN(auto f, body_fields(c.request, "a protection group"));
  GroupCreateRequest req;
  EVAC_ASSIGN_OR_RETURN(req.name, f->required_text("name", 64));
  // VMs by name, UUID or PROVIDER/NAME.
  EVAC_ASSIGN_OR_RETURN(auto vms, f->text_list("vms", kMaxListItems, 256));
  if (!vms) return invalid_argument("field 'vms' must be a list of VM names");
  req.vms = std::move(*vms);
  EVAC_ASSIGN_OR_RETURN(req.recovery_site, f->text("recovery_site", 64));
  // The RPO's bound is the service's: a paired site's is checked against it too.
  EVAC_ASSIGN_OR_RETURN(auto rpo, f->duration("rpo", std::chrono::seconds(1), kMaxRpo));
  req.rpo_seconds = rpo.value_or(std::chrono::minutes(15)).count();
  for (auto [key, field] : {std::pair{"keep_pits", &req.keep_pits}, std::pair{"keep_hourly", &req.keep_hourly},
                            std::pair{"keep_daily", &req.keep_daily}}) {
    EVAC_ASSIGN_OR_RETURN(auto n, f->integer_as<int>(key, kMinKept, kMaxKept));
    if (n) *field = *n;
  }
  EVAC_ASSIGN_OR_RETURN(auto max_rate, rate_field(*f, "max_rate"));
  req.max_rate_bytes = max_rate.value_or(0);
  // Its bound and spelling are the service's (check_replication_kind).
  EVAC_ASSIGN_OR_RETURN(auto engine, f->text("replication_engine"));
  if (engine) req.replication = *engine;
  EVAC_RETURN_IF_ERROR(f->finish());
  // A group whose engine this evacd lacks could never replicate: refused
  // before its placeholders are made.
  // (Its spelling first: a kind that is no kind's name says how to write one.)
  EVAC_RETURN_IF_ERROR(check_replication_kind(req.replication));
  if (replication) EVAC_RETURN_IF_ERROR(replication->check_engine(req.replication));
  EVAC_ASSIGN_OR_RETURN(auto g, site.create_group(req));
  return site.group_json(g);
}

Result<json> change_settings(SiteService& site, ReplicationService* replication, Context& c) {
  EVAC_ASSIGN_OR_RETURN(auto f, body_fields(c.request, "the group's settings"));
  constexpr const char* kSettable = "settable: max_rate, keep_pits, keep_hourly, keep_daily";
  // Everything is parsed before anything changes.
  EVAC_ASSIGN_OR_RETURN(auto max_rate, rate_field(*f, "max_rate"));
  EVAC_ASSIGN_OR_RETURN(auto keep_pits, f->integer_as<int>("keep_pits", kMinKept, kMaxKept));
  EVAC_ASSIGN_OR_RETURN(auto keep_hourly, f->integer_as<int>("keep_hourly", kMinKept, kMaxKept));
  EVAC_ASSIGN_OR_RETURN(auto keep_daily, f->integer_as<int>("keep_daily", kMinKept, kMaxKept));
  // Never changes; said again (a document applied whole) it is accepted.
  EVAC_ASSIGN_OR_RETURN(auto engine, f->text("replication_engine"));
  if (Status unknown = f->finish(); !unknown)
    return invalid_argument(unknown.message() + ": it cannot be changed here", kSettable);
  if (!max_rate && !keep_pits && !keep_hourly && !keep_daily && !engine)
    return invalid_argument("nothing to change", std::string("pass e.g. {\"max_rate\": \"50MiB/s\"}; ") + kSettable);
  Result<GroupRecord> g = site.get_group(c.params[0]);
  if (g && engine) EVAC_RETURN_IF_ERROR(check_replication_unchanged(*g, *engine));
  if (keep_pits || keep_hourly || keep_daily) {
    g = site.set_group_retention(c.params[0], keep_pits, keep_hourly, keep_daily);
    if (!g) return g.status();
  }
  if (max_rate) {
    g = site.set_group_max_rate(c.params[0], *max_rate);
    if (!g) return g.status();
    if (replication) replication->rate_changed(g->name, g->max_rate_bytes);
  }
  if (!g) return g.status();
  return to_json(*g);
}

void add_group_member_routes(ApiRouter& router, SiteService& site) {
  router.add("POST", "/api/v1/groups/{name}/vms", Access::kOperator, "Protect one more VM in the group",
             [&site](Context& c) -> Result<json> {
               EVAC_ASSIGN_OR_RETURN(auto f, body_fields(c.request, "a VM to protect"));
               EVAC_ASSIGN_OR_RETURN(auto vm, f->required_text("vm", 256));
               EVAC_RETURN_IF_ERROR(f->finish());
               EVAC_ASSIGN_OR_RETURN(auto g, site.add_vm_to_group(c.params[0], vm));
               return to_json(g);
             });
  router.add("DELETE", "/api/v1/groups/{name}/vms/{vm}", Access::kOperator,
             "Stop protecting a VM (removes its placeholder)", [&site](Context& c) -> Result<json> {
               EVAC_ASSIGN_OR_RETURN(auto g, site.remove_vm_from_group(c.params[0], c.params[1]));
               return to_json(g);
             });
}

}  // namespace

void add_group_routes(ApiRouter& router, RouteServices& services) {
  SiteService& site = services.site;
  ReplicationService* replication = services.replication;
  router.add("GET", "/api/v1/groups", Access::kOperator, "Protection groups", [&site](Context&) -> Result<json> {
    EVAC_ASSIGN_OR_RETURN(auto groups, site.list_groups());
    json out = json::array();
    for (const auto& g : groups) {
      EVAC_ASSIGN_OR_RETURN(json j, site.group_json(g));
      out.push_back(std::move(j));
    }
    return out;
  });
  router.add(
      "POST", "/api/v1/groups", Access::kOperator, "Create a protection group and register its placeholders",
      [&site, replication](Context& c) { return create_group(site, replication, c); }, 201);
  router.add("GET", "/api/v1/groups/{name}", Access::kOperator, "One protection group, with its replication status",
             [&site, replication](Context& c) -> Result<json> {
               EVAC_ASSIGN_OR_RETURN(auto g, site.get_group(c.params[0]));
               EVAC_ASSIGN_OR_RETURN(json out, site.group_json(g));
               if (replication) out["replication"] = replication->group_replication_status(g);
               return out;
             });
  router.add("PUT", "/api/v1/groups/{name}/settings", Access::kOperator,
             "Change the group's operational settings: max_rate (\"50MiB/s\"; 0 or \"none\": unlimited), keep_pits, "
             "keep_hourly, keep_daily (retention, applied at the recovery site from the next cycle)",
             [&site, replication](Context& c) { return change_settings(site, replication, c); });
  router.add("DELETE", "/api/v1/groups/{name}", Access::kOperator,
             "Delete a protection group and its placeholders (?force=true: even if the recovery site is gone)",
             [&site](Context& c) -> Result<json> {
               EVAC_ASSIGN_OR_RETURN(bool force, flag_param(c.request, "force"));
               EVAC_ASSIGN_OR_RETURN(auto left_behind, site.delete_group(c.params[0], force));
               return json{{"deleted", c.params[0]}, {"left_behind", left_behind}};
             });
  add_group_member_routes(router, site);
}

}  // namespace evac
