#include "service/host_command.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

extern char** environ;

namespace evac {

namespace {
constexpr std::size_t kKeptOutput = 8192;
}

Result<HostCommandResult> run_host_command(const std::vector<std::string>& argv, const std::vector<std::string>& env,
                                           std::chrono::seconds timeout) {
  if (argv.empty()) return invalid_argument("a host command needs a program");
  // Everything the child needs is built before fork: after it, only
  // async-signal-safe calls (evacd has many threads).
  std::vector<std::string> env_strings;
  for (char** e = environ; *e; ++e) env_strings.emplace_back(*e);
  env_strings.insert(env_strings.end(), env.begin(), env.end());
  std::vector<char*> envp, args;
  for (auto& e : env_strings) envp.push_back(e.data());
  envp.push_back(nullptr);
  std::vector<std::string> argv_copy = argv;
  for (auto& a : argv_copy) args.push_back(a.data());
  args.push_back(nullptr);

  int out[2], exec_err[2];
  if (::pipe2(out, O_CLOEXEC) != 0) return internal_error(std::string("cannot create a pipe: ") + std::strerror(errno));
  if (::pipe2(exec_err, O_CLOEXEC) != 0) {
    ::close(out[0]);
    ::close(out[1]);
    return internal_error(std::string("cannot create a pipe: ") + std::strerror(errno));
  }
  pid_t pid = ::fork();
  if (pid < 0) {
    for (int fd : {out[0], out[1], exec_err[0], exec_err[1]}) ::close(fd);
    return unavailable(std::string("cannot start ") + argv[0] + ": " + std::strerror(errno));
  }
  if (pid == 0) {
    ::setpgid(0, 0);  // its own group, so a timeout kills what it started too
    int devnull = ::open("/dev/null", O_RDONLY);
    if (devnull >= 0) ::dup2(devnull, 0);
    ::dup2(out[1], 1);
    ::dup2(out[1], 2);
    // execvpe searches PATH like a shell would, with our environment.
    ::execvpe(args[0], args.data(), envp.data());
    int e = errno;
    [[maybe_unused]] auto n = ::write(exec_err[1], &e, sizeof e);
    ::_exit(127);
  }
  ::setpgid(pid, pid);
  ::close(out[1]);
  ::close(exec_err[1]);

  HostCommandResult result;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  bool timed_out = false;
  char buf[4096];
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count();
    if (left <= 0) {
      timed_out = true;
      break;
    }
    pollfd p{out[0], POLLIN, 0};
    int n = ::poll(&p, 1, static_cast<int>(std::min<long long>(left, 1000)));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) continue;
    ssize_t got = ::read(out[0], buf, sizeof buf);
    if (got > 0) {
      result.output.append(buf, static_cast<std::size_t>(got));
      if (result.output.size() > 2 * kKeptOutput) result.output.erase(0, result.output.size() - kKeptOutput);
    } else if (got == 0 || errno != EINTR) {
      break;  // the command closed its output (usually: it ended)
    }
  }
  ::close(out[0]);
  if (timed_out) ::kill(-pid, SIGKILL);
  int status = 0;
  // Output closed but the process may still run (it closed stdout itself):
  // the deadline still holds.
  for (;;) {
    pid_t w = ::waitpid(pid, &status, WNOHANG);
    if (w == pid || (w < 0 && errno != EINTR)) break;
    if (std::chrono::steady_clock::now() >= deadline) {
      timed_out = true;
      ::kill(-pid, SIGKILL);
    }
    ::usleep(20000);
  }
  int exec_errno = 0;
  bool exec_failed = ::read(exec_err[0], &exec_errno, sizeof exec_errno) == static_cast<ssize_t>(sizeof exec_errno);
  ::close(exec_err[0]);
  if (exec_failed)
    return failed_precondition("cannot run '" + argv[0] + "' on this host: " + std::strerror(exec_errno),
                               "install it on the evacd host, or change the plan");
  if (result.output.size() > kKeptOutput) result.output.erase(0, result.output.size() - kKeptOutput);
  if (timed_out)
    return failed_precondition("'" + argv[0] + "' did not finish within " + std::to_string(timeout.count()) + " s and was killed",
                       "make it finish sooner, or raise its timeout in the plan");
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return result;
}

}  // namespace evac
