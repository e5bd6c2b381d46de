// Alarms and notable events this site raised.
#include "api/request.h"
#include "api/routes/routes.h"

namespace evac {
using nlohmann::json;

namespace {
using Access = ApiRouter::Access;
using Context = ApiRouter::Context;
}  // namespace

void add_event_routes(ApiRouter& router, RouteServices& services) {
  router.add("GET", "/api/v1/events", Access::kOperator,
             "Alarms and notable events, newest first (?group=NAME, ?limit=N up to 1000, default 100)",
             [&site = services.site](Context& c) -> Result<json> {
               EVAC_ASSIGN_OR_RETURN(int limit, limit_param(c.request, 100, 1000));
               EVAC_ASSIGN_OR_RETURN(auto events, site.list_events(query_param(c.request, "group"), limit));
               json out = json::array();
               for (const auto& e : events)
                 out.push_back({{"id", e.id},
                                {"at", e.at},
                                {"severity", e.severity},
                                {"kind", e.kind},
                                {"group", e.group},
                                {"message", e.message},
                                {"count", e.count},
                                {"last_at", e.last_at ? json(*e.last_at) : json()}});
               return out;
             });
}

}  // namespace evac
