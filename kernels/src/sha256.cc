#include "sha256.h"

#include <openssl/evp.h>

#include <cstdio>
#include <cstdlib>
#include <memory>

namespace kvtier::internal {
namespace {

[[noreturn]] void OpenSslFailure(const char* what) {
  std::fprintf(stderr, "kvtier: OpenSSL %s failed for SHA-256; libcrypto is unusable\n", what);
  std::abort();
}

// Fetched once: the implicit fetch inside EVP_DigestInit_ex(ctx, EVP_sha256(), ...) costs more
// than hashing a 16-token block. The fetched EVP_MD is immutable and safe to share.
const EVP_MD* Sha256Md() {
  static const EVP_MD* const md = [] {
    EVP_MD* fetched = EVP_MD_fetch(nullptr, "SHA256", nullptr);
    if (fetched == nullptr) OpenSslFailure("EVP_MD_fetch");
    return fetched;
  }();
  return md;
}

struct CtxFree {
  void operator()(EVP_MD_CTX* ctx) const { EVP_MD_CTX_free(ctx); }
};

// One context per thread, reused: re-initialising a context that already holds SHA-256 skips
// the provider context allocation.
EVP_MD_CTX* ThreadContext() {
  thread_local const std::unique_ptr<EVP_MD_CTX, CtxFree> ctx(EVP_MD_CTX_new());
  if (ctx == nullptr) OpenSslFailure("EVP_MD_CTX_new");
  return ctx.get();
}

}  // namespace

BlockKey Sha256(std::span<const std::span<const std::byte>> parts) {
  EVP_MD_CTX* ctx = ThreadContext();
  if (EVP_DigestInit_ex2(ctx, Sha256Md(), nullptr) != 1) OpenSslFailure("EVP_DigestInit_ex2");
  for (std::span<const std::byte> part : parts) {
    if (EVP_DigestUpdate(ctx, part.data(), part.size()) != 1) OpenSslFailure("EVP_DigestUpdate");
  }
  BlockKey key;
  unsigned int len = 0;
  if (EVP_DigestFinal_ex(ctx, key.bytes.data(), &len) != 1 || len != BlockKey::kSize) {
    OpenSslFailure("EVP_DigestFinal_ex");
  }
  return key;
}

}  // namespace kvtier::internal
