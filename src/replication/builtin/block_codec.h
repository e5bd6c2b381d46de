// Block hashes, replica manifests and the wire format of changed blocks.
//
// The built-in replicator compares a source disk with its replica block by
// block: each side describes a disk as a Manifest (one hash per 64 KiB
// block), the protected site ships only the blocks whose hashes differ, in
// batches encoded by encode_batch(), and the recovery site checks every byte
// of a batch (decode_batch) before it writes anything. Both sides finish a
// cycle by comparing Manifest::digest() of the source and the new replica.
//
// All integers on the wire are fixed-width little-endian. Everything here is
// pure computation: thread-safe, no I/O.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/replication_adapter.h"
#include "core/status.h"
#include "replication/builtin/block_hash.h"

namespace evac::builtin {

// Lower-case hex, 64 characters.
std::string to_hex(const BlockHash& hash);

// Number of kBlockSize blocks a disk of disk_size bytes has (the last may be short).
std::uint64_t block_count(std::uint64_t disk_size);
// Length of block `index` of a disk of disk_size bytes: kBlockSize, or the
// short tail for the last block. 0 if index is past the end.
std::size_t block_length(std::uint64_t disk_size, std::uint64_t index);

// Per-block hashes of a whole disk image: what a replica holds, compared
// against the source.
struct Manifest {
  std::uint64_t disk_size = 0;
  // One per kBlockSize block; the last block may be short (hash of its real length).
  std::vector<BlockHash> hashes;
  // How `hashes` were computed: the current scheme, or kSha256 for a
  // manifest an older evac wrote (still read, so its PITs still verify).
  HashScheme scheme = kHashScheme;

  // Compact binary: "EVM2" ("EVM1" for HashScheme::kSha256), disk_size u64,
  // count u64, count hashes, then a SHA-256 of everything before it.
  std::string encode() const;
  // Verifies magic, lengths (count must match disk_size) and the trailing checksum.
  static Result<Manifest> decode(std::string_view bytes);
  // SHA-256 over disk_size (u64 LE) and all hashes: the cycle checksum both sides compare.
  BlockHash digest() const;
  // A replica that does not exist yet: every entry is the hash of zeros of that block's length.
  static Manifest empty(std::uint64_t disk_size, HashScheme scheme = kHashScheme);

  bool operator==(const Manifest&) const = default;
};

struct BlockRecord {
  std::uint64_t offset = 0;  // multiple of kBlockSize
  // Uncompressed: kBlockSize bytes, or the disk's short tail. A view, so a
  // block read (or mapped) once is not copied again before it is encoded;
  // `owner` keeps the memory it points into alive (empty for static data).
  std::string_view data;
  std::shared_ptr<const void> owner;
  BlockHash hash{};  // hash_block() of data (the sender computed it while comparing)
};

// A batch of changed blocks of one disk, as one request body on the wire:
//   "EVB3", key length u32, disk key, count u32,
//   a table of count entries: offset u64, raw length u32, stored length u32,
//     encoding u8 (0 raw, 1 zstd), hash[32] (hash_block), check[16] (XXH3-128);
//   the stored bytes of every block, in table order;
//   a trailing SHA-256 over the header and the table (everything before the
//   first stored byte), then over the stored bytes of the compressed blocks.
// Why two hashes per block: `hash` is the source's block hash, which the
// recovery site records in its manifest (what `evac group verify` later
// checks a PIT against); `check` is what the receiver verifies each decoded
// block against. Re-computing the block hash at the receiver cost 2.4
// CPU-seconds per 4 GiB on this machine kind with plain SHA-256 (both sites
// share two cores in the lab); XXH3-128 catches any corruption of the bytes in transit or in memory at a
// tenth of that. (Tampering is TLS's job, not this checksum's.) A sender
// whose block hash is wrong is not caught here but by verification, which
// re-hashes the PIT.
// Why stored bytes after the table: a run of raw blocks at consecutive
// offsets is then one contiguous piece of the request body, which the
// receiver writes to the replica without copying it. Why the trailing
// checksum leaves the stored bytes out: each block is already checked
// against its own XXH3-128 after decoding (that covers every stored byte: a
// flipped one either fails decompression or changes the block), and the
// table, covered by the trailer, pins each hash to its offset.
//
// A block is stored raw when compressing it would not pay: when a 4 KiB
// sample of it does not compress (random or already-compressed data, which
// zstd would otherwise scan in full for nothing), or when zstd does not make
// the whole block smaller.
// Preconditions (checked by decode_batch on the receiving side, not here):
// offsets are multiples of kBlockSize, 1 <= data.size() <= kBlockSize. The
// key is at most kMaxDiskKeyLength bytes.
constexpr std::size_t kMaxDiskKeyLength = kMaxDeviceKeyLength;
// The most bytes a batch's blocks may hold decoded. A sender fills a batch
// up to SyncOptions::batch_bytes (8 MiB) and one block more, and is held
// below this; a receiver refuses a batch whose table claims more before it
// allocates anything for decompression (a block of 64 KiB can be stored in
// a byte or two, so the request's size alone would not bound it). As much
// as evacd takes of a batch's body (api.max_block_batch).
constexpr std::size_t kMaxBatchDataBytes = 16 << 20;
std::string encode_batch(const std::string& disk_key, const std::vector<BlockRecord>& blocks, int zstd_level = 1);

// A decoded block: `data` points into the batch's bytes (a block stored raw)
// or into DecodedBatch::decompressed.
struct DecodedBlock {
  std::uint64_t offset = 0;
  std::string_view data;
  BlockHash hash{};  // the sender's hash_block() of data (recorded, not re-computed here)
};

struct DecodedBatch {
  std::string disk_key;
  std::vector<DecodedBlock> blocks;
  std::uint64_t wire_bytes = 0;  // size of the encoded batch
  // Where compressed blocks were decompressed to (heap memory: moving the
  // batch keeps every DecodedBlock::data valid).
  std::unique_ptr<char[]> decompressed;
};
// Verifies everything and trusts no length: magic, every length against the
// buffer and the blocks' sum against kMaxBatchDataBytes (before anything is
// allocated for them), decompression, each block against its XXH3-128, the
// trailing checksum.
// Any failure is kInvalidArgument; nothing of a failed batch may be applied.
// The result's blocks point into `bytes`: keep them alive while it is used.
Result<DecodedBatch> decode_batch(std::string_view bytes);

}  // namespace evac::builtin
