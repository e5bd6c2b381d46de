#include "core/json_decode.h"

#include <algorithm>

#include "core/duration.h"
#include "core/text.h"

namespace evac {
using nlohmann::json;

std::size_t json_nesting_depth(std::string_view text, std::size_t stop_at) {
  std::size_t depth = 0;
  std::size_t deepest = 0;
  bool in_string = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') {
        ++i;  // whatever is escaped cannot end the string
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    switch (c) {
      case '"': in_string = true; break;
      case '[':
      case '{':
        deepest = std::max(deepest, ++depth);
        if (deepest > stop_at) return deepest;
        break;
      case ']':
      case '}':
        if (depth > 0) --depth;  // unbalanced input is the parser's to refuse
        break;
      default: break;
    }
  }
  return deepest;
}

Result<json> parse_json(std::string_view text, std::string_view what, std::size_t max_depth) {
  if (json_nesting_depth(text, max_depth) > max_depth)
    return invalid_argument(std::string(what) + " nests arrays and objects deeper than " + std::to_string(max_depth) +
                                " levels",
                            "no evac document is that deep: send the documented shape (see /api/v1/openapi.json)");
  auto j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded())
    return invalid_argument(std::string(what) + " is not valid JSON", "send a JSON object (Content-Type: application/json)");
  return j;
}

json parse_json_or_discarded(std::string_view text) {
  auto j = parse_json(text, "JSON");
  return j ? std::move(j).value() : json(json::value_t::discarded);
}

std::string excerpt(std::string_view text, std::size_t max) {
  if (text.size() <= max) return std::string(text);
  return std::string(text.substr(0, max)) + "...(" + std::to_string(text.size()) + " bytes)";
}

Result<std::int64_t> checked_integer(const json& value, std::string_view what, std::int64_t min, std::int64_t max) {
  const std::string range = "from " + std::to_string(min) + " to " + std::to_string(max);
  if (value.is_number_unsigned()) {
    const auto v = value.get<std::uint64_t>();
    if (v > static_cast<std::uint64_t>(max))
      return invalid_argument(std::string(what) + " is " + std::to_string(v) + ", out of range", "give a whole number " + range);
    return static_cast<std::int64_t>(v);
  }
  if (value.is_number_integer()) {
    const auto v = value.get<std::int64_t>();
    if (v < min || v > max)
      return invalid_argument(std::string(what) + " is " + std::to_string(v) + ", out of range", "give a whole number " + range);
    return v;
  }
  return invalid_argument(std::string(what) + " must be a whole number", "give a whole number " + range);
}

Result<JsonFields> JsonFields::of(const json& value, std::string what) {
  if (!value.is_object()) return invalid_argument(what + " must be a JSON object", "see /api/v1/openapi.json");
  return JsonFields(value, std::move(what));
}

const json* JsonFields::find(std::string_view key) {
  if (std::find(known_.begin(), known_.end(), key) == known_.end()) known_.emplace_back(key);
  auto it = object_->find(key);
  if (it == object_->end() || it->is_null()) return nullptr;
  return &*it;
}

Status JsonFields::wrong_type(std::string_view key, std::string_view expected) const {
  return invalid_argument("field '" + std::string(key) + "' of " + what_ + " must be " + std::string(expected),
                          "see /api/v1/openapi.json");
}

Result<std::optional<std::string>> JsonFields::text(std::string_view key, std::size_t max_length) {
  const json* v = find(key);
  if (!v) return std::optional<std::string>();
  if (!v->is_string()) return wrong_type(key, "a string");
  const auto& s = v->get_ref<const std::string&>();
  if (s.size() > max_length)
    return invalid_argument("field '" + std::string(key) + "' of " + what_ + " is " + std::to_string(s.size()) +
                                " bytes long",
                            "it may be at most " + std::to_string(max_length) + " bytes");
  return std::optional<std::string>(s);
}

Result<std::string> JsonFields::required_text(std::string_view key, std::size_t max_length) {
  auto v = text(key, max_length);
  if (!v) return v.status();
  if (!v->has_value() || (*v)->empty()) return missing(key);
  return std::move(**v);
}

Result<std::optional<std::int64_t>> JsonFields::integer(std::string_view key, std::int64_t min, std::int64_t max) {
  const json* v = find(key);
  if (!v) return std::optional<std::int64_t>();
  auto n = checked_integer(*v, "field '" + std::string(key) + "' of " + what_, min, max);
  if (!n) return n.status();
  return std::optional<std::int64_t>(*n);
}

Result<std::optional<bool>> JsonFields::boolean(std::string_view key) {
  const json* v = find(key);
  if (!v) return std::optional<bool>();
  if (!v->is_boolean()) return wrong_type(key, "true or false");
  return std::optional<bool>(v->get<bool>());
}

Result<std::optional<std::vector<std::string>>> JsonFields::text_list(std::string_view key, std::size_t max_items,
                                                                      std::size_t max_length) {
  const json* v = find(key);
  if (!v) return std::optional<std::vector<std::string>>();
  if (!v->is_array()) return wrong_type(key, "a list of strings");
  if (v->size() > max_items)
    return invalid_argument("field '" + std::string(key) + "' of " + what_ + " has " + std::to_string(v->size()) +
                                " items",
                            "it may have at most " + std::to_string(max_items));
  std::vector<std::string> out;
  out.reserve(v->size());
  for (const auto& item : *v) {
    if (!item.is_string()) return wrong_type(key, "a list of strings");
    const auto& s = item.get_ref<const std::string&>();
    if (s.size() > max_length)
      return invalid_argument("an item of field '" + std::string(key) + "' of " + what_ + " is " +
                                  std::to_string(s.size()) + " bytes long",
                              "each may be at most " + std::to_string(max_length) + " bytes");
    out.push_back(s);
  }
  return std::optional<std::vector<std::string>>(std::move(out));
}

Result<std::optional<std::chrono::seconds>> JsonFields::duration(std::string_view key, std::chrono::seconds min,
                                                                 std::chrono::seconds max) {
  const json* v = find(key);
  if (!v) return std::optional<std::chrono::seconds>();
  if (!v->is_string()) return wrong_type(key, "a duration with its unit, like \"90s\", \"15m\" or \"1h30m\"");
  auto d = parse_duration(v->get_ref<const std::string&>());
  if (!d) return d.status().with_context("field '" + std::string(key) + "' of " + what_);
  if (*d < min || *d > max)
    return invalid_argument("field '" + std::string(key) + "' of " + what_ + " is " + format_duration(*d) +
                                ", out of range",
                            "give a duration from " + format_duration(min) + " to " + format_duration(max));
  return std::optional<std::chrono::seconds>(*d);
}

const json* JsonFields::value(std::string_view key) { return find(key); }

Result<const json*> JsonFields::list(std::string_view key, std::size_t max_items) {
  const json* v = find(key);
  if (!v) return v;
  if (!v->is_array()) return wrong_type(key, "a list");
  if (v->size() > max_items)
    return invalid_argument("field '" + std::string(key) + "' of " + what_ + " has " + std::to_string(v->size()) +
                                " items",
                            "it may have at most " + std::to_string(max_items));
  return v;
}

Result<const json*> JsonFields::required_list(std::string_view key, std::size_t max_items) {
  auto v = list(key, max_items);
  if (v && !*v) return missing(key);
  return v;
}

Status JsonFields::missing(std::string_view key) const {
  return invalid_argument("field '" + std::string(key) + "' of " + what_ + " is required", "see /api/v1/openapi.json");
}

Status JsonFields::finish() const {
  for (const auto& [key, v] : object_->items()) {
    if (std::find(known_.begin(), known_.end(), key) != known_.end()) continue;
    return invalid_argument("unknown field '" + excerpt(key, 64) + "' in " + what_,
                            known_.empty() ? std::string("it takes no fields") : "its fields are: " + join(known_, ", "));
  }
  return Status::ok();
}

}  // namespace evac
