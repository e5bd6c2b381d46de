// Block hashes: known vectors, the lanes agreeing with one block at a
// time, and the same hash from many threads.
#include "replication/builtin/block_hash.h"

#include <gtest/gtest.h>

#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "block_samples.h"
#include "replication/builtin/block_codec.h"

namespace evac::builtin {
namespace {

// The hash scheme from scratch with OpenSSL, one block at a time: SHA-256
// over the SHA-256s of the block's 32 KiB leaves.
BlockHash reference_hash(std::string_view block) {
  std::string tops;
  std::size_t leaves = block.size() <= kLeafSize ? 1 : (block.size() + kLeafSize - 1) / kLeafSize;
  for (std::size_t k = 0; k < leaves; ++k) {
    std::string_view leaf = block.substr(k * kLeafSize, kLeafSize);
    BlockHash h = sha256(leaf.data(), leaf.size());
    tops.append(reinterpret_cast<const char*>(h.data()), h.size());
  }
  return sha256(tops.data(), tops.size());
}

TEST(BlockHashTest, KnownVectors) {
  EXPECT_EQ(to_hex(sha256("abc", 3)), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(to_hex(hash_block("abc", 3, HashScheme::kSha256)), to_hex(sha256("abc", 3)));
  // One leaf: SHA-256(SHA-256(data)); `printf abc | sha256sum | xxd -r -p | sha256sum`
  EXPECT_EQ(to_hex(hash_block("abc", 3)), "4f8b42c22dd3729b519ba6f68d2da7cc5b2d606d05daed5ad5128cc03e6c6358");
  EXPECT_EQ(to_hex(hash_block("", 0)), "5df6e0e2761359d30a8275058e299fcc0381534545f55cf43e41983f5d4c9456");
  // Two leaves of 32 KiB zeros: SHA-256(h || h), h = SHA-256(32 KiB of zeros).
  EXPECT_EQ(to_hex(zero_block_hash()), "55b6950b101bd55ebbf8c4f39ab0d648eb517dd657023e7f3e0769567f59f8db");
  std::string zeros(kBlockSize, '\0');
  EXPECT_EQ(hash_block(zeros.data(), zeros.size()), zero_block_hash());
  // `head -c 65536 /dev/zero | sha256sum`: what an older evac's manifests hold.
  EXPECT_EQ(to_hex(hash_block(zeros.data(), zeros.size(), HashScheme::kSha256)),
            "de2f256064a0af797747c2b97505dc0b9f3df0de4f489eac731c23ae9ca9cc31");
}

TEST(BlockHashTest, LanesAgreeWithOneBlockAtATime) {
  // Many blocks in one call, of every shape a disk has: full, one leaf and a
  // bit, exactly one leaf, short tails, a single byte; each must hash as if
  // alone, whatever lane it ran in and in whatever order the lanes finished.
  std::vector<std::string> data;
  std::vector<std::size_t> sizes = {kBlockSize, kLeafSize + 1, kLeafSize, kLeafSize - 1, 1, 4096, kBlockSize - 1};
  for (std::size_t i = 0; i < 40; ++i) data.push_back(random_bytes(sizes[i % sizes.size()], 100 + i));
  std::vector<std::string_view> views(data.begin(), data.end());
  std::vector<BlockHash> out(views.size());
  hash_blocks(views, out);
  for (std::size_t i = 0; i < views.size(); ++i) {
    EXPECT_EQ(out[i], reference_hash(views[i])) << "block " << i << " of " << views[i].size() << " bytes";
    EXPECT_EQ(out[i], hash_block(views[i].data(), views[i].size()));
  }
  hash_blocks({}, {});  // nothing to hash is not an error
  EXPECT_FALSE(block_hasher_name().empty());
}

TEST(BlockHashTest, DifferentDataDifferentHash) {
  std::string a = random_bytes(kBlockSize, 1);
  std::string b = a;
  b[kBlockSize / 2] ^= 1;
  EXPECT_NE(hash_block(a.data(), a.size()), hash_block(b.data(), b.size()));
  EXPECT_EQ(hash_block(a.data(), a.size()), hash_block(a.data(), a.size()));
}

TEST(BlockHashTest, SameResultFromManyThreads) {
  std::string data = random_bytes(kBlockSize, 9);
  BlockHash expected = hash_block(data.data(), data.size());
  std::vector<std::thread> threads;
  std::vector<int> mismatches(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i) {
        if (hash_block(data.data(), data.size()) != expected) ++mismatches[t];
        auto batch = encode_batch("vm/vda", {record(0, data)});
        if (!decode_batch(batch).is_ok()) ++mismatches[t];
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int m : mismatches) EXPECT_EQ(m, 0);
}

}  // namespace
}  // namespace evac::builtin
