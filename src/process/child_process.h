// Runs another program as a child of evac's: no shell, its own process
// group (so a deadline or a stop kills whatever it started too), a request
// written to its stdin, its stdout kept (bounded) and its stderr handed
// over line by line as it comes. Host callouts and external replication
// adapters run through it.
#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace evac {

struct ChildRequest {
  std::vector<std::string> argv;       // argv[0] looked up in PATH when it has no '/'
  std::vector<std::string> extra_env;  // "NAME=value", added to the caller's environment
  std::string stdin_data;              // written, then stdin is closed; empty: /dev/null
  bool merge_stderr = false;           // stderr goes to stdout (a callout's interleaved output)
  std::chrono::milliseconds timeout{std::chrono::seconds(300)};
  // Past this many bytes of stdout the child is killed (a runaway program
  // never grows the caller's memory without bound).
  std::size_t max_stdout = std::size_t{16} << 20;
  // Keep only the last max_stdout bytes instead (a callout's log-like output).
  bool stdout_tail_only = false;
  // Each complete line of stderr (without its newline) as it arrives; a
  // line longer than kMaxStderrLine is cut there. Called on the caller's thread.
  std::function<void(std::string_view line)> on_stderr_line;
  // Asked about every 100 ms: true kills the child's group (the caller is
  // shutting down).
  std::function<bool()> should_stop;
};

inline constexpr std::size_t kMaxStderrLine = 64 * 1024;

struct ChildOutcome {
  int exit_code = -1;  // when it exited; -1 when a signal ended it
  int signal = 0;      // the signal that ended it, 0 when it exited
  bool timed_out = false;        // killed at the deadline
  bool stopped = false;          // killed because should_stop said so
  bool stdout_overflow = false;  // killed for writing more than max_stdout
  std::string stdout_data;
  std::string stderr_tail;  // the last 8 KiB of stderr
  std::chrono::milliseconds took{0};
  bool exited_cleanly() const { return exit_code == 0 && !timed_out && !stopped && !stdout_overflow; }
  // "exited with 3", "was killed by signal 9 (Killed)", "did not finish within 300 s and was killed", ...
  std::string describe_end(std::chrono::milliseconds timeout) const;
};

// Runs the child to its end (or kills its whole group at the deadline, on
// a stop or an overflow, and reaps it). Fails only when it could not be
// started: kFailedPrecondition naming the program and why.
Result<ChildOutcome> run_child(const ChildRequest& request);

}  // namespace evac
