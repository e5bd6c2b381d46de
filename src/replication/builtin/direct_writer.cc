#include "replication/builtin/direct_writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <cstdlib>
#include <iterator>
#include <new>

#include "replication/builtin/host_io.h"

namespace evac::builtin {

Result<std::unique_ptr<DirectImageWriter>> DirectImageWriter::open(const std::string& path) {
  auto chain = image_chain(path, "qcow2");
  if (!chain) return chain.status();
  if (chain->size() > 1) return unsupported(path + " has a backing file");
  EVAC_RETURN_IF_ERROR(check_plain_layer(chain->front(), path));

  std::unique_ptr<DirectImageWriter> w(new DirectImageWriter());
  w->path_ = path;
  w->size_ = chain->front().virtual_size;
  auto map = map_image(path, "qcow2", w->size_);
  if (!map) return map.status();
  for (const auto& e : *map) {
    // Every cluster must already have its place in this very file: a
    // cluster without one would need qcow2 metadata written, which only
    // QEMU may do.
    if (!e.data || !e.offset || e.depth != 0 || e.compressed)
      return unsupported("guest bytes " + std::to_string(e.start) + "+" + std::to_string(e.length) + " of " + path +
                         " have no place in the file yet");
    w->map_.push_back(Piece{e.start, e.length, *e.offset});
  }
  w->fd_ = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (w->fd_ < 0) return unavailable("cannot open " + path + " for writing: " + std::strerror(errno));
  // Past the page cache, as qemu-nbd's cache=none wrote: copying a whole
  // disk into the page cache, then throttling on and writing back its dirty
  // pages, cost more CPU than everything the NBD path saved. A filesystem
  // without O_DIRECT (tmpfs) is written through the cache.
  w->direct_fd_ = ::open(path.c_str(), O_WRONLY | O_CLOEXEC | O_DIRECT);
  return w;
}

DirectImageWriter::~DirectImageWriter() {
  if (fd_ >= 0) ::close(fd_);
  if (direct_fd_ >= 0) ::close(direct_fd_);
}

namespace {

// O_DIRECT wants memory, file offset and length aligned to the device's
// logical block; 4 KiB covers every device. Blocks arrive at any address in
// a request body, so they are copied into an aligned buffer per thread
// first: one memcpy, instead of the page cache's copy and its bookkeeping.
constexpr std::size_t kDirectAlign = 4096;
constexpr std::size_t kBounceLen = 4 << 20;

struct FreeDeleter {
  void operator()(char* p) const { std::free(p); }
};

char* bounce_buffer() {
  thread_local std::unique_ptr<char, FreeDeleter> buf([] {
    void* p = nullptr;
    if (::posix_memalign(&p, kDirectAlign, kBounceLen) != 0) throw std::bad_alloc();
    return static_cast<char*>(p);
  }());
  return buf.get();
}

ssize_t write_fully(int fd, const char* from, std::size_t n, std::uint64_t at) {
  for (std::size_t done = 0; done < n;) {
    ssize_t r = ::pwrite(fd, from + done, n - done, static_cast<off_t>(at + done));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return -1;
    if (r == 0) {
      errno = EIO;
      return -1;
    }
    done += static_cast<std::size_t>(r);
  }
  return static_cast<ssize_t>(n);
}

}  // namespace

int DirectImageWriter::write_at(const char* from, std::size_t n, std::uint64_t host) {
  if (direct_fd_ >= 0 && host % kDirectAlign == 0 && n % kDirectAlign == 0) {
    char* bounce = bounce_buffer();
    for (std::size_t done = 0; done < n;) {
      std::size_t k = std::min(kBounceLen, n - done);
      std::memcpy(bounce, from + done, k);
      if (write_fully(direct_fd_, bounce, k, host + done) < 0) return errno;
      done += k;
    }
    return 0;
  }
  // The disk's short tail, or no O_DIRECT here.
  return write_fully(fd_, from, n, host) < 0 ? errno : 0;
}

Status DirectImageWriter::pwrite(const void* data, std::size_t len, std::uint64_t offset) {
  if (offset > size_ || len > size_ - offset)
    return invalid_argument("writing past the end of " + path_ + " (" + std::to_string(offset) + "+" +
                            std::to_string(len) + " of " + std::to_string(size_) + " bytes)");
  const char* from = static_cast<const char*>(data);
  // The map starts at 0 and covers the disk, so a piece holds every offset.
  auto piece = std::prev(std::upper_bound(map_.begin(), map_.end(), offset,
                                          [](std::uint64_t o, const Piece& p) { return o < p.start; }));
  while (len > 0) {
    const std::uint64_t within = offset - piece->start;
    std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(len, piece->length - within));
    if (int err = write_at(from, n, piece->host + within); err != 0) {
      std::string what = "writing " + std::to_string(n) + " bytes at guest offset " + std::to_string(offset) + " of " +
                         path_ + " failed: " + std::strerror(err);
      if (err == ENOSPC || err == EDQUOT)
        return unavailable(what, "the storage holding " + path_ + " is full: free space and retry");
      return unavailable(what, "the storage holding the replica failed; the cycle is retried");
    }
    from += n;
    offset += n;
    len -= n;
    ++piece;
  }
  return Status::ok();
}

Status DirectImageWriter::sync() {
  // O_DIRECT bypasses the page cache, not the drive's cache: flush both fds' work.
  if (::fdatasync(fd_) != 0)
    return unavailable("flushing " + path_ + " to disk failed: " + std::strerror(errno),
                       "the storage holding the replica failed or is full; the cycle is retried");
  return Status::ok();
}

}  // namespace evac::builtin
