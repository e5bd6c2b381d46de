// How one evacd reaches a paired site. The real transport is HTTPS with
// mutual TLS and a pinned server key; unit tests plug in a fake that routes
// calls straight into another in-process site.
#pragma once

#include <chrono>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "core/status.h"
#include "net/https_client.h"

namespace evac {

struct PeerEndpoint {
  std::string url;  // https://host:port
  std::string pin;  // the peer's public-key pin; the call fails if it differs
};

class PeerTransport {
 public:
  virtual ~PeerTransport() = default;
  virtual Result<nlohmann::json> call(const PeerEndpoint& peer, const std::string& method, const std::string& path,
                                      const std::optional<nlohmann::json>& body) = 0;
  // Binary request and response bodies (replication streams, manifests),
  // and calls the peer takes long to answer: `timeout` bounds the whole call.
  virtual Result<std::string> call_bytes(const PeerEndpoint& peer, const std::string& method, const std::string& path,
                                         const std::string& body, std::chrono::milliseconds timeout) = 0;
};

// Replication batches and manifests are large; a thin link needs time.
inline constexpr std::chrono::milliseconds kBulkCallTimeout{300'000};

// The real one: presents this site's certificate as a TLS client
// certificate and pins the peer's.
class HttpsPeerTransport : public PeerTransport {
 public:
  HttpsPeerTransport(std::string cert_path, std::string key_path, std::chrono::milliseconds timeout)
      : cert_path_(std::move(cert_path)), key_path_(std::move(key_path)), timeout_(timeout) {}
  Result<nlohmann::json> call(const PeerEndpoint& peer, const std::string& method, const std::string& path,
                              const std::optional<nlohmann::json>& body) override;
  Result<std::string> call_bytes(const PeerEndpoint& peer, const std::string& method, const std::string& path,
                                 const std::string& body, std::chrono::milliseconds timeout) override;

 private:
  Result<HttpsClient> client_for(const PeerEndpoint& peer) const;
  std::string cert_path_;
  std::string key_path_;
  std::chrono::milliseconds timeout_;
};

}  // namespace evac
