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

// What a plain (unquoted) YAML scalar means: null, a boolean, a number, or
// else a string (YAML 1.2's core schema; "yes"/"no" stay strings).
json plain_scalar(const std::string& s) {
  if (s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL") return nullptr;
  if (s == "true" || s == "True" || s == "TRUE") return true;
  if (s == "false" || s == "False" || s == "FALSE") return false;
  std::size_t i = (s[0] == '-' || s[0] == '+') ? 1 : 0;
  bool digits = i < s.size(), dot = false, exp = false;
  for (std::size_t k = i; k < s.size() && digits; ++k) {
    char c = s[k];
    if (c >= '0' && c <= '9') continue;
    if (c == '.' && !dot && !exp) dot = true;
    else if ((c == 'e' || c == 'E') && !exp && k > i && k + 1 < s.size()) {
      exp = true;
      if (s[k + 1] == '-' || s[k + 1] == '+') ++k;
    } else {
      digits = false;
    }
  }
  if (digits) {
    auto parsed = json::parse(s[0] == '+' ? s.substr(1) : s, nullptr, false);
    if (parsed.is_number()) return parsed;
  }
  return s;
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

Result<json> node_to_json(const YAML::Node& n, const std::string& where) {
  switch (n.Type()) {
    case YAML::NodeType::Null:
    case YAML::NodeType::Undefined:
      return json(nullptr);
    case YAML::NodeType::Scalar:
      // A quoted scalar is a string whatever it looks like.
      return n.Tag() == "!" ? json(n.Scalar()) : plain_scalar(n.Scalar());
    case YAML::NodeType::Sequence: {
      json out = json::array();
      for (std::size_t i = 0; i < n.size(); ++i) {
        auto v = node_to_json(n[i], where + "[" + std::to_string(i) + "]");
        if (!v) return v.status();
        out.push_back(std::move(*v));
      }
      return out;
    }
    case YAML::NodeType::Map: {
      json out = json::object();
      for (const auto& kv : n) {
        if (!kv.first.IsScalar())
          return invalid_argument(where + ": a key that is not a plain word", "keys are names such as vm or priority");
        std::string key = kv.first.Scalar();
        if (out.contains(key)) return invalid_argument(where + ": key '" + key + "' appears twice", "give each key once");
        auto v = node_to_json(kv.second, where + "." + key);
        if (!v) return v.status();
        out[key] = std::move(*v);
      }
      return out;
    }
  }
  return json(nullptr);
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

Result<std::vector<json>> parse_documents(const std::string& text, const std::string& source) {
  std::vector<YAML::Node> docs;
  try {
    docs = YAML::LoadAll(text);
  } catch (const YAML::Exception& e) {
    return invalid_argument(source + " is not valid YAML or JSON: line " + std::to_string(e.mark.line + 1) + ", column " +
                                std::to_string(e.mark.column + 1) + ": " + e.msg,
                            "fix the file; nothing was changed");
  }
  std::vector<json> out;
  for (std::size_t i = 0; i < docs.size(); ++i) {
    if (docs[i].IsNull()) continue;  // an empty document between separators
    auto j = node_to_json(docs[i], docs.size() > 1 ? source + " document " + std::to_string(i + 1) : source);
    if (!j) return j.status();
    out.push_back(std::move(*j));
  }
  return out;
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
