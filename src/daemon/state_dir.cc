#include "daemon/state_dir.h"

#include <filesystem>
#include <system_error>

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
