#include "absl/strings/str_cat.h"
#include "backend.h"
#include "kvtier/client/client.h"
#include "workload.h"

namespace kvtier::bench {
namespace {

class KvtierBackend final : public Backend {
 public:
  KvtierBackend(std::unique_ptr<client::Client> client, client::NamespaceHandle ns)
      : client_(std::move(client)), ns_(std::move(ns)) {}

  absl::StatusOr<size_t> Put(std::span<const BlockKey> keys,
                             std::span<const std::span<const std::byte>> blocks) override {
    auto results = client_->Put(ns_, keys, blocks);
    if (!results.ok()) return results.status();
    size_t stored = 0;
    for (const absl::Status& s : *results) stored += client::IsStored(s);
    return stored;
  }

  std::string transport() const override {
    if (client_->shared_arena()) return "shared-arena";
    return client_->uri().starts_with("tcp://") ? "inline-tcp" : "inline-unix";
  }

  absl::StatusOr<size_t> Get(std::span<const BlockKey> keys,
                             std::span<const std::span<std::byte>> out) override {
    auto results = client_->Get(ns_, keys, out);
    if (!results.ok()) return results.status();
    size_t hits = 0;
    for (size_t i = 0; i < results->size(); ++i) {
      hits += (*results)[i].status.ok() && (*results)[i].length == out[i].size();
    }
    return hits;
  }

 private:
  std::unique_ptr<client::Client> client_;
  client::NamespaceHandle ns_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Backend>> OpenKvtierBackend(const BackendOptions& options) {
  client::ClientOptions client_options;
  client_options.client_name = "kvtier-bench";
  client_options.auth_token = options.auth_token;
  auto client = client::Client::Connect(options.uri, client_options);
  if (!client.ok()) return client.status();
  auto ns = (*client)->OpenNamespace(BenchNamespace(options.block_bytes));
  if (!ns.ok()) return ns.status();
  return std::unique_ptr<Backend>(new KvtierBackend(*std::move(client), *std::move(ns)));
}

}  // namespace kvtier::bench
