#include "daemon/state_dir.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <system_error>
#include <vector>

namespace evac {
namespace fs = std::filesystem;

namespace {

Status close_to_others(const fs::path& p) {
  std::error_code ec;
  auto st = fs::symlink_status(p, ec);
  if (ec) return unavailable("cannot read " + p.string() + ": " + ec.message());
  if (fs::is_symlink(st)) return Status::ok();  // the link's own mode means nothing; its target is not ours to change
  fs::permissions(p, fs::perms::group_all | fs::perms::others_all, fs::perm_options::remove | fs::perm_options::nofollow, ec);
  if (ec) return unavailable("cannot make " + p.string() + " private: " + ec.message(), "evacd must own its state_dir");
  return Status::ok();
}

}  // namespace

Status make_state_dir(const std::string& state_dir) {
  const std::string hint = "create it, or make its parent writable by evacd";
  fs::path root = fs::path(state_dir).lexically_normal();
  if (root.filename().empty() && root.has_relative_path()) root = root.parent_path();  // "dir/" names "dir"
  std::vector<fs::path> missing;
  std::error_code ec;
  for (fs::path p = root; !p.empty(); p = p.parent_path()) {
    if (fs::exists(fs::symlink_status(p, ec)) || p == p.parent_path()) break;
    missing.push_back(p);
  }
  for (auto it = missing.rbegin(); it != missing.rend(); ++it) {
    const fs::path& p = *it;
    // Created closed, opened after: never more open than meant, not even for an instant.
    if (::mkdir(p.c_str(), 0700) != 0) {
      if (errno != EEXIST)
        return failed_precondition("cannot create state_dir " + state_dir + ": " + p.string() + ": " + std::strerror(errno), hint);
      continue;  // made meanwhile by someone else: theirs
    }
    if (p == root) continue;  // closed below
    fs::permissions(p, fs::perms::owner_all | fs::perms::group_exec | fs::perms::others_exec, fs::perm_options::replace, ec);
    if (ec) return failed_precondition("cannot set the mode of " + p.string() + ": " + ec.message(), hint);
  }
  if (!fs::is_directory(root, ec)) return failed_precondition("state_dir " + state_dir + " is not a folder", hint);
  fs::permissions(root, fs::perms::owner_all, fs::perm_options::replace, ec);
  if (ec) return unavailable("cannot set the mode of state_dir " + state_dir + ": " + ec.message(), "evacd must own its state_dir");
  return Status::ok();
}

Status keep_state_dir_private(const std::string& state_dir, const std::string& qemu_folder) {
  std::error_code ec;
  const fs::path root(state_dir);
  fs::permissions(root, fs::perms::owner_all | fs::perms::group_exec | fs::perms::others_exec, fs::perm_options::replace,
                  ec);
  if (ec) return unavailable("cannot set the mode of state_dir " + state_dir + ": " + ec.message(),
                             "evacd must own its state_dir");
  for (fs::directory_iterator it(root, ec), end; !ec && it != end; it.increment(ec)) {
    const fs::path& entry = it->path();
    if (entry.filename() == qemu_folder) continue;
    EVAC_RETURN_IF_ERROR(close_to_others(entry));
    if (!it->is_directory() || it->is_symlink()) continue;
    for (fs::recursive_directory_iterator sub(entry, ec), send; !ec && sub != send; sub.increment(ec))
      EVAC_RETURN_IF_ERROR(close_to_others(sub->path()));
    if (ec) return unavailable("cannot read " + entry.string() + ": " + ec.message());
  }
  if (ec) return unavailable("cannot read state_dir " + state_dir + ": " + ec.message());
  return Status::ok();
}

}  // namespace evac
