#include "config/daemon_config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <charconv>
#include <fstream>
#include <initializer_list>
#include <set>
#include <sstream>
#include <string_view>

#include "core/duration.h"
#include "core/json_decode.h"

namespace evac {
namespace {

Status config_error(const std::string& origin, const std::string& message, const std::string& hint) {
  return invalid_argument(origin + ": " + message, hint);
}

Result<std::string> required_string(const YAML::Node& root, const char* key, const std::string& origin) {
  auto node = root[key];
  if (!node || node.IsNull())
    return config_error(origin, std::string("missing required key '") + key + "'", std::string("add '") + key + ": ...'");
  if (!node.IsScalar())
    return config_error(origin, std::string("'") + key + "' must be a string (line " + std::to_string(node.Mark().line + 1) + ")",
                        "quote the value");
  return node.as<std::string>();
}

std::optional<std::string> optional_string(const YAML::Node& root, const char* key) {
  auto node = root[key];
  if (!node || node.IsNull() || !node.IsScalar()) return std::nullopt;
  return node.as<std::string>();
}

Status parse_listen(const std::string& value, DaemonConfig& cfg, const std::string& origin) {
  auto colon = value.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == value.size())
    return config_error(origin, "'listen' must be HOST:PORT, got '" + value + "'", "for example listen: 127.0.0.1:8441");
  std::string host = value.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  int port = 0;
  try {
    std::size_t used = 0;
    port = std::stoi(value.substr(colon + 1), &used);
    if (used != value.size() - colon - 1) port = -1;
  } catch (...) {
    port = -1;
  }
  if (port < 0 || port > 65535)
    return config_error(origin, "'listen' has a bad port in '" + value + "'", "use a port number from 1 to 65535 (0 picks a free one)");
  cfg.listen_host = host;
  cfg.listen_port = port;
  return Status::ok();
}

// Refuses a key of `map` not in `known`, naming it (as `prefix` + key) and
// its line, so a typo never silently drops a setting.
Status refuse_unknown_keys(const YAML::Node& map, std::initializer_list<std::string_view> known, const std::string& prefix,
                           const std::string& where, std::string_view hint_lead = "") {
  for (const auto& kv : map) {
    if (!kv.first.IsScalar())
      return config_error(where, "a key that is not a plain word (line " + std::to_string(kv.first.Mark().line + 1) + ")",
                          std::string(hint_lead) + "write each setting as 'name: value'");
    auto key = kv.first.as<std::string>();
    if (std::find(known.begin(), known.end(), key) != known.end()) continue;
    std::string listed;
    for (auto k : known) listed += (listed.empty() ? "" : ", ") + prefix + std::string(k);
    return config_error(where, "unknown key '" + prefix + key + "' (line " + std::to_string(kv.first.Mark().line + 1) + ")",
                        std::string(hint_lead) + "known keys: " + listed);
  }
  return Status::ok();
}

Status parse_duration_key(const YAML::Node& root, const char* key, std::chrono::seconds& out, const std::string& origin) {
  auto v = optional_string(root, key);
  if (!v) return Status::ok();
  auto d = parse_duration(*v);
  if (!d) return config_error(origin, std::string("'") + key + "': " + d.status().message(), d.status().hint());
  if (d->count() <= 0) return config_error(origin, std::string("'") + key + "' must be longer than 0s", "for example 5s");
  if (*d > std::chrono::hours(24 * 365))
    return config_error(origin, std::string("'") + key + "' is longer than a year", "give a duration up to 365d");
  out = *d;
  return Status::ok();
}

Status parse_providers(const YAML::Node& root, DaemonConfig& cfg, const std::string& origin) {
  auto list = root["compute_providers"];
  if (!list) return Status::ok();  // a site may start empty and gain providers later
  if (!list.IsSequence())
    return config_error(origin, "'compute_providers' must be a list", "write '- {name: local, kind: libvirt, uri: qemu:///system}'");
  std::set<std::string> names;
  for (std::size_t i = 0; i < list.size(); ++i) {
    const auto& item = list[i];
    std::string where = origin + " compute_providers[" + std::to_string(i) + "]";
    if (!item.IsMap()) return config_error(where, "must be a map with name, kind and uri", "see docs/configuration.md");
    EVAC_RETURN_IF_ERROR(refuse_unknown_keys(item, {"name", "kind", "uri", "connect_timeout", "keepalive"}, "", where));
    ProviderConfig p;
    auto name = required_string(item, "name", where);
    if (!name) return name.status();
    p.name = *name;
    EVAC_RETURN_IF_ERROR(validate_name("compute provider", p.name).with_context(where));
    p.kind = optional_string(item, "kind").value_or("libvirt");
    auto uri = required_string(item, "uri", where);
    if (!uri) return uri.status();
    p.uri = *uri;
    EVAC_RETURN_IF_ERROR(parse_duration_key(item, "connect_timeout", p.connect_timeout, where));
    EVAC_RETURN_IF_ERROR(parse_duration_key(item, "keepalive", p.keepalive, where));
    if (!names.insert(p.name).second)
      return config_error(where, "duplicate compute provider name '" + p.name + "'", "give each provider its own name");
    cfg.compute_providers.push_back(std::move(p));
  }
  return Status::ok();
}

// An adapter's settings, YAML to JSON: a quoted scalar is a string; a plain
// one a whole number, true/false or null when it reads as one, a string
// otherwise.
// At most this many values in one adapter's settings: YAML aliases can
// name a node many times over, so a short file could expand without bound.
constexpr std::size_t kMaxSettingsValues = 10000;

Result<nlohmann::json> settings_json(const YAML::Node& node, const std::string& where, int depth, std::size_t& budget) {
  if (depth > 16) return config_error(where, "settings nest deeper than 16 levels", "flatten the adapter's settings");
  if (budget == 0)
    return config_error(where, "settings hold more than " + std::to_string(kMaxSettingsValues) + " values",
                        "an adapter's settings are a few keys; check for YAML aliases repeating a large node");
  --budget;
  if (node.IsMap()) {
    nlohmann::json out = nlohmann::json::object();
    for (const auto& kv : node) {
      if (!kv.first.IsScalar())
        return config_error(where, "a settings key that is not a plain word (line " + std::to_string(kv.first.Mark().line + 1) + ")",
                            "write each setting as 'name: value'");
      EVAC_ASSIGN_OR_RETURN(out[kv.first.as<std::string>()], settings_json(kv.second, where, depth + 1, budget));
    }
    return out;
  }
  if (node.IsSequence()) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& item : node) {
      EVAC_ASSIGN_OR_RETURN(auto v, settings_json(item, where, depth + 1, budget));
      out.push_back(std::move(v));
    }
    return out;
  }
  if (!node || node.IsNull()) return nlohmann::json(nullptr);
  const std::string text = node.as<std::string>();
  if (node.Tag() == "!") return nlohmann::json(text);
  if (text == "true" || text == "false") return nlohmann::json(text == "true");
  std::int64_t n = 0;
  const char* end = text.data() + text.size();
  if (!text.empty() && std::from_chars(text.data(), end, n).ptr == end) return nlohmann::json(n);
  return nlohmann::json(text);
}

Status parse_adapter(const YAML::Node& item, const std::string& where, ReplicationAdapterConfig& a) {
  if (!item.IsMap()) return config_error(where, "must be a map with kind and command", "see docs/adapters.md");
  EVAC_RETURN_IF_ERROR(refuse_unknown_keys(item, {"kind", "command", "timeout", "timeouts", "await_limit", "settings"}, "", where));
  EVAC_ASSIGN_OR_RETURN(a.kind, required_string(item, "kind", where));
  EVAC_RETURN_IF_ERROR(validate_name("replication adapter kind", a.kind).with_context(where));
  if (a.kind == "builtin")
    return config_error(where, "kind 'builtin' is evac's own replicator", "name the adapter after its engine, e.g. kind: rbd");
  auto command = item["command"];
  if (!command || !command.IsSequence() || command.size() == 0)
    return config_error(where, "'command' must be a list: the program and its arguments",
                        "for example command: [/usr/lib/evac/evac-rbd-adapter]");
  for (const auto& arg : command) {
    if (!arg.IsScalar()) return config_error(where, "each item of 'command' must be a string", "quote it");
    a.command.push_back(arg.as<std::string>());
  }
  if (a.command[0].empty() || a.command[0].front() != '/')
    return config_error(where, "the program of 'command' must be an absolute path, not '" + excerpt(a.command[0], 200) + "'",
                        "name the adapter's executable by its full path");
  EVAC_RETURN_IF_ERROR(parse_duration_key(item, "timeout", a.timeout, where));
  EVAC_RETURN_IF_ERROR(parse_duration_key(item, "await_limit", a.await_limit, where));
  if (auto timeouts = item["timeouts"]) {
    if (!timeouts.IsMap())
      return config_error(where, "'timeouts' must be a map of operation to duration", "for example timeouts: {ship: 1h}");
    for (const auto& kv : timeouts) {
      std::chrono::seconds d{0};
      const std::string op = kv.first.as<std::string>();
      EVAC_RETURN_IF_ERROR(parse_duration_key(timeouts, op.c_str(), d, where + " timeouts"));
      a.timeouts[op] = d;
    }
  }
  if (auto settings = item["settings"]) {
    if (!settings.IsMap()) return config_error(where, "'settings' must be a map", "see the adapter's documentation");
    std::size_t budget = kMaxSettingsValues;
    EVAC_ASSIGN_OR_RETURN(a.settings, settings_json(settings, where + " settings", 0, budget));
  }
  return Status::ok();
}

Status parse_adapters(const YAML::Node& root, DaemonConfig& cfg, const std::string& origin) {
  auto list = root["replication_adapters"];
  if (!list || list.IsNull()) return Status::ok();
  if (!list.IsSequence())
    return config_error(origin, "'replication_adapters' must be a list", "write '- {kind: rbd, command: [/path/adapter]}'");
  std::set<std::string> kinds;
  for (std::size_t i = 0; i < list.size(); ++i) {
    ReplicationAdapterConfig a;
    const std::string where = origin + " replication_adapters[" + std::to_string(i) + "]";
    EVAC_RETURN_IF_ERROR(parse_adapter(list[i], where, a));
    if (!kinds.insert(a.kind).second)
      return config_error(where, "a second adapter of kind '" + a.kind + "'", "give each adapter its own kind");
    cfg.replication_adapters.push_back(std::move(a));
  }
  return Status::ok();
}

Status parse_replication(const YAML::Node& root, DaemonConfig& cfg, const std::string& origin) {
  auto node = root["replication"];
  if (!node || node.IsNull()) return Status::ok();
  if (!node.IsMap())
    return config_error(origin, "'replication' must be a map", "for example replication: {schedules: false}");
  EVAC_RETURN_IF_ERROR(refuse_unknown_keys(node, {"schedules", "check_interval", "full_read_every", "wait_limit"}, "replication.", origin));
  if (auto s = node["schedules"]) {
    std::string v = s.IsScalar() ? s.as<std::string>() : "";
    if (v == "true" || v == "on" || v == "yes")
      cfg.replication_schedules = true;
    else if (v == "false" || v == "off" || v == "no")
      cfg.replication_schedules = false;
    else
      return config_error(origin, "'replication.schedules' must be true or false, not '" + v + "'",
                          "write replication: {schedules: false} to sync only by hand");
  }
  if (auto v = optional_string(node, "full_read_every"); v && (*v == "off" || *v == "never")) {
    cfg.replication_full_read_every = std::chrono::seconds(0);
  } else {
    EVAC_RETURN_IF_ERROR(
        parse_duration_key(node, "full_read_every", cfg.replication_full_read_every, origin + " replication"));
  }
  EVAC_RETURN_IF_ERROR(parse_duration_key(node, "wait_limit", cfg.replication_wait_limit, origin + " replication"));
  return parse_duration_key(node, "check_interval", cfg.replication_check_interval, origin + " replication");
}

Status parse_runs(const YAML::Node& root, DaemonConfig& cfg, const std::string& origin) {
  auto node = root["runs"];
  if (!node || node.IsNull()) return Status::ok();
  if (!node.IsMap()) return config_error(origin, "'runs' must be a map", "for example runs: {max_parallel: 16, per_provider_limit: 8}");
  EVAC_RETURN_IF_ERROR(refuse_unknown_keys(node, {"max_parallel", "per_provider_limit"}, "runs.", origin));
  for (const auto& kv : node) {
    auto key = kv.first.as<std::string>();
    int* target = key == "max_parallel" ? &cfg.runs_max_parallel : &cfg.runs_per_provider_limit;
    int v = 0;
    if (!YAML::convert<int>::decode(kv.second, v) || v < 1 || v > 1024)
      return config_error(origin, "'runs." + key + "' must be a whole number from 1 to 1024", "for example runs: {" + key + ": 8}");
    *target = v;
  }
  return Status::ok();
}

// "api:": limits on what clients may send (see ApiLimits in src/api/router.h).
Status parse_api(const YAML::Node& root, DaemonConfig& cfg, const std::string& origin) {
  auto node = root["api"];
  if (!node || node.IsNull()) return Status::ok();
  if (!node.IsMap()) return config_error(origin, "'api' must be a map", "for example api: {max_request_body: 1MiB}");
  EVAC_RETURN_IF_ERROR(refuse_unknown_keys(node, {"max_request_body", "read_timeout", "max_connections"}, "api.", origin));
  if (auto v = optional_string(node, "max_request_body")) {
    // A whole number of bytes, or with KiB or MiB.
    std::size_t scale = 1;
    std::string digits = *v;
    for (auto [suffix, factor] : {std::pair{"KiB", 1024}, std::pair{"MiB", 1024 * 1024}})
      if (digits.size() > 3 && digits.compare(digits.size() - 3, 3, suffix) == 0) {
        digits.resize(digits.size() - 3);
        scale = static_cast<std::size_t>(factor);
      }
    std::size_t n = 0;
    const char* end = digits.data() + digits.size();
    if (digits.empty() || std::from_chars(digits.data(), end, n).ptr != end || n * scale < 4096 ||
        n * scale > 64 * 1024 * 1024)
      return config_error(origin, "'api.max_request_body' must be a size from 4KiB to 64MiB", "for example 1MiB");
    cfg.api_max_request_body = n * scale;
  }
  EVAC_RETURN_IF_ERROR(parse_duration_key(node, "read_timeout", cfg.api_read_timeout, origin + " api"));
  if (auto v = node["max_connections"]) {
    int n = 0;
    if (!YAML::convert<int>::decode(v, n) || n < 8 || n > 4096)
      return config_error(origin, "'api.max_connections' must be a whole number from 8 to 4096", "for example 512");
    cfg.api_max_connections = static_cast<std::size_t>(n);
  }
  return Status::ok();
}

}  // namespace

Status validate_name(std::string_view kind, std::string_view name) {
  auto hint = "use 1-63 characters: letters, digits, '-', '_' or '.', starting with a letter or digit";
  // The name is outside input: echo at most a little of it.
  if (name.empty() || name.size() > 63)
    return invalid_argument(std::string(kind) + " name '" + excerpt(name, 64) + "' has a bad length", hint);
  for (std::size_t i = 0; i < name.size(); ++i) {
    char c = name[i];
    bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    if (!alnum && (i == 0 || (c != '-' && c != '_' && c != '.')))
      return invalid_argument(std::string(kind) + " name '" + excerpt(name, 64) + "' is not allowed", hint);
  }
  return Status::ok();
}

Result<DaemonConfig> parse_daemon_config(const std::string& yaml_text, const std::string& origin) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    return config_error(origin, "not valid YAML at line " + std::to_string(e.mark.line + 1) + ": " + e.msg,
                        "fix the YAML syntax (indentation, quotes, colons)");
  }
  if (!root.IsMap()) return config_error(origin, "must be a YAML map of settings", "see docs/configuration.md for an example");

  try {
    EVAC_RETURN_IF_ERROR(refuse_unknown_keys(root,
                                             {"site", "listen", "advertise_url", "state_dir", "tls", "heartbeat_interval",
                                              "peer_timeout", "log", "compute_providers", "replication", "replication_adapters",
                                              "runs", "api"},
                                             "", origin, "check its spelling; "));
    DaemonConfig cfg;
    auto site = required_string(root, "site", origin);
    if (!site) return site.status();
    cfg.site = *site;
    EVAC_RETURN_IF_ERROR(validate_name("site", cfg.site).with_context(origin));
    auto state_dir = required_string(root, "state_dir", origin);
    if (!state_dir) return state_dir.status();
    cfg.state_dir = *state_dir;
    if (cfg.state_dir.empty() || cfg.state_dir.front() != '/')
      return config_error(origin, "'state_dir' must be an absolute path", "for example state_dir: /var/lib/evac/" + cfg.site);
    if (auto listen = optional_string(root, "listen")) EVAC_RETURN_IF_ERROR(parse_listen(*listen, cfg, origin));
    cfg.advertise_url = optional_string(root, "advertise_url").value_or("");
    if (!cfg.advertise_url.empty() && cfg.advertise_url.rfind("https://", 0) != 0)
      return config_error(origin, "'advertise_url' must start with https://", "evac sites only talk over TLS");
    if (auto tls = root["tls"]) {
      cfg.tls_cert = optional_string(tls, "cert");
      cfg.tls_key = optional_string(tls, "key");
      if (cfg.tls_cert.has_value() != cfg.tls_key.has_value())
        return config_error(origin, "'tls' needs both cert and key", "set both, or neither to use a self-signed certificate");
    }
    EVAC_RETURN_IF_ERROR(parse_duration_key(root, "heartbeat_interval", cfg.heartbeat_interval, origin));
    EVAC_RETURN_IF_ERROR(parse_duration_key(root, "peer_timeout", cfg.peer_timeout, origin));
    if (auto log = root["log"]) {
      cfg.log_format = optional_string(log, "format").value_or(cfg.log_format);
      cfg.log_level = optional_string(log, "level").value_or(cfg.log_level);
      if (cfg.log_format != "text" && cfg.log_format != "json")
        return config_error(origin, "log.format must be 'text' or 'json'", "set log: {format: json}");
      static const std::set<std::string> kLevels = {"trace", "debug", "info", "warn", "error"};
      if (!kLevels.count(cfg.log_level))
        return config_error(origin, "log.level '" + cfg.log_level + "' is unknown", "use trace, debug, info, warn or error");
    }
    EVAC_RETURN_IF_ERROR(parse_providers(root, cfg, origin));
    EVAC_RETURN_IF_ERROR(parse_replication(root, cfg, origin));
    EVAC_RETURN_IF_ERROR(parse_adapters(root, cfg, origin));
    EVAC_RETURN_IF_ERROR(parse_runs(root, cfg, origin));
    EVAC_RETURN_IF_ERROR(parse_api(root, cfg, origin));
    return cfg;
  } catch (const YAML::Exception& e) {
    return config_error(origin, std::string("bad value: ") + e.what(), "check the value's type");
  }
}

Result<DaemonConfig> load_daemon_config(const std::string& path) {
  std::ifstream in(path);
  if (!in)
    return invalid_argument("cannot read config file " + path, "check the path given to --config and its permissions");
  // Far more than any real configuration: a file that is not one.
  constexpr std::streamsize kMaxConfigBytes = 1024 * 1024;
  std::string text(kMaxConfigBytes + 1, '\0');
  in.read(text.data(), kMaxConfigBytes + 1);
  text.resize(static_cast<std::size_t>(in.gcount()));
  if (text.size() > static_cast<std::size_t>(kMaxConfigBytes))
    return invalid_argument("config file " + path + " is larger than 1 MiB", "is --config pointing at the right file?");
  return parse_daemon_config(text, path);
}

}  // namespace evac
