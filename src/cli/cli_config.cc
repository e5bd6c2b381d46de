#include "cli/cli_config.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <cstdlib>
#include <filesystem>
#include <initializer_list>

#include "cli/documents.h"

namespace evac::cli {

std::string default_config_path() {
  if (const char* p = std::getenv("EVAC_CONFIG"); p && *p) return p;
  if (const char* x = std::getenv("XDG_CONFIG_HOME"); x && *x) return std::string(x) + "/evac/config.yaml";
  const char* home = std::getenv("HOME");
  return std::string(home && *home ? home : "/root") + "/.config/evac/config.yaml";
}

namespace {

// A field of the config file that must be a string, if present.
Status read_string(const nlohmann::json& object, const std::string& key, const std::string& where, std::string* out) {
  if (!object.contains(key) || object[key].is_null()) return Status::ok();
  const nlohmann::json& v = object[key];
  // Older versions wrote values plain: a token or a name of digits reads as a number.
  if (v.is_number() || v.is_boolean()) {
    *out = v.dump();
    return Status::ok();
  }
  if (!v.is_string()) return invalid_argument(where + "." + key + " is not text");
  *out = v.get<std::string>();
  return Status::ok();
}

// Only the keys evac writes: a misspelt one would otherwise be a silent default.
Status known_keys(const nlohmann::json& object, const std::string& where, std::initializer_list<const char*> keys) {
  for (const auto& [key, value] : object.items()) {
    bool known = false;
    for (const char* k : keys) known = known || key == k;
    if (!known) {
      std::string list;
      for (const char* k : keys) list += (list.empty() ? "" : ", ") + std::string(k);
      return invalid_argument(where + " has an unknown key '" + key + "'", "the keys are " + list);
    }
  }
  return Status::ok();
}

Result<CliConfig> parse_cli_config(const std::string& path) {
  CliConfig cfg;
  DocumentBudget budget;
  auto text = read_file_limited(path, budget);
  if (!text) return text.status();
  auto docs = parse_documents(*text, path, budget);
  if (!docs) return docs.status();
  if (docs->empty()) return cfg;
  if (docs->size() > 1) return invalid_argument(path + " holds " + std::to_string(docs->size()) + " documents, not one");
  const nlohmann::json& root = (*docs)[0];
  if (!root.is_object()) return invalid_argument(path + " is not a map of current_context and contexts");
  EVAC_RETURN_IF_ERROR(known_keys(root, path, {"current_context", "contexts"}));
  EVAC_RETURN_IF_ERROR(read_string(root, "current_context", path, &cfg.current));
  if (!root.contains("contexts") || root["contexts"].is_null()) return cfg;
  if (!root["contexts"].is_object()) return invalid_argument(path + ": contexts is not a map of names to contexts");
  for (const auto& [name, v] : root["contexts"].items()) {
    const std::string where = path + ": contexts." + name;
    if (!v.is_object()) return invalid_argument(where + " is not a map of url, token and pin");
    EVAC_RETURN_IF_ERROR(known_keys(v, where, {"url", "token", "pin"}));
    Context c;
    EVAC_RETURN_IF_ERROR(read_string(v, "url", where, &c.url));
    EVAC_RETURN_IF_ERROR(read_string(v, "token", where, &c.token));
    EVAC_RETURN_IF_ERROR(read_string(v, "pin", where, &c.pin));
    cfg.contexts[name] = c;
  }
  return cfg;
}

}  // namespace

Result<CliConfig> load_cli_config(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return CliConfig{};
  auto cfg = parse_cli_config(path);
  if (!cfg)
    return invalid_argument("CLI config: " + cfg.status().message(), "fix or remove the file, then add contexts again");
  return cfg;
}

Status save_cli_config(const std::string& path, const CliConfig& config) {
  YAML::Emitter out;
  // Values quoted: a token or a name of digits reads back as text.
  out << YAML::BeginMap << YAML::Key << "current_context" << YAML::Value << YAML::DoubleQuoted << config.current;
  out << YAML::Key << "contexts" << YAML::Value << YAML::BeginMap;
  for (const auto& [name, c] : config.contexts) {
    out << YAML::Key << name << YAML::Value << YAML::BeginMap;
    out << YAML::Key << "url" << YAML::Value << YAML::DoubleQuoted << c.url;
    out << YAML::Key << "token" << YAML::Value << YAML::DoubleQuoted << c.token;
    out << YAML::Key << "pin" << YAML::Value << YAML::DoubleQuoted << c.pin;
    out << YAML::EndMap;
  }
  out << YAML::EndMap << YAML::EndMap;
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(path).parent_path(), ec);
  std::string tmp = path + ".tmp";
  ::unlink(tmp.c_str());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return failed_precondition("cannot write CLI config " + path, "check the folder's permissions");
  std::string text = std::string(out.c_str()) + "\n";
  bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  ::close(fd);
  if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0) return failed_precondition("cannot write CLI config " + path);
  return Status::ok();
}

}  // namespace evac::cli
