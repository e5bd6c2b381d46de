// A protection group's replication, as an operator drives and follows it:
// cycles, their state, the points in time they made, verifying those.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>

#include "api/request.h"
#include "api/routes/routes.h"
#include "core/model_json.h"

namespace evac {
using nlohmann::json;

namespace {
using Access = ApiRouter::Access;
using Context = ApiRouter::Context;

// Starts a cycle (202 with its number), or follows one: the new point in
// time once it ends (200), or {done: false} (202) while it runs.
Result<json> sync_group(ReplicationService& replication, Context& c) {
  const std::string& group = c.params[0];
  EVAC_ASSIGN_OR_RETURN(bool wait, flag_param(c.request, "wait"));
  std::optional<std::uint64_t> follow;
  if (auto text = query_param(c.request, "cycle")) {
    EVAC_ASSIGN_OR_RETURN(std::int64_t cycle, bounded_integer(*text, 0, std::numeric_limits<std::int64_t>::max(),
                                                              "cycle", "follow a cycle number this site gave"));
    follow = static_cast<std::uint64_t>(cycle);
  }
  if (!follow && !wait) {
    EVAC_ASSIGN_OR_RETURN(auto cycle, replication.request_sync(group, SyncTrigger::kManual));
    c.status = 202;
    return json{{"group", group}, {"cycle", cycle}, {"done", false}};
  }
  // Bounded by the service: a cycle still running then is followed by the next call.
  EVAC_ASSIGN_OR_RETURN(json out, replication.follow_cycle(group, follow, wait ? std::chrono::milliseconds::max()
                                                                                         : std::chrono::milliseconds(0)));
  if (out["done"] == true) {
    c.status = 200;
  } else {
    c.status = 202;
    out["group"] = group;
  }
  return out;
}

}  // namespace

void add_replication_routes(ApiRouter& router, RouteServices& services) {
  router.add(
      "POST", "/api/v1/groups/{name}/sync", Access::kOperator,
      "Start a replication cycle of the group (202 with its number; a cycle already running is followed by one more), "
      "or follow one (?cycle=N). ?wait=true: return the new point in time (200) once the cycle ends, or 202 with "
      "{done: false} if it still runs after 5 minutes: follow it again",
      [&services](Context& c) -> Result<json> {
        EVAC_ASSIGN_OR_RETURN(ReplicationService* replication, replication_of(services));
        return sync_group(*replication, c);
      },
      202);
  router.add("GET", "/api/v1/groups/{name}/replication", Access::kOperator,
             "The group's replication as this site knows it: lag, RPO compliance, last cycles, the running cycle's "
             "progress",
             [&services](Context& c) -> Result<json> {
               EVAC_ASSIGN_OR_RETURN(ReplicationService* replication, replication_of(services));
               EVAC_ASSIGN_OR_RETURN(auto g, services.site.get_group(c.params[0]));
               return replication->replication_state(g);
             });
  router.add("GET", "/api/v1/groups/{name}/pits", Access::kOperator, "The group's points in time at its recovery site",
             [&services](Context& c) -> Result<json> {
               EVAC_ASSIGN_OR_RETURN(ReplicationService* replication, replication_of(services));
               EVAC_ASSIGN_OR_RETURN(auto pits, replication->group_pits(c.params[0]));
               // Asked here, at the protected site, which is alive: what a recovery
               // to each PIT would lose is the writes since its instant.
               const std::int64_t now_ms = services.site.now_ms();
               json out = json::array();
               for (const auto& p : pits) {
                 json j = to_json(p);
                 j["age_seconds"] = static_cast<double>(std::max<std::int64_t>(0, now_ms - p.created_at_ms)) / 1000.0;
                 out.push_back(std::move(j));
               }
               return out;
             });
  router.add("POST", "/api/v1/groups/{name}/verify", Access::kOperator,
             "Re-read a point in time (?pit=ID, default the newest) and compare every block with the source hashes its "
             "cycle recorded; at a recovery site this works with the protected site gone",
             [&services](Context& c) -> Result<json> {
               EVAC_ASSIGN_OR_RETURN(ReplicationService* replication, replication_of(services));
               return replication->verify_group(c.params[0], query_param(c.request, "pit").value_or(""));
             });
}

}  // namespace evac
