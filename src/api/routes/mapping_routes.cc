// Inventory mappings: which network, storage pool or compute provider here
// stands for which at a paired site.
#include <cstdint>
#include <limits>

#include "api/request.h"
#include "api/routes/routes.h"

namespace evac {
using nlohmann::json;

namespace {
using Access = ApiRouter::Access;
using Context = ApiRouter::Context;

Result<json> create_mapping(SiteService& site, Context& c) {
  EVAC_ASSIGN_OR_RETURN(auto f, body_fields(c.request, "a mapping"));
  // Sources and targets are inventory names ("bridge:br0" included).
  constexpr std::size_t kMaxInventoryName = 256;
  EVAC_ASSIGN_OR_RETURN(auto kind, f->required_text("kind", 32));
  EVAC_ASSIGN_OR_RETURN(auto source, f->required_text("source", kMaxInventoryName));
  EVAC_ASSIGN_OR_RETURN(auto target, f->required_text("target", kMaxInventoryName));
  EVAC_ASSIGN_OR_RETURN(auto peer, f->text("peer_site", 64));
  EVAC_ASSIGN_OR_RETURN(auto test_network, f->text("test_network", kMaxInventoryName));
  EVAC_RETURN_IF_ERROR(f->finish());
  auto k = mapping_kind_from_name(kind);
  if (!k) return invalid_argument("mapping kind '" + kind + "' is unknown", "use network, storage or compute");
  EVAC_ASSIGN_OR_RETURN(auto m, site.create_mapping(MappingCreateRequest{*k, peer, source, target,
                                                                         test_network.value_or("")}));
  return to_json(m);
}

}  // namespace

void add_mapping_routes(ApiRouter& router, RouteServices& services) {
  SiteService& site = services.site;
  router.add("GET", "/api/v1/mappings", Access::kOperator, "Inventory mappings", [&site](Context&) -> Result<json> {
    EVAC_ASSIGN_OR_RETURN(auto mappings, site.list_mappings());
    return list_json(mappings);
  });
  router.add(
      "POST", "/api/v1/mappings", Access::kOperator, "Create an inventory mapping (kind: network, storage or compute)",
      [&site](Context& c) { return create_mapping(site, c); }, 201);
  router.add("DELETE", "/api/v1/mappings/{id}", Access::kOperator, "Delete an inventory mapping",
             [&site](Context& c) -> Result<json> {
               EVAC_ASSIGN_OR_RETURN(std::int64_t id, bounded_integer(c.params[0], 1, std::numeric_limits<std::int64_t>::max(),
                                                                      "mapping id", "`evac mapping list` shows the ids"));
               EVAC_RETURN_IF_ERROR(site.delete_mapping(id));
               return json{{"deleted", id}};
             });
}

}  // namespace evac
