// Blocks for the block hash's and the block codec's cases: random bytes
// from a seed, and a block record that owns its data.
#pragma once

#include <cstdint>
#include <cstring>
#include <memory>
#include <random>
#include <string>

#include "replication/builtin/block_codec.h"

namespace evac::builtin {

inline std::string random_bytes(std::size_t n, std::uint32_t seed) {
  std::mt19937_64 rng(seed);
  std::string s(n, '\0');
  for (std::size_t i = 0; i + 8 <= n; i += 8) {
    std::uint64_t v = rng();
    std::memcpy(&s[i], &v, 8);
  }
  for (std::size_t i = n - n % 8; i < n; ++i) s[i] = static_cast<char>(rng());
  return s;
}

inline BlockRecord record(std::uint64_t offset, std::string data) {
  auto owned = std::make_shared<const std::string>(std::move(data));
  BlockRecord r;
  r.offset = offset;
  r.data = *owned;
  r.owner = owned;
  r.hash = hash_block(r.data.data(), r.data.size());
  return r;
}

}  // namespace evac::builtin
