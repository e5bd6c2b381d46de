#include "replication/builtin/block_codec.h"

#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "block_samples.h"

namespace evac::builtin {
namespace {

// Compressible but not trivial: repeated text with a counter.
std::string text_bytes(std::size_t n, int salt) {
  std::string s;
  s.reserve(n + 64);
  for (int i = 0; s.size() < n; ++i) s += "line " + std::to_string(i * 7 + salt) + " of a guest log file\n";
  s.resize(n);
  return s;
}

BlockHash random_hash(std::mt19937& rng) {
  BlockHash h;
  for (auto& b : h) b = static_cast<std::uint8_t>(rng());
  return h;
}

// Byte positions in an encoded batch, per the layout in block_codec.h (for
// the first block; in a one-block batch its stored bytes follow its entry).
std::size_t first_header(const std::string& key) { return 4 + 4 + key.size() + 4; }
constexpr std::size_t kHeader = 8 + 4 + 4 + 1 + 32 + 16;

void put_le32(std::string& s, std::size_t pos, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) s[pos + i] = static_cast<char>((v >> (8 * i)) & 0xff);
}
std::uint32_t get_le32(const std::string& s, std::size_t pos) {
  std::uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | static_cast<std::uint8_t>(s[pos + i]);
  return v;
}

// ---------------------------------------------------------------- blocks of a disk

TEST(BlockHashTest, BlockCountAndLength) {
  EXPECT_EQ(block_count(0), 0u);
  EXPECT_EQ(block_count(1), 1u);
  EXPECT_EQ(block_count(kBlockSize), 1u);
  EXPECT_EQ(block_count(kBlockSize + 1), 2u);
  EXPECT_EQ(block_length(kBlockSize + 1, 0), kBlockSize);
  EXPECT_EQ(block_length(kBlockSize + 1, 1), 1u);
  EXPECT_EQ(block_length(kBlockSize + 1, 2), 0u);
  EXPECT_EQ(block_length(3 * kBlockSize, 2), kBlockSize);
}

// ---------------------------------------------------------------- manifests

Manifest sample_manifest() {
  std::mt19937 rng(42);
  Manifest m;
  m.disk_size = 3 * kBlockSize + 1000;
  for (int i = 0; i < 4; ++i) m.hashes.push_back(random_hash(rng));
  return m;
}

TEST(ManifestTest, EncodeDecodeRoundTrip) {
  Manifest m = sample_manifest();
  std::string bytes = m.encode();
  EXPECT_EQ(bytes.size(), 4u + 8 + 8 + 4 * 32 + 32);
  EXPECT_EQ(bytes.substr(0, 4), "EVM2");
  auto back = Manifest::decode(bytes);
  ASSERT_TRUE(back.is_ok()) << back.status().to_string();
  EXPECT_EQ(*back, m);
  EXPECT_EQ(back->scheme, kHashScheme);
  EXPECT_EQ(back->digest(), m.digest());

  Manifest none;  // a zero-byte disk
  auto empty_back = Manifest::decode(none.encode());
  ASSERT_TRUE(empty_back.is_ok()) << empty_back.status().to_string();
  EXPECT_EQ(*empty_back, none);
}

TEST(ManifestTest, AnOlderEvacsManifestStillReadsWithItsScheme) {
  Manifest m = sample_manifest();
  m.scheme = HashScheme::kSha256;
  std::string bytes = m.encode();
  EXPECT_EQ(bytes.substr(0, 4), "EVM1");
  auto back = Manifest::decode(bytes);
  ASSERT_TRUE(back.is_ok()) << back.status().to_string();
  EXPECT_EQ(back->scheme, HashScheme::kSha256);
  EXPECT_EQ(*back, m);
  Manifest zeros = Manifest::empty(kBlockSize + 10, HashScheme::kSha256);
  std::string z(kBlockSize, '\0');
  EXPECT_EQ(zeros.hashes[0], sha256(z.data(), z.size()));
  EXPECT_EQ(zeros.hashes[1], sha256(z.data(), 10));
}

TEST(ManifestTest, EveryFlippedByteIsRejected) {
  std::string bytes = sample_manifest().encode();
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    for (std::uint8_t bit : {0x01, 0x80}) {
      std::string bad = bytes;
      bad[i] = static_cast<char>(bad[i] ^ bit);
      auto r = Manifest::decode(bad);
      ASSERT_FALSE(r.is_ok()) << "flipping bit " << int(bit) << " of byte " << i << " went unnoticed";
      EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
      EXPECT_FALSE(r.status().hint().empty());
    }
  }
}

TEST(ManifestTest, TruncatedOrExtendedIsRejected) {
  std::string bytes = sample_manifest().encode();
  for (std::size_t n = 0; n < bytes.size(); ++n) {
    EXPECT_FALSE(Manifest::decode(std::string_view(bytes).substr(0, n)).is_ok()) << "prefix of " << n;
  }
  auto r = Manifest::decode(bytes + '\0');
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("length"), std::string::npos) << r.status().to_string();
}

TEST(ManifestTest, MessagesSayWhatIsWrong) {
  std::string bytes = sample_manifest().encode();
  std::string magic = bytes;
  magic[0] = 'X';
  EXPECT_NE(Manifest::decode(magic).status().message().find("magic"), std::string::npos);
  std::string sum = bytes;
  sum.back() ^= 1;
  EXPECT_NE(Manifest::decode(sum).status().message().find("checksum"), std::string::npos);
  EXPECT_NE(Manifest::decode("EVM").status().message().find("truncated"), std::string::npos);
}

TEST(ManifestTest, CountMustMatchDiskSize) {
  Manifest m = sample_manifest();
  m.disk_size = 10 * kBlockSize;  // 10 blocks, but only 4 hashes: a consistent encoding of an inconsistent manifest
  auto r = Manifest::decode(m.encode());
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("10 blocks"), std::string::npos) << r.status().to_string();
}

TEST(ManifestTest, DigestCoversEveryHashAndTheSize) {
  Manifest m = sample_manifest();
  BlockHash d = m.digest();
  for (std::size_t i = 0; i < m.hashes.size(); ++i) {
    Manifest changed = m;
    changed.hashes[i][31] ^= 1;
    EXPECT_NE(changed.digest(), d) << "hash " << i;
  }
  Manifest resized = m;
  resized.disk_size += 1;
  EXPECT_NE(resized.digest(), d);
  Manifest swapped = m;
  std::swap(swapped.hashes[0], swapped.hashes[1]);
  EXPECT_NE(swapped.digest(), d);
  EXPECT_EQ(sample_manifest().digest(), d);
}

TEST(ManifestTest, EmptyEqualsHashingZeros) {
  const std::uint64_t size = 2 * kBlockSize + 1000;
  Manifest m = Manifest::empty(size);
  EXPECT_EQ(m.disk_size, size);
  ASSERT_EQ(m.hashes.size(), 3u);
  std::string zeros(kBlockSize, '\0');
  EXPECT_EQ(m.hashes[0], hash_block(zeros.data(), kBlockSize));
  EXPECT_EQ(m.hashes[1], zero_block_hash());
  // `head -c 1000 /dev/zero | sha256sum | xxd -r -p | sha256sum`: one leaf
  EXPECT_EQ(to_hex(m.hashes[2]), "3fa2b684fa9d80f04b70187e6c9ff1c8dd422ce1846beb79cf5e1546c7062d41");

  Manifest exact = Manifest::empty(4 * kBlockSize);
  ASSERT_EQ(exact.hashes.size(), 4u);
  for (const auto& h : exact.hashes) EXPECT_EQ(h, zero_block_hash());
  EXPECT_TRUE(Manifest::empty(0).hashes.empty());
  auto back = Manifest::decode(m.encode());
  ASSERT_TRUE(back.is_ok());
  EXPECT_EQ(*back, m);
}

// ---------------------------------------------------------------- batches

std::vector<BlockRecord> mixed_blocks() {
  std::vector<BlockRecord> blocks;
  blocks.push_back(record(0, random_bytes(kBlockSize, 7)));                  // incompressible
  blocks.push_back(record(5 * kBlockSize, std::string(kBlockSize, '\0')));   // zeros
  blocks.push_back(record(6 * kBlockSize, text_bytes(kBlockSize, 3)));       // compressible
  blocks.push_back(record(9 * kBlockSize, text_bytes(1000, 5)));             // the disk's short tail
  return blocks;
}

template <typename Decoded>
void expect_same(const std::vector<Decoded>& a, const std::vector<BlockRecord>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].offset, b[i].offset) << i;
    EXPECT_EQ(a[i].data, b[i].data) << i;
    EXPECT_EQ(a[i].hash, b[i].hash) << i;
  }
}

TEST(BatchTest, RoundTripOfMixedBlocks) {
  auto blocks = mixed_blocks();
  std::string wire = encode_batch("1b4e28ba-2fa1-11d2-883f-0016d3cca427/vda", blocks);
  EXPECT_EQ(wire.substr(0, 4), "EVB3");
  auto r = decode_batch(wire);
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ(r->disk_key, "1b4e28ba-2fa1-11d2-883f-0016d3cca427/vda");
  EXPECT_EQ(r->wire_bytes, wire.size());
  expect_same(r->blocks, blocks);
}

TEST(BatchTest, EmptyBatchRoundTrips) {
  std::string wire = encode_batch("vm/vdb", {});
  auto r = decode_batch(wire);
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ(r->disk_key, "vm/vdb");
  EXPECT_TRUE(r->blocks.empty());
}

TEST(BatchTest, IncompressibleBlockIsStoredRawAndCompressibleOnesShrink) {
  const std::string key = "vm/vda";
  std::string wire = encode_batch(key, {record(0, random_bytes(kBlockSize, 11))});
  std::size_t h = first_header(key);
  EXPECT_EQ(static_cast<std::uint8_t>(wire[h + 16]), 0) << "random data should be stored raw";
  EXPECT_EQ(get_le32(wire, h + 12), kBlockSize);
  EXPECT_TRUE(decode_batch(wire).is_ok());

  std::vector<BlockRecord> compressible;
  std::uint64_t raw = 0;
  for (int i = 0; i < 16; ++i) {
    compressible.push_back(record(std::uint64_t(i) * kBlockSize, i % 2 ? std::string(kBlockSize, '\0') : text_bytes(kBlockSize, i)));
    raw += kBlockSize;
  }
  std::string small = encode_batch(key, compressible);
  EXPECT_EQ(static_cast<std::uint8_t>(small[h + 16]), 1) << "text should be stored compressed";
  auto r = decode_batch(small);
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_LT(r->wire_bytes, raw / 4) << "compressible data must shrink on the wire";
  expect_same(r->blocks, compressible);
}

TEST(BatchTest, RawBlocksAreNotCopiedAndLieBackToBack) {
  // The receiver writes a run of raw blocks straight from the request body.
  std::vector<BlockRecord> blocks = {record(4 * kBlockSize, random_bytes(kBlockSize, 21)),
                                     record(5 * kBlockSize, random_bytes(kBlockSize, 22)),
                                     record(6 * kBlockSize, random_bytes(kBlockSize, 23))};
  std::string wire = encode_batch("vm/vda", blocks);
  auto r = decode_batch(wire);
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  expect_same(r->blocks, blocks);
  for (std::size_t i = 0; i < r->blocks.size(); ++i) {
    const char* p = r->blocks[i].data.data();
    EXPECT_TRUE(p >= wire.data() && p + kBlockSize <= wire.data() + wire.size()) << i;
    if (i > 0) {
      EXPECT_EQ(p, r->blocks[i - 1].data.data() + kBlockSize) << i;
    }
  }
  EXPECT_FALSE(r->decompressed) << "nothing was compressed";
}

TEST(BatchTest, BlockWhoseSampleDoesNotCompressIsStoredRawAndRoundTrips) {
  // Mostly text, but random where the encoder samples (the middle): stored
  // raw without compressing the whole block, and still exact and verified.
  std::string data = text_bytes(kBlockSize, 6);
  std::string noise = random_bytes(8192, 6);
  data.replace(kBlockSize / 2 - 4096, 8192, noise);
  const std::string key = "vm/vda";
  std::vector<BlockRecord> blocks = {record(0, data), record(kBlockSize, text_bytes(kBlockSize, 7))};
  std::string wire = encode_batch(key, blocks);
  std::size_t h = first_header(key);
  EXPECT_EQ(static_cast<std::uint8_t>(wire[h + 16]), 0) << "the sampled block is stored raw";
  EXPECT_EQ(static_cast<std::uint8_t>(wire[h + kHeader + 16]), 1) << "its compressible neighbour is not";
  auto r = decode_batch(wire);
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  expect_same(r->blocks, blocks);

  // A corrupted byte of the raw block is still caught, naming the block.
  std::string bad = wire;
  bad[h + 2 * kHeader + 40000] ^= 0x01;
  auto b = decode_batch(bad);
  ASSERT_FALSE(b.is_ok());
  EXPECT_NE(b.status().message().find("block at offset 0 of disk vm/vda failed its checksum"), std::string::npos)
      << b.status().to_string();
}

TEST(BatchTest, ChangeToACompressedFrameThatDecodesTheSameIsStillRejected) {
  // Bit 4 of a zstd frame header descriptor is unused: flipping it leaves the
  // decompressed block (and its hash) unchanged, so only the batch checksum
  // over compressed bytes notices.
  const std::string key = "vm/vda";
  std::string wire = encode_batch(key, {record(0, text_bytes(kBlockSize, 1))});
  std::size_t frame = first_header(key) + kHeader;
  ASSERT_EQ(static_cast<std::uint8_t>(wire[frame]), 0x28) << "a zstd frame starts there";
  std::string bad = wire;
  bad[frame + 4] ^= 0x10;
  auto r = decode_batch(bad);
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("batch of disk vm/vda failed its checksum"), std::string::npos)
      << r.status().to_string();
}

// A 64 KiB block can be stored in a byte or two, so a batch's size does
// not bound what it decodes to: a table claiming more than a batch holds
// is refused before anything is allocated for decompression.
TEST(BatchTest, ABatchClaimingMoreThanABatchHoldsIsRefusedBeforeAllocating) {
  const std::string key = "vm/vda";
  auto claiming = [&](std::uint32_t count) {
    std::string wire = "EVB3";
    wire.append(4, '\0');
    put_le32(wire, 4, static_cast<std::uint32_t>(key.size()));
    wire += key;
    wire.append(4, '\0');
    put_le32(wire, wire.size() - 4, count);
    for (std::uint32_t i = 0; i < count; ++i) {
      std::string entry(kHeader, '\0');
      for (int b = 0; b < 8; ++b) entry[b] = static_cast<char>(((std::uint64_t(i) * kBlockSize) >> (8 * b)) & 0xff);
      put_le32(entry, 8, kBlockSize);  // raw length
      put_le32(entry, 12, 1);          // stored in one byte
      entry[16] = 1;                   // zstd
      wire += entry;
    }
    wire.append(count, 'x');
    wire.append(32, '\0');  // the trailing checksum
    return wire;
  };
  const std::uint32_t most = kMaxBatchDataBytes / kBlockSize;
  std::string too_much = claiming(most + 1);
  EXPECT_LT(too_much.size(), 32u * 1024) << "a small request";
  auto r = decode_batch(too_much);
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("the blocks of disk vm/vda would decode to more than 16777216 bytes"),
            std::string::npos)
      << r.status().to_string();
  // Within the bound the table is taken, and the bytes are what is refused.
  auto within = decode_batch(claiming(most));
  ASSERT_FALSE(within.is_ok());
  EXPECT_NE(within.status().message().find("does not decompress"), std::string::npos) << within.status().to_string();

  // A batch that holds that much for real decodes.
  std::vector<BlockRecord> zeros;
  for (std::uint32_t i = 0; i < most; ++i) zeros.push_back(record(std::uint64_t(i) * kBlockSize, std::string(kBlockSize, '\0')));
  auto full = decode_batch(encode_batch(key, zeros));
  ASSERT_TRUE(full.is_ok()) << full.status().to_string();
  EXPECT_EQ(full->blocks.size(), most);
}

TEST(BatchTest, EveryFlippedByteOfASmallBatchIsRejected) {
  std::vector<BlockRecord> blocks = {record(kBlockSize, text_bytes(kBlockSize, 1)),
                                     record(4 * kBlockSize, text_bytes(777, 2))};
  std::string wire = encode_batch("vm/vda", blocks);
  ASSERT_LT(wire.size(), 8000u) << "the test wants a small batch";
  for (std::size_t i = 0; i < wire.size(); ++i) {
    std::string bad = wire;
    bad[i] = static_cast<char>(bad[i] ^ 0x10);
    auto r = decode_batch(bad);
    ASSERT_FALSE(r.is_ok()) << "flipping byte " << i << " of " << wire.size() << " went unnoticed";
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().hint().find("last complete PIT is intact"), std::string::npos) << r.status().to_string();
  }
  for (std::size_t n = 0; n < wire.size(); ++n) {
    ASSERT_FALSE(decode_batch(std::string_view(wire).substr(0, n)).is_ok()) << "prefix of " << n;
  }
  EXPECT_FALSE(decode_batch(wire + "x").is_ok());
}

TEST(BatchTest, CorruptedCompressedByteNamesTheBlock) {
  const std::string key = "vm/vda";
  std::string wire = encode_batch(key, {record(3 * kBlockSize, text_bytes(kBlockSize, 4))});
  std::size_t h = first_header(key);
  std::uint32_t stored = get_le32(wire, h + 12);
  ASSERT_LT(stored, kBlockSize);
  // Try several payload bytes: each must fail, naming block and disk.
  for (std::size_t k : {std::size_t(0), std::size_t(stored / 2), std::size_t(stored - 1)}) {
    std::string bad = wire;
    bad[h + kHeader + k] ^= 0x5a;
    auto r = decode_batch(bad);
    ASSERT_FALSE(r.is_ok()) << "payload byte " << k;
    EXPECT_NE(r.status().message().find("block at offset 196608 of disk vm/vda"), std::string::npos)
        << r.status().to_string();
  }
}

TEST(BatchTest, CorruptedHashOrCheckIsRejected) {
  const std::string key = "vm/vda";
  std::string wire = encode_batch(key, {record(2 * kBlockSize, random_bytes(kBlockSize, 3))});

  // The SHA-256 the recovery site records is covered by the batch checksum.
  std::string bad = wire;
  bad[first_header(key) + 17 + 5] ^= 1;
  auto r = decode_batch(bad);
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(r.status().message(),
            "changed-block batch of disk vm/vda failed its checksum: the stream was corrupted in transit");
  EXPECT_EQ(r.status().hint(), "the cycle is discarded and retried; the last complete PIT is intact");

  // The block's own check (after the SHA-256) names the block.
  bad = wire;
  bad[first_header(key) + 17 + 32 + 3] ^= 1;
  r = decode_batch(bad);
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().message(),
            "block at offset 131072 of disk vm/vda failed its checksum: the stream was corrupted in transit");
}

TEST(BatchTest, TheSendersHashIsRecordedAsSent) {
  // The receiver checks transit with XXH3-128 and keeps the sender's SHA-256
  // as it came: a sender that hashed wrongly is caught by verification,
  // which re-hashes the PIT, not here.
  BlockRecord lying = record(0, text_bytes(kBlockSize, 1));
  lying.hash = zero_block_hash();
  auto r = decode_batch(encode_batch("vm/vda", {lying}));
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ(r->blocks[0].hash, zero_block_hash());
  EXPECT_EQ(r->blocks[0].data, lying.data);
}

TEST(BatchTest, CorruptedRawByteFailsTheChecksum) {
  const std::string key = "vm/vda";
  std::string wire = encode_batch(key, {record(0, random_bytes(kBlockSize, 5))});
  std::string bad = wire;
  bad[first_header(key) + kHeader + 1234] ^= 1;
  auto r = decode_batch(bad);
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("block at offset 0 of disk vm/vda failed its checksum"), std::string::npos)
      << r.status().to_string();
}

TEST(BatchTest, LengthsBeyondTheBufferAreRejected) {
  const std::string key = "vm/vda";
  std::string wire = encode_batch(key, {record(0, text_bytes(kBlockSize, 8)), record(kBlockSize, text_bytes(kBlockSize, 9))});
  std::size_t h = first_header(key);

  std::string huge_stored = wire;
  put_le32(huge_stored, h + 12, 0xfffffff0u);
  auto r = decode_batch(huge_stored);
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("compressed length"), std::string::npos) << r.status().to_string();

  std::string raw_stored = wire;  // stored raw, claiming more bytes than there are
  raw_stored[h + 16] = 0;
  put_le32(raw_stored, h + 8, kBlockSize);
  put_le32(raw_stored, h + 12, kBlockSize);
  r = decode_batch(raw_stored);
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("remain"), std::string::npos) << r.status().to_string();

  std::string big_raw = wire;
  put_le32(big_raw, h + 8, kBlockSize + 1);
  r = decode_batch(big_raw);
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("invalid length"), std::string::npos) << r.status().to_string();

  std::string count = wire;
  put_le32(count, h - 4, 0x7fffffffu);
  r = decode_batch(count);
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("does not fit"), std::string::npos) << r.status().to_string();

  std::string key_len = wire;
  put_le32(key_len, 4, 0xffffffffu);
  r = decode_batch(key_len);
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("disk key length"), std::string::npos) << r.status().to_string();

  std::string encoding = wire;
  encoding[h + 16] = 7;
  r = decode_batch(encoding);
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("unknown encoding"), std::string::npos) << r.status().to_string();
}

TEST(BatchTest, TruncationMagicAndTrailerAreReported) {
  const std::string key = "vm/vda";
  std::string wire = encode_batch(key, {record(0, random_bytes(kBlockSize, 1)), record(kBlockSize, text_bytes(kBlockSize, 2))});

  auto r = decode_batch(std::string_view(wire).substr(0, wire.size() / 2));
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("malformed"), std::string::npos) << r.status().to_string();

  r = decode_batch(std::string_view(wire).substr(0, 10));
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("truncated"), std::string::npos) << r.status().to_string();

  std::string magic = wire;
  magic[3] = '1';  // the previous format, whose layout differs
  r = decode_batch(magic);
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("magic"), std::string::npos) << r.status().to_string();

  std::string trailer = wire;
  trailer[trailer.size() - 1] ^= 1;
  r = decode_batch(trailer);
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("batch of disk vm/vda failed its checksum"), std::string::npos)
      << r.status().to_string();
}

TEST(BatchTest, UnalignedOffsetIsRejected) {
  auto r = decode_batch(encode_batch("vm/vda", {record(100, text_bytes(kBlockSize, 1))}));
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("not aligned"), std::string::npos) << r.status().to_string();
}

}  // namespace
}  // namespace evac::builtin
