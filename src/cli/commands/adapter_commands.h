// evac adapter test: the conformance kit, run from the command line on a
// real backend (docs/adapters.md).
#pragma once

#include "cli/commands/command_support.h"

namespace CLI {
class App;
}

namespace evac::cli {

void add_adapter_commands(CLI::App& app, Globals& g, int& rc);

}  // namespace evac::cli
