// evac plan create|list|show|check|delete: recovery plans over protection
// groups; the runs of a plan are started by run_commands.
#pragma once

#include "cli/commands/command_support.h"

namespace CLI {
class App;
}

namespace evac::cli {

void add_plan_commands(CLI::App& app, Globals& g, int& rc);

}  // namespace evac::cli
