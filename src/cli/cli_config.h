// The CLI's own configuration: named contexts (a site's URL, token and
// key pin) in ~/.config/evac/config.yaml, like kubectl's kubeconfig.
#pragma once

#include <map>
#include <optional>
#include <string>

#include "core/status.h"

namespace evac::cli {

struct Context {
  std::string url;
  std::string token;
  std::string pin;
};

struct CliConfig {
  std::string current;
  std::map<std::string, Context> contexts;
};

// $EVAC_CONFIG, else $XDG_CONFIG_HOME/evac/config.yaml, else ~/.config/evac/config.yaml.
std::string default_config_path();
Result<CliConfig> load_cli_config(const std::string& path);  // a missing file is an empty config
Status save_cli_config(const std::string& path, const CliConfig& config);  // written mode 0600: it holds tokens

}  // namespace evac::cli
