// Fuzz target: a batch of replicated blocks as the recovery site receives
// it. Raw inputs exercise the decoder's framing; inputs starting with 'E'
// 'N' are turned into a valid batch first (blocks from the input, some
// compressible), then damaged at input-chosen places, so the fuzzer
// reaches past the magic and the lengths into decompression and the checks.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "replication/builtin/block_codec.h"

using namespace evac::builtin;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  if (size < 4 || in.substr(0, 2) != "EN") {
    (void)decode_batch(in);
    return 0;
  }
  // "EN", block count (1-4), flips, then block payloads.
  const std::size_t blocks = 1 + (static_cast<unsigned char>(in[2]) % 4);
  const std::size_t flips = static_cast<unsigned char>(in[3]) % 8;
  std::string_view rest = in.substr(4);
  std::vector<std::string> payloads;
  for (std::size_t i = 0; i < blocks; ++i) {
    std::string block(kBlockSize, '\0');
    // Repeating input bytes: compressible, so zstd frames are in the batch.
    for (std::size_t j = 0; j < block.size() && !rest.empty(); ++j) block[j] = rest[j % rest.size()];
    payloads.push_back(std::move(block));
  }
  std::vector<BlockRecord> records;
  for (std::size_t i = 0; i < payloads.size(); ++i)
    records.push_back(BlockRecord{i * kBlockSize, payloads[i], nullptr, hash_block(payloads[i].data(), payloads[i].size())});
  std::string wire = encode_batch("vm/vda", records);
  for (std::size_t f = 0; f < flips && f * 2 + 1 < rest.size(); ++f) {
    const std::size_t at = (static_cast<unsigned char>(rest[f * 2]) * 257u + f * 7919u) % wire.size();
    wire[at] = static_cast<char>(wire[at] ^ (1 + static_cast<unsigned char>(rest[f * 2 + 1]) % 255));
  }
  auto batch = decode_batch(wire);
  // Undamaged, the batch decodes to what was sent; damaged, it never
  // decodes to anything else.
  if (batch) {
    if (batch->blocks.size() != records.size()) __builtin_trap();
    for (std::size_t i = 0; i < records.size(); ++i)
      if (batch->blocks[i].data != records[i].data) __builtin_trap();
  } else if (flips == 0) {
    __builtin_trap();
  }
  return 0;
}
