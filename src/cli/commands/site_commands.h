// evac site show|status|copies|pairing-token|pair|unpair: this site, its
// pairings with other sites and their health.
#pragma once

#include "cli/commands/command_support.h"

namespace CLI {
class App;
}

namespace evac::cli {

void add_site_commands(CLI::App& app, Globals& g, int& rc);

}  // namespace evac::cli
