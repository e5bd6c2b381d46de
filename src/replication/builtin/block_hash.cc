#include "replication/builtin/block_hash.h"

#include <openssl/evp.h>

#include <cstring>
#include <memory>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#ifdef EVAC_HAVE_IPSEC_MB
// Without this the library's header defines macros named SHA1, SHA256 ...
// that clash with OpenSSL's functions of those names.
#define NO_COMPAT_IMB_API_053
#include <intel-ipsec-mb.h>
#endif

namespace evac::builtin {
namespace {

// One EVP_MD fetched once, and one context per thread, reused.
const EVP_MD* sha256_md() {
  static const EVP_MD* md = [] {
    const EVP_MD* fetched = EVP_MD_fetch(nullptr, "SHA256", nullptr);
    return fetched != nullptr ? fetched : EVP_sha256();
  }();
  return md;
}

struct MdCtxDeleter {
  void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
};

EVP_MD_CTX* thread_md_ctx() {
  thread_local std::unique_ptr<EVP_MD_CTX, MdCtxDeleter> ctx(EVP_MD_CTX_new());
  if (!ctx) throw std::bad_alloc();
  return ctx.get();
}

#ifdef EVAC_HAVE_IPSEC_MB

// Multi-buffer managers, kept for reuse: setting one up costs far more than
// hashing a leaf, and the hashing threads are short-lived.
class Managers {
 public:
  static Managers& get() {
    static Managers managers;
    return managers;
  }
  IMB_MGR* take() {
    {
      std::lock_guard lock(mu_);
      if (!free_.empty()) {
        IMB_MGR* m = free_.back();
        free_.pop_back();
        return m;
      }
    }
    IMB_MGR* m = alloc_mb_mgr(0);
    if (m == nullptr) throw std::bad_alloc();
    IMB_ARCH arch = IMB_ARCH_NONE;
    init_mb_mgr_auto(m, &arch);
    if (arch == IMB_ARCH_NONE) {
      free_mb_mgr(m);
      throw std::runtime_error("intel-ipsec-mb found no usable instruction set on this CPU");
    }
    return m;
  }
  // Only managers with no job in flight come back.
  void give(IMB_MGR* m) {
    std::lock_guard lock(mu_);
    free_.push_back(m);
  }
  std::string arch_name() {
    IMB_MGR* m = take();
    std::string name;
    switch (m->used_arch) {
      case IMB_ARCH_NOAESNI: name = "no-AESNI"; break;
      case IMB_ARCH_SSE: name = "SSE"; break;
      case IMB_ARCH_AVX: name = "AVX"; break;
      case IMB_ARCH_AVX2: name = "AVX2"; break;
      case IMB_ARCH_AVX512: name = "AVX-512"; break;
      default: name = "arch " + std::to_string(m->used_arch); break;
    }
    if (m->features & IMB_FEATURE_SHANI) name += ", SHA-NI";
    give(m);
    return name;
  }

 private:
  Managers() = default;
  ~Managers() {
    for (IMB_MGR* m : free_) free_mb_mgr(m);
  }
  std::mutex mu_;
  std::vector<IMB_MGR*> free_;
};

// SHA-256 of each message into out[i]; every message is shorter than 64 KiB
// (the lanes keep 16-bit lengths). The jobs finish in any order; each writes
// its own output.
void sha256_many(std::span<const std::string_view> messages, BlockHash* out) {
  Managers& managers = Managers::get();
  IMB_MGR* m = managers.take();
  auto finished = [&](IMB_JOB* job) {
    if (job->status != IMB_STATUS_COMPLETED)
      // The manager still holds jobs; it is not handed out again.
      throw std::runtime_error(std::string("intel-ipsec-mb failed a SHA-256 job: ") +
                               imb_get_strerror(imb_get_errno(m)));
  };
  for (std::size_t i = 0; i < messages.size(); ++i) {
    if (messages[i].empty()) {
      out[i] = sha256(nullptr, 0);  // a zero-length job is refused
      continue;
    }
    IMB_JOB* job = IMB_GET_NEXT_JOB(m);
    std::memset(job, 0, sizeof *job);
    job->cipher_mode = IMB_CIPHER_NULL;
    job->cipher_direction = IMB_DIR_ENCRYPT;
    job->chain_order = IMB_ORDER_HASH_CIPHER;
    job->hash_alg = IMB_AUTH_SHA_256;
    job->src = reinterpret_cast<const std::uint8_t*>(messages[i].data());
    job->hash_start_src_offset_in_bytes = 0;
    job->msg_len_to_hash_in_bytes = messages[i].size();
    job->auth_tag_output = out[i].data();
    job->auth_tag_output_len_in_bytes = out[i].size();
    for (job = IMB_SUBMIT_JOB(m); job != nullptr; job = IMB_GET_COMPLETED_JOB(m)) finished(job);
  }
  for (IMB_JOB* job = IMB_FLUSH_JOB(m); job != nullptr; job = IMB_FLUSH_JOB(m)) finished(job);
  managers.give(m);
}

#else

void sha256_many(std::span<const std::string_view> messages, BlockHash* out) {
  for (std::size_t i = 0; i < messages.size(); ++i) out[i] = sha256(messages[i].data(), messages[i].size());
}

#endif

std::size_t leaf_count(std::size_t len) { return len <= kLeafSize ? 1 : (len + kLeafSize - 1) / kLeafSize; }

}  // namespace

BlockHash sha256(std::span<const std::string_view> pieces) {
  EVP_MD_CTX* ctx = thread_md_ctx();
  if (EVP_DigestInit_ex2(ctx, sha256_md(), nullptr) != 1) throw std::bad_alloc();
  for (auto piece : pieces)
    if (!piece.empty() && EVP_DigestUpdate(ctx, piece.data(), piece.size()) != 1) throw std::bad_alloc();
  BlockHash out{};
  unsigned int n = 0;
  if (EVP_DigestFinal_ex(ctx, out.data(), &n) != 1 || n != out.size()) throw std::bad_alloc();
  return out;
}

BlockHash sha256(const void* data, std::size_t len) {
  std::string_view piece(static_cast<const char*>(data), len);
  return sha256(std::span(&piece, 1));
}

void hash_blocks(std::span<const std::string_view> blocks, std::span<BlockHash> out, HashScheme scheme) {
  if (out.size() != blocks.size()) throw std::invalid_argument("hash_blocks: one output per block");
  if (scheme == HashScheme::kSha256) {
    for (std::size_t i = 0; i < blocks.size(); ++i) out[i] = sha256(blocks[i].data(), blocks[i].size());
    return;
  }
  // First every leaf of every block, then every block's hash over its
  // leaves' hashes: both rounds fill the lanes.
  std::vector<std::string_view> leaves;
  leaves.reserve(blocks.size() * (kBlockSize / kLeafSize));
  for (auto block : blocks) {
    const std::size_t n = leaf_count(block.size());
    for (std::size_t k = 0; k < n; ++k) leaves.push_back(block.substr(k * kLeafSize, kLeafSize));
  }
  std::vector<BlockHash> leaf_hashes(leaves.size());
  sha256_many(leaves, leaf_hashes.data());
  std::vector<std::string_view> tops(blocks.size());
  std::size_t at = 0;
  for (std::size_t i = 0; i < blocks.size(); ++i) {
    const std::size_t n = leaf_count(blocks[i].size());
    tops[i] = std::string_view(reinterpret_cast<const char*>(leaf_hashes[at].data()), n * sizeof(BlockHash));
    at += n;
  }
  sha256_many(tops, out.data());
}

BlockHash hash_block(const void* data, std::size_t len, HashScheme scheme) {
  std::string_view block(static_cast<const char*>(data), len);
  BlockHash out{};
  hash_blocks(std::span(&block, 1), std::span(&out, 1), scheme);
  return out;
}

const BlockHash& zero_block_hash() {
  static const BlockHash hash = [] {
    std::string zeros(kBlockSize, '\0');
    return hash_block(zeros.data(), zeros.size());
  }();
  return hash;
}

std::string_view block_hasher_name() {
#ifdef EVAC_HAVE_IPSEC_MB
  static const std::string name = "intel-ipsec-mb (" + Managers::get().arch_name() + ")";
  return name;
#else
  return "OpenSSL (one lane)";
#endif
}

}  // namespace evac::builtin
