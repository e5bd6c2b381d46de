#include "api/request.h"

#include <charconv>

namespace evac {
using nlohmann::json;

Result<json> body_object(const ApiRequest& request) {
  EVAC_ASSIGN_OR_RETURN(json body, parse_json(request.body.empty() ? "{}" : request.body, "the request body"));
  if (!body.is_object()) return invalid_argument("the request body must be a JSON object", "see /api/v1/openapi.json");
  return body;
}

Result<BodyFields> body_fields(const ApiRequest& request, std::string what) {
  EVAC_ASSIGN_OR_RETURN(json parsed, body_object(request));
  auto body = std::make_unique<const json>(std::move(parsed));
  EVAC_ASSIGN_OR_RETURN(JsonFields fields, JsonFields::of(*body, std::move(what)));
  return BodyFields(std::move(body), std::move(fields));
}

std::optional<std::string> query_param(const ApiRequest& request, const std::string& key) {
  auto it = request.query.find(key);
  if (it == request.query.end() || it->second.empty()) return std::nullopt;
  return it->second;
}

Result<int> limit_param(const ApiRequest& request, int fallback, int max) {
  auto l = query_param(request, "limit");
  if (!l) return fallback;
  int v = 0;
  const char* end = l->data() + l->size();
  if (std::from_chars(l->data(), end, v).ptr != end || v < 1 || v > max)
    return invalid_argument("limit '" + excerpt(*l) + "' must be a number from 1 to " + std::to_string(max));
  return v;
}

}  // namespace evac
