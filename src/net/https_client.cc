#include "net/https_client.h"

#include <curl/curl.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <map>
#include <memory>
#include <mutex>
#include <string_view>

#include "core/model_json.h"
#include "tls/tls.h"

namespace evac {
namespace {

void global_init_once() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

size_t append_body(char* data, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}

struct CurlFree {
  void operator()(CURL* c) const { curl_easy_cleanup(c); }
};

// Easy handles kept between calls, so that their connections are reused: a
// new connection costs a TCP and a full TLS handshake with client
// certificate, which per replication batch was a large part of a sync.
//
// A handle only ever serves one identity: the pool key is everything that
// decides whom a connection trusts and presents (URL, pinned key, client
// certificate and key files), so a connection made under one pin is never
// reused for a call made under another. Every new connection is verified
// exactly as before (libcurl checks the pin in each handshake); a reused
// connection is one that passed that check and has stayed open since.
// Each handle is used by one call at a time.
constexpr int kMaxIdleSeconds = 2;

class HandlePool {
 public:
  struct Handle {
    std::unique_ptr<CURL, CurlFree> curl;
    std::string server_pin;  // pin of the certificate seen on this handle's last new connection
  };

  Handle take(const std::string& key) {
    {
      std::lock_guard lock(mu_);
      auto it = idle_.find(key);
      if (it != idle_.end()) {
        Handle h = std::move(it->second);
        idle_.erase(it);
        return h;
      }
    }
    return Handle{std::unique_ptr<CURL, CurlFree>(curl_easy_init()), {}};
  }

  void give(const std::string& key, Handle h) {
    if (!h.curl) return;
    std::lock_guard lock(mu_);
    // A few idle handles per peer cover the batches in flight; beyond that
    // connections are closed rather than left to the server's idle timeout.
    if (idle_.count(key) >= kIdlePerKey || idle_.size() >= kIdleTotal) return;
    idle_.emplace(key, std::move(h));
  }

 private:
  static constexpr std::size_t kIdlePerKey = 4;
  static constexpr std::size_t kIdleTotal = 16;
  std::mutex mu_;
  std::multimap<std::string, Handle> idle_;
};

HandlePool& handle_pool() {
  static HandlePool* pool = new HandlePool();  // never destroyed: callers may run during exit
  return *pool;
}

std::string pool_key(const HttpsClientOptions& o) {
  std::string key;
  for (const std::string* part : {&o.base_url, &o.server_pin, &o.client_cert_path, &o.client_key_path}) {
    key += std::to_string(part->size());
    key += ':';
    key += *part;
  }
  return key;
}

struct SlistFree {
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};

Status transport_error(CURLcode rc, const std::string& url, const char* detail) {
  std::string msg = "cannot reach " + url + ": " + (detail && *detail ? detail : curl_easy_strerror(rc));
  switch (rc) {
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
      return permission_denied(msg + " (its certificate is not the one pinned)",
                               "the server's identity changed: if that is expected, update the pin (evac context add ... --pin); "
                               "otherwise you may be talking to an impostor");
    case CURLE_SSL_CONNECT_ERROR:
      // A connection that was cut or reset during the handshake is the
      // network's (or a dead peer's) doing, not the certificates'.
      if (msg.find("reset by peer") != std::string::npos || msg.find("SSL_ERROR_SYSCALL") != std::string::npos ||
          msg.find("unexpected eof") != std::string::npos)
        return unavailable(msg, "the connection was cut before TLS was set up: check the network path to it and that evacd runs there");
      return unavailable(msg, "the TLS handshake failed: check the URL, and the certificate files");
    case CURLE_SSL_CERTPROBLEM:
      return unavailable(msg, "the TLS handshake failed: check the URL, and the certificate files");
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT:
      return invalid_argument(msg, "use a URL like https://host:8441");
    default:
      return unavailable(msg, "check that evacd runs there and the address and port are right");
  }
}

using Headers = std::unique_ptr<curl_slist, SlistFree>;

void add_header(Headers& headers, const std::string& h) {
  headers.reset(curl_slist_append(headers.release(), h.c_str()));
}

// Sets every option of one call but its body and headers on `c`: every
// option is set again for each call, since a reset keeps only the live
// connection and the TLS session cache. The response body goes to
// `response_body`, libcurl's error text to `errbuf`; both must outlive the
// transfer.
void set_transfer_options(CURL* c, const HttpsClientOptions& o, const std::string& url, const std::string& method,
                          char* errbuf, std::string& response_body) {
  curl_easy_reset(c);
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method.c_str());
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(o.timeout.count()));
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(o.connect_timeout.count()));
  // A call may wait minutes for its answer (a verification, a followed
  // cycle): probes of an idle connection notice a host that vanished
  // without closing it within about a minute instead of at the timeout.
  curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(c, CURLOPT_TCP_KEEPIDLE, 15L);
  curl_easy_setopt(c, CURLOPT_TCP_KEEPINTVL, 5L);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, append_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &response_body);
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "https");
  // Sites use self-signed certificates: identity is the pinned public key,
  // which libcurl checks even with CA verification off.
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
  if (!o.server_pin.empty()) curl_easy_setopt(c, CURLOPT_PINNEDPUBLICKEY, o.server_pin.c_str());
  if (!o.client_cert_path.empty()) {
    curl_easy_setopt(c, CURLOPT_SSLCERT, o.client_cert_path.c_str());
    curl_easy_setopt(c, CURLOPT_SSLKEY, o.client_key_path.c_str());
  }
  curl_easy_setopt(c, CURLOPT_CERTINFO, 1L);
  // evacd closes a connection idle for 5 s; reusing one idle for less than
  // that avoids sending a request into a connection the server is closing.
  curl_easy_setopt(c, CURLOPT_MAXAGE_CONN, static_cast<long>(kMaxIdleSeconds));
  // No TLS session resumption: every new connection makes a full handshake
  // with the server's certificate checked against the pin and ours
  // presented, as when each call had its own handle. (evacd's server does
  // not resume sessions of clients it verifies, and fails such a handshake.)
  curl_easy_setopt(c, CURLOPT_SSL_SESSIONID_CACHE, 0L);
}

// Sends `body` (which must outlive the transfer) as the call's body, with
// its content type among `headers`.
void set_body(CURL* c, const std::string& body, const std::string& content_type, Headers& headers) {
  add_header(headers, "Content-Type: " + content_type);
  // libcurl would ask "Expect: 100-continue" before a large body and wait
  // for the answer: a round trip per replication batch for nothing, since
  // evacd reads every body it is sent.
  add_header(headers, "Expect:");
  curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.data());
  curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
  // Bodies of megabytes go out in larger pieces (fewer TLS writes).
  if (body.size() > (256 << 10)) curl_easy_setopt(c, CURLOPT_UPLOAD_BUFFERSIZE, 1L << 20);
}

// The status, content type and body of the call `c` made (its pin aside).
HttpResponse read_response(CURL* c, std::string body) {
  HttpResponse resp;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &resp.status);
  char* response_type = nullptr;
  if (curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &response_type) == CURLE_OK && response_type != nullptr)
    resp.content_type = response_type;
  resp.body = std::move(body);
  return resp;
}

// Sets `pin` to the pin of the server's certificate when the call `c` made
// a new connection and libcurl reports its chain ("" if it cannot be
// read); a reused connection leaves `pin` as its handshake saw it.
void record_server_pin(CURL* c, std::string& pin) {
  long new_connections = 0;
  curl_easy_getinfo(c, CURLINFO_NUM_CONNECTS, &new_connections);
  struct curl_certinfo* certs = nullptr;
  if (new_connections <= 0 || curl_easy_getinfo(c, CURLINFO_CERTINFO, &certs) != CURLE_OK || !certs ||
      certs->num_of_certs <= 0)
    return;
  pin.clear();
  for (curl_slist* field = certs->certinfo[0]; field; field = field->next) {
    std::string_view f(field->data);
    if (f.rfind("Cert:", 0) != 0) continue;
    std::string pem(f.substr(5));
    std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())), BIO_free);
    if (X509* peer = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) {
      if (auto read = public_key_pin(peer)) pin = *read;
      X509_free(peer);
    }
  }
}

}  // namespace

Status status_from_error_response(long http_status, const std::string& body) {
  auto j = parse_json_or_discarded(body);
  std::string message = "HTTP " + std::to_string(http_status);
  std::string hint;
  std::optional<StatusCode> code;
  if (j.is_object()) {
    if (j.contains("message") && j["message"].is_string()) message = j["message"].get<std::string>();
    if (j.contains("hint") && j["hint"].is_string()) hint = j["hint"].get<std::string>();
    if (j.contains("code") && j["code"].is_string()) code = status_code_from_name(j["code"].get<std::string>());
  }
  if (!code) {
    switch (http_status) {
      case 400:
      case 405:  // method not allowed
      case 413:  // body too large
      case 431:  // headers too large
        code = StatusCode::kInvalidArgument;
        break;
      case 401: code = StatusCode::kUnauthenticated; break;
      case 403: code = StatusCode::kPermissionDenied; break;
      case 404: code = StatusCode::kNotFound; break;
      case 409: code = StatusCode::kAlreadyExists; break;
      case 503: code = StatusCode::kUnavailable; break;
      default: code = StatusCode::kInternal;
    }
  }
  if (*code == StatusCode::kOk) code = StatusCode::kInternal;
  return Status(*code, message, hint);
}

Result<HttpResponse> HttpsClient::request(const std::string& method, const std::string& path,
                                          const std::optional<nlohmann::json>& body) const {
  if (!body) return perform(method, path, nullptr, "");
  std::string payload = body->dump();
  return perform(method, path, &payload, "application/json");
}

Result<HttpResponse> HttpsClient::request_bytes(const std::string& method, const std::string& path,
                                                const std::string& body, const std::string& content_type) const {
  return perform(method, path, &body, content_type);
}

Result<HttpResponse> HttpsClient::perform(const std::string& method, const std::string& path, const std::string* body,
                                          const std::string& content_type) const {
  global_init_once();
  const std::string key = pool_key(options_);
  HandlePool::Handle handle = handle_pool().take(key);
  if (!handle.curl) return internal_error("cannot initialise libcurl");
  const bool reused = !handle.server_pin.empty();
  std::string url = options_.base_url + path;
  std::string response_body;
  char errbuf[CURL_ERROR_SIZE] = {0};
  Headers headers;
  add_header(headers, "Accept: application/json");
  if (!options_.bearer_token.empty()) add_header(headers, "Authorization: Bearer " + options_.bearer_token);

  CURL* c = handle.curl.get();
  set_transfer_options(c, options_, url, method, errbuf, response_body);
  // A GET never carries a body: evacd's server does not read one, and its
  // bytes would be taken for the start of the next request on the
  // connection (the peer answered that request 400).
  if (body && method != "GET" && method != "HEAD") set_body(c, *body, content_type, headers);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers.get());

  CURLcode rc = curl_easy_perform(c);
  if (rc == CURLE_SEND_ERROR && reused) {
    // The server closed the kept connection as the request went out. A
    // request that could not be sent completely was not served (evacd
    // drops incomplete bodies), so it is sent once more on a new connection.
    curl_easy_setopt(c, CURLOPT_FRESH_CONNECT, 1L);
    response_body.clear();
    errbuf[0] = '\0';
    rc = curl_easy_perform(c);
  }
  if (rc != CURLE_OK) return transport_error(rc, options_.base_url, errbuf);  // the handle is dropped with its connection
  HttpResponse resp = read_response(c, std::move(response_body));
  // Record the server's pin so a first contact can learn it.
  record_server_pin(c, handle.server_pin);
  resp.server_pin = handle.server_pin;
  // Only a handle whose connection knows whom it talks to goes back: one
  // whose handshake left no pin (it could not be read) starts afresh.
  if (!handle.server_pin.empty()) {
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, nullptr);  // `headers` dies with this call
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, nullptr);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, nullptr);
    handle_pool().give(key, std::move(handle));
  }
  return resp;
}

Result<std::string> HttpsClient::call_bytes(const std::string& method, const std::string& path, const std::string& body,
                                           const std::string& content_type) const {
  auto resp = request_bytes(method, path, body, content_type);
  if (!resp) return resp.status();
  if (resp->status < 200 || resp->status >= 300) return status_from_error_response(resp->status, resp->body);
  return std::move(resp->body);
}

Result<nlohmann::json> HttpsClient::call(const std::string& method, const std::string& path,
                                         const std::optional<nlohmann::json>& body) const {
  auto resp = request(method, path, body);
  if (!resp) return resp.status();
  if (resp->status < 200 || resp->status >= 300) return status_from_error_response(resp->status, resp->body);
  if (resp->body.empty()) return nlohmann::json::object();
  auto parsed = parse_json(resp->body, "response from " + options_.base_url);
  if (!parsed) return internal_error(parsed.status().message(), "is that URL an evacd?");
  return parsed;
}

}  // namespace evac
