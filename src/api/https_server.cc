#include "api/https_server.h"

#include <httplib.h>
#include <openssl/ssl.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdlib>
#include <mutex>
#include <vector>

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

// Request bodies are read into buffers kept for the next request: a
// replication batch is up to 16 MiB, and a fresh buffer of that size per
// request is fresh memory every time (the kernel maps and zeroes every page
// of it again). A few are kept, each at most the largest body accepted.
class BodyBuffers {
 public:
  std::string take() {
    std::lock_guard lock(mu_);
    if (free_.empty()) return {};
    std::string s = std::move(free_.back());
    free_.pop_back();
    return s;
  }
  void give(std::string s) {
    if (s.capacity() < kKeepFrom || s.capacity() > kMaxBody) return;
    s.clear();
    std::lock_guard lock(mu_);
    if (free_.size() < kKeep) free_.push_back(std::move(s));
  }
  static constexpr std::size_t kMaxBody = 16 * 1024 * 1024;

 private:
  static constexpr std::size_t kKeepFrom = 256 * 1024;  // small bodies come from malloc's free lists anyway
  static constexpr std::size_t kKeep = 12;              // a sender keeps up to 12 batches in flight
  std::mutex mu_;
  std::vector<std::string> free_;
};

BodyBuffers& body_buffers() {
  static BodyBuffers buffers;
  return buffers;
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

  auto handle = [this](const httplib::Request& req, httplib::Response& res, std::string body) {
    auto started = std::chrono::steady_clock::now();
    ApiRequest api{req.method, req.path, {}, std::move(body), bearer_of(req), client_pin_of(req)};
    for (const auto& [k, v] : req.params) api.query[k] = v;
    ApiResponse out = router_.handle(api);
    res.status = out.status;
    if (out.body.is_binary()) {
      const auto& bytes = out.body.get_binary();
      res.set_content(std::string(bytes.begin(), bytes.end()),
                      out.content_type.empty() ? "application/octet-stream" : out.content_type);
    } else {
      res.set_content(out.body.dump(2) + "\n", "application/json");
    }
    auto micros = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - started).count();
    spdlog::info("http {} {} -> {} ({} us){}", req.method, req.path, out.status, micros,
                 out.status >= 400 && out.body.is_object() ? " " + out.body.value("message", "") : "");
    body_buffers().give(std::move(api.body));
  };
  // Bodies are read through a content reader straight into one buffer of
  // the announced length: cpp-httplib would otherwise grow req.body 4 KiB at
  // a time (copying it over and over) and the router would copy it again.
  auto with_body = [handle](const httplib::Request& req, httplib::Response& res,
                            const httplib::ContentReader& read) {
    std::string body = body_buffers().take();
    std::size_t announced = 0;
    if (req.has_header("Content-Length")) {
      announced = static_cast<std::size_t>(std::strtoull(req.get_header_value("Content-Length").c_str(), nullptr, 10));
    }
    // Never trust the announced length beyond what the server accepts.
    body.reserve(std::min(announced, BodyBuffers::kMaxBody));
    bool complete = read([&body](const char* data, std::size_t len) {
      body.append(data, len);
      return true;
    });
    if (!complete) {
      // A cut connection or a body over the limit: nothing of it reaches the router.
      res.status = 400;
      res.set_content(R"({"code": "invalid_argument", "message": "the request body could not be read completely", )"
                      R"("hint": "it was cut off or is larger than 16 MiB"})" "\n",
                      "application/json");
      body_buffers().give(std::move(body));
      return;
    }
    handle(req, res, std::move(body));
  };
  server_->Get(R"(/.*)", [handle](const httplib::Request& req, httplib::Response& res) { handle(req, res, req.body); });
  server_->Post(R"(/.*)", with_body);
  server_->Put(R"(/.*)", with_body);
  server_->Delete(R"(/.*)", with_body);
  server_->set_payload_max_length(BodyBuffers::kMaxBody);
  // Clients keep connections open across calls (a paired site's batches
  // travel over a few reused connections): serve many requests on each
  // rather than cpp-httplib's default of 5, after which it closes them.
  server_->set_keep_alive_max_count(1000);
  // Each open connection holds one of the server's threads while it waits
  // for its next request (up to the keep-alive timeout), so there are more
  // threads than the default 8, which a peer's reused connections plus CLI
  // calls could all hold at once.
  server_->new_task_queue = [] { return new httplib::ThreadPool(32); };
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
