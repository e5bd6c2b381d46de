// evac context add|use|list: the sites this CLI talks to, each a URL, a token
// and a key pin in the CLI's config file; no site is contacted.
#pragma once

#include "cli/commands/command_support.h"

namespace CLI {
class App;
}

namespace evac::cli {

void add_context_commands(CLI::App& app, Globals& g, int& rc);

}  // namespace evac::cli
