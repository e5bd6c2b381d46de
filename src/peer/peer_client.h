// The site-to-site API as calls: the one place on the calling side that
// spells its paths (the answering side mounts them in
// src/api/routes/peer_routes.cc). Every call is made by this site's evacd
// to a paired site's, over mutual TLS with the pinned key (peer_transport.h).
//
// A PeerClient is bound to one site through a Send that carries a call
// there: SiteService binds one that keeps the site's reachability record
// (`evac site status`), the pairing one bound to a bare endpoint. Bodies and
// answers stay JSON; each caller decodes the answer it expects strictly
// (core/json_decode.h): a peer's answer is as hostile as any input.
#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "core/status.h"

namespace evac {

class PeerClient {
 public:
  // `wait` > 0: the peer may take that long to answer (a call it does a
  // long job in); 0: the transport's default bound.
  using Send = std::function<Result<nlohmann::json>(const std::string& method, const std::string& path,
                                                    const std::optional<nlohmann::json>& body,
                                                    std::chrono::milliseconds wait)>;
  explicit PeerClient(Send send) : send_(std::move(send)) {}

  // ---- pairing and presence ----
  // Redeems a pairing token there: {site, url, pin, secret, ...} (site_service.h).
  Result<nlohmann::json> pair(const nlohmann::json& request);
  Result<nlohmann::json> unpair();
  // {site, config_version} -> {site, time, copy_version}.
  Result<nlohmann::json> heartbeat(const nlohmann::json& beat);
  // This site's configuration, as the peer keeps a copy of it.
  Result<nlohmann::json> put_config_copy(const nlohmann::json& config);
  // The peer's compute providers, networks and storage pools.
  Result<nlohmann::json> inventory();

  // ---- placeholders at the recovery site ----
  Result<nlohmann::json> create_placeholder(const nlohmann::json& spec);
  Result<nlohmann::json> delete_placeholder(const std::string& uuid);

  // ---- a group's VMs at the protected site, for the recovery site's readiness check ----
  Result<nlohmann::json> guest_agents(const std::string& group);
  Result<nlohmann::json> fence_check(const std::string& group);
  Result<nlohmann::json> backup_probe(const std::string& group);

  // ---- a recovery's calls to the protected site ----
  // A cycle of the group there, followed in bounded waits (service/peer_cycle.h).
  Result<nlohmann::json> sync_group(const std::string& group, const nlohmann::json& body, std::chrono::milliseconds wait);
  Result<nlohmann::json> shutdown_group(const std::string& group, const nlohmann::json& body,
                                        std::chrono::milliseconds wait);
  Result<nlohmann::json> handover(const std::string& group, const nlohmann::json& body);
  Result<nlohmann::json> reprotect(const std::string& group, const nlohmann::json& body, std::chrono::milliseconds wait);

  // ---- replication: the recovery site's copy ----
  // The points in time held there of the group (a list of PITs).
  Result<nlohmann::json> pits(const std::string& group);
  // Reads every block of the PIT (the newest if `pit` is empty) there.
  Result<nlohmann::json> verify_replica(const std::string& group, const std::string& pit, std::chrono::milliseconds wait);

 private:
  Send send_;
};

// Site-to-site paths spelled outside PeerClient's calls: the PITs a site
// holds of a group, and the prefix under which each replication engine's
// own routes are mounted (ReplicationAdapter::peer_routes: the engine
// spells the rest of the path, `path`).
namespace peer_paths {
std::string replication_pits(const std::string& group);
std::string replication_engine(const std::string& kind, const std::string& path);
}  // namespace peer_paths

}  // namespace evac
