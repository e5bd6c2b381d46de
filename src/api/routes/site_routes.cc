// This site: its identity, pairing with other sites, and what it keeps for
// its paired sites (their placeholders, copies of their configuration).
#include <chrono>

#include "api/request.h"
#include "api/routes/routes.h"

namespace evac {
using nlohmann::json;

namespace {
using Access = ApiRouter::Access;
using Context = ApiRouter::Context;

// Keep in step with what evac's own documents need (see core/json_decode.h).
constexpr auto kMaxPairingTokenTtl = std::chrono::hours(24 * 7);

void add_pairing_routes(ApiRouter& router, RouteServices& services) {
  router.add(
      "POST", "/api/v1/pairing-tokens", Access::kOperator, "Create a one-time pairing token for another site",
      [&site = services.site](Context& c) -> Result<json> {
        EVAC_ASSIGN_OR_RETURN(auto f, body_fields(c.request, "a pairing token request"));
        EVAC_ASSIGN_OR_RETURN(auto ttl, f->duration("ttl", std::chrono::minutes(1), kMaxPairingTokenTtl));
        EVAC_RETURN_IF_ERROR(f->finish());
        return site.create_pairing_token(ttl.value_or(std::chrono::minutes(15)));
      },
      201);
  router.add("GET", "/api/v1/pairings", Access::kOperator, "Paired sites and their health",
             [&site = services.site](Context&) -> Result<json> {
               EVAC_ASSIGN_OR_RETURN(auto peers, site.peer_statuses());
               return list_json(peers);
             });
  router.add(
      "POST", "/api/v1/pairings", Access::kOperator, "Pair with the site that issued a pairing token",
      [&site = services.site](Context& c) -> Result<json> {
        EVAC_ASSIGN_OR_RETURN(auto f, body_fields(c.request, "a pairing"));
        EVAC_ASSIGN_OR_RETURN(auto token, f->required_text("token"));
        EVAC_ASSIGN_OR_RETURN(auto url, f->text("url", 2048));
        EVAC_RETURN_IF_ERROR(f->finish());
        EVAC_ASSIGN_OR_RETURN(auto peer, site.pair(token, url));
        return to_json(PeerStatus{peer, true});
      },
      201);
  router.add("DELETE", "/api/v1/pairings/{site}", Access::kOperator,
             "Unpair a site (?lost=true: one gone for good, whose groups live here)",
             [&services](Context& c) -> Result<json> {
               EVAC_ASSIGN_OR_RETURN(bool lost, flag_param(c.request, "lost"));
               if (lost) {
                 if (!services.runs) return unsupported("this evacd runs no recoveries", "unpair at a full evacd");
                 return services.runs->forget_lost_site(c.params[0]);
               }
               EVAC_RETURN_IF_ERROR(services.site.unpair(c.params[0]));
               return json{{"unpaired", c.params[0]}};
             });
}

}  // namespace

void add_site_routes(ApiRouter& router, RouteServices& services) {
  router.add("GET", "/api/v1/site", Access::kOperator, "This site's identity",
             [&site = services.site](Context&) -> Result<json> {
               const SiteIdentity& id = site.identity();
               return json{{"name", id.name}, {"url", id.url}, {"pin", id.pin}, {"schema_version", site.schema_version()}};
             });
  add_pairing_routes(router, services);
  router.add("GET", "/api/v1/placeholders", Access::kOperator, "Placeholders this site holds for its peers' groups",
             [&site = services.site](Context&) -> Result<json> {
               EVAC_ASSIGN_OR_RETURN(auto placeholders, site.list_hosted_placeholders());
               return list_json(placeholders);
             });
  router.add("GET", "/api/v1/peer-copies", Access::kOperator, "Copies of paired sites' protection configuration",
             [&site = services.site](Context&) -> Result<json> {
               EVAC_ASSIGN_OR_RETURN(auto copies, site.list_peer_copies());
               json out = json::array();
               for (const auto& c : copies) {
                 auto document = parse_json(c.document, "site '" + c.peer_site + "''s copy");
                 out.push_back({{"site", c.peer_site},
                                {"version", c.version},
                                {"received_at", c.received_at},
                                {"document", document ? *document : json()}});
               }
               return out;
             });
}

}  // namespace evac
