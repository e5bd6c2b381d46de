// Reading and writing disk images through NBD: a private qemu-nbd process
// per image (NbdExport) and a libnbd connection to it (NbdClient).
//
// qemu-nbd understands every image format QEMU does (qcow2 allocation,
// zero clusters, discard) and takes the same image locks a running QEMU
// takes, so an image a VM has open read-write is refused instead of being
// read torn. The replicator reads source disks in scan mode and writes
// replica images through this pair.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/status.h"

struct nbd_handle;

namespace evac::builtin {

// A qemu-nbd process exporting one image on a private unix socket, in a fresh
// 0700 temporary folder (under $TMPDIR, else /tmp). qemu-nbd runs in the
// foreground as our child, in its own process group, and is killed
// (SIGKILL) if the thread that started it exits (PR_SET_PDEATHSIG is tied
// to the creating *thread*): start exports from a thread that outlives
// them. A process that records its exports (record_exports_in) has those a
// kill -9 left behind stopped by its next life (reap_orphaned_exports).
//
// A read-only export reads through the host page cache (cache=writeback,
// which for an export that never writes only means "cached reads"): a scan
// reads a stopped VM's disk once, front to back, and the page cache both
// serves what is already there (an image its VM or a tool just wrote, the
// previous cycle's scan) and reads ahead for the rest. Reading with O_DIRECT
// instead went to the disk for every byte, even for a fully cached image,
// and took about twice as long. Nothing is written, so caching raises no
// durability question; Linux keeps cached pages coherent with O_DIRECT
// writes (a VM's cache='none'), so no stale data is read.
// A read-write export uses cache=none (O_DIRECT; the host page cache is left
// alone), falling back to the page cache on filesystems that refuse O_DIRECT.
// A read-write export also turns guest-visible zero writes and discards into
// holes (--discard=unmap --detect-zeroes=unmap). Up to 4 clients may connect
// at once; the export stays up until it is destroyed.
class NbdExport {
 public:
  enum class Mode { kReadOnly, kReadWrite };

  // format: "qcow2" or "raw". Errors: kNotFound (no such image),
  // kFailedPrecondition (the image is locked by another process, e.g. a
  // running VM), kInvalidArgument (bad format name, image not in that
  // format, not a file or block device), kUnavailable (anything else
  // qemu-nbd reported, or it did not come up within 10 s).
  static Result<std::unique_ptr<NbdExport>> start(const std::string& image_path, const std::string& format, Mode mode);

  // Stops qemu-nbd (SIGTERM, SIGKILL after 3 s), reaps it, removes the socket
  // and the folder. Destroy every NbdClient of this export first.
  ~NbdExport();
  NbdExport(const NbdExport&) = delete;
  NbdExport& operator=(const NbdExport&) = delete;

  const std::string& socket_path() const { return socket_path_; }
  const std::string& image_path() const { return image_path_; }
  const std::string& format() const { return format_; }
  Mode mode() const { return mode_; }
  // qemu-nbd's process id (diagnostics and tests).
  pid_t pid() const { return pid_; }

  // From now on every export this process starts is recorded in `folder`
  // (one file per qemu-nbd, removed when the export stops). evacd points it
  // into its state folder, so each site on a host has its own record.
  static void record_exports_in(const std::string& folder);
  // Stops every qemu-nbd recorded in `folder` that still runs: exports an
  // earlier process started and did not live to stop. The parent-death
  // signal kills them as their parent dies, but not if it dies between the
  // fork and the prctl, and a qemu-nbd was once seen surviving evacd's
  // kill -9 (it caught the SIGTERM it got then, and went on exporting a
  // staging image). A record whose process is gone, or is no longer that
  // qemu-nbd (the pid was reused), is only removed. Returns how many it
  // stopped; call it before anything starts new exports.
  static Result<int> reap_orphaned_exports(const std::string& folder);

 private:
  NbdExport() = default;
  void stop();

  std::string image_path_;
  std::string format_;
  Mode mode_ = Mode::kReadOnly;
  std::string dir_;
  std::string socket_path_;
  std::string record_;  // this export's file in the record folder, if any
  pid_t pid_ = -1;
};

// A libnbd connection to an NbdExport.
//
// Not thread-safe: a libnbd handle used synchronously serves one request at
// a time, so an NbdClient must not be shared across threads without a lock.
// Open one client per thread instead (an export accepts 4).
//
// Requests may be of any size and alignment: large reads and writes go out
// as several NBD requests in flight at once (each within the server's
// maximum, 32 MiB for qemu-nbd), and qemu handles unaligned ones. Pass big
// buffers (4-32 MiB) for throughput. A request past the end of the image is
// kInvalidArgument; a failed transfer is kUnavailable (kFailedPrecondition
// for a write to a read-only export).
class NbdClient {
 public:
  static Result<std::unique_ptr<NbdClient>> connect(const NbdExport& exp);
  // Connects to any NBD server on a unix socket (e.g. QEMU's pull-mode
  // backup export of a running VM's disk). `description` names the disk in
  // errors. With `dirty_context` (e.g. "qemu:dirty-bitmap:backup-vda") the
  // export's change map is negotiated too, for changed(); kFailedPrecondition
  // if the server does not offer it.
  static Result<std::unique_ptr<NbdClient>> connect_socket(const std::string& socket_path,
                                                           const std::string& export_name,
                                                           const std::string& description,
                                                           const std::string& dirty_context = "");
  ~NbdClient();
  NbdClient(const NbdClient&) = delete;
  NbdClient& operator=(const NbdClient&) = delete;

  std::uint64_t size() const { return size_; }
  bool read_only() const { return read_only_; }

  Status pread(void* buf, std::size_t len, std::uint64_t offset);
  // Several reads at once, pipelined on the connection: scattered small
  // ranges (a running VM's dirty blocks) cost one round trip per window of
  // requests in flight instead of one each.
  struct ReadRequest {
    void* buf;
    std::size_t len;
    std::uint64_t offset;
  };
  Status pread_many(const std::vector<ReadRequest>& reads);
  Status pwrite(const void* buf, std::size_t len, std::uint64_t offset);
  // Writes zeroes; the server punches a hole where it can.
  Status zero(std::size_t len, std::uint64_t offset);
  // Makes every completed write durable on the image's storage.
  Status flush();

  // zero: the range reads as zeroes (a hole, a zero cluster, or zeroes the
  // server detected). A hole that does not read as zeroes (e.g. one backed
  // by a backing file) is reported as data.
  struct Extent {
    std::uint64_t offset;
    std::uint64_t length;
    bool zero;
  };
  // The "base:allocation" map of [offset, offset+length): contiguous,
  // ascending extents covering exactly that range, neighbours of the same
  // kind merged. A server without the context reports everything as data.
  Result<std::vector<Extent>> allocation(std::uint64_t offset, std::uint64_t length);
  // The blocks of [offset, offset+length) the change map marks as written
  // since its checkpoint: ascending, merged ranges (`zero` is always false).
  Result<std::vector<Extent>> changed(std::uint64_t offset, std::uint64_t length);

 private:
  NbdClient() = default;
  Status check_range(const char* op, std::uint64_t len, std::uint64_t offset) const;
  struct Segment {
    char* buf;
    std::size_t len;
    std::uint64_t offset;
  };
  Status transfer(bool write, const std::vector<Segment>& segments);
  Status nbd_error(const char* op, std::uint64_t len, std::uint64_t offset) const;
  // Extents of one metadata context; Extent::zero carries "`flag` is set".
  Result<std::vector<Extent>> block_status(const char* context, std::uint32_t flag, std::uint64_t offset,
                                           std::uint64_t length);

  nbd_handle* h_ = nullptr;
  std::string image_path_;  // or what else names the disk in errors
  std::string dirty_context_;
  std::uint64_t size_ = 0;
  std::uint64_t max_request_ = 0;
  bool read_only_ = false;
  bool can_zero_ = false;
  bool can_flush_ = false;
  bool has_allocation_ = false;
};

}  // namespace evac::builtin
