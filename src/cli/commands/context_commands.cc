// evac context add|use|list: contexts in the CLI's config file.
#include "cli/commands/context_commands.h"

#include <CLI/CLI.hpp>

#include <iostream>
#include <memory>

namespace evac::cli {
namespace {
using nlohmann::json;

struct ContextAddOptions {
  std::string name, url, token, token_file, pin, pin_file;
  bool use = false;
};

struct ContextUseOptions {
  std::string name;
};

void add_context_add(CLI::App& ctx, Globals& g, int& rc) {
  auto o = std::make_shared<ContextAddOptions>();
  auto* add = ctx.add_subcommand("add", "Add or replace a context: a site's URL, token and key pin");
  add->add_option("name", o->name, "Context name, e.g. the site's name")->required();
  add->add_option("--url", o->url, "The site's evacd URL, https://HOST:PORT")->required();
  add->add_option("--token", o->token, "Bearer token");
  add->add_option("--token-file", o->token_file, "File holding the bearer token (the site's state_dir/admin.token)");
  add->add_option("--pin", o->pin, "The site's TLS key pin, sha256//...");
  add->add_option("--pin-file", o->pin_file, "File holding the pin (the site's state_dir/pin)");
  add->add_flag("--use", o->use, "Make it the current context");
  add->callback([&g, &rc, o] {
    auto cfg = load_cli_config(g.config_path);
    if (!cfg) { rc = report(cfg.status()); return; }
    Context c{o->url, o->token, o->pin};
    if (!o->token_file.empty()) {
      auto t = read_first_line(o->token_file);
      if (!t) { rc = report(t.status()); return; }
      c.token = *t;
    }
    if (!o->pin_file.empty()) {
      auto p = read_first_line(o->pin_file);
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
    cfg->contexts[o->name] = c;
    if (o->use || cfg->current.empty()) cfg->current = o->name;
    if (Status s = save_cli_config(g.config_path, *cfg); !s) { rc = report(s); return; }
    std::cout << "context '" << o->name << "' saved" << (cfg->current == o->name ? " and in use" : "") << "\n";
  });
}

void add_context_use(CLI::App& ctx, Globals& g, int& rc) {
  auto o = std::make_shared<ContextUseOptions>();
  auto* use_cmd = ctx.add_subcommand("use", "Make a context the current one");
  use_cmd->add_option("name", o->name, "Context name")->required();
  use_cmd->callback([&g, &rc, o] {
    auto cfg = load_cli_config(g.config_path);
    if (!cfg) { rc = report(cfg.status()); return; }
    if (!cfg->contexts.count(o->name)) {
      rc = report(not_found("no context named '" + o->name + "'", "list them with `evac context list`"));
      return;
    }
    cfg->current = o->name;
    if (Status s = save_cli_config(g.config_path, *cfg); !s) { rc = report(s); return; }
    std::cout << "now using context '" << o->name << "'\n";
  });
}

}  // namespace

void add_context_commands(CLI::App& app, Globals& g, int& rc) {
  auto* ctx = app.add_subcommand("context", "Manage the sites this CLI talks to (~/.config/evac/config.yaml)");
  ctx->require_subcommand(1);
  add_context_add(*ctx, g, rc);
  add_context_use(*ctx, g, rc);
  ctx->add_subcommand("list", "List contexts")->callback([&g, &rc] {
    auto cfg = load_cli_config(g.config_path);
    if (!cfg) { rc = report(cfg.status()); return; }
    json items = json::array();
    for (const auto& [n, c] : cfg->contexts)
      items.push_back({{"name", n}, {"url", c.url}, {"pin", c.pin}, {"current", n == cfg->current}});
    print_list(std::cout, items, g.format(), {field("NAME", "name"), field("URL", "url"), field("CURRENT", "current")});
  });
}

}  // namespace evac::cli
