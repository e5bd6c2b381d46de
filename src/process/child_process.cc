#include "process/child_process.h"

#include "process/fd.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <mutex>

extern char** environ;

namespace evac {

namespace {

constexpr std::size_t kKeptStderr = 8192;
constexpr auto kStopPoll = std::chrono::milliseconds(100);

struct Pipe {
  Fd read, write;
};

Status make_pipe(Pipe& p) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return internal_error(std::string("cannot create a pipe: ") + std::strerror(errno));
  p.read.reset(fds[0]);
  p.write.reset(fds[1]);
  return Status::ok();
}

// A child that closes its stdin early makes our write fail with EPIPE
// rather than kill the caller: evac's programs never want SIGPIPE.
void ignore_sigpipe_once() {
  static std::once_flag once;
  std::call_once(once, [] { ::signal(SIGPIPE, SIG_IGN); });
}

// Splits stderr into lines for the caller and keeps its tail.
class StderrLines {
 public:
  explicit StderrLines(const std::function<void(std::string_view)>& sink) : sink_(sink) {}
  void add(const char* data, std::size_t n, std::string& tail) {
    tail.append(data, n);
    if (tail.size() > 2 * kKeptStderr) tail.erase(0, tail.size() - kKeptStderr);
    if (!sink_) return;
    partial_.append(data, n);
    std::size_t start = 0;
    for (std::size_t nl; (nl = partial_.find('\n', start)) != std::string::npos; start = nl + 1)
      sink_(std::string_view(partial_).substr(start, nl - start));
    partial_.erase(0, start);
    if (partial_.size() > kMaxStderrLine) {
      sink_(std::string_view(partial_).substr(0, kMaxStderrLine));
      partial_.clear();
    }
  }
  void finish() {
    if (sink_ && !partial_.empty()) sink_(partial_);
    partial_.clear();
  }

 private:
  const std::function<void(std::string_view)>& sink_;
  std::string partial_;
};

// Feeds the child's stdin and drains its stdout and stderr until they
// close, the deadline passes, a stop is asked or stdout overflows; true
// when the child must be killed.
bool pump(const ChildRequest& request, Fd& in, Fd& out, Fd& err, std::chrono::steady_clock::time_point deadline,
          ChildOutcome& outcome) {
  StderrLines lines(request.on_stderr_line);
  std::size_t written = 0;
  bool kill_now = false;
  char buf[16384];
  auto open_fds = [&] { return out.get() >= 0 || err.get() >= 0 || in.get() >= 0; };
  while (open_fds() && !kill_now) {
    auto now = std::chrono::steady_clock::now();
    if (now >= deadline) {
      outcome.timed_out = kill_now = true;
      break;
    }
    if (request.should_stop && request.should_stop()) {
      outcome.stopped = kill_now = true;
      break;
    }
    auto wait = std::min(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now), kStopPoll);
    pollfd fds[3] = {{out.get(), POLLIN, 0}, {err.get(), POLLIN, 0}, {in.get(), POLLOUT, 0}};
    int n = ::poll(fds, 3, static_cast<int>(std::max<long long>(wait.count(), 1)));
    if (n < 0 && errno != EINTR) break;
    if (n <= 0) continue;
    if (fds[2].revents != 0) {
      ssize_t put = ::write(in.get(), request.stdin_data.data() + written, request.stdin_data.size() - written);
      if (put > 0) written += static_cast<std::size_t>(put);
      // Written in full, or the child closed its stdin (EPIPE): either way
      // it has all it will read.
      if (written == request.stdin_data.size() || (put < 0 && errno != EAGAIN && errno != EINTR)) in.reset();
    }
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      ssize_t got = ::read(fds[i].fd, buf, sizeof buf);
      if (got > 0 && i == 0) {
        outcome.stdout_data.append(buf, static_cast<std::size_t>(got));
        if (outcome.stdout_data.size() > request.max_stdout) {
          if (!request.stdout_tail_only) outcome.stdout_overflow = kill_now = true;
          else if (outcome.stdout_data.size() > 2 * request.max_stdout)
            outcome.stdout_data.erase(0, outcome.stdout_data.size() - request.max_stdout);
        }
      } else if (got > 0) {
        lines.add(buf, static_cast<std::size_t>(got), outcome.stderr_tail);
      } else if (got == 0 || (errno != EINTR && errno != EAGAIN)) {
        (i == 0 ? out : err).reset();
      }
    }
  }
  lines.finish();
  return kill_now;
}

}  // namespace

std::string ChildOutcome::describe_end(std::chrono::milliseconds timeout) const {
  if (timed_out)
    return "did not finish within " + std::to_string((timeout.count() + 999) / 1000) + " s and was killed";
  if (stopped) return "was stopped (evac is shutting down)";
  if (stdout_overflow) return "wrote more output than evac reads and was killed";
  if (signal != 0) return "was killed by signal " + std::to_string(signal) + " (" + ::strsignal(signal) + ")";
  return "exited with " + std::to_string(exit_code);
}

Result<ChildOutcome> run_child(const ChildRequest& request) {
  if (request.argv.empty() || request.argv[0].empty()) return invalid_argument("a child process needs a program");
  ignore_sigpipe_once();
  // Everything the child needs is built before fork: after it, only
  // async-signal-safe calls (evacd has many threads).
  std::vector<std::string> env_strings;
  for (char** e = environ; *e; ++e) env_strings.emplace_back(*e);
  env_strings.insert(env_strings.end(), request.extra_env.begin(), request.extra_env.end());
  std::vector<char*> envp, args;
  for (auto& e : env_strings) envp.push_back(e.data());
  envp.push_back(nullptr);
  std::vector<std::string> argv_copy = request.argv;
  for (auto& a : argv_copy) args.push_back(a.data());
  args.push_back(nullptr);

  Pipe in, out, err, exec_err;
  for (Pipe* p : {&in, &out, &err, &exec_err})
    if (Status s = make_pipe(*p); !s) return s;
  Fd devnull(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  const bool feed = !request.stdin_data.empty();

  const auto started = std::chrono::steady_clock::now();
  pid_t pid = ::fork();
  if (pid < 0) return unavailable("cannot start " + request.argv[0] + ": " + std::strerror(errno), "the host is short of processes or memory; retry");
  if (pid == 0) {
    ::setpgid(0, 0);  // its own group, so a kill reaches what it started too
    ::dup2(feed ? in.read.get() : devnull.get(), 0);
    ::dup2(out.write.get(), 1);
    ::dup2(request.merge_stderr ? out.write.get() : err.write.get(), 2);
    ::signal(SIGPIPE, SIG_DFL);
    ::execvpe(args[0], args.data(), envp.data());
    int e = errno;
    [[maybe_unused]] auto n = ::write(exec_err.write.get(), &e, sizeof e);
    ::_exit(127);
  }
  ::setpgid(pid, pid);  // also here: no window in which a kill(-pid) misses
  in.read.reset();
  out.write.reset();
  err.write.reset();
  exec_err.write.reset();
  if (request.merge_stderr) err.read.reset();
  if (!feed) in.write.reset();
  if (in.write.get() >= 0) ::fcntl(in.write.get(), F_SETFL, ::fcntl(in.write.get(), F_GETFL) | O_NONBLOCK);

  ChildOutcome outcome;
  const auto deadline = started + request.timeout;
  bool kill_now = pump(request, in.write, out.read, err.read, deadline, outcome);
  if (kill_now) ::kill(-pid, SIGKILL);
  out.read.reset();
  err.read.reset();
  in.write.reset();
  // Its output closed but it may still run (it closed stdout itself): the
  // deadline and the stop still hold.
  int status = 0;
  for (;;) {
    pid_t w = ::waitpid(pid, &status, kill_now ? 0 : WNOHANG);
    if (w == pid || (w < 0 && errno != EINTR)) break;
    if (w == 0) {
      if (std::chrono::steady_clock::now() >= deadline) outcome.timed_out = kill_now = true;
      if (!kill_now && request.should_stop && request.should_stop()) outcome.stopped = kill_now = true;
      if (kill_now) ::kill(-pid, SIGKILL);
      else ::usleep(20000);
    }
  }
  // Whatever else the child started in its group goes with it.
  ::kill(-pid, SIGKILL);
  outcome.took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started);
  if (outcome.stderr_tail.size() > kKeptStderr) outcome.stderr_tail.erase(0, outcome.stderr_tail.size() - kKeptStderr);

  int exec_errno = 0;
  if (::read(exec_err.read.get(), &exec_errno, sizeof exec_errno) == static_cast<ssize_t>(sizeof exec_errno))
    return failed_precondition("cannot run '" + request.argv[0] + "' on this host: " + std::strerror(exec_errno),
                               "install it on the evacd host, or correct the command");
  if (WIFEXITED(status)) {
    outcome.exit_code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    outcome.signal = WTERMSIG(status);
  }
  return outcome;
}

}  // namespace evac
