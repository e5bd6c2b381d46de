// evac mapping create|list|delete: which network, storage pool or compute
// provider at the recovery site stands for one here.
#pragma once

#include "cli/commands/command_support.h"

namespace CLI {
class App;
}

namespace evac::cli {

void add_mapping_commands(CLI::App& app, Globals& g, int& rc);

}  // namespace evac::cli
