// The REST API's routes, one file per resource. Each add_*_routes adds its
// resource's routes to the router's table; the router calls them all.
// `services` is the router's own: it outlives the handlers that keep it.
#pragma once

#include <vector>

#include <nlohmann/json.hpp>

#include "api/router.h"

namespace evac {

void add_health_routes(ApiRouter& router, RouteServices& services);     // health, openapi.json, /metrics
void add_site_routes(ApiRouter& router, RouteServices& services);       // identity, pairing, what it keeps for peers
void add_inventory_routes(ApiRouter& router, RouteServices& services);
void add_mapping_routes(ApiRouter& router, RouteServices& services);
void add_group_routes(ApiRouter& router, RouteServices& services);
void add_replication_routes(ApiRouter& router, RouteServices& services);
void add_event_routes(ApiRouter& router, RouteServices& services);
void add_plan_routes(ApiRouter& router, RouteServices& services);
void add_run_routes(ApiRouter& router, RouteServices& services);
void add_peer_routes(ApiRouter& router, RouteServices& services);      // site to site (mutual TLS)

// The services a site may run without: a route that needs one answers
// "unsupported", saying so, where it is absent.
inline Result<ReplicationService*> replication_of(const RouteServices& services) {
  if (!services.replication) return unsupported("site '" + services.site.identity().name + "' runs without replication");
  return services.replication;
}
inline Result<RunService*> runs_of(const RouteServices& services) {
  if (!services.runs) return unsupported("this evacd runs no recovery plans");
  return services.runs;
}

// Records in their JSON form.
template <typename T>
nlohmann::json list_json(const std::vector<T>& items) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& i : items) out.push_back(to_json(i));
  return out;
}

}  // namespace evac
