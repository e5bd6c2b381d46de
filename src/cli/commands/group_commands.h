// evac group: protection groups, the VMs that replicate and recover together;
// create and change them, sync, list and verify their points in time.
#pragma once

#include "cli/commands/command_support.h"

namespace CLI {
class App;
}

namespace evac::cli {

void add_group_commands(CLI::App& app, Globals& g, int& rc);

}  // namespace evac::cli
