#include "peer/peer_transport.h"

namespace evac {

Result<HttpsClient> HttpsPeerTransport::client_for(const PeerEndpoint& peer) const {
  if (peer.pin.empty()) return internal_error("refusing to call a peer without a pinned key");
  HttpsClientOptions options;
  options.base_url = peer.url;
  options.server_pin = peer.pin;
  options.client_cert_path = cert_path_;
  options.client_key_path = key_path_;
  options.timeout = timeout_;
  options.connect_timeout = std::min(timeout_, std::chrono::milliseconds(3000));
  return HttpsClient(options);
}

Result<nlohmann::json> HttpsPeerTransport::call(const PeerEndpoint& peer, const std::string& method,
                                                const std::string& path, const std::optional<nlohmann::json>& body) {
  auto client = client_for(peer);
  if (!client) return client.status();
  return client->call(method, path, body);
}

Result<std::string> HttpsPeerTransport::call_bytes(const PeerEndpoint& peer, const std::string& method,
                                                   const std::string& path, const std::string& body,
                                                   std::chrono::milliseconds timeout) {
  auto client = client_for(peer);
  if (!client) return client.status();
  HttpsClientOptions options = client->options();
  options.timeout = timeout;
  return HttpsClient(options).call_bytes(method, path, body);
}

}  // namespace evac
