// Reading a stopped VM's image file directly (MappedImage) must return
// exactly what QEMU itself reads through NBD, for every kind of cluster:
// data, zero clusters, unallocated ones, data in a backing file, and
// compressed clusters (which the map cannot place and NBD serves).
#include "replication/builtin/block_source.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>

#include "harness.h"

namespace evac::builtin {
namespace {

namespace fs = std::filesystem;
using evac::testing::run_command;

class BlockSourceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() / ("evac-blocksource-" + std::to_string(::getpid()));
    fs::remove_all(root_);
    fs::create_directories(root_);
  }
  void TearDown() override { fs::remove_all(root_); }
  static void qemu(std::vector<std::string> args) {
    auto r = run_command(args);
    ASSERT_EQ(r.exit_code, 0) << args[0] << ": " << r.err;
  }
  // Reads the whole image both ways and compares, in pieces of odd sizes.
  void expect_same_reads(const std::string& image, const std::string& format) {
    auto exp = NbdExport::start(image, format, NbdExport::Mode::kReadOnly);
    ASSERT_TRUE(exp.is_ok()) << exp.status().to_string();
    auto client = NbdClient::connect(**exp);
    ASSERT_TRUE(client.is_ok());
    auto reference = NbdClient::connect(**exp);
    ASSERT_TRUE(reference.is_ok());
    auto mapped = MappedImage::open(image, format, **client);
    ASSERT_TRUE(mapped.is_ok()) << mapped.status().to_string();
    ASSERT_EQ((*mapped)->size(), (*reference)->size());
    const std::uint64_t size = (*mapped)->size();
    int views = 0;
    for (std::uint64_t piece : {std::uint64_t{4096 * 3 + 512}, std::uint64_t{1} << 20}) {
      std::string a(piece, '\0'), b(piece, '\0');
      for (std::uint64_t off = 0; off < size; off += piece) {
        std::size_t n = static_cast<std::size_t>(std::min(piece, size - off));
        ASSERT_TRUE((*mapped)->pread(a.data(), n, off).is_ok());
        ASSERT_TRUE((*reference)->pread(b.data(), n, off).is_ok());
        ASSERT_EQ(a.compare(0, n, b, 0, n), 0) << image << " differs at " << off;
        if (auto v = (*mapped)->view(off, n)) {
          ++views;
          ASSERT_EQ(std::memcmp(v.get(), b.data(), n), 0) << image << " view differs at " << off;
        }
      }
    }
    // Everything it calls zero reads as zeroes.
    auto extents = (*mapped)->allocation(0, size);
    ASSERT_TRUE(extents.is_ok());
    std::uint64_t covered = 0;
    for (const auto& e : *extents) {
      EXPECT_EQ(e.offset, covered);
      covered += e.length;
      if (!e.zero) continue;
      std::string z(static_cast<std::size_t>(std::min<std::uint64_t>(e.length, 1 << 20)), 'x');
      ASSERT_TRUE((*reference)->pread(z.data(), z.size(), e.offset).is_ok());
      EXPECT_EQ(z.find_first_not_of('\0'), std::string::npos) << "extent at " << e.offset << " is not zero";
    }
    EXPECT_EQ(covered, size);
    EXPECT_GT(views, 0) << "ranges that one file holds are mapped, not copied";
  }
  fs::path root_;
};

TEST_F(BlockSourceTest, AQcow2ChainReadsAsQemuReadsIt) {
  std::string base = (root_ / "base.qcow2").string(), top = (root_ / "top.qcow2").string();
  qemu({"qemu-img", "create", "-q", "-f", "qcow2", base, "16M"});
  qemu({"qemu-io", "-f", "qcow2", "-c", "write -P 0x11 0 1M", "-c", "write -P 0x12 3M 64k", "-c", "write -c -P 0x13 5M 64k",
        base});
  qemu({"qemu-img", "create", "-q", "-f", "qcow2", "-b", base, "-F", "qcow2", top});
  qemu({"qemu-io", "-f", "qcow2", "-c", "write -P 0x21 512k 64k", "-c", "write -z 3M 64k", "-c", "write -c -P 0x22 8M 128k",
        "-c", "write -P 0x23 15M 4k", top});
  expect_same_reads(top, "qcow2");
  expect_same_reads(base, "qcow2");
}

TEST_F(BlockSourceTest, ASparseRawImageReadsAsQemuReadsIt) {
  std::string raw = (root_ / "disk.raw").string();
  qemu({"qemu-img", "create", "-q", "-f", "raw", raw, "8M"});
  qemu({"qemu-io", "-f", "raw", "-c", "write -P 0x31 1M 8k", "-c", "write -P 0x32 7M 1M", raw});
  expect_same_reads(raw, "raw");
}

}  // namespace
}  // namespace evac::builtin
