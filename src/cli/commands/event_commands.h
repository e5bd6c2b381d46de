// evac events list: alarms and notable events (RPO breaches and recoveries,
// failed cycles), newest first.
#pragma once

#include "cli/commands/command_support.h"

namespace CLI {
class App;
}

namespace evac::cli {

void add_event_commands(CLI::App& app, Globals& g, int& rc);

}  // namespace evac::cli
