// Writes a cycle's blocks straight into a staging image's file.
//
// A first cycle writes the whole disk. Through qemu-nbd every byte would
// cross a socket twice and qemu-nbd's buffers once more before it reached
// the page cache; on the lab's two cores that path, not the network, set the
// pace of a first sync. The PIT store therefore creates a first cycle's
// staging image with every cluster allocated up front (qcow2
// preallocation=metadata: the file stays sparse, the unwritten clusters read
// as zeroes), so `qemu-img map` fixes where each guest block lives in the
// file and plain pwrite()s can put it there. The image stays a valid qcow2
// throughout: only data clusters are written, never metadata.
//
// Nothing else may have the file open while it is written (a staging image
// belongs to its cycle alone). pwrite() is safe from several threads at
// once for different blocks.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/status.h"

namespace evac::builtin {

class DirectImageWriter {
 public:
  // kUnsupported when the image is not a single qcow2 file whose every
  // cluster already has a place in it (the caller then writes through NBD).
  static Result<std::unique_ptr<DirectImageWriter>> open(const std::string& path);
  ~DirectImageWriter();
  DirectImageWriter(const DirectImageWriter&) = delete;
  DirectImageWriter& operator=(const DirectImageWriter&) = delete;

  std::uint64_t size() const { return size_; }
  // Writes guest bytes [offset, offset + len). A full disk is
  // kResourceExhausted, saying where.
  Status pwrite(const void* data, std::size_t len, std::uint64_t offset);
  // Makes what was written durable (the PIT store fsyncs again on commit;
  // this reports a failed write-back while the cycle can still be failed).
  Status sync();

 private:
  struct Piece {
    std::uint64_t start = 0;  // guest offset
    std::uint64_t length = 0;
    std::uint64_t host = 0;   // offset in the file
  };
  DirectImageWriter() = default;
  // Writes n bytes at file offset `host`: 0, or the errno that stopped it.
  int write_at(const char* from, std::size_t n, std::uint64_t host);

  std::string path_;
  int fd_ = -1;         // through the page cache: the disk's short tail, or where O_DIRECT is refused
  int direct_fd_ = -1;  // O_DIRECT, when the filesystem allows it
  std::uint64_t size_ = 0;
  std::vector<Piece> map_;  // ascending, covering [0, size_)
};

}  // namespace evac::builtin
