// evac placeholder list: the placeholders this site holds for its peers'
// protected VMs.
#pragma once

#include "cli/commands/command_support.h"

namespace CLI {
class App;
}

namespace evac::cli {

void add_placeholder_commands(CLI::App& app, Globals& g, int& rc);

}  // namespace evac::cli
