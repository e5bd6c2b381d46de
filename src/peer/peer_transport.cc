#include "peer/peer_transport.h"

#include "net/https_client.h"

namespace evac {

Result<nlohmann::json> HttpsPeerTransport::call(const PeerEndpoint& peer, const std::string& method,
                                                const std::string& path, const std::optional<nlohmann::json>& body) {
  if (peer.pin.empty()) return internal_error("refusing to call a peer without a pinned key");
  HttpsClientOptions options;
  options.base_url = peer.url;
  options.server_pin = peer.pin;
  options.client_cert_path = cert_path_;
  options.client_key_path = key_path_;
  options.timeout = timeout_;
  options.connect_timeout = std::min(timeout_, std::chrono::milliseconds(3000));
  return HttpsClient(options).call(method, path, body);
}

}  // namespace evac
