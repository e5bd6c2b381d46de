#include "replication/builtin/block_source.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>

namespace evac::builtin {
namespace {

// Runs qemu-img with `args`; its standard output, or why it failed.
Result<std::string> qemu_img_output(const std::vector<std::string>& args) {
  int out[2];
  if (::pipe2(out, O_CLOEXEC) != 0) return unavailable(std::string("pipe: ") + std::strerror(errno));
  pid_t pid = ::fork();
  if (pid < 0) {
    ::close(out[0]);
    ::close(out[1]);
    return unavailable(std::string("fork: ") + std::strerror(errno));
  }
  if (pid == 0) {
    ::dup2(out[1], 1);
    int devnull = ::open("/dev/null", O_WRONLY);
    if (devnull >= 0) ::dup2(devnull, 2);
    std::vector<char*> argv;
    std::string tool = "qemu-img";
    argv.push_back(tool.data());
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    ::execvp("qemu-img", argv.data());
    ::_exit(127);
  }
  ::close(out[1]);
  std::string text;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(out[0], buf, sizeof buf);
    if (n > 0) text.append(buf, static_cast<std::size_t>(n));
    else if (n == 0 || errno != EINTR) break;
  }
  ::close(out[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    return unavailable("qemu-img " + args.front() + " failed on the image");
  return text;
}

}  // namespace

Result<std::unique_ptr<MappedImage>> MappedImage::open(const std::string& path, const std::string& format,
                                                       NbdClient& fallback) {
  if (format != "qcow2" && format != "raw") return unsupported("format " + format + " is not mapped");
  auto info_text = qemu_img_output({"info", "--backing-chain", "--output=json", "-f", format, path});
  if (!info_text) return info_text.status();
  auto info = nlohmann::json::parse(*info_text, nullptr, false);
  if (!info.is_array() || info.empty()) return unsupported("qemu-img info printed no backing chain for " + path);
  std::unique_ptr<MappedImage> image(new MappedImage(fallback));
  image->path_ = path;
  image->size_ = info.front().value("virtual-size", std::uint64_t{0});
  for (const auto& layer : info) {
    const std::string layer_format = layer.value("format", "");
    if (layer_format != "qcow2" && layer_format != "raw") return unsupported("a layer of " + path + " is " + layer_format);
    if (layer.value("encrypted", false)) return unsupported(path + " is encrypted");
    if (layer.contains("format-specific") && layer["format-specific"].contains("data") &&
        layer["format-specific"]["data"].contains("data-file"))
      return unsupported(path + " keeps its data in an external file");
    const std::string file = layer.value("filename", "");
    int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return unsupported("cannot open " + file + ": " + std::strerror(errno));
    image->fds_.push_back(fd);
  }
  auto map_text = qemu_img_output({"map", "--output=json", "-f", format, path});
  if (!map_text) return map_text.status();
  auto map = nlohmann::json::parse(*map_text, nullptr, false);
  if (!map.is_array()) return unsupported("qemu-img map printed no map of " + path);
  std::uint64_t expected = 0;
  for (const auto& e : map) {
    Piece p;
    p.start = e.value("start", std::uint64_t{0});
    p.length = e.value("length", std::uint64_t{0});
    p.zero = e.value("zero", false);
    const bool data = e.value("data", false);
    const int depth = e.value("depth", 0);
    if (p.start != expected) return unsupported("the map of " + path + " has a gap");
    expected = p.start + p.length;
    // Data with a place in one of the chain's files is read from there;
    // data without one (compressed clusters) through NBD.
    if (data && !p.zero && e.contains("offset") && !e.value("compressed", false) && depth >= 0 &&
        static_cast<std::size_t>(depth) < image->fds_.size()) {
      p.file = depth;
      p.host = e["offset"].get<std::uint64_t>();
    }
    if (!data && !p.zero) p.zero = true;  // unallocated all the way down: reads as zeroes
    image->map_.push_back(p);
  }
  if (expected != image->size_) return unsupported("the map of " + path + " does not cover the disk");
  return image;
}

MappedImage::~MappedImage() {
  for (int fd : fds_) ::close(fd);
}

Result<std::vector<NbdClient::Extent>> MappedImage::allocation(std::uint64_t offset, std::uint64_t length) {
  if (offset + length > size_ || offset + length < offset)
    return invalid_argument("mapping past the end of " + path_);
  std::vector<NbdClient::Extent> out;
  const std::uint64_t end = offset + length;
  auto it = std::upper_bound(map_.begin(), map_.end(), offset, [](std::uint64_t o, const Piece& p) { return o < p.start; });
  if (it != map_.begin()) --it;
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
  auto it = std::upper_bound(map_.begin(), map_.end(), offset, [](std::uint64_t o, const Piece& p) { return o < p.start; });
  if (it == map_.begin()) return nullptr;
  --it;
  if (it->file < 0 || it->zero || offset + len > it->start + it->length) return nullptr;
  static const std::uint64_t page = static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
  std::uint64_t host = it->host + (offset - it->start);
  std::uint64_t aligned = host / page * page;
  std::size_t span = static_cast<std::size_t>(host - aligned) + len;
  // MAP_POPULATE faults the range in now, on the caller's thread (the
  // sender's prefetch), rather than page by page while hashing.
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
  auto it = std::upper_bound(map_.begin(), map_.end(), offset, [](std::uint64_t o, const Piece& p) { return o < p.start; });
  if (it != map_.begin()) --it;
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
