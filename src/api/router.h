// The REST API (/api/v1) as a transport-free router: a request in, a JSON
// response out. The HTTPS server adapts cpp-httplib to it, and unit tests
// (and the fake peer transport) call it directly.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <regex>
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
};

// HTTP status for a Status code, and the JSON error body {code, message, hint}.
int http_status_for(StatusCode code);
ApiResponse error_response(const Status& status);

class ApiRouter {
 public:
  // `replication` may be null where a site does not replicate (some tests):
  // its routes then answer "unsupported".
  // `runs` may be null too: the run routes then answer "unsupported".
  explicit ApiRouter(SiteService& service, ReplicationService* replication = nullptr, RunService* runs = nullptr);
  ApiResponse handle(const ApiRequest& request);
  // OpenAPI 3 document generated from the route table, so it cannot drift.
  nlohmann::json openapi() const;

 private:
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
  struct Route {
    std::string method;
    std::string pattern;  // "/api/v1/groups/{name}"
    std::regex regex;
    Access access;
    std::string summary;
    int success_status;
    Handler handler;
  };
  void add(std::string method, std::string pattern, Access access, std::string summary, Handler handler,
           int success_status = 200);
  Status authorize(const Route& route, Context& ctx);
  void add_routes();
  void add_replication_routes();
  void add_operations_routes();
  void add_plan_routes();
  void add_run_routes();

  SiteService& service_;
  ReplicationService* replication_;
  RunService* runs_;
  PlanService plans_{service_, replication_};
  std::vector<Route> routes_;
};

}  // namespace evac
