// Rendering API results for people (tables) and programs (JSON, YAML).
#pragma once

#include <functional>
#include <iosfwd>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli/documents.h"  // parse_documents: what -o yaml prints reads back
#include "core/status.h"

namespace evac::cli {

enum class Format { kTable, kJson, kYaml };

struct Column {
  std::string header;
  std::function<std::string(const nlohmann::json&)> cell;
};

// A column showing a field; nested fields as "a.b"; arrays of objects as
// their "name"s joined by commas; null as "-".
Column field(std::string header, std::string path);
std::string format_time(std::int64_t unix_seconds);
// The same to the millisecond: 2026-12-07T02:01:33.123Z.
std::string format_time_ms(std::int64_t unix_ms);
std::string to_yaml(const nlohmann::json& j);
// A run step's state as `evac run show` prints it: for a step running past
// its timeout, by how much (its call has not returned, and the engine
// cannot interrupt it).
std::string step_state(const nlohmann::json& step);
// Lists print one row per item; a single object prints as KEY: value lines
// (or the columns given for it).
void print_list(std::ostream& out, const nlohmann::json& items, Format format, const std::vector<Column>& columns);
void print_object(std::ostream& out, const nlohmann::json& object, Format format,
                  const std::vector<Column>& columns = {});

}  // namespace evac::cli
