// A small HTTPS/JSON client over libcurl, used by the CLI (bearer token) and
// by evacd to reach a paired site (client certificate). The server is
// recognised by its public-key pin rather than by a CA, because every evac
// site starts with a self-signed certificate.
#pragma once

#include <chrono>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "core/status.h"

namespace evac {

struct HttpsClientOptions {
  std::string base_url;              // https://host:port
  std::string server_pin;            // "sha256//..."; empty: no pinning (only for a first contact that verifies otherwise)
  std::string bearer_token;          // Authorization: Bearer ...
  std::string client_cert_path;      // mutual TLS
  std::string client_key_path;
  std::chrono::milliseconds timeout{10000};
  std::chrono::milliseconds connect_timeout{3000};
};

struct HttpResponse {
  long status = 0;
  std::string body;
  std::string server_pin;  // pin of the certificate the server presented
  std::string content_type;
};

class HttpsClient {
 public:
  explicit HttpsClient(HttpsClientOptions options) : options_(std::move(options)) {}

  // Transport-level result only: a response with any HTTP status is ok().
  Result<HttpResponse> request(const std::string& method, const std::string& path,
                               const std::optional<nlohmann::json>& body = std::nullopt) const;

  // The same with a raw body (e.g. application/octet-stream).
  Result<HttpResponse> request_bytes(const std::string& method, const std::string& path, const std::string& body,
                                     const std::string& content_type) const;

  // request() + turns non-2xx responses into the Status the server's JSON
  // error body describes, and parses a JSON body.
  Result<nlohmann::json> call(const std::string& method, const std::string& path,
                              const std::optional<nlohmann::json>& body = std::nullopt) const;
  // The same for binary bodies: sends `body` raw, returns the raw response body.
  Result<std::string> call_bytes(const std::string& method, const std::string& path, const std::string& body,
                                 const std::string& content_type = "application/octet-stream") const;

  const HttpsClientOptions& options() const { return options_; }

 private:
  Result<HttpResponse> perform(const std::string& method, const std::string& path, const std::string* body,
                               const std::string& content_type) const;
  HttpsClientOptions options_;
};

// Maps an evac JSON error body {code, message, hint} and HTTP status to a Status.
Status status_from_error_response(long http_status, const std::string& body);

}  // namespace evac
