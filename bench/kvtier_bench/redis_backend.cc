// Redis through hiredis: one MSET or MGET per batch, keys as the 64-hex-digit block key.
#include "backend.h"

#ifdef KVTIER_BENCH_HAVE_REDIS
#include <hiredis/hiredis.h>

#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kvtier/client/endpoint.h"
#endif

namespace kvtier::bench {

#ifndef KVTIER_BENCH_HAVE_REDIS
absl::StatusOr<std::unique_ptr<Backend>> OpenRedisBackend(const BackendOptions&) {
  return absl::InvalidArgumentError("this kvtier-bench was built without hiredis");
}
#else
namespace {

class RedisBackend final : public Backend {
 public:
  explicit RedisBackend(redisContext* ctx) : ctx_(ctx) {}
  ~RedisBackend() override { redisFree(ctx_); }

  absl::StatusOr<size_t> Put(std::span<const BlockKey> keys,
                             std::span<const std::span<const std::byte>> blocks) override {
    std::vector<std::string> hex(keys.size());
    std::vector<const char*> argv{"MSET"};
    std::vector<size_t> argvlen{4};
    for (size_t i = 0; i < keys.size(); ++i) {
      hex[i] = keys[i].ToHex();
      argv.push_back(hex[i].data());
      argvlen.push_back(hex[i].size());
      argv.push_back(reinterpret_cast<const char*>(blocks[i].data()));
      argvlen.push_back(blocks[i].size());
    }
    auto* reply = static_cast<redisReply*>(
        redisCommandArgv(ctx_, static_cast<int>(argv.size()), argv.data(), argvlen.data()));
    if (reply == nullptr) return Lost();
    const bool ok = reply->type == REDIS_REPLY_STATUS;
    std::string error = reply->type == REDIS_REPLY_ERROR ? std::string(reply->str, reply->len) : "";
    freeReplyObject(reply);
    if (!ok) return absl::InternalError(absl::StrCat("redis MSET failed: ", error));
    return keys.size();
  }

  std::string transport() const override { return "tcp"; }

  absl::StatusOr<size_t> Get(std::span<const BlockKey> keys,
                             std::span<const std::span<std::byte>> out) override {
    std::vector<std::string> hex(keys.size());
    std::vector<const char*> argv{"MGET"};
    std::vector<size_t> argvlen{4};
    for (size_t i = 0; i < keys.size(); ++i) {
      hex[i] = keys[i].ToHex();
      argv.push_back(hex[i].data());
      argvlen.push_back(hex[i].size());
    }
    auto* reply = static_cast<redisReply*>(
        redisCommandArgv(ctx_, static_cast<int>(argv.size()), argv.data(), argvlen.data()));
    if (reply == nullptr) return Lost();
    size_t hits = 0;
    if (reply->type == REDIS_REPLY_ARRAY && reply->elements == keys.size()) {
      for (size_t i = 0; i < keys.size(); ++i) {
        const redisReply* e = reply->element[i];
        if (e->type == REDIS_REPLY_STRING && e->len == out[i].size()) {
          std::memcpy(out[i].data(), e->str, e->len);
          ++hits;
        }
      }
    }
    freeReplyObject(reply);
    return hits;
  }

 private:
  absl::Status Lost() {
    return absl::UnavailableError(absl::StrCat("redis connection failed: ", ctx_->errstr));
  }
  redisContext* ctx_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Backend>> OpenRedisBackend(const BackendOptions& options) {
  auto endpoint = client::ParseEndpoint(options.uri);
  if (!endpoint.ok()) return endpoint.status();
  if (endpoint->kind != client::Endpoint::Kind::kTcp) {
    return absl::InvalidArgumentError("the redis backend needs --tcp HOST:PORT");
  }
  const timeval connect_timeout{5, 0};
  redisContext* ctx =
      redisConnectWithTimeout(endpoint->host.c_str(), endpoint->port, connect_timeout);
  if (ctx == nullptr || ctx->err) {
    std::string why = ctx ? ctx->errstr : "out of memory";
    if (ctx) redisFree(ctx);
    return absl::UnavailableError(
        absl::StrCat("cannot connect to redis at ", endpoint->ToUri(), ": ", why));
  }
  const timeval io_timeout{30, 0};
  redisSetTimeout(ctx, io_timeout);
  return std::unique_ptr<Backend>(new RedisBackend(ctx));
}
#endif

}  // namespace kvtier::bench
