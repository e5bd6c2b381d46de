// The API about itself: liveness, its own OpenAPI document, and the
// metrics Prometheus scrapes.
#include <cstdint>
#include <string>
#include <vector>

#include "api/routes/routes.h"

namespace evac {
using nlohmann::json;

namespace {
using Access = ApiRouter::Access;
using Context = ApiRouter::Context;
}  // namespace

void add_health_routes(ApiRouter& router, RouteServices& services) {
  router.add("GET", "/api/v1/health", Access::kPublic, "Liveness: the site's name and API version",
             [&site = services.site](Context&) -> Result<json> {
               return json{{"status", "ok"}, {"site", site.identity().name}, {"api", kApiVersion}};
             });
  router.add("GET", "/api/v1/openapi.json", Access::kOperator, "This document",
             [&router](Context&) -> Result<json> { return router.openapi(); });
  router.add("GET", "/metrics", Access::kOperator, "Prometheus metrics (text exposition format; bearer token)",
             [&services](Context& c) -> Result<json> {
               std::string text = services.replication ? services.replication->prometheus_metrics() : std::string();
               c.content_type = "text/plain; version=0.0.4; charset=utf-8";
               return json::binary(std::vector<std::uint8_t>(text.begin(), text.end()));
             });
}

}  // namespace evac
