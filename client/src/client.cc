#include "kvtier/client/client.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "async_workers.h"
#include "kvtier/kernels/block_hash.h"
#include "session.h"

namespace kvtier::client {
namespace {

// Runs `op` on an async worker's session and fulfils the returned future with its result.
template <typename R, typename Op>
std::future<R> RunAsync(AsyncWorkers& workers, Op op) {
  auto promise = std::make_shared<std::promise<R>>();
  std::future<R> future = promise->get_future();
  workers.Submit([promise, op = std::move(op)](absl::StatusOr<Session*> session) mutable {
    if (!session.ok()) {
      promise->set_value(session.status());
    } else {
      promise->set_value(op(**session));
    }
  });
  return future;
}

}  // namespace

absl::Status ClientOptions::Validate() const {
  if (io_timeout.count() < 1) {
    return absl::InvalidArgumentError("ClientOptions.io_timeout must be at least 1 ms");
  }
  if (connect_timeout.count() < 1) {
    return absl::InvalidArgumentError("ClientOptions.connect_timeout must be at least 1 ms");
  }
  if (async_workers < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("ClientOptions.async_workers is ", async_workers, "; it must be >= 1"));
  }
  if (busy_poll.count() < -1 || busy_poll > std::chrono::milliseconds(10)) {
    return absl::InvalidArgumentError(absl::StrCat("ClientOptions.busy_poll is ", busy_poll.count(),
                                                   " us; use -1 (auto), 0 (off) or up to 10000"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Client>> Client::Connect(std::string_view uri,
                                                        const ClientOptions& options) {
  if (auto s = options.Validate(); !s.ok()) return s;
  auto endpoint = ParseEndpoint(uri);
  if (!endpoint.ok()) return endpoint.status();
  auto session = Session::Open(*endpoint, options);
  if (!session.ok()) return session.status();
  return std::unique_ptr<Client>(new Client(endpoint->ToUri(), options, *std::move(session)));
}

Client::Client(std::string uri, ClientOptions options, std::unique_ptr<Session> session)
    : uri_(std::move(uri)),
      options_(std::move(options)),
      hello_(session->hello()),
      shared_arena_(session->has_arena()),
      request_mailbox_(session->has_mailbox()),
      session_(std::move(session)) {}

Client::~Client() = default;

AsyncWorkers& Client::workers() {
  std::call_once(workers_once_, [this] {
    // uri_ came from a parsed Endpoint, so parsing it again cannot fail.
    workers_ = std::make_unique<AsyncWorkers>(*ParseEndpoint(uri_), options_);
  });
  return *workers_;
}

absl::StatusOr<NamespaceHandle> Client::OpenNamespace(const NamespaceDescriptor& descriptor,
                                                      const proto::NamespaceOptions& options) {
  std::lock_guard lock(mu_);
  return session_->OpenNamespace(descriptor, options);
}

std::vector<BlockKey> Client::HashTokens(const NamespaceHandle& handle,
                                         std::span<const uint32_t> tokens) const {
  return kvtier::HashPrefix(handle.key_seed, tokens, handle.block_tokens);
}

absl::StatusOr<LookupResult> Client::Lookup(const NamespaceHandle& handle,
                                            std::span<const BlockKey> keys) {
  std::lock_guard lock(mu_);
  return session_->Lookup(handle, keys);
}

absl::StatusOr<std::vector<absl::Status>> Client::Put(
    const NamespaceHandle& handle, std::span<const BlockKey> keys,
    std::span<const std::span<const std::byte>> blocks, const PutOptions& options) {
  std::lock_guard lock(mu_);
  return session_->Put(handle, keys, blocks, options);
}

std::span<std::byte> Client::arena_memory() const { return session_->arena_memory(); }

absl::StatusOr<std::vector<absl::Status>> Client::PutInPlace(const NamespaceHandle& handle,
                                                             std::span<const BlockKey> keys,
                                                             std::span<const uint64_t> lengths,
                                                             ArenaFill fill,
                                                             const PutOptions& options) {
  std::lock_guard lock(mu_);
  return session_->PutInPlace(handle, keys, lengths, fill, options);
}

absl::StatusOr<std::vector<GetResult>> Client::GetInPlace(const NamespaceHandle& handle,
                                                          std::span<const BlockKey> keys,
                                                          ArenaRead read) {
  std::lock_guard lock(mu_);
  return session_->GetInPlace(handle, keys, read);
}

absl::StatusOr<ReservedPut> Client::ReservePut(const NamespaceHandle& handle,
                                               std::span<const BlockKey> keys,
                                               std::span<const uint64_t> lengths,
                                               const PutOptions& options) {
  std::lock_guard lock(mu_);
  return session_->ReservePut(handle, keys, lengths, options);
}

absl::StatusOr<std::vector<absl::Status>> Client::CommitPut(ReservedPut& put) {
  std::lock_guard lock(mu_);
  return session_->CommitPut(put);
}

absl::Status Client::AbortPut(ReservedPut& put) {
  std::lock_guard lock(mu_);
  return session_->AbortPut(put);
}

absl::StatusOr<StartedGet> Client::StartGet(const NamespaceHandle& handle,
                                            std::span<const BlockKey> keys) {
  std::lock_guard lock(mu_);
  return session_->StartGet(handle, keys);
}

absl::StatusOr<std::vector<GetResult>> Client::FinishGet(StartedGet& get) {
  std::lock_guard lock(mu_);
  return session_->FinishGet(get);
}

absl::Status Client::SetLimits(const NamespaceHandle& handle,
                               const proto::NamespaceLimits& limits) {
  std::lock_guard lock(mu_);
  return session_->SetLimits(handle, limits);
}

absl::Status Client::SetLimits(uint32_t namespace_id, const proto::NamespaceLimits& limits) {
  std::lock_guard lock(mu_);
  return session_->SetLimits(namespace_id, limits);
}

absl::StatusOr<std::vector<GetResult>> Client::Get(const NamespaceHandle& handle,
                                                   std::span<const BlockKey> keys,
                                                   std::span<const std::span<std::byte>> out,
                                                   const GetOptions& options) {
  std::lock_guard lock(mu_);
  return session_->Get(handle, keys, out, options);
}

absl::StatusOr<std::vector<absl::Status>> Client::Pin(const NamespaceHandle& handle,
                                                      std::span<const BlockKey> keys, bool pinned) {
  std::lock_guard lock(mu_);
  return session_->Pin(handle, keys, pinned);
}

absl::StatusOr<PrefetchResult> Client::Prefetch(const NamespaceHandle& handle,
                                                std::span<const BlockKey> keys) {
  std::lock_guard lock(mu_);
  return session_->Prefetch(handle, keys);
}

absl::StatusOr<std::vector<absl::Status>> Client::Remove(const NamespaceHandle& handle,
                                                         std::span<const BlockKey> keys) {
  std::lock_guard lock(mu_);
  return session_->Remove(handle, keys);
}

absl::StatusOr<proto::StatsReply> Client::Stats() {
  std::lock_guard lock(mu_);
  return session_->Stats();
}

absl::StatusOr<proto::HealthReply> Client::Health() {
  std::lock_guard lock(mu_);
  return session_->Health();
}

std::future<absl::StatusOr<std::vector<absl::Status>>> Client::PutAsync(
    const NamespaceHandle& handle, std::vector<BlockKey> keys,
    std::vector<std::span<const std::byte>> blocks) {
  using R = absl::StatusOr<std::vector<absl::Status>>;
  return RunAsync<R>(workers(),
                     [handle, keys = std::move(keys), blocks = std::move(blocks)](Session& s) -> R {
                       return s.Put(handle, keys, blocks);
                     });
}

std::future<absl::StatusOr<std::vector<GetResult>>> Client::GetAsync(
    const NamespaceHandle& handle, std::vector<BlockKey> keys,
    std::vector<std::span<std::byte>> out) {
  using R = absl::StatusOr<std::vector<GetResult>>;
  return RunAsync<R>(workers(),
                     [handle, keys = std::move(keys), out = std::move(out)](Session& s) -> R {
                       return s.Get(handle, keys, out);
                     });
}

std::future<absl::StatusOr<LookupResult>> Client::LookupAsync(const NamespaceHandle& handle,
                                                              std::vector<BlockKey> keys) {
  using R = absl::StatusOr<LookupResult>;
  return RunAsync<R>(workers(), [handle, keys = std::move(keys)](Session& s) -> R {
    return s.Lookup(handle, keys);
  });
}

}  // namespace kvtier::client
