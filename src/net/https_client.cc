#include "net/https_client.h"

#include <curl/curl.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <memory>
#include <mutex>

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
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CONNECT_ERROR:
      return unavailable(msg, "the TLS handshake failed: check the URL, and the certificate files");
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT:
      return invalid_argument(msg, "use a URL like https://host:8441");
    default:
      return unavailable(msg, "check that evacd runs there and the address and port are right");
  }
}

}  // namespace

Status status_from_error_response(long http_status, const std::string& body) {
  auto j = nlohmann::json::parse(body, nullptr, false);
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
      case 400: code = StatusCode::kInvalidArgument; break;
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
  std::unique_ptr<CURL, CurlFree> curl(curl_easy_init());
  if (!curl) return internal_error("cannot initialise libcurl");
  std::string url = options_.base_url + path;
  std::string response_body;
  char errbuf[CURL_ERROR_SIZE] = {0};
  std::unique_ptr<curl_slist, SlistFree> headers;
  auto add_header = [&](const std::string& h) { headers.reset(curl_slist_append(headers.release(), h.c_str())); };
  add_header("Accept: application/json");
  if (!options_.bearer_token.empty()) add_header("Authorization: Bearer " + options_.bearer_token);

  CURL* c = curl.get();
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method.c_str());
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(options_.timeout.count()));
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(options_.connect_timeout.count()));
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, append_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &response_body);
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "https");
  // Sites use self-signed certificates: identity is the pinned public key,
  // which libcurl checks even with CA verification off.
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
  if (!options_.server_pin.empty()) curl_easy_setopt(c, CURLOPT_PINNEDPUBLICKEY, options_.server_pin.c_str());
  if (!options_.client_cert_path.empty()) {
    curl_easy_setopt(c, CURLOPT_SSLCERT, options_.client_cert_path.c_str());
    curl_easy_setopt(c, CURLOPT_SSLKEY, options_.client_key_path.c_str());
  }
  curl_easy_setopt(c, CURLOPT_CERTINFO, 1L);
  if (body) {
    add_header("Content-Type: " + content_type);
    // libcurl would ask "Expect: 100-continue" before a large body and wait
    // for the answer: a round trip per replication batch for nothing, since
    // evacd reads every body it is sent.
    add_header("Expect:");
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body->data());
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body->size()));
  }
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers.get());

  CURLcode rc = curl_easy_perform(c);
  if (rc != CURLE_OK) return transport_error(rc, options_.base_url, errbuf);
  HttpResponse resp;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &resp.status);
  resp.body = std::move(response_body);
  // Record the server's pin so a first contact can learn it.
  struct curl_certinfo* certs = nullptr;
  if (curl_easy_getinfo(c, CURLINFO_CERTINFO, &certs) == CURLE_OK && certs && certs->num_of_certs > 0) {
    for (curl_slist* field = certs->certinfo[0]; field; field = field->next) {
      std::string_view f(field->data);
      if (f.rfind("Cert:", 0) != 0) continue;
      std::string pem(f.substr(5));
      std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())), BIO_free);
      if (X509* peer = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) {
        if (auto pin = public_key_pin(peer)) resp.server_pin = *pin;
        X509_free(peer);
      }
    }
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
