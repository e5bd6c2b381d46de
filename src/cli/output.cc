#include "cli/output.h"

#include "cli/progress.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <ostream>

namespace evac::cli {
using nlohmann::json;

namespace {

std::string scalar_text(const json& v) {
  if (v.is_null()) return "-";
  if (v.is_string()) return v.get<std::string>().empty() ? "-" : v.get<std::string>();
  if (v.is_boolean()) return v.get<bool>() ? "yes" : "no";
  if (v.is_array()) {
    std::string out;
    for (const auto& e : v) out += (out.empty() ? "" : ",") + (e.is_object() ? e.value("name", e.dump()) : scalar_text(e));
    return out.empty() ? "-" : out;
  }
  return v.dump();
}

// Strings that a reader would take for something else when written plain
// ("5432", "true", "", "yes") are quoted, so what `-o yaml` prints reads
// back as the same JSON.
void emit(YAML::Emitter& e, const json& j) {
  if (j.is_object()) {
    e << YAML::BeginMap;
    for (const auto& [k, v] : j.items()) {
      e << YAML::Key << k << YAML::Value;
      emit(e, v);
    }
    e << YAML::EndMap;
  } else if (j.is_array()) {
    e << YAML::BeginSeq;
    for (const auto& v : j) emit(e, v);
    e << YAML::EndSeq;
  } else if (j.is_string()) {
    const std::string& s = j.get_ref<const std::string&>();
    bool ambiguous = !plain_scalar(s).is_string() || s == "yes" || s == "no" || s == "on" || s == "off";
    if (ambiguous) e << YAML::DoubleQuoted << s;
    else e << s;
  } else if (j.is_null()) {
    e << YAML::Null;
  } else if (j.is_boolean()) {
    e << (j.get<bool>() ? "true" : "false");
  } else {
    e << j.dump();
  }
}

void print_rows(std::ostream& out, const std::vector<std::vector<std::string>>& rows) {
  if (rows.empty()) return;
  std::vector<std::size_t> widths(rows[0].size(), 0);
  for (const auto& r : rows)
    for (std::size_t i = 0; i < r.size(); ++i) widths[i] = std::max(widths[i], r[i].size());
  for (const auto& r : rows) {
    std::string line;
    for (std::size_t i = 0; i < r.size(); ++i) {
      line += r[i];
      if (i + 1 < r.size()) line += std::string(widths[i] - r[i].size() + 2, ' ');
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out << line << "\n";
  }
}

}  // namespace

Column field(std::string header, std::string path) {
  return Column{std::move(header), [path](const json& item) {
                  const json* cur = &item;
                  std::size_t start = 0;
                  while (start <= path.size()) {
                    auto dot = path.find('.', start);
                    std::string key = path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
                    if (!cur->is_object() || !cur->contains(key)) return std::string("-");
                    cur = &(*cur)[key];
                    if (dot == std::string::npos) break;
                    start = dot + 1;
                  }
                  return scalar_text(*cur);
                }};
}

std::string step_state(const nlohmann::json& step) {
  std::string state = step.value("state", "");
  if (step.contains("overdue_s") && step["overdue_s"].is_number_integer())
    state += " (" + std::to_string(step["overdue_s"].get<std::int64_t>()) + " s past its timeout)";
  // A long step whose progress evacd can see (a reprotect's resync).
  if (step.contains("progress") && step["progress"].is_object()) state += " (" + format_sync_progress(step["progress"]) + ")";
  // The engine's mark on an outcome whose first attempt a restart cut short.
  if (step.contains("result") && step["result"].is_object() && step["result"].contains("interrupted_attempt"))
    state += " (run again after an evacd restart)";
  return state;
}

std::string format_time(std::int64_t unix_seconds) {
  std::time_t t = static_cast<std::time_t>(unix_seconds);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string format_time_ms(std::int64_t unix_ms) {
  std::string seconds = format_time(unix_ms / 1000);
  char ms[8];
  std::snprintf(ms, sizeof ms, ".%03dZ", static_cast<int>(unix_ms % 1000));
  return seconds.substr(0, seconds.size() - 1) + ms;
}

std::string to_yaml(const json& j) {
  YAML::Emitter e;
  emit(e, j);
  return std::string(e.c_str()) + "\n";
}

void print_list(std::ostream& out, const json& items, Format format, const std::vector<Column>& columns) {
  if (format == Format::kJson) {
    out << items.dump(2) << "\n";
    return;
  }
  if (format == Format::kYaml) {
    out << to_yaml(items);
    return;
  }
  if (items.empty()) {
    out << "(none)\n";
    return;
  }
  std::vector<std::vector<std::string>> rows;
  std::vector<std::string> header;
  for (const auto& c : columns) header.push_back(c.header);
  rows.push_back(header);
  for (const auto& item : items) {
    std::vector<std::string> row;
    for (const auto& c : columns) row.push_back(c.cell(item));
    rows.push_back(row);
  }
  print_rows(out, rows);
}

void print_object(std::ostream& out, const json& object, Format format, const std::vector<Column>& columns) {
  if (format == Format::kJson) {
    out << object.dump(2) << "\n";
    return;
  }
  if (format == Format::kYaml) {
    out << to_yaml(object);
    return;
  }
  std::vector<std::vector<std::string>> rows;
  if (columns.empty()) {
    for (const auto& [k, v] : object.items())
      if (!v.is_object() && !(v.is_array() && !v.empty() && v[0].is_object())) rows.push_back({k + ":", scalar_text(v)});
  } else {
    for (const auto& c : columns) rows.push_back({c.header + ":", c.cell(object)});
  }
  print_rows(out, rows);
}

}  // namespace evac::cli
