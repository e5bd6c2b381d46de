#include "api/request.h"

#include <charconv>
#include <limits>

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

Result<std::int64_t> bounded_integer(std::string_view text, std::int64_t min, std::int64_t max, std::string_view what,
                                     std::string hint) {
  std::int64_t value = 0;
  const char* end = text.data() + text.size();
  auto [stop, error] = std::from_chars(text.data(), end, value);
  if (text.empty() || error != std::errc() || stop != end || value < min || value > max) {
    const std::string range = max == std::numeric_limits<std::int64_t>::max()
                                  ? "of " + std::to_string(min) + " or more"
                                  : "from " + std::to_string(min) + " to " + std::to_string(max);
    return invalid_argument(std::string(what) + " '" + excerpt(text) + "' must be a number " + range, std::move(hint));
  }
  return value;
}

Result<bool> flag_param(const ApiRequest& request, const std::string& key) {
  auto text = query_param(request, key);
  if (!text || *text == "false") return false;
  if (*text == "true") return true;
  return invalid_argument(key + " must be true or false, not '" + excerpt(*text) + "'");
}

Result<int> limit_param(const ApiRequest& request, int fallback, int max) {
  auto text = query_param(request, "limit");
  if (!text) return fallback;
  EVAC_ASSIGN_OR_RETURN(std::int64_t limit, bounded_integer(*text, 1, max, "limit"));
  return static_cast<int>(limit);  // within [1, max]
}

}  // namespace evac
