#include "api/https_server.h"

#include <httplib.h>
#include <openssl/ssl.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "core/json_decode.h"

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
  static constexpr std::size_t kMaxBody = 17 * 1024 * 1024;  // a replication batch with its framing

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

// The request as the router sees it, body not read yet.
ApiRequest head_of(const httplib::Request& req) {
  ApiRequest api{req.method, req.path, {}, {}, bearer_of(req), client_pin_of(req)};
  for (const auto& [k, v] : req.params) api.query[k] = v;
  return api;
}

void send(httplib::Response& res, const ApiResponse& out) {
  res.status = out.status;
  for (const auto& [name, value] : out.headers) res.set_header(name, value);
  if (out.body.is_binary()) {
    const auto& bytes = out.body.get_binary();
    res.set_content(std::string(bytes.begin(), bytes.end()),
                    out.content_type.empty() ? "application/octet-stream" : out.content_type);
  } else {
    res.set_content(out.body.dump(2) + "\n", "application/json");
  }
}

// Content-Length as announced: nullopt when absent (a chunked body, counted
// as it is read), SIZE_MAX when it is not a plain number (refused as too large).
std::optional<std::size_t> announced_length(const httplib::Request& req) {
  if (!req.has_header("Content-Length")) return std::nullopt;
  const std::string text = req.get_header_value("Content-Length");
  std::size_t n = 0;
  const char* end = text.data() + text.size();
  if (text.empty() || std::from_chars(text.data(), end, n).ptr != end) return SIZE_MAX;
  return n;
}

// Asks the client to hang up once the answer is read: the unread rest of
// a refused body cannot be told from a next request. (cpp-httplib itself
// keeps the connection for its keep-alive timeout; a body sent anyway is
// read as a malformed request and ends it.)
void close_after_answer(httplib::Response& res) { res.set_header("Connection", "close"); }

// One thread per connection, started when one arrives and kept for the
// next, up to a cap; beyond it connections wait for a thread. A fixed
// pool would be held entirely by a few dozen connections that open and send
// nothing, each until its read timeout, and the operator's calls would wait
// behind them.
class ConnectionThreads : public httplib::TaskQueue {
 public:
  explicit ConnectionThreads(std::size_t max_threads) : max_threads_(max_threads) {}
  ~ConnectionThreads() override { shutdown(); }

  void enqueue(std::function<void()> fn) override {
    std::lock_guard lock(mu_);
    jobs_.push_back(std::move(fn));
    // Each idle thread takes one waiting job: a new thread only for the rest.
    if (jobs_.size() <= idle_ || threads_.size() >= max_threads_) {
      cv_.notify_one();
      return;
    }
    threads_.emplace_back([this] { work(); });
  }

  void shutdown() override {
    {
      std::lock_guard lock(mu_);
      if (stopping_) return;
      stopping_ = true;
    }
    cv_.notify_all();
    for (auto& t : threads_) t.join();
  }

 private:
  void work() {
    std::unique_lock lock(mu_);
    for (;;) {
      ++idle_;
      cv_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
      --idle_;
      if (jobs_.empty()) return;  // stopping, nothing left
      auto job = std::move(jobs_.front());
      jobs_.pop_front();
      lock.unlock();
      job();
      lock.lock();
    }
  }

  const std::size_t max_threads_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  std::vector<std::thread> threads_;
  std::size_t idle_ = 0;
  bool stopping_ = false;
};

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

  // Paths and messages quote what the client sent: bounded in the log.
  auto log = [](const httplib::Request& req, const ApiResponse& out, std::int64_t micros) {
    spdlog::info("http {} {} -> {} ({} us){}", excerpt(req.method, 16), excerpt(req.path, 256), out.status, micros,
                 out.status >= 400 && out.body.is_object() ? " " + excerpt(out.body.value("message", ""), 512) : "");
  };
  auto handle = [this, log](const httplib::Request& req, httplib::Response& res, std::string body) {
    auto started = std::chrono::steady_clock::now();
    ApiRequest api = head_of(req);
    api.body = std::move(body);
    ApiResponse out = router_.handle(api);
    send(res, out);
    log(req, out, std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - started).count());
    body_buffers().give(std::move(api.body));
  };
  // Everything that can be judged from the request line and headers is,
  // before a byte of the body is read: the route, the caller (token or
  // certificate) and the announced length. A refused body is never read;
  // the connection is closed instead, since its unread bytes would
  // otherwise be taken for the next request.
  server_->set_pre_routing_handler([this, log](const httplib::Request& req, httplib::Response& res) {
    auto refusal = router_.admit(head_of(req), announced_length(req));
    if (!refusal) return httplib::Server::HandlerResponse::Unhandled;
    send(res, *refusal);
    close_after_answer(res);
    log(req, *refusal, 0);
    return httplib::Server::HandlerResponse::Handled;
  });
  // Bodies are read through a content reader straight into one buffer of
  // the announced length: cpp-httplib would otherwise grow req.body 4 KiB at
  // a time (copying it over and over) and the router would copy it again.
  auto with_body = [this, handle](const httplib::Request& req, httplib::Response& res,
                                  const httplib::ContentReader& read) {
    const std::size_t limit = router_.body_limit(req.method, req.path);
    std::string body = body_buffers().take();
    // admit() refused an announced length over the limit; a chunked body
    // is counted as it arrives.
    body.reserve(std::min(announced_length(req).value_or(0), limit));
    bool too_large = false;
    bool complete = read([&](const char* data, std::size_t len) {
      if (body.size() + len > limit) {
        too_large = true;
        return false;
      }
      body.append(data, len);
      return true;
    });
    if (!complete) {
      // Nothing of a cut or oversized body reaches the router.
      body_buffers().give(std::move(body));
      Status why = too_large ? invalid_argument("the request body is larger than the " + std::to_string(limit) +
                                                    " bytes this endpoint takes",
                                                "send less; the limit is api.max_request_body in evacd's configuration")
                             : invalid_argument("the request body could not be read completely",
                                                "it was cut off: send it again");
      ApiResponse out = error_response(why);
      if (too_large) {
        out.status = 413;
        out.body["code"] = "payload_too_large";
      }
      send(res, out);
      close_after_answer(res);
      return;
    }
    handle(req, res, std::move(body));
  };
  server_->Get(R"(/.*)", [handle](const httplib::Request& req, httplib::Response& res) { handle(req, res, req.body); });
  server_->Post(R"(/.*)", with_body);
  server_->Put(R"(/.*)", with_body);
  server_->Delete(R"(/.*)", with_body);
  server_->set_payload_max_length(std::max(router_.limits().max_body, router_.limits().max_block_batch));
  // Clients keep connections open across calls (a paired site's batches
  // travel over a few reused connections): serve many requests on each
  // rather than cpp-httplib's default of 5, after which it closes them.
  server_->set_keep_alive_max_count(1000);
  // Each open connection holds a thread while it waits for its next request
  // (up to the keep-alive timeout) or for bytes that do not come (up to the
  // read timeout): see ConnectionThreads.
  const std::size_t max_connections = router_.limits().max_connections;
  server_->new_task_queue = [max_connections] { return new ConnectionThreads(max_connections); };
  server_->set_read_timeout(router_.limits().read_timeout);
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
