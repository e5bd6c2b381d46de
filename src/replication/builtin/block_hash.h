// Block hashes: what names a 64 KiB block's contents in a replica manifest.
//
// A block's hash is the SHA-256 of the SHA-256s of its 32 KiB leaves (one
// leaf for a block of up to 32 KiB, two for a full block). Why not the
// SHA-256 of the block itself: hashing every block of a disk is what a scan
// cycle spends its time on, and one SHA-256 stream runs at the latency of
// the CPU's SHA rounds (1.8 GB/s per core with SHA-NI on this machine kind),
// while independent streams interleaved in the CPU's lanes run at about
// twice that. intel-ipsec-mb hashes many messages in parallel lanes, but
// only messages shorter than 64 KiB; 32 KiB leaves fit, and the hash stays
// as collision-resistant as SHA-256 itself.
//
// Manifests written before this scheme (HashScheme::kSha256, "EVM1") hold
// plain SHA-256s of whole blocks; they are still read and verified, and the
// sender re-reads and re-sends every block of such a replica once, after
// which its manifest is in the current scheme.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace evac::builtin {

constexpr std::size_t kBlockSize = 64 * 1024;
constexpr std::size_t kLeafSize = 32 * 1024;
using BlockHash = std::array<std::uint8_t, 32>;

enum class HashScheme : std::uint8_t {
  kSha256 = 1,          // SHA-256 of the whole block (manifests "EVM1")
  kSha256OfLeaves = 2,  // SHA-256 of the SHA-256s of its 32 KiB leaves (manifests "EVM2")
};
constexpr HashScheme kHashScheme = HashScheme::kSha256OfLeaves;

// Plain SHA-256 of len bytes, or of pieces one after the other (no copy
// joins them): checksums of manifests and batches, digests of manifests.
BlockHash sha256(const void* data, std::size_t len);
BlockHash sha256(std::span<const std::string_view> pieces);

// The hash of one block of len bytes (any length; kBlockSize in the hot path).
BlockHash hash_block(const void* data, std::size_t len, HashScheme scheme = kHashScheme);
// The hashes of many blocks at once, out[i] of blocks[i]: in the current
// scheme their leaves are hashed in parallel lanes. out.size() must equal
// blocks.size().
void hash_blocks(std::span<const std::string_view> blocks, std::span<BlockHash> out, HashScheme scheme = kHashScheme);
// The hash of kBlockSize zero bytes (a hole reads as this), current scheme.
const BlockHash& zero_block_hash();

// What hashes the leaves: "intel-ipsec-mb (<arch>)" or "OpenSSL (one lane)".
std::string_view block_hasher_name();

}  // namespace evac::builtin
