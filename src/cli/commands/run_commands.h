// evac plan test|cleanup|migrate|failover|reprotect|failback NAME starts a run;
// evac run list|show|ack|report|cancel|resume follows and steers it.
#pragma once

#include "cli/commands/command_support.h"

namespace CLI {
class App;
}

namespace evac::cli {

// Adds the operations that start a run (test, cleanup, migrate, failover,
// reprotect, failback) under `plan`, which add_plan_commands made.
void add_run_commands(CLI::App& app, Globals& g, int& rc, CLI::App* plan);

}  // namespace evac::cli
