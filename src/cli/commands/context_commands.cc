// evac context add|use|list: contexts in the CLI's config file.
#include "cli/commands/context_commands.h"

#include <CLI/CLI.hpp>

#include <iostream>
#include <memory>

namespace evac::cli {
namespace {
using nlohmann::json;

}  // namespace

void add_context_commands(CLI::App& app, Globals& g, int& rc) {
  auto* ctx = app.add_subcommand("context", "Manage the sites this CLI talks to (~/.config/evac/config.yaml)");
  ctx->require_subcommand(1);

  auto* add = ctx->add_subcommand("add", "Add or replace a context: a site's URL, token and key pin");
  static std::string name, url, token, token_file, pin, pin_file;
  static bool use = false;
  add->add_option("name", name, "Context name, e.g. the site's name")->required();
  add->add_option("--url", url, "The site's evacd URL, https://HOST:PORT")->required();
  add->add_option("--token", token, "Bearer token");
  add->add_option("--token-file", token_file, "File holding the bearer token (the site's state_dir/admin.token)");
  add->add_option("--pin", pin, "The site's TLS key pin, sha256//...");
  add->add_option("--pin-file", pin_file, "File holding the pin (the site's state_dir/pin)");
  add->add_flag("--use", use, "Make it the current context");
  add->callback([&] {
    auto cfg = load_cli_config(g.config_path);
    if (!cfg) { rc = report(cfg.status()); return; }
    Context c{url, token, pin};
    if (!token_file.empty()) {
      auto t = read_first_line(token_file);
      if (!t) { rc = report(t.status()); return; }
      c.token = *t;
    }
    if (!pin_file.empty()) {
      auto p = read_first_line(pin_file);
      if (!p) { rc = report(p.status()); return; }
      c.pin = *p;
    }
    if (c.token.empty() || c.pin.empty()) {
      rc = usage_error("a context needs a token and a pin", "pass --token or --token-file, and --pin or --pin-file");
      return;
    }
    if (c.url.rfind("https://", 0) != 0) {
      rc = usage_error("the URL must start with https://", "for example --url https://127.0.0.1:8441");
      return;
    }
    cfg->contexts[name] = c;
    if (use || cfg->current.empty()) cfg->current = name;
    if (Status s = save_cli_config(g.config_path, *cfg); !s) { rc = report(s); return; }
    std::cout << "context '" << name << "' saved" << (cfg->current == name ? " and in use" : "") << "\n";
  });

  auto* use_cmd = ctx->add_subcommand("use", "Make a context the current one");
  static std::string use_name;
  use_cmd->add_option("name", use_name, "Context name")->required();
  use_cmd->callback([&] {
    auto cfg = load_cli_config(g.config_path);
    if (!cfg) { rc = report(cfg.status()); return; }
    if (!cfg->contexts.count(use_name)) {
      rc = report(not_found("no context named '" + use_name + "'", "list them with `evac context list`"));
      return;
    }
    cfg->current = use_name;
    if (Status s = save_cli_config(g.config_path, *cfg); !s) { rc = report(s); return; }
    std::cout << "now using context '" << use_name << "'\n";
  });

  ctx->add_subcommand("list", "List contexts")->callback([&] {
    auto cfg = load_cli_config(g.config_path);
    if (!cfg) { rc = report(cfg.status()); return; }
    json items = json::array();
    for (const auto& [n, c] : cfg->contexts)
      items.push_back({{"name", n}, {"url", c.url}, {"pin", c.pin}, {"current", n == cfg->current}});
    print_list(std::cout, items, g.format(), {field("NAME", "name"), field("URL", "url"), field("CURRENT", "current")});
  });
}

}  // namespace evac::cli
