// Host tools and durable files for the built-in replicator: running
// qemu-img (no shell) and writing files so that a power cut leaves the old
// bytes or the new ones, never a mix. Shared by the PIT store, the direct
// image reader and the journals of cycles in progress.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "core/status.h"

namespace evac::builtin {

struct ToolOutput {
  int exit_code = -1;
  std::string out;
  std::string err;
};

// Runs argv[0] (looked up in PATH) with fork/exec, no shell; stdin is
// /dev/null, stdout and stderr are captured. A tool that cannot start is
// kUnavailable; its exit code is the caller's to judge.
Result<ToolOutput> run_tool(const std::vector<std::string>& argv);

// Runs qemu-img; a non-zero exit becomes an error naming what was being done
// (`doing`), carrying qemu-img's own words and `hint`. An image lock held by
// another process is kUnavailable (worth retrying), anything else kInternal.
Result<ToolOutput> qemu_img(std::vector<std::string> args, const std::string& doing, const std::string& hint);

// One image of a chain as `qemu-img info --backing-chain` describes it,
// the image asked for first, then its backing files.
struct ImageLayer {
  std::string filename;
  std::string format;
  std::uint64_t virtual_size = 0;
  bool encrypted = false;
  bool external_data = false;  // its data lives in a separate data file
};
// kUnsupported when qemu-img prints no chain (the caller reads or writes the
// image another way).
Result<std::vector<ImageLayer>> image_chain(const std::string& path, const std::string& format);
// kUnsupported, naming `path`, for a layer evac cannot read or write
// directly: encrypted, or with its data in an external file.
Status check_plain_layer(const ImageLayer& layer, const std::string& path);

// One extent of `qemu-img map --output=json`: where guest bytes
// [start, start + length) of an image live.
struct ImageExtent {
  std::uint64_t start = 0;
  std::uint64_t length = 0;
  bool data = false;        // allocated somewhere in the chain
  bool zero = false;        // reads as zeroes
  bool compressed = false;
  int depth = 0;            // which file of the chain: 0 the image itself
  std::optional<std::uint64_t> offset;  // its place in that file, when it has one
};
// The map of an image, checked to start at 0 and run without gaps up to
// `disk_size` (kUnsupported otherwise: the caller reads or writes it
// another way).
Result<std::vector<ImageExtent>> map_image(const std::string& path, const std::string& format, std::uint64_t disk_size);

Status fsync_path(const std::string& path, bool directory);
bool path_exists(const std::string& path);
// Removing a file that is already gone succeeds.
Status remove_file(const std::string& path);
Status rename_file(const std::string& from, const std::string& to);
// Modes of what the replicator creates, whatever the process's umask: files
// are evacd's alone; folders QEMU must pass to open an image in them (a
// test copy's or recovered VM's disk, the PITs it reads through) let others
// pass but not list; every other folder is evacd's alone.
inline constexpr unsigned kPrivateFileMode = 0600;
inline constexpr unsigned kPassableDirMode = 0711;
inline constexpr unsigned kPrivateDirMode = 0700;

// Creates the missing folders of `path`, each with exactly `mode`, and
// flushes each new entry into its parent, so a folder a committed index
// points into survives a power cut. Folders that exist are left as they are.
Status make_dirs(const std::filesystem::path& path, unsigned mode);
// Creates `path` empty (or empties it) with mode 0600 whatever the umask,
// for a tool such as `qemu-img create` or `convert` to write an image into:
// the tool keeps the file and its mode, so no byte of the image is ever
// readable by others, not even while it is being written.
Status create_private_file(const std::string& path);
// Takes every group and other permission away from `path` (a folder keeps
// others' search bit, so QEMU still passes). Nothing to do (no call) when
// it has none; a symbolic link is left alone.
Status close_to_others(const std::string& path);
// Temp file (0600 whatever the umask) + fsync + rename + fsync of the folder.
Status write_file_durably(const std::string& path, const std::string& bytes);
// kNotFound when it does not exist.
Result<std::string> read_whole_file(const std::string& path);

// The filesystem's immutable attribute (chattr +i): no process, root
// included, may open the file for writing, rename it or remove it while it
// is set. Setting it needs CAP_LINUX_IMMUTABLE (kPermissionDenied without);
// a filesystem without the attribute (NFS, FUSE) is kUnsupported; a missing
// file is kNotFound.
Status set_immutable(const std::string& path, bool immutable);
Result<bool> is_immutable(const std::string& path);
// Whether this process may set the attribute (CAP_LINUX_IMMUTABLE in its
// effective set), without trying.
bool may_set_immutable();

}  // namespace evac::builtin
