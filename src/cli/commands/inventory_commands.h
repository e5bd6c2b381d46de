// evac inventory providers|vms|vm|networks|pools: what the site's compute
// providers hold, read only.
#pragma once

#include "cli/commands/command_support.h"

namespace CLI {
class App;
}

namespace evac::cli {

void add_inventory_commands(CLI::App& app, Globals& g, int& rc);

}  // namespace evac::cli
