// The one strict decoder for JSON that arrives from outside evacd: request
// bodies, a paired site's messages and answers, documents read back from
// peers. Every byte is hostile until it has passed through here:
//
//  - parse_json() refuses nesting deeper than a limit before building
//    anything (nlohmann's parser is iterative, but copying and comparing a
//    parsed value recurse, so one deep array would overflow the stack);
//  - JsonFields reads an object field by field with types, lengths and
//    integer ranges checked (never a silent narrowing), and finish()
//    refuses every key no one asked for, so a misspelt key is an error
//    rather than a default.
#pragma once

#include <chrono>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/status.h"

namespace evac {

// Deeper than any document evac defines (a plan is 5 levels deep).
inline constexpr std::size_t kMaxJsonDepth = 64;
// Text fields that are not names or documents: messages, URLs, paths.
inline constexpr std::size_t kMaxTextLength = 4096;
// Items in any list field of a request (VMs of a group, rules of a plan).
inline constexpr std::size_t kMaxListItems = 10000;

// Parses `text` as JSON; `what` names it in errors ("request body").
Result<nlohmann::json> parse_json(std::string_view text, std::string_view what, std::size_t max_depth = kMaxJsonDepth);

// For callers that treat anything unusable as absent: the parsed value, or
// a discarded value (is_discarded(), and neither object nor array) when
// `text` is not JSON or nests deeper than kMaxJsonDepth.
nlohmann::json parse_json_or_discarded(std::string_view text);

// The deepest nesting of arrays and objects in `text`, counted without
// parsing (strings and escapes skipped), stopping once past `stop_at`.
std::size_t json_nesting_depth(std::string_view text, std::size_t stop_at);

// `text` cut to at most `max` bytes with the length it had, for echoing
// outside input into messages and logs without echoing megabytes.
std::string excerpt(std::string_view text, std::size_t max = 80);

// Converts a JSON number to Int, refusing what is not a whole number or is
// outside [min, max]. `what` names the value in the error.
Result<std::int64_t> checked_integer(const nlohmann::json& value, std::string_view what, std::int64_t min,
                                     std::int64_t max);

class JsonFields {
 public:
  // Fails unless `value` is an object. `what` names it in errors ("a
  // protection group"); `value` must outlive the reader.
  static Result<JsonFields> of(const nlohmann::json& value, std::string what);

  // Absent and null read as nullopt; a wrong type is an error.
  Result<std::optional<std::string>> text(std::string_view key, std::size_t max_length = kMaxTextLength);
  // Present, a string, not empty.
  Result<std::string> required_text(std::string_view key, std::size_t max_length = kMaxTextLength);
  Result<std::optional<std::int64_t>> integer(std::string_view key, std::int64_t min, std::int64_t max);
  template <typename Int>
  Result<std::optional<Int>> integer_as(std::string_view key, Int min, Int max) {
    static_assert(std::is_integral_v<Int> && sizeof(Int) <= sizeof(std::int64_t));
    auto v = integer(key, static_cast<std::int64_t>(min), static_cast<std::int64_t>(max));
    if (!v) return v.status();
    if (!v->has_value()) return std::optional<Int>();
    return std::optional<Int>(static_cast<Int>(**v));  // in range: checked above
  }
  Result<std::optional<bool>> boolean(std::string_view key);
  Result<std::optional<std::vector<std::string>>> text_list(std::string_view key, std::size_t max_items = kMaxListItems,
                                                            std::size_t max_length = kMaxTextLength);
  // A duration with a unit ("90s", "15m", "1h30m", "2d"); a bare number is
  // refused, since whether it meant seconds or minutes cannot be known.
  Result<std::optional<std::chrono::seconds>> duration(std::string_view key, std::chrono::seconds min,
                                                       std::chrono::seconds max);
  // Any value, for a nested shape read by its own decoder; nullptr if absent.
  const nlohmann::json* value(std::string_view key);
  // A list of at most `max_items`, for items read by their own JsonFields;
  // nullptr if absent.
  Result<const nlohmann::json*> list(std::string_view key, std::size_t max_items = kMaxListItems);
  // The same for a list that must be there (never nullptr).
  Result<const nlohmann::json*> required_list(std::string_view key, std::size_t max_items = kMaxListItems);

  // What a reader above gave, for a field that must be there: absent (or
  // null) is an error. The key names the field in that error.
  template <typename T>
  Result<T> required(Result<std::optional<T>> read, std::string_view key) const {
    if (!read) return read.status();
    if (!read->has_value()) return missing(key);
    return std::move(**read);
  }
  // The error for a field that must be there and is not.
  Status missing(std::string_view key) const;

  // Refuses keys none of the readers above asked for, naming the known ones.
  Status finish() const;

  const std::string& what() const { return what_; }

 private:
  JsonFields(const nlohmann::json& object, std::string what) : object_(&object), what_(std::move(what)) {}
  const nlohmann::json* find(std::string_view key);
  Status wrong_type(std::string_view key, std::string_view expected) const;

  const nlohmann::json* object_;
  std::string what_;
  std::vector<std::string> known_;
};

}  // namespace evac
