#include "cli/output.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
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

YAML::Node to_yaml_node(const json& j) {
  YAML::Node n;
  if (j.is_object()) {
    n = YAML::Node(YAML::NodeType::Map);
    for (const auto& [k, v] : j.items()) n[k] = to_yaml_node(v);
  } else if (j.is_array()) {
    n = YAML::Node(YAML::NodeType::Sequence);
    for (const auto& v : j) n.push_back(to_yaml_node(v));
  } else if (j.is_string()) {
    n = j.get<std::string>();
  } else if (j.is_null()) {
    n = YAML::Node(YAML::NodeType::Null);
  } else {
    n = j.dump();
  }
  return n;
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

std::string format_time(std::int64_t unix_seconds) {
  std::time_t t = static_cast<std::time_t>(unix_seconds);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string to_yaml(const json& j) {
  YAML::Emitter e;
  e << to_yaml_node(j);
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
