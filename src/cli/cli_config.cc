#include "cli/cli_config.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <cstdlib>
#include <filesystem>

namespace evac::cli {

std::string default_config_path() {
  if (const char* p = std::getenv("EVAC_CONFIG"); p && *p) return p;
  if (const char* x = std::getenv("XDG_CONFIG_HOME"); x && *x) return std::string(x) + "/evac/config.yaml";
  const char* home = std::getenv("HOME");
  return std::string(home && *home ? home : "/root") + "/.config/evac/config.yaml";
}

Result<CliConfig> load_cli_config(const std::string& path) {
  CliConfig cfg;
  if (!std::filesystem::exists(path)) return cfg;
  try {
    YAML::Node root = YAML::LoadFile(path);
    if (!root || root.IsNull()) return cfg;
    if (root["current_context"]) cfg.current = root["current_context"].as<std::string>();
    if (auto contexts = root["contexts"]) {
      for (const auto& kv : contexts) {
        Context c;
        const auto& v = kv.second;
        if (v["url"]) c.url = v["url"].as<std::string>();
        if (v["token"]) c.token = v["token"].as<std::string>();
        if (v["pin"]) c.pin = v["pin"].as<std::string>();
        cfg.contexts[kv.first.as<std::string>()] = c;
      }
    }
  } catch (const YAML::Exception& e) {
    return invalid_argument("CLI config " + path + " is not valid: " + e.what(), "fix or remove the file, then add contexts again");
  }
  return cfg;
}

Status save_cli_config(const std::string& path, const CliConfig& config) {
  YAML::Emitter out;
  out << YAML::BeginMap << YAML::Key << "current_context" << YAML::Value << config.current;
  out << YAML::Key << "contexts" << YAML::Value << YAML::BeginMap;
  for (const auto& [name, c] : config.contexts) {
    out << YAML::Key << name << YAML::Value << YAML::BeginMap;
    out << YAML::Key << "url" << YAML::Value << c.url;
    out << YAML::Key << "token" << YAML::Value << c.token;
    out << YAML::Key << "pin" << YAML::Value << c.pin;
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
