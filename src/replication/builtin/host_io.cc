#include "replication/builtin/host_io.h"

#include "process/fd.h"

#include <fcntl.h>
#include <linux/capability.h>
#include <linux/fs.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>

namespace evac::builtin {

namespace fs = std::filesystem;

namespace {

const char* const kBugHint = "this is a bug in evac's built-in replicator; report it with the daemon log";
const char* const kOutsideHint = "the file was changed or removed outside evac; check the folder and the disk it is on";

std::string errno_text(int e) { return std::strerror(e); }

// ---------------------------------------------------------- processes ---

std::string trimmed(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ' || s.back() == '\r')) s.pop_back();
  return s;
}

}  // namespace

// Runs argv[0] (looked up in PATH) with fork/exec, no shell; stdin is
// /dev/null, stdout and stderr are captured.
Result<ToolOutput> run_tool(const std::vector<std::string>& argv) {
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);

  int out_pipe[2], err_pipe[2], exec_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC) != 0) return internal_error("cannot create a pipe: " + errno_text(errno), kBugHint);
  Fd out_r(out_pipe[0]), out_w(out_pipe[1]);
  if (::pipe2(err_pipe, O_CLOEXEC) != 0) return internal_error("cannot create a pipe: " + errno_text(errno), kBugHint);
  Fd err_r(err_pipe[0]), err_w(err_pipe[1]);
  if (::pipe2(exec_pipe, O_CLOEXEC) != 0) return internal_error("cannot create a pipe: " + errno_text(errno), kBugHint);
  Fd exec_r(exec_pipe[0]), exec_w(exec_pipe[1]);
  Fd devnull(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (devnull.get() < 0) return internal_error("cannot open /dev/null: " + errno_text(errno), kBugHint);

  pid_t pid = ::fork();
  if (pid < 0) return unavailable("cannot start " + argv[0] + ": fork failed: " + errno_text(errno), "the host is short of processes or memory; retry");
  if (pid == 0) {
    ::dup2(devnull.get(), 0);
    ::dup2(out_w.get(), 1);
    ::dup2(err_w.get(), 2);
    ::execvp(args[0], args.data());
    int e = errno;
    [[maybe_unused]] auto n = ::write(exec_w.get(), &e, sizeof e);
    ::_exit(127);
  }
  out_w.reset();
  err_w.reset();
  exec_w.reset();

  ToolOutput result;
  pollfd fds[2] = {{out_r.get(), POLLIN, 0}, {err_r.get(), POLLIN, 0}};
  std::string* sinks[2] = {&result.out, &result.err};
  int open_count = 2;
  char buf[8192];
  while (open_count > 0) {
    int n = ::poll(fds, 2, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      break;
    }
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      ssize_t got = ::read(fds[i].fd, buf, sizeof buf);
      if (got > 0) {
        sinks[i]->append(buf, static_cast<std::size_t>(got));
      } else if (got == 0 || (errno != EINTR && errno != EAGAIN)) {
        fds[i].fd = -1;
        --open_count;
      }
    }
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  int exec_errno = 0;
  if (::read(exec_r.get(), &exec_errno, sizeof exec_errno) == static_cast<ssize_t>(sizeof exec_errno)) {
    return unavailable("cannot run " + argv[0] + ": " + errno_text(exec_errno),
                       "install qemu-utils (apt-get install qemu-utils) so that " + argv[0] + " is in PATH");
  }
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return result;
}

// Runs qemu-img; a non-zero exit becomes an error naming what was being done
// and carrying qemu-img's own words.
Result<ToolOutput> qemu_img(std::vector<std::string> args, const std::string& doing, const std::string& hint) {
  args.insert(args.begin(), "qemu-img");
  auto r = run_tool(args);
  if (!r.is_ok()) return r.status().with_context(doing);
  if (r->exit_code != 0) {
    std::string err = trimmed(r->err.empty() ? r->out : r->err);
    // An image lock held by another process (a VM, qemu-nbd) clears once it
    // stops: worth retrying, unlike a broken image.
    bool locked = err.find("Failed to get \"write\" lock") != std::string::npos ||
                  err.find("Failed to get shared \"write\" lock") != std::string::npos;
    return Status(locked ? StatusCode::kUnavailable : StatusCode::kInternal,
                  doing + ": qemu-img " + args[1] + " exited with " + std::to_string(r->exit_code) +
                      (err.empty() ? std::string() : ": " + err),
                  hint);
  }
  return r;
}

// --------------------------------------------------------- durable files ---

Status fsync_path(const std::string& path, bool directory) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | (directory ? O_DIRECTORY : 0)));
  if (fd.get() < 0) return internal_error("cannot open " + path + " to flush it: " + errno_text(errno), kOutsideHint);
  if (::fsync(fd.get()) != 0) return internal_error("cannot flush " + path + ": " + errno_text(errno), "check the disk holding it for I/O errors");
  return Status::ok();
}

bool path_exists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

Status remove_file(const std::string& path) {
  if (::unlink(path.c_str()) != 0 && errno != ENOENT)
    return internal_error("cannot remove " + path + ": " + errno_text(errno), "check the permissions of its folder");
  return Status::ok();
}

Status rename_file(const std::string& from, const std::string& to) {
  if (::rename(from.c_str(), to.c_str()) != 0)
    return internal_error("cannot rename " + from + " to " + to + ": " + errno_text(errno), "check the permissions of the folder and that it is not full");
  return Status::ok();
}

// Creates the missing folders of `path`, each with exactly `mode` (mkdir
// applies the umask, so the mode is set again), and flushes each new entry
// into its parent, so a folder a committed index points into survives a
// power cut.
Status make_dirs(const fs::path& path, unsigned mode) {
  std::vector<fs::path> missing;
  for (fs::path cur = path; !cur.empty() && !path_exists(cur.string()); cur = cur.parent_path()) {
    missing.push_back(cur);
    if (cur == cur.parent_path()) break;
  }
  for (auto it = missing.rbegin(); it != missing.rend(); ++it) {
    // Created closed (0700) and opened to `mode` after: never more open than asked, even for an instant.
    if (::mkdir(it->c_str(), 0700) != 0) {
      if (errno == EEXIST) continue;  // made meanwhile by someone else: theirs to set
      return internal_error("cannot create folder " + it->string() + ": " + errno_text(errno), "check the permissions of its parent folder");
    }
    if (::chmod(it->c_str(), static_cast<mode_t>(mode)) != 0)
      return internal_error("cannot set the mode of folder " + it->string() + ": " + errno_text(errno), kBugHint);
    EVAC_RETURN_IF_ERROR(fsync_path(it->parent_path().string(), true));
  }
  return Status::ok();
}

Status create_private_file(const std::string& path) {
  // O_NOFOLLOW: a link planted in the folder must not turn this into a
  // write elsewhere. A file left there before (an earlier attempt) is
  // emptied and closed again: O_CREAT's mode applies to new files only.
  Fd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, kPrivateFileMode));
  if (fd.get() < 0) return internal_error("cannot create " + path + ": " + errno_text(errno), "check the permissions of the folder");
  if (::fchmod(fd.get(), kPrivateFileMode) != 0)
    return internal_error("cannot set the mode of " + path + ": " + errno_text(errno), kBugHint);
  return Status::ok();
}

Status close_to_others(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return Status::ok();
    return internal_error("cannot read " + path + ": " + errno_text(errno), kOutsideHint);
  }
  if (S_ISLNK(st.st_mode)) return Status::ok();
  const mode_t open_bits = S_ISDIR(st.st_mode) ? (S_IRWXG | S_IRWXO) & ~(S_IXGRP | S_IXOTH) : (S_IRWXG | S_IRWXO);
  if ((st.st_mode & open_bits) == 0) return Status::ok();
  if (::chmod(path.c_str(), st.st_mode & 07777 & ~open_bits) != 0)
    return internal_error("cannot make " + path + " private: " + errno_text(errno), "evacd must own the files it keeps");
  return Status::ok();
}

// Temp file + fsync + rename + fsync of the folder: readers see the old
// bytes or the new ones, never a mix, also after a power cut. The file is
// evacd's alone, whatever the umask.
Status write_file_durably(const std::string& path, const std::string& bytes) {
  std::string tmp = path + std::string(".tmp");
  {
    Fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, kPrivateFileMode));
    if (fd.get() < 0) return internal_error("cannot create " + tmp + ": " + errno_text(errno), "check the permissions of the folder");
    // A temp file an interrupted write left keeps its old mode through O_TRUNC.
    if (::fchmod(fd.get(), kPrivateFileMode) != 0) {
      int e = errno;
      ::unlink(tmp.c_str());
      return internal_error("cannot set the mode of " + tmp + ": " + errno_text(e), kBugHint);
    }
    std::size_t done = 0;
    while (done < bytes.size()) {
      ssize_t n = ::write(fd.get(), bytes.data() + done, bytes.size() - done);
      if (n < 0) {
        if (errno == EINTR) continue;
        int e = errno;
        ::unlink(tmp.c_str());
        return internal_error("cannot write " + tmp + ": " + errno_text(e), "check that the disk holding it is not full");
      }
      done += static_cast<std::size_t>(n);
    }
    if (::fsync(fd.get()) != 0) {
      int e = errno;
      ::unlink(tmp.c_str());
      return internal_error("cannot flush " + tmp + ": " + errno_text(e), "check the disk holding it for I/O errors");
    }
  }
  if (auto st = rename_file(tmp, path); !st.is_ok()) {
    ::unlink(tmp.c_str());
    return st;
  }
  return fsync_path(fs::path(path).parent_path().string(), true);
}

Result<std::string> read_whole_file(const std::string& path) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) {
    if (errno == ENOENT) return not_found(path + " does not exist", kOutsideHint);
    return internal_error("cannot open " + path + ": " + errno_text(errno), "check the permissions of the file");
  }
  std::string out;
  char buf[65536];
  while (true) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return internal_error("cannot read " + path + ": " + errno_text(errno), "check the disk holding it for I/O errors");
    }
    if (n == 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  return out;
}


Result<std::vector<ImageLayer>> image_chain(const std::string& path, const std::string& format) {
  auto run = qemu_img({"info", "--backing-chain", "--output=json", "-f", format, path}, "mapping " + path, "");
  if (!run) return run.status();
  auto info = nlohmann::json::parse(run->out, nullptr, false);
  if (!info.is_array() || info.empty()) return unsupported("qemu-img info printed no backing chain for " + path);
  std::vector<ImageLayer> out;
  for (const auto& layer : info) {
    ImageLayer l;
    l.filename = layer.value("filename", "");
    l.format = layer.value("format", "");
    l.virtual_size = layer.value("virtual-size", std::uint64_t{0});
    l.encrypted = layer.value("encrypted", false);
    l.external_data = layer.contains("format-specific") && layer["format-specific"].contains("data") &&
                      layer["format-specific"]["data"].contains("data-file");
    out.push_back(std::move(l));
  }
  return out;
}

Status check_plain_layer(const ImageLayer& layer, const std::string& path) {
  if (layer.encrypted) return unsupported(path + " is encrypted");
  if (layer.external_data) return unsupported(path + " keeps its data in an external file");
  return Status::ok();
}

Result<std::vector<ImageExtent>> map_image(const std::string& path, const std::string& format, std::uint64_t disk_size) {
  auto run = qemu_img({"map", "--output=json", "-f", format, path}, "mapping " + path, "");
  if (!run) return run.status();
  auto map = nlohmann::json::parse(run->out, nullptr, false);
  if (!map.is_array()) return unsupported("qemu-img map printed no map of " + path);
  std::vector<ImageExtent> out;
  std::uint64_t expected = 0;
  for (const auto& e : map) {
    ImageExtent x;
    x.start = e.value("start", std::uint64_t{0});
    x.length = e.value("length", std::uint64_t{0});
    x.data = e.value("data", false);
    x.zero = e.value("zero", false);
    x.compressed = e.value("compressed", false);
    x.depth = e.value("depth", 0);
    if (e.contains("offset") && e["offset"].is_number_unsigned()) x.offset = e["offset"].get<std::uint64_t>();
    if (x.start != expected) return unsupported("the map of " + path + " has a gap");
    expected = x.start + x.length;
    out.push_back(x);
  }
  if (expected != disk_size) return unsupported("the map of " + path + " does not cover the disk");
  return out;
}

namespace {

// The attribute flags of `path`, through a read-only descriptor (the
// ioctl works on one, and an immutable file opens for reading).
Status with_attribute_flags(const std::string& path, const std::function<Status(int fd, int flags)>& then) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
  if (fd.get() < 0) {
    const int e = errno;
    if (e == ENOENT) return not_found(path + " does not exist");
    return internal_error("cannot open " + path + ": " + errno_text(e), kOutsideHint);
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode))
    return unsupported(path + " is not a regular file", "only image files get the immutable attribute");
  int flags = 0;
  if (::ioctl(fd.get(), FS_IOC_GETFLAGS, &flags) != 0) {
    const int e = errno;
    if (e == ENOTTY || e == EOPNOTSUPP || e == EINVAL)
      return unsupported("the filesystem holding " + path + " has no immutable attribute",
                         "keep protected disks on a local filesystem (ext4, xfs, btrfs) to have them made read-only");
    return internal_error("cannot read the attributes of " + path + ": " + errno_text(e), kOutsideHint);
  }
  return then(fd.get(), flags);
}

}  // namespace

Status set_immutable(const std::string& path, bool immutable) {
  return with_attribute_flags(path, [&](int fd, int flags) -> Status {
    const int wanted = immutable ? (flags | FS_IMMUTABLE_FL) : (flags & ~FS_IMMUTABLE_FL);
    if (wanted == flags) return Status::ok();
    if (::ioctl(fd, FS_IOC_SETFLAGS, &wanted) == 0) return Status::ok();
    const int e = errno;
    if (e == EPERM)
      return permission_denied("cannot " + std::string(immutable ? "set" : "clear") + " the immutable attribute of " +
                                   path + ": evacd lacks CAP_LINUX_IMMUTABLE",
                               "run evacd as root (or grant it CAP_LINUX_IMMUTABLE)");
    if (e == ENOTTY || e == EOPNOTSUPP || e == EINVAL)
      return unsupported("the filesystem holding " + path + " has no immutable attribute",
                         "keep protected disks on a local filesystem (ext4, xfs, btrfs) to have them made read-only");
    return internal_error("cannot change the attributes of " + path + ": " + errno_text(e), kOutsideHint);
  });
}

bool may_set_immutable() {
  // CapEff in /proc/self/status: the effective capabilities as a hex mask.
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("CapEff:", 0) != 0) continue;
    const std::uint64_t mask = std::stoull(line.substr(7), nullptr, 16);
    return (mask >> CAP_LINUX_IMMUTABLE) & 1;
  }
  return ::geteuid() == 0;
}

Result<bool> is_immutable(const std::string& path) {
  bool out = false;
  Status st = with_attribute_flags(path, [&](int, int flags) {
    out = (flags & FS_IMMUTABLE_FL) != 0;
    return Status::ok();
  });
  if (!st.is_ok()) return st;
  return out;
}

}  // namespace evac::builtin
