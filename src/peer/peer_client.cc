#include "peer/peer_client.h"

namespace evac {

using nlohmann::json;

namespace {

constexpr std::chrono::milliseconds kDefaultWait{0};
const std::string kPeer = "/api/v1/peer";

std::string group_path(const std::string& group, const std::string& what) { return kPeer + "/groups/" + group + "/" + what; }
std::string replication(const std::string& group) { return kPeer + "/replication/" + group; }

}  // namespace

Result<json> PeerClient::pair(const json& request) { return send_("POST", kPeer + "/pair", request, kDefaultWait); }
Result<json> PeerClient::unpair() { return send_("POST", kPeer + "/unpair", json::object(), kDefaultWait); }
Result<json> PeerClient::heartbeat(const json& beat) { return send_("POST", kPeer + "/heartbeat", beat, kDefaultWait); }
Result<json> PeerClient::put_config_copy(const json& config) {
  return send_("PUT", kPeer + "/config-copy", config, kDefaultWait);
}
Result<json> PeerClient::inventory() { return send_("GET", kPeer + "/inventory", std::nullopt, kDefaultWait); }

Result<json> PeerClient::create_placeholder(const json& spec) {
  return send_("POST", kPeer + "/placeholders", spec, kDefaultWait);
}
Result<json> PeerClient::delete_placeholder(const std::string& uuid) {
  return send_("DELETE", kPeer + "/placeholders/" + uuid, std::nullopt, kDefaultWait);
}

Result<json> PeerClient::guest_agents(const std::string& group) {
  return send_("GET", group_path(group, "guest-agents"), std::nullopt, kDefaultWait);
}
Result<json> PeerClient::fence_check(const std::string& group) {
  return send_("GET", group_path(group, "fence-check"), std::nullopt, kDefaultWait);
}
Result<json> PeerClient::backup_probe(const std::string& group) {
  return send_("GET", group_path(group, "backup-probe"), std::nullopt, kDefaultWait);
}

Result<json> PeerClient::sync_group(const std::string& group, const json& body, std::chrono::milliseconds wait) {
  return send_("POST", group_path(group, "sync"), body, wait);
}
Result<json> PeerClient::shutdown_group(const std::string& group, const json& body, std::chrono::milliseconds wait) {
  return send_("POST", group_path(group, "shutdown"), body, wait);
}
Result<json> PeerClient::handover(const std::string& group, const json& body) {
  return send_("POST", group_path(group, "handover"), body, kDefaultWait);
}
Result<json> PeerClient::reprotect(const std::string& group, const json& body, std::chrono::milliseconds wait) {
  return send_("POST", group_path(group, "reprotect"), body, wait);
}

Result<json> PeerClient::pits(const std::string& group) {
  return send_("GET", peer_paths::replication_pits(group), std::nullopt, kDefaultWait);
}
Result<json> PeerClient::verify_replica(const std::string& group, const std::string& pit, std::chrono::milliseconds wait) {
  return send_("POST", replication(group) + "/verify" + (pit.empty() ? "" : "?pit=" + pit), std::nullopt, wait);
}

namespace peer_paths {
std::string replication_pits(const std::string& group) { return replication(group) + "/pits"; }
std::string replication_engine(const std::string& kind, const std::string& path) {
  return kPeer + "/replication/" + kind + "/" + path;
}
}  // namespace peer_paths

}  // namespace evac
