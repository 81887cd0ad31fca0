// memcached through libmemcached: one multi-get per batch; one set per block (libmemcached has
// no multi-set), keys as the 64-hex-digit block key.
#include "backend.h"

#ifdef KVTIER_BENCH_HAVE_MEMCACHED
#include <libmemcached/memcached.h>

#include <cstring>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "kvtier/client/endpoint.h"
#endif

namespace kvtier::bench {

#ifndef KVTIER_BENCH_HAVE_MEMCACHED
absl::StatusOr<std::unique_ptr<Backend>> OpenMemcachedBackend(const BackendOptions&) {
  return absl::InvalidArgumentError("this kvtier-bench was built without libmemcached");
}
#else
namespace {

class MemcachedBackend final : public Backend {
 public:
  explicit MemcachedBackend(memcached_st* mc) : mc_(mc) {}
  ~MemcachedBackend() override { memcached_free(mc_); }

  absl::StatusOr<size_t> Put(std::span<const BlockKey> keys,
                             std::span<const std::span<const std::byte>> blocks) override {
    size_t stored = 0;
    for (size_t i = 0; i < keys.size(); ++i) {
      const std::string key = keys[i].ToHex();
      const memcached_return_t rc =
          memcached_set(mc_, key.data(), key.size(),
                        reinterpret_cast<const char*>(blocks[i].data()), blocks[i].size(), 0, 0);
      if (rc == MEMCACHED_SUCCESS) {
        ++stored;
      } else if (Fatal(rc)) {
        return Error("set", rc);
      }
    }
    return stored;
  }

  std::string transport() const override { return "tcp"; }

  absl::StatusOr<size_t> Get(std::span<const BlockKey> keys,
                             std::span<const std::span<std::byte>> out) override {
    std::vector<std::string> hex(keys.size());
    std::vector<const char*> key_ptrs(keys.size());
    std::vector<size_t> key_lens(keys.size());
    absl::flat_hash_map<std::string, size_t> index;
    for (size_t i = 0; i < keys.size(); ++i) {
      hex[i] = keys[i].ToHex();
      key_ptrs[i] = hex[i].data();
      key_lens[i] = hex[i].size();
      index.emplace(hex[i], i);
    }
    memcached_return_t rc = memcached_mget(mc_, key_ptrs.data(), key_lens.data(), keys.size());
    if (rc != MEMCACHED_SUCCESS) return Error("mget", rc);
    size_t hits = 0;
    memcached_result_st* result;
    while ((result = memcached_fetch_result(mc_, nullptr, &rc)) != nullptr) {
      const std::string key(memcached_result_key_value(result),
                            memcached_result_key_length(result));
      const auto it = index.find(key);
      const size_t len = memcached_result_length(result);
      if (it != index.end() && len == out[it->second].size()) {
        std::memcpy(out[it->second].data(), memcached_result_value(result), len);
        ++hits;
      }
      memcached_result_free(result);
    }
    if (rc != MEMCACHED_END && rc != MEMCACHED_SUCCESS && rc != MEMCACHED_NOTFOUND) {
      return Error("fetch", rc);
    }
    return hits;
  }

 private:
  // Errors that mean the store is unusable, as opposed to "this item was not stored".
  static bool Fatal(memcached_return_t rc) {
    return rc == MEMCACHED_CONNECTION_FAILURE || rc == MEMCACHED_SERVER_MARKED_DEAD ||
           rc == MEMCACHED_TIMEOUT || rc == MEMCACHED_ERRNO || rc == MEMCACHED_WRITE_FAILURE ||
           rc == MEMCACHED_READ_FAILURE;
  }
  absl::Status Error(const char* what, memcached_return_t rc) {
    return absl::UnavailableError(
        absl::StrCat("memcached ", what, " failed: ", memcached_strerror(mc_, rc)));
  }
  memcached_st* mc_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Backend>> OpenMemcachedBackend(const BackendOptions& options) {
  auto endpoint = client::ParseEndpoint(options.uri);
  if (!endpoint.ok()) return endpoint.status();
  if (endpoint->kind != client::Endpoint::Kind::kTcp) {
    return absl::InvalidArgumentError("the memcached backend needs --tcp HOST:PORT");
  }
  memcached_st* mc = memcached_create(nullptr);
  if (mc == nullptr) return absl::ResourceExhaustedError("memcached_create failed");
  memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_BINARY_PROTOCOL, 1);
  memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_TCP_NODELAY, 1);
  memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_CONNECT_TIMEOUT, 5000);
  memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_POLL_TIMEOUT, 30000);
  memcached_return_t rc = memcached_server_add(mc, endpoint->host.c_str(), endpoint->port);
  if (rc == MEMCACHED_SUCCESS) rc = memcached_version(mc);  // forces a connection now
  if (rc != MEMCACHED_SUCCESS) {
    std::string why = memcached_strerror(mc, rc);
    memcached_free(mc);
    return absl::UnavailableError(
        absl::StrCat("cannot connect to memcached at ", endpoint->ToUri(), ": ", why));
  }
  return std::unique_ptr<Backend>(new MemcachedBackend(mc));
}
#endif

}  // namespace kvtier::bench
