#include "service/host_command.h"

#include "process/child_process.h"

namespace evac {

namespace {
constexpr std::size_t kKeptOutput = 8192;
}

Result<HostCommandResult> run_host_command(const std::vector<std::string>& argv, const std::vector<std::string>& env,
                                           std::chrono::seconds timeout) {
  if (argv.empty()) return invalid_argument("a host command needs a program");
  ChildRequest request;
  request.argv = argv;
  request.extra_env = env;
  request.merge_stderr = true;
  request.timeout = timeout;
  request.max_stdout = kKeptOutput;
  request.stdout_tail_only = true;
  EVAC_ASSIGN_OR_RETURN(ChildOutcome child, run_child(request));
  HostCommandResult result;
  result.output = std::move(child.stdout_data);
  if (result.output.size() > kKeptOutput) result.output.erase(0, result.output.size() - kKeptOutput);
  if (child.timed_out)
    return failed_precondition("'" + argv[0] + "' did not finish within " + std::to_string(timeout.count()) + " s and was killed",
                               "make it finish sooner, or raise its timeout in the plan");
  result.exit_code = child.signal != 0 ? 128 + child.signal : child.exit_code;
  return result;
}

}  // namespace evac
