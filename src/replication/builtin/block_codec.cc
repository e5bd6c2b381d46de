#include "replication/builtin/block_codec.h"

#include <xxhash.h>
#include <zstd.h>

#include <cstring>
#include <memory>
#include <new>

namespace evac::builtin {
namespace {

// Manifests say in their magic how their block hashes were computed.
constexpr std::string_view kManifestMagicSha256 = "EVM1";     // HashScheme::kSha256
constexpr std::string_view kManifestMagicLeaves = "EVM2";     // HashScheme::kSha256OfLeaves
constexpr std::string_view kBatchMagic = "EVB3";
constexpr std::size_t kHashLen = 32;
constexpr std::size_t kCheckLen = 16;
// A table entry: offset u64, raw length u32, stored length u32, encoding u8, hash, check
constexpr std::size_t kBlockHeaderLen = 8 + 4 + 4 + 1 + kHashLen + kCheckLen;
constexpr std::uint8_t kEncodingRaw = 0;
constexpr std::uint8_t kEncodingZstd = 1;

const char* kCorruptHint = "the cycle is discarded and retried; the last complete PIT is intact";

// ---- little-endian fixed-width integers ----

void put_u64(std::string& out, std::uint64_t v) {
  char b[8];
  for (int i = 0; i < 8; ++i) b[i] = static_cast<char>((v >> (8 * i)) & 0xff);
  out.append(b, 8);
}

void store_u32(char* p, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<char>((v >> (8 * i)) & 0xff);
}
void store_u64(char* p, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<char>((v >> (8 * i)) & 0xff);
}

std::uint64_t load_le(const char* p, int n) {
  std::uint64_t v = 0;
  for (int i = n - 1; i >= 0; --i) v = (v << 8) | static_cast<std::uint8_t>(p[i]);
  return v;
}

// Bounds-checked cursor over untrusted bytes.
class Reader {
 public:
  explicit Reader(std::string_view buf) : buf_(buf) {}
  std::size_t remaining() const { return buf_.size() - pos_; }
  std::size_t pos() const { return pos_; }
  bool take(std::size_t n, const char** p) {
    if (n > remaining()) return false;
    *p = buf_.data() + pos_;
    pos_ += n;
    return true;
  }
  bool u8(std::uint8_t* v) {
    const char* p;
    if (!take(1, &p)) return false;
    *v = static_cast<std::uint8_t>(*p);
    return true;
  }
  bool u32(std::uint32_t* v) {
    const char* p;
    if (!take(4, &p)) return false;
    *v = static_cast<std::uint32_t>(load_le(p, 4));
    return true;
  }
  bool u64(std::uint64_t* v) {
    const char* p;
    if (!take(8, &p)) return false;
    *v = load_le(p, 8);
    return true;
  }

 private:
  std::string_view buf_;
  std::size_t pos_ = 0;
};

// ---- zstd contexts, one of each per thread, reused across calls ----

struct CCtxDeleter {
  void operator()(ZSTD_CCtx* c) const { ZSTD_freeCCtx(c); }
};
struct DCtxDeleter {
  void operator()(ZSTD_DCtx* c) const { ZSTD_freeDCtx(c); }
};

ZSTD_CCtx* thread_cctx() {
  thread_local std::unique_ptr<ZSTD_CCtx, CCtxDeleter> ctx(ZSTD_createCCtx());
  if (!ctx) throw std::bad_alloc();
  return ctx.get();
}
ZSTD_DCtx* thread_dctx() {
  thread_local std::unique_ptr<ZSTD_DCtx, DCtxDeleter> ctx(ZSTD_createDCtx());
  if (!ctx) throw std::bad_alloc();
  return ctx.get();
}

Status malformed_batch(const std::string& what) {
  return invalid_argument("changed-block batch is malformed (corrupted in transit, or not from evac): " + what, kCorruptHint);
}

// The per-block transit check: XXH3-128 of the block's data, big-endian
// (XXH's canonical form).
void block_check(const void* data, std::size_t len, char* out) {
  XXH128_canonical_t c;
  XXH128_canonicalFromHash(&c, XXH3_128bits(data, len));
  static_assert(sizeof(c.digest) == kCheckLen);
  std::memcpy(out, c.digest, kCheckLen);
}

}  // namespace

std::string to_hex(const BlockHash& hash) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out(hash.size() * 2, '\0');
  for (std::size_t i = 0; i < hash.size(); ++i) {
    out[2 * i] = kDigits[hash[i] >> 4];
    out[2 * i + 1] = kDigits[hash[i] & 0x0f];
  }
  return out;
}

std::uint64_t block_count(std::uint64_t disk_size) {
  return disk_size / kBlockSize + (disk_size % kBlockSize != 0 ? 1 : 0);
}

std::size_t block_length(std::uint64_t disk_size, std::uint64_t index) {
  if (index >= block_count(disk_size)) return 0;
  std::uint64_t start = index * kBlockSize;
  std::uint64_t left = disk_size - start;
  return left < kBlockSize ? static_cast<std::size_t>(left) : kBlockSize;
}

// ---- Manifest ----

std::string Manifest::encode() const {
  std::string out;
  out.reserve(4 + 16 + hashes.size() * kHashLen + kHashLen);
  out.append(scheme == HashScheme::kSha256 ? kManifestMagicSha256 : kManifestMagicLeaves);
  put_u64(out, disk_size);
  put_u64(out, hashes.size());
  for (const auto& h : hashes) out.append(reinterpret_cast<const char*>(h.data()), h.size());
  BlockHash sum = sha256(out.data(), out.size());
  out.append(reinterpret_cast<const char*>(sum.data()), sum.size());
  return out;
}

Result<Manifest> Manifest::decode(std::string_view bytes) {
  const char* kHint = "the replica's manifest is unreadable: the next cycle rescans the replica and rewrites it";
  constexpr std::size_t kFixed = 4 + 8 + 8 + kHashLen;
  if (bytes.size() < kFixed) {
    return invalid_argument("block manifest is truncated: " + std::to_string(bytes.size()) + " bytes, at least " +
                                std::to_string(kFixed) + " expected",
                            kHint);
  }
  Manifest m;
  if (bytes.substr(0, 4) == kManifestMagicLeaves) {
    m.scheme = HashScheme::kSha256OfLeaves;
  } else if (bytes.substr(0, 4) == kManifestMagicSha256) {
    m.scheme = HashScheme::kSha256;
  } else {
    return invalid_argument("block manifest has a bad magic number (not an evac manifest)", kHint);
  }
  Reader r(bytes.substr(4));
  std::uint64_t count = 0;
  (void)r.u64(&m.disk_size);
  (void)r.u64(&count);
  std::size_t body = bytes.size() - kFixed;
  if (body % kHashLen != 0 || body / kHashLen != count) {
    return invalid_argument("block manifest length does not match its count of " + std::to_string(count) +
                                " hashes (" + std::to_string(bytes.size()) + " bytes)",
                            kHint);
  }
  if (count != block_count(m.disk_size)) {
    return invalid_argument("block manifest holds " + std::to_string(count) + " hashes but a disk of " +
                                std::to_string(m.disk_size) + " bytes has " +
                                std::to_string(block_count(m.disk_size)) + " blocks",
                            kHint);
  }
  std::string_view covered = bytes.substr(0, bytes.size() - kHashLen);
  BlockHash sum = sha256(covered.data(), covered.size());
  if (std::memcmp(sum.data(), bytes.data() + covered.size(), kHashLen) != 0) {
    return invalid_argument("block manifest failed its checksum: the file is corrupted", kHint);
  }
  m.hashes.resize(count);
  if (count != 0) std::memcpy(m.hashes.data(), bytes.data() + 20, count * kHashLen);
  return m;
}

BlockHash Manifest::digest() const {
  std::string size_le;
  put_u64(size_le, disk_size);
  const std::string_view pieces[] = {
      size_le, std::string_view(reinterpret_cast<const char*>(hashes.data()), hashes.size() * kHashLen)};
  return sha256(pieces);
}

Manifest Manifest::empty(std::uint64_t disk_size, HashScheme scheme) {
  Manifest m;
  m.disk_size = disk_size;
  m.scheme = scheme;
  std::uint64_t n = block_count(disk_size);
  if (scheme == kHashScheme) {
    m.hashes.assign(n, zero_block_hash());
  } else {
    std::string zeros(kBlockSize, '\0');
    m.hashes.assign(n, hash_block(zeros.data(), zeros.size(), scheme));
  }
  std::size_t tail = static_cast<std::size_t>(disk_size % kBlockSize);
  if (tail != 0) {
    std::string zeros(tail, '\0');
    m.hashes.back() = hash_block(zeros.data(), zeros.size(), scheme);
  }
  return m;
}

static_assert(sizeof(BlockHash) == kHashLen, "BlockHash must be a plain 32-byte array");

// ---- batches ----

namespace {

// A sample of this many bytes decides whether a block is worth compressing:
// zstd on a 4 KiB sample costs about a sixth of zstd on the whole 64 KiB
// block, and random data (the common case for changed blocks of encrypted
// or already-compressed guest files) never shrinks.
constexpr std::size_t kSampleLen = 4096;

// False when a sample of the block does not shrink by at least 1/16: the
// block is then stored raw without running zstd over all of it. The sample
// is taken from the middle of the block, where a partly written block is
// least likely to differ from the rest. A block whose sample compresses but
// which as a whole does not is still caught afterwards (zstd is asked for
// a result smaller than the block and fails otherwise).
bool worth_compressing(ZSTD_CCtx* cctx, std::string_view data, int level, char* scratch) {
  if (data.size() < 2 * kSampleLen) return true;  // short tails: just try
  const char* sample = data.data() + (data.size() - kSampleLen) / 2;
  std::size_t r = ZSTD_compressCCtx(cctx, scratch, kSampleLen - kSampleLen / 16, sample, kSampleLen, level);
  return !ZSTD_isError(r);
}

// The trailing checksum: SHA-256 over the header and table, then the stored
// bytes of every compressed block. Raw blocks' stored bytes are their data,
// which each block's own SHA-256 already covers; compressed bytes are
// covered here too because a changed byte of a zstd frame does not always
// change what it decompresses to (e.g. the frame header's unused bit).
BlockHash batch_checksum(std::string_view front, const std::vector<std::string_view>& compressed) {
  std::vector<std::string_view> pieces;
  pieces.reserve(1 + compressed.size());
  pieces.push_back(front);
  pieces.insert(pieces.end(), compressed.begin(), compressed.end());
  return sha256(pieces);
}

}  // namespace

std::string encode_batch(const std::string& disk_key, const std::vector<BlockRecord>& blocks, int zstd_level) {
  const std::size_t front = 4 + 4 + disk_key.size() + 4 + blocks.size() * kBlockHeaderLen;
  std::size_t bound = front + kHashLen;
  for (const auto& b : blocks) bound += b.data.size();  // stored length never exceeds raw
  std::string out;
  // One allocation up front; the buffer is shrunk to what was written at the end.
  out.resize(bound);
  char* base = out.data();
  std::size_t pos = 0;
  auto put = [&](const void* p, std::size_t n) {
    std::memcpy(base + pos, p, n);
    pos += n;
  };
  put(kBatchMagic.data(), kBatchMagic.size());
  store_u32(base + pos, static_cast<std::uint32_t>(disk_key.size()));
  pos += 4;
  put(disk_key.data(), disk_key.size());
  store_u32(base + pos, static_cast<std::uint32_t>(blocks.size()));
  pos += 4;

  ZSTD_CCtx* cctx = thread_cctx();
  char scratch[kSampleLen];
  std::vector<std::string_view> compressed;  // for the trailing checksum
  char* header = base + pos;  // the table
  pos = front;                // stored bytes follow it
  for (const auto& b : blocks) {
    char* payload = base + pos;
    std::size_t raw_len = b.data.size();
    std::size_t stored = 0;
    std::uint8_t encoding = kEncodingRaw;
    if (raw_len > 1 && worth_compressing(cctx, b.data, zstd_level, scratch)) {
      // Compress straight into the output; zstd fails with dstSize_tooSmall
      // when the result would not be smaller than the raw block.
      std::size_t r = ZSTD_compressCCtx(cctx, payload, raw_len - 1, b.data.data(), raw_len, zstd_level);
      if (!ZSTD_isError(r)) {
        stored = r;
        encoding = kEncodingZstd;
      }
    }
    if (encoding == kEncodingRaw) {
      std::memcpy(payload, b.data.data(), raw_len);  // from the page cache or a read buffer: the one copy
      stored = raw_len;
    } else {
      compressed.emplace_back(payload, stored);
    }
    pos += stored;
    store_u64(header, b.offset);
    store_u32(header + 8, static_cast<std::uint32_t>(raw_len));
    store_u32(header + 12, static_cast<std::uint32_t>(stored));
    header[16] = static_cast<char>(encoding);
    std::memcpy(header + 17, b.hash.data(), kHashLen);
    block_check(b.data.data(), raw_len, header + 17 + kHashLen);
    header += kBlockHeaderLen;
  }
  BlockHash sum = batch_checksum(std::string_view(base, front), compressed);
  put(sum.data(), sum.size());
  out.resize(pos);
  return out;
}

namespace {

// One entry of a batch's block table, as far as decoding needs it past the
// table (the offset and hash go straight into the DecodedBlock).
struct TableEntry {
  std::uint64_t raw_len;
  std::uint64_t stored;
  std::uint8_t encoding;
  const char* check;
};

std::string block_where(std::uint64_t offset, const std::string& disk_key) {
  return "block at offset " + std::to_string(offset) + " of disk " + disk_key;
}

// The head after the magic: the disk key into `out`, and the block count,
// bounded by what the rest of the batch can hold. `total`: the batch's size.
Status read_batch_head(Reader& body, std::size_t total, DecodedBatch& out, std::uint32_t& count) {
  const char* p = nullptr;
  std::uint32_t key_len = 0;
  if (!body.u32(&key_len)) return malformed_batch("truncated in the disk key length");
  if (key_len == 0 || key_len > kMaxDiskKeyLength) {
    return malformed_batch("disk key length " + std::to_string(key_len) + " is out of range");
  }
  if (!body.take(key_len, &p)) {
    return malformed_batch("disk key length " + std::to_string(key_len) + " runs past the end of the batch");
  }
  out.disk_key.assign(p, key_len);
  if (!body.u32(&count)) return malformed_batch("truncated in the block count of disk " + out.disk_key);
  // Every block needs at least its table entry and one byte: a count that
  // cannot fit is rejected before anything is allocated for it.
  if (count > body.remaining() / (kBlockHeaderLen + 1)) {
    return malformed_batch("block count " + std::to_string(count) + " of disk " + out.disk_key +
                           " does not fit in the batch's " + std::to_string(total) + " bytes");
  }
  return Status::ok();
}

// One table entry, checked on its own: alignment, length, encoding and
// stored length. Adds to `data_len` (all blocks decoded, bounded by
// kMaxBatchDataBytes) and, for a compressed block, `decompressed_len`.
Status read_table_entry(Reader& body, std::uint32_t i, const std::string& disk_key, DecodedBlock& rec, TableEntry& e,
                        std::uint64_t& data_len, std::size_t& decompressed_len) {
  const char* header = nullptr;
  if (!body.take(kBlockHeaderLen, &header)) {
    return malformed_batch("truncated in the header of block " + std::to_string(i) + " of disk " + disk_key);
  }
  rec.offset = load_le(header, 8);
  e.raw_len = load_le(header + 8, 4);
  e.stored = load_le(header + 12, 4);
  e.encoding = static_cast<std::uint8_t>(header[16]);
  std::memcpy(rec.hash.data(), header + 17, kHashLen);
  e.check = header + 17 + kHashLen;
  auto where = [&] { return block_where(rec.offset, disk_key); };
  if (rec.offset % kBlockSize != 0) return malformed_batch(where() + " is not aligned to the block size");
  if (e.raw_len == 0 || e.raw_len > kBlockSize) {
    return malformed_batch(where() + " has an invalid length of " + std::to_string(e.raw_len) + " bytes");
  }
  if (rec.offset > UINT64_MAX - e.raw_len) return malformed_batch(where() + " ends beyond the largest disk offset");
  data_len += e.raw_len;  // at most 2^32 entries of at most kBlockSize: no overflow
  if (data_len > kMaxBatchDataBytes) {
    return malformed_batch("the blocks of disk " + disk_key + " would decode to more than " +
                           std::to_string(kMaxBatchDataBytes) + " bytes, the most one batch holds");
  }
  if (e.encoding == kEncodingRaw) {
    if (e.stored != e.raw_len) {
      return malformed_batch(where() + " is stored raw but its stored length " + std::to_string(e.stored) +
                             " differs from its length " + std::to_string(e.raw_len));
    }
  } else if (e.encoding == kEncodingZstd) {
    if (e.stored == 0 || e.stored >= e.raw_len) {
      return malformed_batch(where() + " has an invalid compressed length of " + std::to_string(e.stored) + " bytes");
    }
    decompressed_len += e.raw_len;
  } else {
    return malformed_batch(where() + " has an unknown encoding " + std::to_string(e.encoding));
  }
  return Status::ok();
}

// The stored bytes of every block, checked block by block: raw blocks point
// into the batch, compressed ones are decompressed into `out.decompressed`
// (and their stored bytes collected in `compressed` for the trailing sum).
Status read_block_data(Reader& body, const std::vector<TableEntry>& entries, DecodedBatch& out,
                       std::size_t decompressed_len, std::vector<std::string_view>& compressed) {
  if (decompressed_len != 0) out.decompressed = std::make_unique_for_overwrite<char[]>(decompressed_len);
  char* next_decompressed = out.decompressed.get();
  ZSTD_DCtx* dctx = thread_dctx();
  for (std::size_t i = 0; i < entries.size(); ++i) {
    DecodedBlock& rec = out.blocks[i];
    const TableEntry& e = entries[i];
    const char* payload = nullptr;
    if (!body.take(e.stored, &payload)) {
      return malformed_batch(block_where(rec.offset, out.disk_key) + " claims " + std::to_string(e.stored) +
                             " bytes but only " + std::to_string(body.remaining()) + " remain");
    }
    if (e.encoding == kEncodingRaw) {
      rec.data = std::string_view(payload, e.raw_len);
    } else {
      std::size_t n = ZSTD_decompressDCtx(dctx, next_decompressed, e.raw_len, payload, e.stored);
      if (ZSTD_isError(n)) {
        return malformed_batch(block_where(rec.offset, out.disk_key) + " does not decompress (" +
                               ZSTD_getErrorName(n) + ")");
      }
      if (n != e.raw_len) {
        return malformed_batch(block_where(rec.offset, out.disk_key) + " decompressed to " + std::to_string(n) +
                               " bytes instead of " + std::to_string(e.raw_len));
      }
      rec.data = std::string_view(next_decompressed, e.raw_len);
      next_decompressed += e.raw_len;
      compressed.emplace_back(payload, e.stored);
    }
    char check[kCheckLen];
    block_check(rec.data.data(), rec.data.size(), check);
    if (std::memcmp(check, e.check, kCheckLen) != 0) {
      return invalid_argument(block_where(rec.offset, out.disk_key) +
                                  " failed its checksum: the stream was corrupted in transit",
                              kCorruptHint);
    }
  }
  return Status::ok();
}

}  // namespace

Result<DecodedBatch> decode_batch(std::string_view bytes) {
  constexpr std::size_t kMinLen = 4 + 4 + 4 + kHashLen;
  if (bytes.size() < kMinLen) {
    return malformed_batch("truncated at " + std::to_string(bytes.size()) + " bytes, at least " +
                           std::to_string(kMinLen) + " expected");
  }
  // The trailing checksum is not part of the parsed region.
  Reader body(bytes.substr(0, bytes.size() - kHashLen));
  const char* p = nullptr;
  (void)body.take(4, &p);
  if (std::string_view(p, 4) != kBatchMagic) return malformed_batch("bad magic number (not an evac block batch)");

  DecodedBatch out;
  out.wire_bytes = bytes.size();
  std::uint32_t count = 0;
  EVAC_RETURN_IF_ERROR(read_batch_head(body, bytes.size(), out, count));

  // The table: every entry checked on its own before any stored byte is read.
  std::vector<TableEntry> entries(count);
  out.blocks.resize(count);
  std::size_t decompressed_len = 0;
  std::uint64_t data_len = 0;  // all blocks, decoded
  for (std::uint32_t i = 0; i < count; ++i)
    EVAC_RETURN_IF_ERROR(read_table_entry(body, i, out.disk_key, out.blocks[i], entries[i], data_len, decompressed_len));
  const std::size_t front = body.pos();

  // The stored bytes, checked block by block. Raw blocks are not copied.
  std::vector<std::string_view> compressed;
  EVAC_RETURN_IF_ERROR(read_block_data(body, entries, out, decompressed_len, compressed));
  if (body.remaining() != 0) {
    return malformed_batch(std::to_string(body.remaining()) + " unexpected bytes after the last block of disk " +
                           out.disk_key);
  }
  BlockHash sum = batch_checksum(bytes.substr(0, front), compressed);
  if (std::memcmp(sum.data(), bytes.data() + bytes.size() - kHashLen, kHashLen) != 0) {
    return invalid_argument("changed-block batch of disk " + out.disk_key +
                                " failed its checksum: the stream was corrupted in transit",
                            kCorruptHint);
  }
  return out;
}

}  // namespace evac::builtin
