// Real qemu-nbd and libnbd on images made with qemu-img in a temporary folder.
#include "replication/builtin/nbd_image.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>
#include <random>

#include "replication/builtin/block_codec.h"

namespace evac::builtin {
namespace {

namespace fs = std::filesystem;
using Mode = NbdExport::Mode;

constexpr std::uint64_t kMiB = 1 << 20;

int run(const std::vector<std::string>& argv) {
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = ::fork();
  if (pid == 0) {
    int null_fd = ::open("/dev/null", O_WRONLY);
    ::dup2(null_fd, 1);
    ::execvp(args[0], args.data());
    ::_exit(127);
  }
  int ws = 0;
  ::waitpid(pid, &ws, 0);
  return WIFEXITED(ws) ? WEXITSTATUS(ws) : -1;
}

bool process_exists(pid_t pid) { return fs::exists("/proc/" + std::to_string(pid)); }

// Gone or a zombie (an orphan waits for whoever adopted it to reap it).
bool process_dead(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  if (!in) return true;
  std::string stat((std::istreambuf_iterator<char>(in)), {});
  auto paren = stat.rfind(')');
  return paren != std::string::npos && paren + 2 < stat.size() && stat[paren + 2] == 'Z';
}

std::string pattern(std::size_t n, std::uint32_t seed) {
  std::mt19937_64 rng(seed);
  std::string s(n, '\0');
  for (std::size_t i = 0; i + 8 <= n; i += 8) {
    std::uint64_t v = rng() | 0x0101010101010101ull;  // no zero bytes: never mistaken for a hole
    std::memcpy(&s[i], &v, 8);
  }
  for (std::size_t i = n - n % 8; i < n; ++i) s[i] = 'x';
  return s;
}

class NbdImageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "evac-nbd-test-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    // Exports put their socket folders under $TMPDIR: keep them in ours, so
    // the tests can see that nothing is left behind.
    const char* old = std::getenv("TMPDIR");
    old_tmpdir_ = old ? std::optional<std::string>(old) : std::nullopt;
    ::setenv("TMPDIR", dir_.c_str(), 1);
  }
  void TearDown() override {
    if (old_tmpdir_) {
      ::setenv("TMPDIR", old_tmpdir_->c_str(), 1);
    } else {
      ::unsetenv("TMPDIR");
    }
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  std::string make_image(const std::string& name, const std::string& format, std::uint64_t size) {
    std::string path = (fs::path(dir_) / name).string();
    EXPECT_EQ(run({"qemu-img", "create", "-q", "-f", format, path, std::to_string(size)}), 0);
    return path;
  }

  int leftover_export_folders() const {
    int n = 0;
    for (const auto& e : fs::directory_iterator(dir_)) {
      if (e.path().filename().string().rfind("evac-nbd-", 0) == 0) ++n;
    }
    return n;
  }

  std::unique_ptr<NbdExport> start(const std::string& path, const std::string& format, Mode mode) {
    auto r = NbdExport::start(path, format, mode);
    EXPECT_TRUE(r.is_ok()) << r.status().to_string();
    return r.is_ok() ? std::move(r).value() : nullptr;
  }

  std::unique_ptr<NbdClient> connect(const NbdExport& exp) {
    auto r = NbdClient::connect(exp);
    EXPECT_TRUE(r.is_ok()) << r.status().to_string();
    return r.is_ok() ? std::move(r).value() : nullptr;
  }

  std::string dir_;
  std::optional<std::string> old_tmpdir_;
};

// Writes at several offsets (one larger than a single NBD request, one
// unaligned, one ending at the last byte), reads them back through a fresh
// read-only export, and checks the allocation map.
class NbdRoundTripTest : public NbdImageTest, public ::testing::WithParamInterface<std::string> {};

TEST_P(NbdRoundTripTest, WriteThenReadBackThroughAnotherExport) {
  const std::string format = GetParam();
  // raw: a size that is not a multiple of the block size (but of 512, as qemu-img makes it).
  const std::uint64_t size = format == "raw" ? 64 * kMiB + 3 * 512 : 64 * kMiB;
  const std::string path = make_image("disk." + format, format, size);

  struct Write {
    std::uint64_t offset;
    std::string data;
  };
  std::vector<Write> writes = {
      {0, pattern(kBlockSize, 1)},                         // first block
      {kMiB + 4096 + 7, pattern(100000, 2)},               // unaligned, crosses blocks
      {10 * kMiB, pattern(34 * kMiB, 3)},                  // more than one 32 MiB request
      {size - 5000, pattern(5000, 4)},                     // ends at the last byte
  };
  {
    auto exp = start(path, format, Mode::kReadWrite);
    ASSERT_TRUE(exp);
    EXPECT_TRUE(fs::is_socket(exp->socket_path())) << exp->socket_path();
    EXPECT_EQ(exp->image_path(), path);
    auto c = connect(*exp);
    ASSERT_TRUE(c);
    EXPECT_EQ(c->size(), size);
    EXPECT_FALSE(c->read_only());
    for (const auto& w : writes) {
      Status st = c->pwrite(w.data.data(), w.data.size(), w.offset);
      ASSERT_TRUE(st.is_ok()) << st.to_string();
    }
    // Write then zero a range: it must read back as zeroes and map as zero.
    std::string scratch = pattern(kMiB, 5);
    ASSERT_TRUE(c->pwrite(scratch.data(), scratch.size(), 50 * kMiB).is_ok());
    Status z = c->zero(kMiB, 50 * kMiB);
    ASSERT_TRUE(z.is_ok()) << z.to_string();
    Status f = c->flush();
    ASSERT_TRUE(f.is_ok()) << f.to_string();
  }
  EXPECT_EQ(leftover_export_folders(), 0);

  auto exp = start(path, format, Mode::kReadOnly);
  ASSERT_TRUE(exp);
  auto c = connect(*exp);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->size(), size);
  EXPECT_TRUE(c->read_only());
  for (const auto& w : writes) {
    std::string back(w.data.size(), '\0');
    Status st = c->pread(back.data(), back.size(), w.offset);
    ASSERT_TRUE(st.is_ok()) << st.to_string();
    EXPECT_TRUE(back == w.data) << "data written at offset " << w.offset << " did not read back";
  }
  std::string untouched(2 * kMiB, 'u');
  ASSERT_TRUE(c->pread(untouched.data(), untouched.size(), 50 * kMiB).is_ok());
  EXPECT_EQ(untouched, std::string(2 * kMiB, '\0')) << "zeroed and untouched ranges must read as zeroes";

  auto map = c->allocation(0, size);
  ASSERT_TRUE(map.is_ok()) << map.status().to_string();
  ASSERT_FALSE(map->empty());
  // Contiguous, ascending, covering [0, size), neighbours of one kind merged.
  std::uint64_t pos = 0;
  for (std::size_t i = 0; i < map->size(); ++i) {
    const auto& e = (*map)[i];
    EXPECT_EQ(e.offset, pos);
    EXPECT_GT(e.length, 0u);
    if (i > 0) {
      EXPECT_NE(e.zero, (*map)[i - 1].zero) << "unmerged neighbours at " << e.offset;
    }
    pos = e.offset + e.length;
  }
  EXPECT_EQ(pos, size);
  auto zero_at = [&](std::uint64_t off) {
    for (const auto& e : *map) {
      if (off >= e.offset && off < e.offset + e.length) return e.zero;
    }
    ADD_FAILURE() << "offset " << off << " not mapped";
    return false;
  };
  for (const auto& w : writes) {
    for (std::uint64_t off = w.offset; off < w.offset + w.data.size(); off += 4096) {
      ASSERT_FALSE(zero_at(off)) << "written offset " << off << " is mapped as zero";
    }
    EXPECT_FALSE(zero_at(w.offset + w.data.size() - 1));
  }
  EXPECT_TRUE(zero_at(5 * kMiB));         // never written
  EXPECT_TRUE(zero_at(50 * kMiB));        // written, then zeroed
  EXPECT_TRUE(zero_at(51 * kMiB - 1));
  EXPECT_TRUE(zero_at(60 * kMiB));

  // A sub-range is mapped exactly, clipped to the request.
  auto part = c->allocation(kMiB + 4096 + 7, 5000);
  ASSERT_TRUE(part.is_ok()) << part.status().to_string();
  ASSERT_EQ(part->size(), 1u);
  EXPECT_EQ((*part)[0].offset, kMiB + 4096 + 7);
  EXPECT_EQ((*part)[0].length, 5000u);
  EXPECT_FALSE((*part)[0].zero);
  // The last byte of the big write and the first byte after it.
  auto edge = c->allocation(44 * kMiB - 1, 2);
  ASSERT_TRUE(edge.is_ok()) << edge.status().to_string();
  ASSERT_EQ(edge->size(), 2u);
  EXPECT_EQ((*edge)[0].offset, 44 * kMiB - 1);
  EXPECT_EQ((*edge)[0].length, 1u);
  EXPECT_FALSE((*edge)[0].zero);
  EXPECT_EQ((*edge)[1].offset, 44 * kMiB);
  EXPECT_EQ((*edge)[1].length, 1u);
  EXPECT_TRUE((*edge)[1].zero);
}

INSTANTIATE_TEST_SUITE_P(Formats, NbdRoundTripTest, ::testing::Values("qcow2", "raw"),
                         [](const auto& info) { return info.param; });

TEST_F(NbdImageTest, RequestsOutsideTheImageOrWritesToReadOnlyAreRefused) {
  const std::string path = make_image("d.qcow2", "qcow2", 4 * kMiB);
  auto exp = start(path, "qcow2", Mode::kReadOnly);
  ASSERT_TRUE(exp);
  auto c = connect(*exp);
  ASSERT_TRUE(c);
  std::string buf(8192, 'a');
  Status past = c->pread(buf.data(), buf.size(), 4 * kMiB - 4096);
  EXPECT_EQ(past.code(), StatusCode::kInvalidArgument) << past.to_string();
  EXPECT_NE(past.message().find(path), std::string::npos) << past.to_string();
  Status ro = c->pwrite(buf.data(), 4096, 0);
  EXPECT_EQ(ro.code(), StatusCode::kFailedPrecondition) << ro.to_string();
  EXPECT_EQ(c->zero(4096, 0).code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(c->allocation(4 * kMiB, 1).status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(c->pread(buf.data(), 0, 4 * kMiB).is_ok()) << "an empty read at the end is fine";
}

TEST_F(NbdImageTest, ManyScatteredReadsAtOnceReadWhatSingleReadsDo) {
  const std::string path = make_image("m.qcow2", "qcow2", 16 * kMiB);
  auto exp = start(path, "qcow2", Mode::kReadWrite);
  ASSERT_TRUE(exp);
  auto c = connect(*exp);
  ASSERT_TRUE(c);
  std::string data(16 * kMiB, '\0');
  for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>((i * 131) >> 9);
  ASSERT_TRUE(c->pwrite(data.data(), data.size(), 0).is_ok());
  // Small scattered ranges, one larger than a request piece (4 MiB), one at the end.
  const std::vector<std::pair<std::uint64_t, std::size_t>> ranges = {
      {65536 * 7, 65536}, {65536 * 3, 65536}, {kMiB + 512, 4096}, {2 * kMiB, 6 * kMiB}, {16 * kMiB - 65536, 65536}};
  std::vector<std::string> bufs;
  for (const auto& r : ranges) bufs.emplace_back(r.second, 'x');
  std::vector<NbdClient::ReadRequest> reads;
  for (std::size_t i = 0; i < ranges.size(); ++i) reads.push_back({bufs[i].data(), ranges[i].second, ranges[i].first});
  ASSERT_TRUE(c->pread_many(reads).is_ok());
  for (std::size_t i = 0; i < ranges.size(); ++i)
    EXPECT_EQ(bufs[i], data.substr(ranges[i].first, ranges[i].second)) << "range " << i;

  reads.push_back({bufs[0].data(), 65536, 16 * kMiB - 4096});  // past the end: nothing is read
  Status past = c->pread_many(reads);
  EXPECT_EQ(past.code(), StatusCode::kInvalidArgument) << past.to_string();
}

TEST_F(NbdImageTest, MissingImageIsNotFound) {
  const std::string path = dir_ + "/no-such-disk.qcow2";
  auto r = NbdExport::start(path, "qcow2", Mode::kReadOnly);
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), StatusCode::kNotFound) << r.status().to_string();
  EXPECT_NE(r.status().message().find("disk image " + path + " does not exist"), std::string::npos);
  EXPECT_FALSE(r.status().hint().empty());
  EXPECT_EQ(leftover_export_folders(), 0);
}

TEST_F(NbdImageTest, WrongOrUnknownFormatIsInvalidArgument) {
  const std::string raw = make_image("plain.raw", "raw", 4 * kMiB);
  auto r = NbdExport::start(raw, "qcow2", Mode::kReadOnly);
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << r.status().to_string();
  EXPECT_NE(r.status().message().find("qcow2"), std::string::npos) << r.status().to_string();
  EXPECT_EQ(leftover_export_folders(), 0);

  auto v = NbdExport::start(raw, "vmdk", Mode::kReadOnly);
  ASSERT_FALSE(v.is_ok());
  EXPECT_EQ(v.status().code(), StatusCode::kInvalidArgument) << v.status().to_string();

  auto d = NbdExport::start(dir_, "raw", Mode::kReadOnly);
  ASSERT_FALSE(d.is_ok());
  EXPECT_EQ(d.status().code(), StatusCode::kInvalidArgument) << d.status().to_string();
}

// qemu-nbd 7.2 takes QEMU's image locks: a read-write holder (like a running
// VM) shares neither writing nor a consistent read, so both a second
// read-write and a read-only export are refused; a read-only holder lets
// other readers in but no writer.
TEST_F(NbdImageTest, ImageLockedByAnotherWriterIsFailedPrecondition) {
  const std::string path = make_image("busy.qcow2", "qcow2", 4 * kMiB);
  auto holder = start(path, "qcow2", Mode::kReadWrite);
  ASSERT_TRUE(holder);
  for (Mode m : {Mode::kReadWrite, Mode::kReadOnly}) {
    auto r = NbdExport::start(path, "qcow2", m);
    ASSERT_FALSE(r.is_ok()) << "second export in mode " << int(m) << " should be refused";
    EXPECT_EQ(r.status().code(), StatusCode::kFailedPrecondition) << r.status().to_string();
    EXPECT_NE(r.status().message().find(path), std::string::npos);
    EXPECT_NE(r.status().message().find("lock"), std::string::npos) << "keeps qemu-nbd's words";
    EXPECT_NE(r.status().hint().find("running"), std::string::npos) << r.status().hint();
    EXPECT_NE(r.status().hint().find("change tracking"), std::string::npos) << r.status().hint();
  }
  EXPECT_EQ(leftover_export_folders(), 1) << "only the holder's folder";
  holder.reset();

  auto reader = start(path, "qcow2", Mode::kReadOnly);
  ASSERT_TRUE(reader);
  auto second_reader = NbdExport::start(path, "qcow2", Mode::kReadOnly);
  EXPECT_TRUE(second_reader.is_ok()) << second_reader.status().to_string();
  auto writer = NbdExport::start(path, "qcow2", Mode::kReadWrite);
  ASSERT_FALSE(writer.is_ok());
  EXPECT_EQ(writer.status().code(), StatusCode::kFailedPrecondition) << writer.status().to_string();
}

TEST_F(NbdImageTest, DestructorStopsQemuNbdAndRemovesItsFolder) {
  const std::string path = make_image("d.raw", "raw", 4 * kMiB);
  auto exp = start(path, "raw", Mode::kReadWrite);
  ASSERT_TRUE(exp);
  const pid_t pid = exp->pid();
  const fs::path folder = fs::path(exp->socket_path()).parent_path();
  ASSERT_GT(pid, 0);
  EXPECT_TRUE(process_exists(pid));
  EXPECT_EQ(fs::status(folder).permissions() & fs::perms::all, fs::perms::owner_all) << "socket folder must be 0700";
  {
    // Clients come and go; the export stays up for the next one.
    auto c1 = connect(*exp);
    ASSERT_TRUE(c1);
    auto c2 = connect(*exp);
    ASSERT_TRUE(c2);
    std::string data = pattern(4096, 9);
    ASSERT_TRUE(c1->pwrite(data.data(), data.size(), 0).is_ok());
    ASSERT_TRUE(c1->flush().is_ok());
    std::string back(4096, '\0');
    ASSERT_TRUE(c2->pread(back.data(), back.size(), 0).is_ok());
    EXPECT_EQ(back, data);
  }
  auto c3 = connect(*exp);
  ASSERT_TRUE(c3) << "a persistent export outlives its first clients";
  c3.reset();
  exp.reset();
  EXPECT_FALSE(process_exists(pid)) << "qemu-nbd " << pid << " outlived its NbdExport (or was not reaped)";
  EXPECT_FALSE(fs::exists(folder));
  EXPECT_EQ(leftover_export_folders(), 0);
}

TEST_F(NbdImageTest, ClientOfAStoppedExportGetsUnavailable) {
  const std::string path = make_image("d.qcow2", "qcow2", 40 * kMiB);
  auto exp = start(path, "qcow2", Mode::kReadOnly);
  ASSERT_TRUE(exp);
  auto c = connect(*exp);
  ASSERT_TRUE(c);
  const pid_t pid = exp->pid();
  exp.reset();  // the server goes away under a connected client
  EXPECT_FALSE(process_exists(pid));
  // The first request finds out: several pieces in flight, all retired.
  std::string big(32 * kMiB, '\0');
  Status st = c->pread(big.data(), big.size(), 0);
  ASSERT_FALSE(st.is_ok());
  EXPECT_EQ(st.code(), StatusCode::kUnavailable) << st.to_string();
  EXPECT_NE(st.message().find(path), std::string::npos) << st.to_string();
  // The handle is dead now; later requests say the same, not "bad request".
  std::string buf(4096, '\0');
  Status again = c->pread(buf.data(), buf.size(), 0);
  EXPECT_EQ(again.code(), StatusCode::kUnavailable) << again.to_string();
  auto map = c->allocation(0, 4096);
  EXPECT_EQ(map.status().code(), StatusCode::kUnavailable) << map.status().to_string();
}

// PR_SET_PDEATHSIG: if evac dies without running destructors, its qemu-nbd
// processes are killed instead of holding image locks forever.
TEST_F(NbdImageTest, QemuNbdDoesNotOutliveACrashedParent) {
  const std::string path = make_image("d.qcow2", "qcow2", 4 * kMiB);
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::close(fds[0]);
    auto r = NbdExport::start(path, "qcow2", Mode::kReadWrite);
    pid_t p = r.is_ok() ? (*r)->pid() : -1;
    (void)!::write(fds[1], &p, sizeof p);
    ::_exit(0);  // no destructors: as if evacd crashed
  }
  ::close(fds[1]);
  pid_t server = -1;
  ASSERT_EQ(::read(fds[0], &server, sizeof server), static_cast<ssize_t>(sizeof server));
  ::close(fds[0]);
  int ws = 0;
  ::waitpid(child, &ws, 0);
  ASSERT_GT(server, 0) << "the child could not start an export";
  // Wait (bounded) for the signal to land; the assertion is on the outcome.
  for (int i = 0; i < 500 && !process_dead(server); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_TRUE(process_dead(server)) << "qemu-nbd " << server << " outlived its parent";
  if (!process_dead(server)) ::kill(server, SIGKILL);  // do not leak it into other tests
  // And its image lock went with it.
  auto again = NbdExport::start(path, "qcow2", Mode::kReadWrite);
  EXPECT_TRUE(again.is_ok()) << again.status().to_string();
}


// Each export is recorded while it runs; the next life of a process whose
// exports outlived it stops those (and only those) from the record.
TEST_F(NbdImageTest, ExportsAnEarlierLifeLeftAreStoppedFromTheRecord) {
  const fs::path record = fs::path(dir_) / "record";
  const fs::path earlier = fs::path(dir_) / "earlier-life";
  fs::create_directories(record);
  fs::create_directories(earlier);
  NbdExport::record_exports_in(record.string());
  const std::string path = make_image("d.qcow2", "qcow2", 4 * kMiB);
  auto exp = start(path, "qcow2", Mode::kReadWrite);
  ASSERT_TRUE(exp);
  const fs::path mine = record / std::to_string(exp->pid());
  ASSERT_TRUE(fs::exists(mine));
  std::string recorded;
  std::getline(std::ifstream(mine), recorded);
  EXPECT_EQ(recorded, exp->socket_path());

  // As an earlier life would have left it: its record, and besides it a
  // record of a pid that is some other program now, one of a pid that is
  // gone, and a file that is no record at all.
  fs::copy_file(mine, earlier / mine.filename());
  pid_t other = ::fork();
  ASSERT_GE(other, 0);
  if (other == 0) {
    ::execlp("sleep", "sleep", "30", static_cast<char*>(nullptr));
    ::_exit(127);
  }
  std::ofstream(earlier / std::to_string(other)) << exp->socket_path() << "-not-this-one\n";
  std::ofstream(earlier / "999999999") << "/tmp/evac-nbd-gone/nbd.sock\n";
  std::ofstream(earlier / "notes.txt") << "hello\n";

  auto reaped = NbdExport::reap_orphaned_exports(earlier.string());
  ASSERT_TRUE(reaped.is_ok()) << reaped.status().to_string();
  EXPECT_EQ(*reaped, 1);
  for (int i = 0; i < 200 && !process_dead(exp->pid()); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_TRUE(process_dead(exp->pid())) << "the recorded qemu-nbd still runs";
  EXPECT_TRUE(process_exists(other)) << "a reused pid was taken for the export";
  EXPECT_TRUE(fs::is_empty(earlier)) << "every record is removed once read";
  ::kill(other, SIGKILL);
  ::waitpid(other, nullptr, 0);

  exp.reset();  // stopping the (already killed) export removes its own record
  EXPECT_FALSE(fs::exists(mine));
  NbdExport::record_exports_in("");
  auto unrecorded = start(path, "qcow2", Mode::kReadOnly);
  ASSERT_TRUE(unrecorded) << "the killed export's image lock is gone";
  EXPECT_TRUE(fs::is_empty(record)) << "nothing is recorded once recording is off";
}

}  // namespace
}  // namespace evac::builtin
