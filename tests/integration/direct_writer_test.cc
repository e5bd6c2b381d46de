// Writing a first cycle's blocks straight into a preallocated qcow2 file
// (DirectImageWriter) must leave exactly what QEMU then reads, and a valid
// image; anything the writer cannot place is refused so the caller uses NBD.
#include "replication/builtin/direct_writer.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>

#include "harness.h"

namespace evac::builtin {
namespace {

namespace fs = std::filesystem;
using evac::testing::run_command;

class DirectWriterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() / ("evac-directwriter-" + std::to_string(::getpid()));
    fs::remove_all(root_);
    fs::create_directories(root_);
  }
  void TearDown() override { fs::remove_all(root_); }
  static void run(std::vector<std::string> args) {
    auto r = run_command(args);
    ASSERT_EQ(r.exit_code, 0) << args[0] << ": " << r.err << r.out;
  }
  static std::string read_file(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), {}};
  }
  fs::path root_;
};

std::string random_bytes(std::size_t n, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng());
  return s;
}

TEST_F(DirectWriterTest, WhatItWritesIsWhatQemuReads) {
  // 4 KiB clusters: qemu-img then maps a fresh image in 2 MiB pieces (each
  // L2 table's clusters follow it in the file), so writes cross pieces as a
  // large image's do every 512 MiB; and the disk ends in a short tail.
  const std::uint64_t size = (24ull << 20) + 1536;
  const std::string image = (root_ / "staging.qcow2").string();
  run({"qemu-img", "create", "-q", "-f", "qcow2", "-o", "preallocation=metadata,cluster_size=4096", image,
       std::to_string(size)});
  auto writer = DirectImageWriter::open(image);
  ASSERT_TRUE(writer.is_ok()) << writer.status().to_string();
  ASSERT_EQ((*writer)->size(), size);

  struct Write {
    std::uint64_t offset;
    std::string data;
  };
  const std::vector<Write> writes = {
      {0, random_bytes(65536, 1)},
      {(2ull << 20) - 3 * 65536, random_bytes(6 * 65536, 2)},  // across two pieces of the map
      {(4ull << 20) - 65536, random_bytes(5ull << 20, 3)},       // across three
      {20ull << 20, random_bytes(4096 * 3, 5)},
      {size - 1536 - 65536, random_bytes(65536 + 1536, 4)},   // the short tail
  };
  for (const auto& w : writes) {
    Status s = (*writer)->pwrite(w.data.data(), w.data.size(), w.offset);
    ASSERT_TRUE(s.is_ok()) << s.to_string();
  }
  ASSERT_TRUE((*writer)->sync().is_ok());
  writer->reset();

  auto check = run_command({"qemu-img", "check", "-f", "qcow2", image});
  EXPECT_EQ(check.exit_code, 0) << check.out << check.err;
  const fs::path raw = root_ / "out.raw";
  run({"qemu-img", "convert", "-f", "qcow2", "-O", "raw", image, raw.string()});
  std::string got = read_file(raw);
  ASSERT_EQ(got.size(), size);
  std::string expected(size, '\0');
  for (const auto& w : writes) expected.replace(w.offset, w.data.size(), w.data);
  EXPECT_TRUE(got == expected) << "the image does not read back what was written";
}

TEST_F(DirectWriterTest, ImagesWithoutEveryClusterPlacedAreLeftToNbd) {
  const std::string plain = (root_ / "plain.qcow2").string();
  run({"qemu-img", "create", "-q", "-f", "qcow2", plain, "64M"});
  auto r = DirectImageWriter::open(plain);
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnsupported) << r.status().to_string();

  const std::string base = (root_ / "base.qcow2").string();
  const std::string overlay = (root_ / "overlay.qcow2").string();
  run({"qemu-img", "create", "-q", "-f", "qcow2", "-o", "preallocation=metadata", base, "64M"});
  run({"qemu-img", "create", "-q", "-f", "qcow2", "-b", base, "-F", "qcow2", overlay});
  r = DirectImageWriter::open(overlay);
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnsupported) << r.status().to_string();
}

TEST_F(DirectWriterTest, WritesPastTheEndAreRefused) {
  const std::string image = (root_ / "small.qcow2").string();
  run({"qemu-img", "create", "-q", "-f", "qcow2", "-o", "preallocation=metadata", image, "1M"});
  auto writer = DirectImageWriter::open(image);
  ASSERT_TRUE(writer.is_ok()) << writer.status().to_string();
  std::string block(65536, 'x');
  Status s = (*writer)->pwrite(block.data(), block.size(), (1 << 20) - 4096);
  ASSERT_FALSE(s.is_ok());
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("past the end"), std::string::npos) << s.to_string();
}

}  // namespace
}  // namespace evac::builtin
