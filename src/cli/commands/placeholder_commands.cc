// evac placeholder list: placeholders registered here for peers' protected VMs.
#include "cli/commands/placeholder_commands.h"

#include <CLI/CLI.hpp>

namespace evac::cli {

void add_placeholder_commands(CLI::App& app, Globals& g, int& rc) {
  auto* ph = app.add_subcommand("placeholder", "Placeholders this site holds for its peers' protected VMs");
  ph->require_subcommand(1);
  ph->add_subcommand("list", "List placeholders registered here")->callback([&g, &rc] {
    rc = call_and_print(g, "GET", "/api/v1/placeholders", std::nullopt,
                        as_list(g, {field("NAME", "name"), field("UUID", "uuid"), field("PROVIDER", "provider"),
                                    field("GROUP", "group"), field("FROM-SITE", "source_site")}));
  });
}

}  // namespace evac::cli
