// The built-in replicator's protocol bodies: what the protected site writes
// reads back whole at the recovery site, and what it never writes is refused.
#include "replication/builtin/builtin_protocol.h"

#include <gtest/gtest.h>

#include "core/replication_json.h"

namespace evac::builtin {
namespace {

using nlohmann::json;

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// What the protected site writes to begin and commit a cycle reads back
// whole at the recovery site: the decoder accepts every key the sender sends.
TEST(PeerCycleBodies, WhatTheSenderWritesReadsBackWhole) {
  const CycleBeginRequest begin{"cycle-1700000000-0a1b2c3d4e5f",
                                {ReplicatedDevice{"u-web01", "web01", "vda", DiskSource{"file", "/a/images/web01.qcow2"}, "qcow2",
                                                  "/b/replicas", std::uint64_t{1} << 40, "web01.qcow2"},
                                 ReplicatedDevice{"u-web01", "", "vdb", DiskSource{"file", "/a/fast/web01.raw"}, "", "", 0, ""}}};
  auto b = cycle_begin_from_json(to_json(begin));
  ASSERT_TRUE(b.is_ok()) << b.status().to_string();
  EXPECT_EQ(b->cycle_id, begin.cycle_id);
  ASSERT_EQ(b->disks.size(), 2u);
  for (std::size_t i = 0; i < 2; ++i) {
    const ReplicatedDevice& sent = begin.disks[i];
    const ReplicatedDevice& got = b->disks[i];
    EXPECT_EQ(got.vm_uuid, sent.vm_uuid);
    EXPECT_EQ(got.vm_name, sent.vm_name);
    EXPECT_EQ(got.disk, sent.disk);
    EXPECT_EQ(got.format, sent.format);
    EXPECT_EQ(got.replica_dir, sent.replica_dir);
    EXPECT_EQ(got.size_bytes, sent.size_bytes);
    EXPECT_EQ(got.seed, sent.seed);
    EXPECT_EQ(got.source.path, "") << "stays at the protected site";
  }

  const CycleCommitRequest commit{{{"u-web01/vda", std::string(64, 'f')}, {"u-web01/vdb", std::string(64, '0')}},
                                  1'700'000'000'123,
                                  12345,
                                  RetentionPolicy{1000, 24, 7}};
  json wire = to_json(commit);
  EXPECT_EQ(wire["created_at"], 1'700'000'000);
  auto c = cycle_commit_from_json(wire);
  ASSERT_TRUE(c.is_ok()) << c.status().to_string();
  EXPECT_EQ(c->created_at_ms, commit.created_at_ms);
  EXPECT_EQ(c->bytes_sent, 12345u);
  EXPECT_EQ(c->retention.keep_last, 1000);
  EXPECT_EQ(c->retention.keep_hourly, 24);
  EXPECT_EQ(c->retention.keep_daily, 7);
  ASSERT_EQ(c->digests.size(), 2u);
  EXPECT_EQ(c->digests[1].key, "u-web01/vdb");
  EXPECT_EQ(c->digests[1].digest_hex, std::string(64, '0'));
  // A site older than the milliseconds (or than retention by the hour and
  // day) sends less: the rest has its old defaults.
  for (const char* key : {"created_at_ms", "keep_pits", "keep_hourly", "keep_daily", "bytes_sent"}) wire.erase(key);
  auto old = cycle_commit_from_json(wire);
  ASSERT_TRUE(old.is_ok()) << old.status().to_string();
  EXPECT_EQ(old->created_at_ms, 1'700'000'000'000);
  EXPECT_EQ(old->retention.keep_last, 24);
  EXPECT_EQ(old->retention.keep_hourly, 0);
  EXPECT_EQ(old->bytes_sent, 0u);

  // A PIT as the recovery site answers it reads back too.
  PointInTime pit;
  pit.id = "pit-1";
  pit.group = "g1";
  pit.created_at = 1'700'000'000;
  pit.created_at_ms = 1'700'000'000'123;
  pit.bytes_sent = 77;
  pit.cycle_id = "cycle-1";
  pit.disks = {{"u-web01/vda", "/b/replicas/.evac-pits/g1/pit-1/vda.qcow2", 1 << 20}};
  auto p = pit_from_json(to_json(pit));
  ASSERT_TRUE(p.is_ok()) << p.status().to_string();
  EXPECT_EQ(p->created_at_ms, pit.created_at_ms);
  ASSERT_EQ(p->disks.size(), 1u);
  EXPECT_EQ(p->disks[0].path, pit.disks[0].path);
  json hostile = to_json(pit);
  hostile["bytes_sent"] = -1;
  EXPECT_EQ(pit_from_json(hostile).status().code(), StatusCode::kInvalidArgument);
}

// Numbers the sender never sends are refused, never narrowed: 2^40 PITs to
// keep was 0 as an int, and 2^32 + 1 was 1, which deletes every older PIT.
TEST(PeerCycleBodies, NumbersOutOfRangeAreRefusedNotNarrowed) {
  const json good = to_json(CycleCommitRequest{{{"u-web01/vda", std::string(64, 'f')}}, 1'700'000'000'000, 0, {}});
  ASSERT_TRUE(cycle_commit_from_json(good).is_ok());
  const std::vector<std::pair<std::string, json>> bad = {
      {"keep_pits", std::uint64_t{1} << 40},   {"keep_pits", (std::uint64_t{1} << 32) + 1},
      {"keep_pits", 0},                        {"keep_pits", 1001},
      {"keep_pits", "24"},                     {"keep_pits", 24.5},
      {"keep_hourly", -1},                     {"keep_daily", std::uint64_t{1} << 33},
      {"bytes_sent", std::uint64_t{1} << 63},  {"created_at", -1},
      {"created_at", std::int64_t{1} << 62},   {"created_at_ms", -1000},
      {"digests", json::object()},             {"digests", nullptr}};
  for (const auto& [key, value] : bad) {
    json body = good;
    body[key] = value;
    auto r = cycle_commit_from_json(body);
    ASSERT_FALSE(r.is_ok()) << key << " = " << value.dump();
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_TRUE(contains(r.status().message(), "'" + key + "'")) << r.status().message();
  }
  json disk = to_json(CycleBeginRequest{"c", {ReplicatedDevice{"u", "", "vda", {}, "", "/b/replicas", 1, ""}}});
  ASSERT_TRUE(cycle_begin_from_json(disk).is_ok());
  for (const json& size : {json(-1), json(std::uint64_t{1} << 63), json("1GiB"), json(nullptr)}) {
    disk["disks"][0]["size_bytes"] = size;
    EXPECT_FALSE(cycle_begin_from_json(disk).is_ok()) << size.dump();
  }
  // A disk size within 2^62 but beyond what evac replicates is refused
  // before the receiver sees it (it would allocate a hash per 64 KiB).
  disk["disks"][0]["size_bytes"] = kMaxDiskBytes;
  EXPECT_TRUE(cycle_begin_from_json(disk).is_ok());
  disk["disks"][0]["size_bytes"] = std::uint64_t{1} << 62;
  auto huge = cycle_begin_from_json(disk);
  ASSERT_FALSE(huge.is_ok());
  EXPECT_EQ(huge.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(huge.status().message(), "disk u/vda is 4611686018427387904 bytes, more than the 64 TiB (70368744177664 bytes) evac replicates");
  EXPECT_TRUE(contains(huge.status().hint(), "at most 64 TiB")) << huge.status().hint();
}

}  // namespace
}  // namespace evac::builtin
