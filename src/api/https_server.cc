#include "api/https_server.h"

#include <httplib.h>
#include <openssl/ssl.h>
#include <spdlog/spdlog.h>

#include <chrono>

namespace evac {
namespace {

// Accept any client certificate at the TLS layer: the router decides what a
// certificate may do by its pin, and operator calls use bearer tokens.
int accept_any_client_certificate(int, X509_STORE_CTX*) { return 1; }

std::string client_pin_of(const httplib::Request& req) {
  if (!req.ssl) return {};
  X509* cert = SSL_get1_peer_certificate(const_cast<SSL*>(req.ssl));
  if (!cert) return {};
  auto pin = public_key_pin(cert);
  X509_free(cert);
  return pin ? *pin : std::string();
}

std::string bearer_of(const httplib::Request& req) {
  std::string auth = req.get_header_value("Authorization");
  constexpr std::string_view kPrefix = "Bearer ";
  return auth.rfind(kPrefix, 0) == 0 ? auth.substr(kPrefix.size()) : std::string();
}

}  // namespace

HttpsServer::HttpsServer(ApiRouter& router, TlsIdentity identity) : router_(router), identity_(std::move(identity)) {
  server_ = std::make_unique<httplib::SSLServer>([this](SSL_CTX& ctx) {
    SSL_CTX_set_min_proto_version(&ctx, TLS1_2_VERSION);
    if (SSL_CTX_use_certificate_chain_file(&ctx, identity_.cert_path.c_str()) != 1) return false;
    if (SSL_CTX_use_PrivateKey_file(&ctx, identity_.key_path.c_str(), SSL_FILETYPE_PEM) != 1) return false;
    if (SSL_CTX_check_private_key(&ctx) != 1) return false;
    SSL_CTX_set_verify(&ctx, SSL_VERIFY_PEER, accept_any_client_certificate);
    return true;
  });

  auto handler = [this](const httplib::Request& req, httplib::Response& res) {
    auto started = std::chrono::steady_clock::now();
    ApiRequest api{req.method, req.path, {}, req.body, bearer_of(req), client_pin_of(req)};
    for (const auto& [k, v] : req.params) api.query[k] = v;
    ApiResponse out = router_.handle(api);
    res.status = out.status;
    if (out.body.is_binary()) {
      const auto& bytes = out.body.get_binary();
      res.set_content(std::string(bytes.begin(), bytes.end()), "application/octet-stream");
    } else {
      res.set_content(out.body.dump(2) + "\n", "application/json");
    }
    auto micros = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - started).count();
    spdlog::info("http {} {} -> {} ({} us){}", req.method, req.path, out.status, micros,
                 out.status >= 400 && out.body.is_object() ? " " + out.body.value("message", "") : "");
  };
  server_->Get(R"(/.*)", handler);
  server_->Post(R"(/.*)", handler);
  server_->Put(R"(/.*)", handler);
  server_->Delete(R"(/.*)", handler);
  server_->set_payload_max_length(16 * 1024 * 1024);
  server_->set_read_timeout(30, 0);
  server_->set_write_timeout(30, 0);
}

HttpsServer::~HttpsServer() = default;

Result<int> HttpsServer::bind(const std::string& host, int port) {
  if (!server_->is_valid())
    return failed_precondition("cannot load the TLS certificate " + identity_.cert_path + " and key " + identity_.key_path,
                               "check that both files are readable PEM and belong together");
  int bound = port == 0 ? server_->bind_to_any_port(host) : (server_->bind_to_port(host, port) ? port : -1);
  if (bound <= 0)
    return unavailable("cannot listen on " + host + ":" + std::to_string(port),
                       "is another process (another evacd?) using that port, or is the address not on this host?");
  return bound;
}

void HttpsServer::serve() { server_->listen_after_bind(); }

void HttpsServer::stop() { server_->stop(); }

}  // namespace evac
