// This site's inventory: its compute providers and their VMs, networks and
// storage pools.
#include "api/request.h"
#include "api/routes/routes.h"
#include "core/model_json.h"

namespace evac {
using nlohmann::json;

namespace {
using Access = ApiRouter::Access;
using Context = ApiRouter::Context;
}  // namespace

void add_inventory_routes(ApiRouter& router, RouteServices& services) {
  SiteService& site = services.site;
  router.add("GET", "/api/v1/inventory/providers", Access::kOperator, "Compute providers and whether they answer",
             [&site](Context&) -> Result<json> { return site.providers_status(); });
  router.add("GET", "/api/v1/inventory/vms", Access::kOperator, "VMs of every compute provider (?provider=NAME)",
             [&site](Context& c) -> Result<json> {
               EVAC_ASSIGN_OR_RETURN(json out, site.list_vms(query_param(c.request, "provider")));
               for (auto& vm : out) vm.erase("native");  // the native definition is for sites, not listings
               return out;
             });
  router.add("GET", "/api/v1/inventory/vms/{vm}", Access::kOperator, "One VM by name, UUID or PROVIDER/NAME",
             [&site](Context& c) -> Result<json> {
               EVAC_ASSIGN_OR_RETURN(auto vm, site.find_vm(c.params[0]));
               return json(vm);
             });
  router.add("GET", "/api/v1/inventory/networks", Access::kOperator, "Networks (?provider=NAME)",
             [&site](Context& c) -> Result<json> {
               EVAC_ASSIGN_OR_RETURN(auto networks, site.list_networks(query_param(c.request, "provider")));
               return json(networks);
             });
  router.add("GET", "/api/v1/inventory/storage-pools", Access::kOperator, "Storage pools (?provider=NAME)",
             [&site](Context& c) -> Result<json> {
               EVAC_ASSIGN_OR_RETURN(auto pools, site.list_storage_pools(query_param(c.request, "provider")));
               return json(pools);
             });
}

}  // namespace evac
