#include "api/router.h"

#include <cctype>

#include "api/routes/routes.h"
#include "core/json_decode.h"
#include "core/text.h"

namespace evac {
using nlohmann::json;

namespace {

// "/api/v1/groups/g1" → {"", "api", "v1", "groups", "g1"}.
std::vector<std::string> split_path(std::string_view path) {
  std::vector<std::string> out;
  std::size_t start = 0;
  for (;;) {
    std::size_t slash = path.find('/', start);
    out.emplace_back(path.substr(start, slash == std::string_view::npos ? std::string_view::npos : slash - start));
    if (slash == std::string_view::npos) return out;
    start = slash + 1;
  }
}

}  // namespace

int http_status_for(StatusCode code) {
  switch (code) {
    case StatusCode::kOk: return 200;
    case StatusCode::kInvalidArgument: return 400;
    case StatusCode::kUnauthenticated: return 401;
    case StatusCode::kPermissionDenied: return 403;
    case StatusCode::kNotFound: return 404;
    case StatusCode::kAlreadyExists: return 409;
    case StatusCode::kFailedPrecondition: return 412;
    case StatusCode::kUnsupported: return 501;
    case StatusCode::kUnavailable: return 503;
    case StatusCode::kInternal: return 500;
  }
  return 500;
}

ApiResponse error_response(const Status& s) {
  // Messages may quote outside input: bounded, so a huge name sent is not a
  // huge answer (or log line) back.
  constexpr std::size_t kMaxMessage = 1024;
  std::string hint = s.hint().empty() ? "see /api/v1/openapi.json for the API" : s.hint();
  return ApiResponse{http_status_for(s.code()),
                     json{{"code", status_code_name(s.code())},
                          {"message", excerpt(s.message(), kMaxMessage)},
                          {"hint", excerpt(hint, kMaxMessage)}},
                     "",
                     {}};
}

ApiRouter::ApiRouter(RouteServices services, ApiLimits limits) : limits_(limits), services_(services) {
  add_health_routes(*this, services_);
  add_site_routes(*this, services_);
  add_inventory_routes(*this, services_);
  add_mapping_routes(*this, services_);
  add_group_routes(*this, services_);
  add_replication_routes(*this, services_);
  add_event_routes(*this, services_);
  add_plan_routes(*this, services_);
  add_run_routes(*this, services_);
  add_peer_routes(*this, services_);
}

void ApiRouter::add(std::string method, std::string pattern, Access access, std::string summary, Handler handler,
                    int success_status, std::size_t max_body) {
  std::vector<std::string> segments = split_path(pattern);
  routes_.push_back(Route{std::move(method), std::move(pattern), std::move(segments), access, std::move(summary),
                          success_status, std::move(handler), max_body});
}

Status ApiRouter::authorize(const Route& route, Context& ctx) {
  switch (route.access) {
    case Access::kPublic: return Status::ok();
    case Access::kOperator: {
      if (ctx.request.bearer_token.empty())
        return unauthenticated("this call needs a bearer token",
                               "pass --token or set up a context: `evac context add NAME --url URL --token-file FILE`");
      EVAC_ASSIGN_OR_RETURN(auto name, services_.site.api_token_name(ctx.request.bearer_token));
      if (!name)
        return unauthenticated("the bearer token is not valid at site '" + services_.site.identity().name + "'",
                               "use the admin token from the site's state directory (admin.token)");
      ctx.caller = *name;
      return Status::ok();
    }
    case Access::kPairing:
      if (ctx.request.client_pin.empty())
        return unauthenticated("pairing needs a TLS client certificate", "pair with `evac site pair TOKEN`");
      ctx.caller = "pairing";
      return Status::ok();
    case Access::kPeer: {
      if (ctx.request.client_pin.empty())
        return unauthenticated("site-to-site calls need the paired site's TLS client certificate");
      EVAC_ASSIGN_OR_RETURN(auto peer, services_.site.paired_site_with_pin(ctx.request.client_pin));
      if (!peer)
        return permission_denied("the client certificate does not belong to a site paired with '" +
                                     services_.site.identity().name + "'",
                                 "pair the sites first, or re-pair if a site's certificate changed");
      ctx.caller = "site:" + peer->site;
      ctx.peer = std::move(peer);
      return Status::ok();
    }
  }
  return internal_error("unknown access rule");
}

ApiRouter::Match ApiRouter::match(const std::string& method, const std::string& path) const {
  Match out;
  std::vector<std::string> allowed;
  const std::vector<std::string> segments = split_path(path);
  for (const auto& route : routes_) {
    if (route.segments.size() != segments.size()) continue;
    std::vector<std::string> params;
    bool matched = true;
    for (std::size_t i = 0; matched && i < segments.size(); ++i) {
      const std::string& want = route.segments[i];
      if (!want.empty() && want.front() == '{') {
        matched = !segments[i].empty();
        params.push_back(segments[i]);
      } else {
        matched = want == segments[i];
      }
    }
    if (!matched) continue;
    if (route.method != method) {
      allowed.push_back(route.method);
      continue;
    }
    out.route = &route;
    out.params = std::move(params);
    return out;
  }
  if (allowed.empty()) {
    out.refusal = error_response(
        not_found("no API endpoint " + excerpt(path), "see /api/v1/openapi.json for the endpoints"));
    return out;
  }
  std::string allow = join(allowed, ", ");
  ApiResponse refusal = error_response(invalid_argument(
      "method " + excerpt(method, 16) + " is not allowed on " + excerpt(path), "this endpoint takes " + allow));
  refusal.status = 405;
  refusal.body["code"] = "method_not_allowed";
  refusal.headers.emplace_back("Allow", allow);
  out.refusal = std::move(refusal);
  return out;
}

std::size_t ApiRouter::body_limit(const std::string& method, const std::string& path) const {
  Match m = match(method, path);
  return m.route && m.route->max_body ? m.route->max_body : limits_.max_body;
}

std::optional<ApiResponse> ApiRouter::admit(const ApiRequest& head, std::optional<std::size_t> announced_body) {
  Match m = match(head.method, head.path);
  if (m.refusal) return m.refusal;
  Context ctx{head, m.params, std::nullopt, "", 0, ""};
  if (Status s = authorize(*m.route, ctx); !s.is_ok()) return error_response(s);
  const std::size_t limit = m.route->max_body ? m.route->max_body : limits_.max_body;
  if (announced_body && *announced_body > limit) {
    ApiResponse refusal = error_response(invalid_argument(
        "the request body is " + std::to_string(*announced_body) + " bytes, more than the " + std::to_string(limit) +
            " this endpoint takes",
        "send less; the limit is api.max_request_body in evacd's configuration"));
    refusal.status = 413;
    refusal.body["code"] = "payload_too_large";
    return refusal;
  }
  return std::nullopt;
}

ApiResponse ApiRouter::handle(const ApiRequest& request) {
  Match m = match(request.method, request.path);
  if (m.refusal) return *m.refusal;
  const Route& route = *m.route;
  Context ctx{request, std::move(m.params), std::nullopt, "", 0, ""};
  if (Status s = authorize(route, ctx); !s.is_ok()) return error_response(s);
  // Alive now: a lost site's last contact bounds what a failover lost.
  // Recorded here, once per request, not in admit() as well: it is a store
  // write, and a paired site's block batches come many a second.
  if (ctx.peer) services_.site.heard_from(ctx.peer->site);
  Result<json> result = [&]() -> Result<json> {
    try {
      return route.handler(ctx);
    } catch (const std::exception& e) {  // a bug: never let it take the server down
      return internal_error(std::string("unexpected error: ") + e.what(), "this is a bug in evac; please report it");
    }
  }();
  if (!result) return error_response(result.status());
  ApiResponse response{ctx.status ? ctx.status : route.success_status, std::move(*result), "", {}};
  if (!ctx.content_type.empty()) response.content_type = ctx.content_type;
  return response;
}

json ApiRouter::openapi() const {
  json paths = json::object();
  for (const auto& r : routes_) {
    std::string method = r.method;
    for (auto& c : method) c = static_cast<char>(std::tolower(c));
    json op = {{"summary", r.summary},
               {"responses",
                {{std::to_string(r.success_status), {{"description", "success"}}},
                 {"default", {{"description", "error: {code, message, hint}"}, {"content", {{"application/json", {{"schema", {{"$ref", "#/components/schemas/Error"}}}}}}}}}}}};
    if (r.access == Access::kOperator) op["security"] = json::array({{{"bearer", json::array()}}});
    if (r.access == Access::kPeer || r.access == Access::kPairing) {
      op["security"] = json::array({{{"mutualTLS", json::array()}}});
      op["tags"] = json::array({"site-to-site"});
    }
    json params = json::array();
    for (const auto& segment : r.segments)
      if (!segment.empty() && segment.front() == '{')
        params.push_back({{"name", segment.substr(1, segment.size() - 2)},
                          {"in", "path"},
                          {"required", true},
                          {"schema", {{"type", "string"}}}});
    if (!params.empty()) op["parameters"] = params;
    paths[r.pattern][method] = op;
  }
  return {{"openapi", "3.1.0"},
          {"info", {{"title", "evac site recovery API"}, {"version", kApiVersion}}},
          {"paths", paths},
          {"components",
           {{"securitySchemes",
             {{"bearer", {{"type", "http"}, {"scheme", "bearer"}}}, {"mutualTLS", {{"type", "mutualTLS"}}}}},
            {"schemas",
             {{"Error",
               {{"type", "object"},
                {"required", {"code", "message"}},
                {"properties",
                 {{"code", {{"type", "string"}}}, {"message", {{"type", "string"}}}, {"hint", {{"type", "string"}}}}}}}}}}}};
}

}  // namespace evac
