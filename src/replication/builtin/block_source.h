// Where a cycle reads a disk from.
//
// NbdBlockSource reads through NBD: QEMU's backup export of a running VM, or
// qemu-nbd on a stopped VM's image. MappedImage reads a stopped VM's image
// file directly: `qemu-img map` says where each guest block lies in which
// file of the image's chain, and plain pread()s through the page cache
// fetch it, without the copies through qemu-nbd and a socket. A scan reads
// every block of the disk, so this is what decides its speed. Anything the
// map cannot place in a file (compressed clusters) still comes through NBD,
// and images with encryption or an external data file are not mapped at all.
//
// A mapped image must not change while it is read: its VM is stopped and a
// read-only qemu-nbd export of it holds QEMU's image lock meanwhile.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/status.h"
#include "replication/builtin/nbd_image.h"

namespace evac::builtin {

class BlockSource {
 public:
  virtual ~BlockSource() = default;
  virtual std::uint64_t size() const = 0;
  // Same contract as NbdClient::allocation.
  virtual Result<std::vector<NbdClient::Extent>> allocation(std::uint64_t offset, std::uint64_t length) = 0;
  virtual Status pread(void* buf, std::size_t len, std::uint64_t offset) = 0;
  // Several reads; a source that can pipeline them does (NBD).
  virtual Status pread_many(const std::vector<NbdClient::ReadRequest>& reads) {
    for (const auto& r : reads) EVAC_RETURN_IF_ERROR(pread(r.buf, r.len, r.offset));
    return Status::ok();
  }
  // The range mapped into memory, read-only, where the source can do that
  // without copying (one file holds it contiguously); nullptr otherwise, and
  // the caller preads. The mapping lives as long as the pointer.
  virtual std::shared_ptr<const char> view(std::uint64_t /*offset*/, std::size_t /*len*/) { return nullptr; }
};

class NbdBlockSource : public BlockSource {
 public:
  explicit NbdBlockSource(NbdClient& client) : client_(client) {}
  std::uint64_t size() const override { return client_.size(); }
  Result<std::vector<NbdClient::Extent>> allocation(std::uint64_t offset, std::uint64_t length) override {
    return client_.allocation(offset, length);
  }
  Status pread(void* buf, std::size_t len, std::uint64_t offset) override { return client_.pread(buf, len, offset); }
  Status pread_many(const std::vector<NbdClient::ReadRequest>& reads) override { return client_.pread_many(reads); }

 private:
  NbdClient& client_;
};

class MappedImage : public BlockSource {
 public:
  // kUnsupported when the image cannot be read directly (encrypted, an
  // external data file, a format other than qcow2 or raw); the caller then
  // reads through `fallback` alone. `fallback` reads the same image and
  // serves what the map cannot place; it must outlive this object, and only
  // this object's caller thread may use it meanwhile.
  static Result<std::unique_ptr<MappedImage>> open(const std::string& path, const std::string& format,
                                                   NbdClient& fallback);
  ~MappedImage() override;
  MappedImage(const MappedImage&) = delete;
  MappedImage& operator=(const MappedImage&) = delete;

  std::uint64_t size() const override { return size_; }
  Result<std::vector<NbdClient::Extent>> allocation(std::uint64_t offset, std::uint64_t length) override;
  Status pread(void* buf, std::size_t len, std::uint64_t offset) override;
  std::shared_ptr<const char> view(std::uint64_t offset, std::size_t len) override;

 private:
  struct Piece {
    std::uint64_t start = 0;   // guest offset
    std::uint64_t length = 0;
    bool zero = false;         // reads as zeroes
    int file = -1;             // index into fds_ when the data lies in a file; -1: ask NBD
    std::uint64_t host = 0;    // offset in that file
  };
  MappedImage(NbdClient& fallback) : fallback_(fallback) {}
  // The piece holding `offset` (< size_).
  std::vector<Piece>::const_iterator piece_at(std::uint64_t offset) const;

  NbdClient& fallback_;
  std::string path_;
  std::uint64_t size_ = 0;
  std::vector<int> fds_;      // the chain's files, top first (depth)
  std::vector<Piece> map_;    // ascending, covering [0, size_)
};

}  // namespace evac::builtin
