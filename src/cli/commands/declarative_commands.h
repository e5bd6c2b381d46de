// Declarative configuration: `evac apply -f FILE` sends each document to
// where it belongs, all or nothing (cli/apply.h); `evac get KIND NAME -o
// yaml` prints it back in the same form, so the two round-trip.
#pragma once

#include "cli/commands/command_support.h"

namespace CLI {
class App;
}

namespace evac::cli {

void add_declarative_commands(CLI::App& app, Globals& g, int& rc);

}  // namespace evac::cli
