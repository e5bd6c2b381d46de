#include "replication/builtin/block_source.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <iterator>

#include "replication/builtin/host_io.h"

namespace evac::builtin {

Result<std::unique_ptr<MappedImage>> MappedImage::open(const std::string& path, const std::string& format,
                                                       NbdClient& fallback) {
  if (format != "qcow2" && format != "raw") return unsupported("format " + format + " is not mapped");
  auto chain = image_chain(path, format);
  if (!chain) return chain.status();
  std::unique_ptr<MappedImage> image(new MappedImage(fallback));
  image->path_ = path;
  image->size_ = chain->front().virtual_size;
  for (const auto& layer : *chain) {
    if (layer.format != "qcow2" && layer.format != "raw") return unsupported("a layer of " + path + " is " + layer.format);
    EVAC_RETURN_IF_ERROR(check_plain_layer(layer, path));
    int fd = ::open(layer.filename.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return unsupported("cannot open " + layer.filename + ": " + std::strerror(errno));
    image->fds_.push_back(fd);
  }
  auto map = map_image(path, format, image->size_);
  if (!map) return map.status();
  for (const auto& e : *map) {
    Piece p;
    p.start = e.start;
    p.length = e.length;
    p.zero = e.zero || !e.data;  // unallocated all the way down: reads as zeroes
    // Data with a place in one of the chain's files is read from there;
    // data without one (compressed clusters) through NBD.
    if (e.data && !e.zero && e.offset && !e.compressed && e.depth >= 0 &&
        static_cast<std::size_t>(e.depth) < image->fds_.size()) {
      p.file = e.depth;
      p.host = *e.offset;
    }
    image->map_.push_back(p);
  }
  return image;
}

MappedImage::~MappedImage() {
  for (int fd : fds_) ::close(fd);
}

std::vector<MappedImage::Piece>::const_iterator MappedImage::piece_at(std::uint64_t offset) const {
  // The map starts at 0 and covers the disk, so a piece holds every offset.
  auto after = std::upper_bound(map_.begin(), map_.end(), offset,
                                [](std::uint64_t o, const Piece& p) { return o < p.start; });
  return after == map_.begin() ? after : std::prev(after);
}

Result<std::vector<NbdClient::Extent>> MappedImage::allocation(std::uint64_t offset, std::uint64_t length) {
  if (offset + length > size_ || offset + length < offset)
    return invalid_argument("mapping past the end of " + path_);
  std::vector<NbdClient::Extent> out;
  const std::uint64_t end = offset + length;
  auto it = piece_at(offset);
  for (; it != map_.end() && it->start < end; ++it) {
    std::uint64_t s = std::max(it->start, offset), t = std::min(it->start + it->length, end);
    if (t <= s) continue;
    if (!out.empty() && out.back().zero == it->zero && out.back().offset + out.back().length == s) {
      out.back().length += t - s;
    } else {
      out.push_back({s, t - s, it->zero});
    }
  }
  return out;
}

std::shared_ptr<const char> MappedImage::view(std::uint64_t offset, std::size_t len) {
  if (len == 0 || offset + len > size_) return nullptr;
  auto it = piece_at(offset);
  if (it->file < 0 || it->zero || offset + len > it->start + it->length) return nullptr;
  static const std::uint64_t page = static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
  std::uint64_t host = it->host + (offset - it->start);
  std::uint64_t aligned = host / page * page;
  std::size_t span = static_cast<std::size_t>(host - aligned) + len;
  // MAP_POPULATE faults the range in now, on the caller's thread (a hashing
  // worker), rather than page by page while hashing.
  void* m = ::mmap(nullptr, span, PROT_READ, MAP_SHARED | MAP_POPULATE, fds_[static_cast<std::size_t>(it->file)],
                   static_cast<off_t>(aligned));
  if (m == MAP_FAILED) return nullptr;
  const char* start = static_cast<const char*>(m) + (host - aligned);
  return std::shared_ptr<const char>(start, [m, span](const char*) { ::munmap(m, span); });
}

Status MappedImage::pread(void* buf, std::size_t len, std::uint64_t offset) {
  if (offset + len > size_ || offset + len < offset) return invalid_argument("reading past the end of " + path_);
  char* dst = static_cast<char*>(buf);
  const std::uint64_t end = offset + len;
  auto it = piece_at(offset);
  for (; it != map_.end() && it->start < end; ++it) {
    std::uint64_t s = std::max(it->start, offset), t = std::min(it->start + it->length, end);
    if (t <= s) continue;
    char* at = dst + (s - offset);
    std::size_t n = static_cast<std::size_t>(t - s);
    if (it->zero) {
      std::memset(at, 0, n);
    } else if (it->file >= 0) {
      std::uint64_t host = it->host + (s - it->start);
      std::size_t done = 0;
      while (done < n) {
        ssize_t r = ::pread(fds_[static_cast<std::size_t>(it->file)], at + done, n - done,
                            static_cast<off_t>(host + done));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0)
          return unavailable("reading " + path_ + " at " + std::to_string(s + done) + ": " +
                                 (r < 0 ? std::strerror(errno) : "unexpected end of file"),
                             "the image's storage may have failed; the next cycle retries");
        done += static_cast<std::size_t>(r);
      }
    } else {
      EVAC_RETURN_IF_ERROR(fallback_.pread(at, n, s));
    }
  }
  return Status::ok();
}

}  // namespace evac::builtin
