// The REST API (/api/v1) as a transport-free router: a request in, a JSON
// response out. The HTTPS server adapts cpp-httplib to it, and unit tests
// (and the fake peer transport) call it directly.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/status.h"
#include "service/plan_service.h"
#include "service/replication_service.h"
#include "service/run_service.h"
#include "service/site_service.h"

namespace evac {

struct ApiRequest {
  std::string method;
  std::string path;
  std::map<std::string, std::string> query;
  std::string body;
  std::string bearer_token;  // from "Authorization: Bearer ..."
  std::string client_pin;    // pin of the TLS client certificate, if one was presented
};

struct ApiResponse {
  int status = 200;
  nlohmann::json body;  // a JSON binary value is sent as application/octet-stream
  // For a binary body: its media type when not application/octet-stream
  // (/metrics is Prometheus text). Empty: the server's default.
  std::string content_type;
  // Extra response headers ("Allow" on a 405).
  std::vector<std::pair<std::string, std::string>> headers;
};

// What a request may be, enforced before its body is read (and, for the
// body, before the caller is authenticated too: see ApiRouter::admit).
// Defaults for evacd; `api:` in its config changes them.
struct ApiLimits {
  // Bodies of operator and pairing calls (a plan of a thousand VMs is
  // ~300 KiB).
  std::size_t max_body = 1024 * 1024;
  // A batch of replicated blocks from a paired site: up to 16 MiB of data
  // plus its framing.
  std::size_t max_block_batch = 16 * 1024 * 1024 + 64 * 1024;
  // A connection that sends nothing for this long is dropped, headers and
  // TLS handshake included: it holds a thread while it waits.
  std::chrono::seconds read_timeout{10};
  // Connections served at once, each on its own thread; more wait for one.
  std::size_t max_connections = 512;
};

// The API's version: its paths are /api/v1/...
inline constexpr const char* kApiVersion = "v1";

// HTTP status for a Status code, and the JSON error body {code, message, hint}.
int http_status_for(StatusCode code);
ApiResponse error_response(const Status& status);

// The services the routes call. The router only reaches state through
// them: its handlers never read the store.
struct RouteServices {
  SiteService& site;
  PlanService& plans;
  // May be null where a site does not replicate (some tests): its routes
  // then answer "unsupported".
  ReplicationService* replication = nullptr;
  // May be null too: the run routes then answer "unsupported".
  RunService* runs = nullptr;
};

class ApiRouter {
 public:
  explicit ApiRouter(RouteServices services, ApiLimits limits = {});
  // Handlers keep references to the router and its services.
  ApiRouter(const ApiRouter&) = delete;
  ApiRouter& operator=(const ApiRouter&) = delete;

  // Before the body is read: whether the route exists, takes the method,
  // the caller may call it and the announced body (nullopt when chunked)
  // fits. nullopt: read the body, up to body_limit(). Otherwise the answer.
  std::optional<ApiResponse> admit(const ApiRequest& head, std::optional<std::size_t> announced_body);
  // The largest body the route of `method` `path` takes.
  std::size_t body_limit(const std::string& method, const std::string& path) const;
  ApiResponse handle(const ApiRequest& request);
  const ApiLimits& limits() const { return limits_; }
  // OpenAPI 3 document generated from the route table, so it cannot drift.
  nlohmann::json openapi() const;

  // ---- the route table, filled by the add_*_routes of src/api/routes
  enum class Access {
    kPublic,    // health only
    kOperator,  // bearer token
    kPairing,   // any TLS client certificate; the body carries the one-time secret
    kPeer,      // client certificate pinned by a pairing
  };
  struct Context {
    const ApiRequest& request;
    std::vector<std::string> params;  // path captures
    std::optional<PeerRecord> peer;   // for kPeer routes
    std::string caller;               // token name or peer site, for logs
    int status = 0;                   // set by a handler whose success status varies (0: the route's)
    std::string content_type;         // set by a handler returning a binary body that is not octets
  };
  using Handler = std::function<Result<nlohmann::json>(Context&)>;
  // `max_body`: the largest body the route takes; 0: limits().max_body.
  void add(std::string method, std::string pattern, Access access, std::string summary, Handler handler,
           int success_status = 200, std::size_t max_body = 0);

 private:
  struct Route {
    std::string method;
    std::string pattern;  // "/api/v1/groups/{name}"
    // The pattern split at '/': "{...}" matches one non-empty segment. (Not
    // std::regex: libstdc++ matches recursively, and a long path would
    // overflow the stack.)
    std::vector<std::string> segments;
    Access access;
    std::string summary;
    int success_status;
    Handler handler;
    std::size_t max_body = 0;  // 0: limits_.max_body
  };
  // The route for `method` `path` with its captures, or the error answer
  // (404, or 405 naming the methods the path takes).
  struct Match {
    const Route* route = nullptr;
    std::vector<std::string> params;
    std::optional<ApiResponse> refusal;
  };
  Match match(const std::string& method, const std::string& path) const;
  Status authorize(const Route& route, Context& ctx);

  ApiLimits limits_;
  RouteServices services_;
  std::vector<Route> routes_;
};

}  // namespace evac
