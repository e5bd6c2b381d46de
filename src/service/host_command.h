// Runs a plan's host callouts: a program on the evacd host, no shell, with
// the run's facts in its environment and a deadline.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "core/status.h"

namespace evac {

struct HostCommandResult {
  int exit_code = 0;
  std::string output;  // stdout and stderr interleaved, the last 8 KiB
};

// Runs argv (argv[0] looked up in PATH) with evacd's environment plus `env`
// ("NAME=value" entries), stdin from /dev/null. Past `timeout` the command's
// whole process group is killed and kFailedPrecondition returned (not
// kUnavailable: a callout is not retried, it may not be idempotent). A program that
// cannot be started is kFailedPrecondition.
Result<HostCommandResult> run_host_command(const std::vector<std::string>& argv, const std::vector<std::string>& env,
                                           std::chrono::seconds timeout);

}  // namespace evac
