#include "replication/builtin/nbd_image.h"

#include <fcntl.h>
#include <libnbd.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <iterator>
#include <mutex>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

namespace evac::builtin {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr auto kStartTimeout = std::chrono::seconds(10);
constexpr auto kStopGrace = std::chrono::seconds(3);
constexpr std::uint64_t kDefaultMaxRequest = 32ull << 20;  // qemu-nbd's limit
// Large reads and writes go out as pieces of this size, up to kMaxInFlight
// at once on the one connection: qemu-nbd serves them concurrently, which
// keeps an O_DIRECT (cache=none) image busy. Reading a 1 GiB image with 8
// requests in flight took about half the time of one at a time.
constexpr std::uint64_t kPieceSize = 4ull << 20;
constexpr std::size_t kMaxInFlight = 8;
constexpr std::uint64_t kMaxZeroRequest = 1ull << 30;      // no payload: only the 32-bit protocol length bounds it
constexpr std::uint64_t kMaxStatusRequest = 1ull << 30;

bool contains(const std::string& s, std::string_view what) { return s.find(what) != std::string::npos; }

std::string read_text(const std::string& path, std::size_t limit = 64 * 1024) {
  std::ifstream in(path, std::ios::binary);
  std::string s(limit, '\0');
  in.read(s.data(), static_cast<std::streamsize>(limit));
  s.resize(static_cast<std::size_t>(in.gcount()));
  return s;
}

// qemu-nbd's stderr as one line: "qemu-nbd: " prefixes dropped, lines joined.
std::string one_line(const std::string& text) {
  std::istringstream in(text);
  std::string line, out;
  while (std::getline(in, line)) {
    if (line.rfind("qemu-nbd: ", 0) == 0) line.erase(0, 10);
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
    if (line.empty()) continue;
    if (!out.empty()) out += " ";
    out += line;
  }
  return out.empty() ? std::string("no error output") : out;
}

std::string find_program(const std::string& name) {
  std::string path = std::getenv("PATH") != nullptr ? std::getenv("PATH") : "";
  path += ":/usr/bin:/usr/sbin:/usr/local/bin";
  std::size_t start = 0;
  while (start <= path.size()) {
    std::size_t end = path.find(':', start);
    if (end == std::string::npos) end = path.size();
    std::string dir = path.substr(start, end - start);
    if (!dir.empty()) {
      std::string candidate = dir + "/" + name;
      if (::access(candidate.c_str(), X_OK) == 0) return candidate;
    }
    start = end + 1;
  }
  return {};
}

bool process_gone(pid_t pid, int* wait_status) {
  for (;;) {
    pid_t r = ::waitpid(pid, wait_status, WNOHANG);
    if (r == pid) return true;
    if (r == 0) return false;
    if (errno == EINTR) continue;
    return true;  // ECHILD: reaped elsewhere (or SIGCHLD ignored)
  }
}

void kill_and_reap(pid_t pid, std::chrono::milliseconds grace) {
  if (pid <= 0) return;
  int ws = 0;
  if (process_gone(pid, &ws)) return;
  ::kill(pid, SIGTERM);
  auto deadline = Clock::now() + grace;
  auto nap = std::chrono::milliseconds(1);
  while (Clock::now() < deadline) {
    if (process_gone(pid, &ws)) return;
    std::this_thread::sleep_for(nap);
    nap = std::min(nap * 2, std::chrono::milliseconds(50));
  }
  ::kill(pid, SIGKILL);
  while (::waitpid(pid, &ws, 0) < 0 && errno == EINTR) {
  }
}

std::string describe_exit(int ws) {
  if (WIFEXITED(ws)) return "exited with status " + std::to_string(WEXITSTATUS(ws));
  if (WIFSIGNALED(ws)) return std::string("was killed by signal ") + ::strsignal(WTERMSIG(ws));
  return "stopped";
}

// Turns qemu-nbd's complaint about an image into a Status.
Status classify_failure(const std::string& image, const std::string& format, const std::string& err) {
  const std::string said = "qemu-nbd: " + err;
  if (contains(err, "No such file or directory")) {
    return not_found("disk image " + image + " does not exist (" + said + ")",
                     "check the disk's path in the VM definition and that its storage is mounted");
  }
  // QEMU's image locking: 'Failed to get "write" lock' (another writer or a
  // reader that does not share writing) or 'Failed to get shared "write"
  // lock' (we read, someone else writes).
  if ((contains(err, "Failed to get ") && contains(err, "\" lock")) ||
      contains(err, "Is another process using the image")) {
    return failed_precondition(
        "disk image " + image + " is in use by another process, most likely its running VM (" + said + ")",
        "scan mode reads a disk only while its VM is stopped: stop the VM for the cycle, or protect it with "
        "change tracking, which handles running VMs (for a replica: a VM or test copy started from it holds it)");
  }
  if (contains(err, "Permission denied") || contains(err, "Operation not permitted")) {
    return permission_denied("evac may not open disk image " + image + " (" + said + ")",
                             "evacd needs read access (write access for a replica) to the image and its folder");
  }
  if (contains(err, "is not in " + format + " format") || contains(err, "Unknown driver") ||
      contains(err, "Image is not in") || contains(err, "driver requires") || contains(err, "Unsupported")) {
    return invalid_argument("disk image " + image + " cannot be opened as " + format + " (" + said + ")",
                            "check the disk's format (`qemu-img info " + image + "`) against the VM definition");
  }
  return unavailable("qemu-nbd could not export disk image " + image + ": " + err,
                     "check the image with `qemu-img info " + image + "`; the next cycle retries");
}

struct StartAttempt {
  pid_t pid = -1;
  Status status;     // ok: running and ready
  bool retry_cached = false;  // failed because the filesystem refused O_DIRECT
};

// qemu-nbd's command line for one export.
std::vector<std::string> qemu_nbd_args(const std::string& program, const std::string& image, const std::string& format,
                                       NbdExport::Mode mode, const std::string& socket, const std::string& pid_file,
                                       const std::string& cache) {
  std::vector<std::string> args = {program,
                                    "--socket=" + socket,
                                    "--pid-file=" + pid_file,
                                    "--format=" + format,
                                    "--cache=" + cache,
                                    "--aio=threads",
                                    "--shared=4",
                                    "--persistent"};
  if (mode == NbdExport::Mode::kReadOnly) {
    args.push_back("--read-only");
  } else {
    args.push_back("--discard=unmap");
    args.push_back("--detect-zeroes=unmap");
  }
  // After "--" the image path can not be taken for an option.
  args.push_back("--");
  args.push_back(image);
  return args;
}

// qemu-nbd's environment: this process's, with malloc tunables added.
//
// qemu-nbd allocates a fresh buffer for every request; for our 4 MiB
// requests glibc maps new memory each time, and the kernel then faults in
// and zeroes every page of it (and unmaps it after). Raising malloc's
// mmap and trim thresholds makes it reuse its heap instead: reading a
// cached 4 GiB image with 8 x 4 MiB requests in flight took 1.2 CPU
// seconds in qemu-nbd instead of 3.3, and half the wall time.
std::vector<std::string> qemu_nbd_environment() {
  std::vector<std::string> env_storage;
  std::string tunables = "glibc.malloc.mmap_threshold=67108864:glibc.malloc.trim_threshold=268435456";
  for (char** e = environ; *e != nullptr; ++e) {
    std::string_view entry(*e);
    if (entry.rfind("GLIBC_TUNABLES=", 0) == 0) {
      tunables = std::string(entry.substr(15)) + ":" + tunables;  // the caller's come first; ours win on a conflict
      continue;
    }
    env_storage.emplace_back(entry);
  }
  env_storage.push_back("GLIBC_TUNABLES=" + tunables);
  return env_storage;
}

// The null-terminated pointer array execve takes; points into `strings`.
std::vector<char*> exec_vector(std::vector<std::string>& strings) {
  std::vector<char*> out;
  for (auto& s : strings) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

// In the forked child: becomes qemu-nbd, or exits (126: the parent is gone
// already, 127: exec failed). Only async-signal-safe calls from here to exec.
[[noreturn]] void exec_qemu_nbd(pid_t parent, int null_fd, int log_fd, char* const* argv, char* const* envp) {
  // SIGKILL, not SIGTERM: once evacd is dead nobody reads or writes this
  // export again (a read-only source, or a staging image its cycle
  // abandons), and a qemu-nbd that caught SIGTERM was once seen to keep
  // exporting.
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != parent) ::_exit(126);  // the parent is already gone
  ::setpgid(0, 0);  // terminal signals go to evac, which stops us in order
  sigset_t none;
  ::sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  for (int sig : {SIGPIPE, SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGCHLD, SIGUSR1, SIGUSR2}) {
    ::sigaction(sig, &dfl, nullptr);
  }
  ::dup2(null_fd, STDIN_FILENO);
  ::dup2(log_fd, STDOUT_FILENO);
  ::dup2(log_fd, STDERR_FILENO);
  ::close_range(3, ~0u, 0);
  ::execve(argv[0], argv, envp);
  ::_exit(127);
}

// Waits until the started qemu-nbd `a.pid` exports the image, exits, or
// takes longer than kStartTimeout (then it is killed). On failure `a.pid`
// is -1 and `a.status` says why.
void wait_until_exported(StartAttempt& a, const std::string& program, const std::string& image,
                         const std::string& format, const std::string& socket, const std::string& pid_file,
                         const std::string& log_file, const std::string& cache) {
  const pid_t pid = a.pid;
  // qemu-nbd binds its socket before it opens the image and writes its pid
  // file only once the image is open and exported: the pid file, not the
  // socket, says it is ready.
  auto deadline = Clock::now() + kStartTimeout;
  auto nap = std::chrono::milliseconds(1);
  for (;;) {
    int ws = 0;
    if (process_gone(pid, &ws)) {
      a.pid = -1;
      std::string err = one_line(read_text(log_file));
      if (WIFEXITED(ws) && WEXITSTATUS(ws) == 127 && err == "no error output") {
        a.status = unavailable("cannot run " + program + " for disk image " + image,
                               "install qemu-utils (it provides qemu-nbd)");
        return;
      }
      if (cache == "none" && (contains(err, "O_DIRECT") || contains(err, "Invalid argument"))) {
        a.retry_cached = true;
      }
      if (err == "no error output") err = "qemu-nbd " + describe_exit(ws) + " without a message";
      a.status = classify_failure(image, format, err);
      return;
    }
    struct stat st {};
    if (::stat(pid_file.c_str(), &st) == 0 && st.st_size > 0 && ::stat(socket.c_str(), &st) == 0 &&
        S_ISSOCK(st.st_mode)) {
      return;
    }
    if (Clock::now() >= deadline) {
      kill_and_reap(pid, std::chrono::milliseconds(500));
      a.pid = -1;
      a.status = unavailable("qemu-nbd did not export disk image " + image + " within 10 s (" +
                                 one_line(read_text(log_file)) + ")",
                             "the image's storage may be hung or very slow; the next cycle retries");
      return;
    }
    std::this_thread::sleep_for(nap);
    nap = std::min(nap * 2, std::chrono::milliseconds(20));
  }
}

StartAttempt spawn_and_wait(const std::string& program, const std::string& image, const std::string& format,
                            NbdExport::Mode mode, const std::string& dir, const std::string& socket,
                            const std::string& cache) {
  StartAttempt a;
  const std::string pid_file = dir + "/qemu-nbd.pid";
  const std::string log_file = dir + "/qemu-nbd.log";
  ::unlink(pid_file.c_str());
  ::unlink(socket.c_str());

  // Everything the child needs is built before the fork.
  std::vector<std::string> args = qemu_nbd_args(program, image, format, mode, socket, pid_file, cache);
  std::vector<char*> argv = exec_vector(args);
  std::vector<std::string> env_storage = qemu_nbd_environment();
  std::vector<char*> envp = exec_vector(env_storage);

  int log_fd = ::open(log_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (log_fd < 0 || null_fd < 0) {
    int e = errno;
    if (log_fd >= 0) ::close(log_fd);
    if (null_fd >= 0) ::close(null_fd);
    a.status = unavailable("cannot create qemu-nbd's log in " + dir + ": " + std::strerror(e),
                           "check that the temporary folder is writable");
    return a;
  }

  const pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid == 0) exec_qemu_nbd(parent, null_fd, log_fd, argv.data(), envp.data());
  int fork_errno = errno;
  ::close(log_fd);
  ::close(null_fd);
  if (pid < 0) {
    a.status = unavailable(std::string("cannot start qemu-nbd for disk image ") + image + ": fork failed: " +
                               std::strerror(fork_errno),
                           "the host is short of processes or memory");
    return a;
  }
  a.pid = pid;
  wait_until_exported(a, program, image, format, socket, pid_file, log_file, cache);
  return a;
}

// ---- the record of exports this process started ----

std::mutex record_mu;
std::string record_folder;  // empty: nothing is recorded

// Writes FOLDER/PID holding the export's socket path (what identifies that
// qemu-nbd in /proc/PID/cmdline); returns the file's path, or "" when
// nothing is recorded or the file could not be written (the export still
// works; only a later life could not stop it).
std::string record_export(pid_t pid, const std::string& socket) {
  std::string folder;
  {
    std::lock_guard lock(record_mu);
    folder = record_folder;
  }
  if (folder.empty()) return "";
  const std::string path = folder + "/" + std::to_string(pid);
  std::ofstream out(path, std::ios::trunc);
  out << socket << "\n";
  out.close();
  if (!out) {
    ::unlink(path.c_str());
    return "";
  }
  return path;
}

// The NUL-separated arguments of a running process, or "" if it is gone.
std::string command_line_of(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/cmdline", std::ios::binary);
  std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return all;
}

// ---- libnbd ----

struct StatusCollector {
  const char* context;  // the metadata context this request maps
  std::uint32_t flag;   // the flag that marks an extent (zero, or dirty)
  std::vector<NbdClient::Extent> extents;  // `zero` holds "flag set"
};

int collect_extents(void* user_data, const char* metacontext, std::uint64_t offset, std::uint32_t* entries,
                    std::size_t nr_entries, int* error) {
  auto* c = static_cast<StatusCollector*>(user_data);
  if (std::strcmp(metacontext, c->context) != 0) return 0;
  try {
    std::uint64_t pos = offset;
    for (std::size_t i = 0; i + 1 < nr_entries; i += 2) {
      std::uint64_t len = entries[i];
      bool flagged = (entries[i + 1] & c->flag) != 0;
      if (len == 0) continue;
      c->extents.push_back({pos, len, flagged});
      pos += len;
    }
  } catch (...) {
    *error = ENOMEM;
    return -1;
  }
  return 0;
}

}  // namespace

// ---------------------------------------------------------------- NbdExport

Result<std::unique_ptr<NbdExport>> NbdExport::start(const std::string& image_path, const std::string& format,
                                                      Mode mode) {
  if (format != "qcow2" && format != "raw") {
    return invalid_argument("disk image format \"" + format + "\" of " + image_path + " is not supported",
                            "the built-in replicator handles qcow2 and raw disks");
  }
  if (image_path.empty()) {
    return invalid_argument("a disk image path is empty", "give the disk's full path");
  }
  struct stat st {};
  if (::stat(image_path.c_str(), &st) != 0) {
    int e = errno;
    if (e == ENOENT || e == ENOTDIR) {
      return not_found("disk image " + image_path + " does not exist",
                       "check the disk's path in the VM definition and that its storage is mounted");
    }
    if (e == EACCES) {
      return permission_denied("evac may not open disk image " + image_path + ": " + std::strerror(e),
                               "evacd needs access to the image and its folder");
    }
    return unavailable("cannot inspect disk image " + image_path + ": " + std::strerror(e),
                       "check the storage holding the image");
  }
  if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
    return invalid_argument(image_path + " is not a disk image (neither a file nor a block device)",
                            "point the disk at an image file or a block device");
  }
  const std::string program = find_program("qemu-nbd");
  if (program.empty()) {
    return unavailable("qemu-nbd is not installed, so disk image " + image_path + " cannot be read",
                       "install qemu-utils (it provides qemu-nbd)");
  }

  const char* tmp = std::getenv("TMPDIR");
  std::string tmpl = std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") + "/evac-nbd-XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) {
    int e = errno;
    return unavailable("cannot create a temporary folder for the NBD socket of " + image_path + " (" + tmpl +
                           "): " + std::strerror(e),
                       "check that $TMPDIR (or /tmp) exists and is writable");
  }
  std::unique_ptr<NbdExport> exp(new NbdExport());
  exp->image_path_ = image_path;
  exp->format_ = format;
  exp->mode_ = mode;
  exp->dir_ = tmpl;
  exp->socket_path_ = exp->dir_ + "/nbd.sock";
  if (exp->socket_path_.size() >= sizeof(sockaddr_un{}.sun_path)) {
    return invalid_argument("the NBD socket path " + exp->socket_path_ + " is too long for a unix socket",
                            "set TMPDIR to a shorter folder");
  }

  // Reads of a read-only export go through the page cache (see the header);
  // a read-write export tries cache=none first, and a filesystem without
  // O_DIRECT gets the page cache.
  const char* cache = mode == Mode::kReadOnly ? "writeback" : "none";
  StartAttempt a = spawn_and_wait(program, image_path, format, mode, exp->dir_, exp->socket_path_, cache);
  if (!a.status.is_ok() && a.retry_cached) {
    a = spawn_and_wait(program, image_path, format, mode, exp->dir_, exp->socket_path_, "writeback");
  }
  if (!a.status.is_ok()) return a.status;  // ~NbdExport removes the folder
  exp->pid_ = a.pid;
  exp->record_ = record_export(a.pid, exp->socket_path_);
  return exp;
}

NbdExport::~NbdExport() { stop(); }

void NbdExport::stop() {
  kill_and_reap(pid_, kStopGrace);
  pid_ = -1;
  if (!record_.empty()) {
    ::unlink(record_.c_str());
    record_.clear();
  }
  if (!dir_.empty()) {
    std::error_code ec;
    fs::remove_all(dir_, ec);
    dir_.clear();
  }
}

void NbdExport::record_exports_in(const std::string& folder) {
  std::lock_guard lock(record_mu);
  record_folder = folder;
}

Result<int> NbdExport::reap_orphaned_exports(const std::string& folder) {
  std::error_code ec;
  fs::create_directories(folder, ec);
  if (ec)
    return unavailable("cannot create " + folder + " (where evacd records its qemu-nbd exports): " + ec.message(),
                       "check that evacd's state folder is writable");
  fs::directory_iterator records(folder, ec);
  if (ec) return unavailable("cannot read " + folder + ": " + ec.message(), "check that evacd's state folder is readable");
  // Removing a record or a socket folder is tidying: its failure is not
  // the folder being unreadable, and must not keep evacd from starting.
  std::error_code tidy;
  int stopped = 0;
  for (const auto& entry : records) {
    const std::string name = entry.path().filename().string();
    pid_t pid = 0;
    auto [end, err] = std::from_chars(name.data(), name.data() + name.size(), pid);
    if (err == std::errc() && end == name.data() + name.size() && pid > 1) {
      std::string socket;
      std::getline(std::ifstream(entry.path()) >> std::ws, socket);
      const std::string argv = command_line_of(pid);
      const std::string mark = std::string("--socket=") + socket + '\0';
      // Only that qemu-nbd: the socket path is unique to one export, so a
      // reused pid is never taken for it.
      if (!socket.empty() && argv.find(mark) != std::string::npos) {
        ::kill(pid, SIGKILL);
        for (int i = 0; i < 200 && !command_line_of(pid).empty(); ++i)
          std::this_thread::sleep_for(std::chrono::milliseconds(10));  // not our child: wait for it to go
        ++stopped;
      }
      const fs::path socket_dir = fs::path(socket).parent_path();
      if (!socket.empty() && socket_dir.filename().string().rfind("evac-nbd-", 0) == 0) fs::remove_all(socket_dir, tidy);
    }
    fs::remove(entry.path(), tidy);
  }
  return stopped;
}

// ---------------------------------------------------------------- NbdClient

Result<std::unique_ptr<NbdClient>> NbdClient::connect(const NbdExport& exp) {
  return connect_socket(exp.socket_path(), "", "disk image " + exp.image_path());
}

Result<std::unique_ptr<NbdClient>> NbdClient::connect_socket(const std::string& socket_path,
                                                             const std::string& export_name,
                                                             const std::string& description,
                                                             const std::string& dirty_context) {
  std::unique_ptr<NbdClient> c(new NbdClient());
  c->image_path_ = description;
  c->dirty_context_ = dirty_context;
  c->h_ = ::nbd_create();
  if (c->h_ == nullptr) {
    return internal_error("cannot create an NBD handle for " + description + ": " +
                              (::nbd_get_error() ? ::nbd_get_error() : "unknown error"),
                          "the host may be out of memory");
  }
  // Requests need no alignment: qemu-nbd does any read-modify-write itself
  // and (7.2, even with cache=none) advertises a minimum block size of 1.
  // Not asking for block sizes keeps it that way on other versions.
  ::nbd_set_request_block_size(c->h_, false);
  // Every read's result is checked, so libnbd need not zero buffers first.
  ::nbd_set_pread_initialize(c->h_, false);
  bool contexts_ok = ::nbd_add_meta_context(c->h_, LIBNBD_CONTEXT_BASE_ALLOCATION) != -1 &&
                     (dirty_context.empty() || ::nbd_add_meta_context(c->h_, dirty_context.c_str()) != -1);
  if (!contexts_ok || ::nbd_set_export_name(c->h_, export_name.c_str()) == -1 ||
      ::nbd_connect_unix(c->h_, socket_path.c_str()) == -1) {
    const char* e = ::nbd_get_error();
    return unavailable("cannot connect to the NBD export of " + description + " at " + socket_path + ": " +
                           (e ? e : "unknown error"),
                       "the export may have stopped; the next cycle starts a new one");
  }
  std::int64_t size = ::nbd_get_size(c->h_);
  if (size < 0) return c->nbd_error("reading the size of", 0, 0);
  c->size_ = static_cast<std::uint64_t>(size);
  std::int64_t max = ::nbd_get_block_size(c->h_, LIBNBD_SIZE_MAXIMUM);
  c->max_request_ = (max > 0) ? std::min<std::uint64_t>(static_cast<std::uint64_t>(max), kDefaultMaxRequest)
                              : kDefaultMaxRequest;
  if (c->max_request_ < 4096) c->max_request_ = 4096;
  c->read_only_ = ::nbd_is_read_only(c->h_) == 1;
  c->can_zero_ = ::nbd_can_zero(c->h_) == 1;
  c->can_flush_ = ::nbd_can_flush(c->h_) == 1;
  c->has_allocation_ = ::nbd_can_meta_context(c->h_, LIBNBD_CONTEXT_BASE_ALLOCATION) == 1;
  if (!dirty_context.empty() && ::nbd_can_meta_context(c->h_, dirty_context.c_str()) != 1) {
    return failed_precondition("the NBD export of " + description + " has no change map '" + dirty_context + "'",
                               "the checkpoint it should track from may be gone; the next cycle reads the whole disk");
  }
  return c;
}

NbdClient::~NbdClient() {
  if (h_ != nullptr) {
    // A clean NBD_CMD_DISC so qemu-nbd does not log a broken connection.
    ::nbd_shutdown(h_, 0);
    ::nbd_close(h_);
  }
}

Status NbdClient::check_range(const char* op, std::uint64_t len, std::uint64_t offset) const {
  if (offset > size_ || len > size_ - offset) {
    return invalid_argument(std::string(op) + " " + std::to_string(len) + " bytes at offset " +
                                std::to_string(offset) + " of " + image_path_ + " runs past its end (" +
                                std::to_string(size_) + " bytes)",
                            "this is a bug in the caller: requests must stay within the disk's size");
  }
  return Status::ok();
}

Status NbdClient::nbd_error(const char* op, std::uint64_t len, std::uint64_t offset) const {
  const char* msg = ::nbd_get_error();
  int err = ::nbd_get_errno();
  std::string what = std::string(op) + " " + image_path_;
  if (len != 0) what += " (" + std::to_string(len) + " bytes at offset " + std::to_string(offset) + ")";
  what += " failed: ";
  what += msg != nullptr ? msg : std::strerror(err);
  // A lost connection leaves the handle dead, and libnbd then fails every
  // request with EINVAL ("invalid state"): that is the server's fault, not
  // the caller's.
  if (::nbd_aio_is_dead(h_) == 1 || ::nbd_aio_is_closed(h_) == 1) {
    return unavailable(what, "the connection to qemu-nbd was lost (it stopped or crashed); the cycle is retried");
  }
  switch (err) {
    case EROFS:
    case EPERM:
      return failed_precondition(what, "the image is exported read-only; open it read-write to change it");
    case ENOSPC:
    case EDQUOT:
      return unavailable(what, "the storage holding " + image_path_ + " is full: free space and retry");
    case EINVAL:
    case ERANGE:
    case EOVERFLOW:
      return invalid_argument(what, "this is a bug in the caller's request");
    default:
      return unavailable(what, "qemu-nbd or the storage holding the image failed; the cycle is retried");
  }
}

Status NbdClient::transfer(bool write, const std::vector<Segment>& segments) {
  const char* op = write ? "writing" : "reading";
  const std::uint64_t piece = std::min(max_request_, kPieceSize);
  struct Pending {
    std::int64_t cookie;
    std::uint64_t offset;
    std::size_t len;
  };
  std::deque<Pending> pending;
  Status first_error;
  auto fail = [&](std::uint64_t n, std::uint64_t off) {
    if (first_error.is_ok()) first_error = nbd_error(op, n, off);
  };
  // Waits for the oldest request. False if the connection is gone, in which
  // case libnbd has failed every request still queued.
  auto retire_oldest = [&]() -> bool {
    Pending p = pending.front();
    pending.pop_front();
    for (;;) {
      int r = ::nbd_aio_command_completed(h_, static_cast<std::uint64_t>(p.cookie));
      if (r == 1) return true;
      if (r == -1) {
        fail(p.len, p.offset);
        return ::nbd_aio_is_dead(h_) != 1 && ::nbd_aio_is_closed(h_) != 1;
      }
      if (::nbd_poll(h_, -1) == -1 && ::nbd_get_errno() != EINTR) {
        fail(p.len, p.offset);
        if (::nbd_aio_is_dead(h_) == 1 || ::nbd_aio_is_closed(h_) == 1) return false;
      }
    }
  };
  bool connection_lost = false;
  for (const auto& seg : segments) {
    std::size_t done = 0;
    while (done < seg.len && first_error.is_ok()) {
      if (pending.size() >= kMaxInFlight && !retire_oldest()) {
        connection_lost = true;
        break;
      }
      if (!first_error.is_ok()) break;
      std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(seg.len - done, piece));
      std::int64_t cookie = write ? ::nbd_aio_pwrite(h_, seg.buf + done, n, seg.offset + done, NBD_NULL_COMPLETION, 0)
                                  : ::nbd_aio_pread(h_, seg.buf + done, n, seg.offset + done, NBD_NULL_COMPLETION, 0);
      if (cookie == -1) {
        fail(n, seg.offset + done);
        break;
      }
      pending.push_back({cookie, seg.offset + done, n});
      done += n;
    }
    if (connection_lost || !first_error.is_ok()) break;
  }
  // The buffers belong to the caller: never return while a request may still touch them.
  while (!pending.empty()) {
    if (!retire_oldest()) break;
  }
  return first_error;
}

Status NbdClient::pread_many(const std::vector<ReadRequest>& reads) {
  std::vector<Segment> segments;
  segments.reserve(reads.size());
  for (const auto& r : reads) {
    EVAC_RETURN_IF_ERROR(check_range("reading", r.len, r.offset));
    if (r.len != 0) segments.push_back({static_cast<char*>(r.buf), r.len, r.offset});
  }
  return transfer(false, segments);
}

Status NbdClient::pread(void* buf, std::size_t len, std::uint64_t offset) {
  EVAC_RETURN_IF_ERROR(check_range("reading", len, offset));
  if (len == 0) return Status::ok();
  return transfer(false, {{static_cast<char*>(buf), len, offset}});
}

Status NbdClient::pwrite(const void* buf, std::size_t len, std::uint64_t offset) {
  EVAC_RETURN_IF_ERROR(check_range("writing", len, offset));
  if (len == 0) return Status::ok();
  if (read_only_) {
    return failed_precondition(image_path_ + " is exported read-only and cannot be written",
                               "open the export in read-write mode to change the image");
  }
  // libnbd only reads from the buffer of a write.
  return transfer(true, {{const_cast<char*>(static_cast<const char*>(buf)), len, offset}});
}

Status NbdClient::zero(std::size_t len, std::uint64_t offset) {
  EVAC_RETURN_IF_ERROR(check_range("zeroing", len, offset));
  if (read_only_ && len > 0) {
    return failed_precondition(image_path_ + " is exported read-only and cannot be written",
                               "open the export in read-write mode to change the image");
  }
  if (!can_zero_) {
    std::string zeros(static_cast<std::size_t>(std::min<std::uint64_t>(len, max_request_)), '\0');
    while (len > 0) {
      std::size_t n = std::min(len, zeros.size());
      EVAC_RETURN_IF_ERROR(pwrite(zeros.data(), n, offset));
      offset += n;
      len -= n;
    }
    return Status::ok();
  }
  while (len > 0) {
    std::uint64_t n = std::min<std::uint64_t>(len, kMaxZeroRequest);
    // No LIBNBD_CMD_FLAG_NO_HOLE: the server may punch holes.
    if (::nbd_zero(h_, n, offset, 0) == -1) return nbd_error("zeroing", n, offset);
    offset += n;
    len -= static_cast<std::size_t>(n);
  }
  return Status::ok();
}

Status NbdClient::flush() {
  if (read_only_ || !can_flush_) return Status::ok();
  if (::nbd_flush(h_, 0) == -1) return nbd_error("flushing", 0, 0);
  return Status::ok();
}

Result<std::vector<NbdClient::Extent>> NbdClient::allocation(std::uint64_t offset, std::uint64_t length) {
  if (!has_allocation_) {
    EVAC_RETURN_IF_ERROR(check_range("mapping", length, offset));
    return std::vector<Extent>{{offset, length, false}};
  }
  return block_status(LIBNBD_CONTEXT_BASE_ALLOCATION, LIBNBD_STATE_ZERO, offset, length);
}

Result<std::vector<NbdClient::Extent>> NbdClient::changed(std::uint64_t offset, std::uint64_t length) {
  if (dirty_context_.empty())
    return failed_precondition("the NBD export of " + image_path_ + " was opened without a change map");
  // qemu's dirty-bitmap contexts set bit 0 on blocks written since the
  // checkpoint.
  auto extents = block_status(dirty_context_.c_str(), 1, offset, length);
  if (!extents) return extents.status();
  std::vector<Extent> out;
  for (const auto& e : *extents)
    if (e.zero) out.push_back({e.offset, e.length, false});
  return out;
}

Result<std::vector<NbdClient::Extent>> NbdClient::block_status(const char* context, std::uint32_t flag,
                                                               std::uint64_t offset, std::uint64_t length) {
  EVAC_RETURN_IF_ERROR(check_range("mapping", length, offset));
  std::vector<Extent> out;
  auto append = [&out](std::uint64_t off, std::uint64_t len, bool flagged) {
    if (len == 0) return;
    if (!out.empty() && out.back().zero == flagged && out.back().offset + out.back().length == off) {
      out.back().length += len;
    } else {
      out.push_back({off, len, flagged});
    }
  };
  const std::uint64_t end = offset + length;
  std::uint64_t pos = offset;
  while (pos < end) {
    std::uint64_t n = std::min(end - pos, kMaxStatusRequest);
    StatusCollector collector{context, flag, {}};
    nbd_extent_callback cb{collect_extents, &collector, nullptr};
    if (::nbd_block_status(h_, n, pos, cb, 0) == -1) return nbd_error("mapping", n, pos);
    // Replies may stop short of the request (the server limits the number
    // of extents) or run past it; keep what lies within [pos, end).
    std::uint64_t covered = pos;
    for (const auto& e : collector.extents) {
      std::uint64_t s = std::max(e.offset, pos);
      std::uint64_t t = std::min(e.offset + e.length, end);
      if (s != covered || t <= s) continue;  // ignore anything not contiguous with what we have
      append(s, t - s, e.zero);
      covered = t;
    }
    if (covered == pos) {
      return unavailable("the NBD server sent no '" + std::string(context) + "' information for " +
                             std::to_string(n) + " bytes at offset " + std::to_string(pos) + " of " + image_path_,
                         "the NBD server misbehaved; the cycle is retried");
    }
    pos = covered;
  }
  return out;
}

}  // namespace evac::builtin
