// evac: the operator's command line. It talks only to evacd's REST API.
//
// Exit codes: 0 the operation succeeded; 1 it failed (the message says why
// and what to do); 2 the command line itself was wrong.
//
// This file composes the command families (cli/commands/) into one CLI.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <new>

#include "cli/commands/adapter_commands.h"
#include "cli/commands/command_support.h"
#include "cli/commands/context_commands.h"
#include "cli/commands/declarative_commands.h"
#include "cli/commands/event_commands.h"
#include "cli/commands/group_commands.h"
#include "cli/commands/inventory_commands.h"
#include "cli/commands/mapping_commands.h"
#include "cli/commands/placeholder_commands.h"
#include "cli/commands/plan_commands.h"
#include "cli/commands/run_commands.h"
#include "cli/commands/site_commands.h"

namespace evac::cli {

int main(int argc, char** argv) {
  CLI::App app{"evac: site recovery orchestration. Talks to an evacd over its REST API."};
  app.require_subcommand(1);
  // Global options (-o, --context, ...) may follow the subcommand too.
  app.fallthrough();
  app.set_version_flag("--version", "evac 0.1.0");
  Globals g;
  int rc = kOk;
  app.add_option("--config", g.config_path, "CLI config file (contexts)")->capture_default_str();
  app.add_option("--context", g.context, "Use this context instead of the current one");
  app.add_option("--url", g.url, "Site URL, overriding the context");
  app.add_option("--token", g.token, "Bearer token, overriding the context");
  app.add_option("--token-file", g.token_file, "File holding the bearer token");
  app.add_option("--pin", g.pin, "The site's TLS key pin, overriding the context");
  app.add_option("-o,--output", g.output, "Output format: table, json or yaml")
      ->check(CLI::IsMember({"table", "json", "yaml"}))
      ->capture_default_str();

  add_context_commands(app, g, rc);
  add_site_commands(app, g, rc);
  add_inventory_commands(app, g, rc);
  add_mapping_commands(app, g, rc);
  add_group_commands(app, g, rc);
  add_placeholder_commands(app, g, rc);
  add_event_commands(app, g, rc);
  add_plan_commands(app, g, rc);
  add_run_commands(app, g, rc, app.get_subcommand("plan"));
  add_declarative_commands(app, g, rc);
  add_adapter_commands(app, g, rc);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    return code == 0 ? kOk : kUsage;
  }
  return rc;
}

// Nothing escapes main: an exception is a bug or exhaustion, said plainly,
// with exit 1 rather than an abort and a core.
int guarded_main(int argc, char** argv) {
  try {
    return main(argc, argv);
  } catch (const std::bad_alloc&) {
    std::fputs("error: out of memory\nhint: evac limits what it reads from files (4 MiB, 100000 values); "
               "if this happened on an answer from evacd, report it as a bug\n",
               stderr);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: unexpected failure: %s\nhint: this is a bug in evac: report it with the command line\n",
                 e.what());
  } catch (...) {
    std::fputs("error: unexpected failure\nhint: this is a bug in evac: report it with the command line\n", stderr);
  }
  return kFailed;
}

}  // namespace evac::cli

int main(int argc, char** argv) { return evac::cli::guarded_main(argc, argv); }
