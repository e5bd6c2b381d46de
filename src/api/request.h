// Reading an API request: its body as a JSON object (whole, or field by
// field), its query parameters, and whole numbers given as text in a path
// or a query.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "api/router.h"
#include "core/json_decode.h"
#include "core/status.h"

namespace evac {

// The request body as a JSON object (empty is {}), for a service or the
// plan decoder that reads it itself: their own decoders are strict.
// Nesting is bounded by parse_json; the size was bounded when it was read.
Result<nlohmann::json> body_object(const ApiRequest& request);

// The request body read field by field with JsonFields: types, lengths and
// ranges checked, and finish() refusing keys no one asked for.
class BodyFields {
 public:
  JsonFields* operator->() { return &fields_; }
  JsonFields& operator*() { return fields_; }

 private:
  friend Result<BodyFields> body_fields(const ApiRequest& request, std::string what);
  BodyFields(std::unique_ptr<const nlohmann::json> body, JsonFields fields)
      : body_(std::move(body)), fields_(std::move(fields)) {}
  // What fields_ reads, on the heap so that moving a BodyFields keeps it in place.
  std::unique_ptr<const nlohmann::json> body_;
  JsonFields fields_;
};
// `what` names the body in errors ("a pairing").
Result<BodyFields> body_fields(const ApiRequest& request, std::string what);

// A query parameter; one given empty reads as absent.
std::optional<std::string> query_param(const ApiRequest& request, const std::string& key);

// `text` as a whole number from `min` to `max`: decimal digits, a leading
// '-' for a negative one, nothing else (no sign, space or fraction). The
// error names `what` and the range; `hint`, if given, says where to find
// a good value.
Result<std::int64_t> bounded_integer(std::string_view text, std::int64_t min, std::int64_t max, std::string_view what,
                                     std::string hint = {});

// "?NAME=true|false": absent reads as false; anything else is refused, so a
// mistyped value never quietly takes the other branch (a plain unpair
// instead of a lost site's, say).
Result<bool> flag_param(const ApiRequest& request, const std::string& key);

// "?limit=N": a whole number from 1 to `max`; `fallback` when absent.
Result<int> limit_param(const ApiRequest& request, int fallback, int max);

}  // namespace evac
