// Site to site (mutual TLS): what a paired site's evacd calls here. The
// caller is authenticated by its pinned client certificate (the pairing
// route: by any certificate and the one-time secret its body carries).
#include <string>

#include "api/request.h"
#include "api/routes/routes.h"

namespace evac {
using nlohmann::json;

namespace {
using Access = ApiRouter::Access;
using Context = ApiRouter::Context;

void add_peer_site_routes(ApiRouter& router, SiteService& site) {
  router.add("POST", "/api/v1/peer/pair", Access::kPairing, "Redeem a pairing token (called by the other evacd)",
             [&site](Context& c) -> Result<json> {
               EVAC_ASSIGN_OR_RETURN(auto body, body_object(c.request));
               return site.handle_peer_pair(c.request.client_pin, body);
             });
  router.add("POST", "/api/v1/peer/heartbeat", Access::kPeer, "Heartbeat from a paired site",
             [&site](Context& c) -> Result<json> {
               EVAC_ASSIGN_OR_RETURN(auto body, body_object(c.request));
               return site.handle_peer_heartbeat(*c.peer, body);
             });
  router.add("POST", "/api/v1/peer/unpair", Access::kPeer, "A paired site unpairs",
             [&site](Context& c) -> Result<json> { return site.handle_peer_unpair(*c.peer); });
  router.add("GET", "/api/v1/peer/inventory", Access::kPeer, "Networks and storage pools, for mapping checks",
             [&site](Context& c) -> Result<json> { return site.handle_peer_inventory(*c.peer); });
  router.add(
      "POST", "/api/v1/peer/placeholders", Access::kPeer, "Register a placeholder VM",
      [&site](Context& c) -> Result<json> {
        EVAC_ASSIGN_OR_RETURN(auto body, body_object(c.request));
        return site.handle_peer_define_placeholder(*c.peer, body);
      },
      201);
  router.add("DELETE", "/api/v1/peer/placeholders/{uuid}", Access::kPeer, "Remove a placeholder VM",
             [&site](Context& c) -> Result<json> { return site.handle_peer_remove_placeholder(*c.peer, c.params[0]); });
  router.add("POST", "/api/v1/peer/groups/{group}/shutdown", Access::kPeer,
             "Stop a group's VMs here ({graceful, timeout_s}; the group's recovery site, recovering)",
             [&site](Context& c) -> Result<json> {
               EVAC_ASSIGN_OR_RETURN(auto body, body_object(c.request));
               return site.handle_peer_shutdown_group(*c.peer, c.params[0], body);
             });
  router.add("GET", "/api/v1/peer/groups/{group}/guest-agents", Access::kPeer,
             "Whether each running VM of a group answers its guest agent (the group's recovery site, checking "
             "readiness)",
             [&site](Context& c) -> Result<json> { return site.handle_peer_guest_agents(*c.peer, c.params[0]); });
  router.add("POST", "/api/v1/peer/groups/{group}/handover", Access::kPeer,
             "The group's recovery site took the live copy over ({owner, epoch, run}): fence the copy here",
             [&site](Context& c) -> Result<json> {
               EVAC_ASSIGN_OR_RETURN(auto body, body_object(c.request));
               return site.handle_peer_handover(*c.peer, c.params[0], body);
             });
  router.add("PUT", "/api/v1/peer/config-copy", Access::kPeer, "Store the paired site's protection configuration",
             [&site](Context& c) -> Result<json> {
               EVAC_ASSIGN_OR_RETURN(auto body, body_object(c.request));
               return site.handle_peer_config_copy(*c.peer, body);
             });
}

// The routes of this site's replication engines (a cycle's recovery half:
// begin, blocks, commit, abort for the built-in replicator), under
// /api/v1/peer/replication/<kind>/; the service checks the caller per group.
void add_peer_engine_routes(ApiRouter& router, RouteServices& services) {
  if (!services.replication) return;
  for (MountedPeerRoute& route : services.replication->engine_peer_routes()) {
    const std::size_t max_body = route.bulk ? router.limits().max_block_batch : 0;
    router.add(
        route.method, route.pattern, Access::kPeer, route.summary,
        [handle = std::move(route.handle)](Context& c) -> Result<json> { return handle(*c.peer, c.params, c.request.body); },
        200, max_body);
  }
}

// The points in time held here, and what the recovery site asks of the
// protected site before and during a recovery.
void add_peer_replication_routes(ApiRouter& router, RouteServices& services) {
  router.add("POST", "/api/v1/peer/replication/{group}/verify", Access::kPeer,
             "Verify a point in time held here (?pit=ID, default the newest)", [&services](Context& c) -> Result<json> {
               EVAC_ASSIGN_OR_RETURN(ReplicationService* replication, replication_of(services));
               return replication->handle_verify(*c.peer, c.params[0], query_param(c.request, "pit").value_or(""));
             });
  router.add("GET", "/api/v1/peer/replication/{group}/pits", Access::kPeer, "Points in time held here for a group",
             [&services](Context& c) -> Result<json> {
               EVAC_ASSIGN_OR_RETURN(ReplicationService* replication, replication_of(services));
               return replication->handle_pits(*c.peer, c.params[0]);
             });
  router.add("POST", "/api/v1/peer/groups/{group}/sync", Access::kPeer,
             "Run one cycle of a group now, or follow one ({cycle}), waiting up to {wait_ms} (at most 5 minutes) for "
             "its PIT; {done: false} if it is still going then (the group's recovery site, migrating)",
             [&services](Context& c) -> Result<json> {
               EVAC_ASSIGN_OR_RETURN(ReplicationService* replication, replication_of(services));
               EVAC_ASSIGN_OR_RETURN(auto body, body_object(c.request));
               return replication->handle_peer_sync(*c.peer, c.params[0], body);
             });
  router.add("GET", "/api/v1/peer/groups/{group}/backup-probe", Access::kPeer,
             "Whether the next cycle could read each VM of the group now (the group's recovery site, checking "
             "readiness)",
             [&services](Context& c) -> Result<json> {
               EVAC_ASSIGN_OR_RETURN(ReplicationService* replication, replication_of(services));
               return replication->handle_peer_backup_probe(*c.peer, c.params[0]);
             });
  router.add("GET", "/api/v1/peer/groups/{group}/fence-check", Access::kPeer,
             "Whether a fence here could make the group's disks read-only (the group's recovery site, checking "
             "readiness)",
             [&services](Context& c) -> Result<json> {
               EVAC_ASSIGN_OR_RETURN(ReplicationService* replication, replication_of(services));
               return replication->handle_peer_fence_check(*c.peer, c.params[0]);
             });
}

}  // namespace

void add_peer_routes(ApiRouter& router, RouteServices& services) {
  add_peer_site_routes(router, services.site);
  add_peer_engine_routes(router, services);
  add_peer_replication_routes(router, services);
  router.add("POST", "/api/v1/peer/groups/{group}/reprotect", Access::kPeer,
             "The caller owns the group's live copy and reprotects it ({epoch, run, vms}): this site's copies become "
             "its placeholders and seeds, and this site stops protecting the group",
             [&services](Context& c) -> Result<json> {
               EVAC_ASSIGN_OR_RETURN(RunService* runs, runs_of(services));
               EVAC_ASSIGN_OR_RETURN(auto body, body_object(c.request));
               return runs->handle_peer_reprotect(*c.peer, c.params[0], body);
             });
}

}  // namespace evac
