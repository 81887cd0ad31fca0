// Session's get paths: inline gets, shared-arena gets (copied out, in place, or as
// StartGet/FinishGet under the seqlock and lease rules) and decoding kvz frames.
#include <algorithm>
#include <atomic>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "kvtier/common/strings.h"
#include "kvtier/compression/codec.h"
#include "kvtier/compression/kv_codec.h"
#include "session.h"
#include "session_internal.h"

namespace kvtier::client {

using session_internal::CodeToStatus;
using session_internal::PackKeys;
using session_internal::TierAt;

namespace {

absl::Status BufferTooSmall(uint64_t stored, size_t buffer) {
  return absl::InvalidArgumentError(absl::StrCat("output buffer holds ", buffer,
                                                 " bytes but the stored block is ", stored,
                                                 " bytes; pass buffers of block_bytes"));
}

absl::Status VoidedCopy(std::string_view why) {
  return absl::UnavailableError(
      absl::StrCat("block ", AbslView(why), " while it was copied out; count it as a miss"));
}

}  // namespace

absl::StatusOr<std::vector<GetResult>> Session::Get(const NamespaceHandle& ns,
                                                    std::span<const BlockKey> keys,
                                                    std::span<const std::span<std::byte>> out,
                                                    const GetOptions& options) {
  if (keys.size() != out.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "get got ", keys.size(), " keys but ", out.size(), " output buffers; pass one per key"));
  }
  auto id = NamespaceId(ns);
  if (!id.ok()) return id.status();
  std::vector<GetResult> results(keys.size());
  const size_t batch = BatchSize(arena_ ? 0 : ns.block_bytes);
  for (size_t start = 0; start < keys.size(); start += batch) {
    const size_t n = std::min(batch, keys.size() - start);
    const auto s = arena_ ? GetArena(*id, keys.subspan(start, n), out.subspan(start, n),
                                     options.decode, std::span(results).subspan(start, n))
                          : GetInline(*id, keys.subspan(start, n), out.subspan(start, n),
                                      options.decode, std::span(results).subspan(start, n));
    if (!s.ok()) return s;
  }
  return results;
}

absl::Status Session::CheckEncodings(const proto::GetReply& reply, size_t n) {
  if ((reply.codecs().empty() || reply.codecs().size() == n) &&
      static_cast<size_t>(reply.raw_lengths_size()) == reply.codecs().size()) {
    return absl::OkStatus();
  }
  return channel_.Break(absl::StrCat("get of ", n, " keys returned ", reply.codecs().size(),
                                     " codecs and ", reply.raw_lengths_size(), " raw lengths"));
}

std::span<std::byte> Session::GetDestination(const proto::GetReply& reply, size_t i,
                                             std::span<std::byte> out, bool decode,
                                             GetResult* result,
                                             std::vector<PendingDecode>* decodes) {
  result->length = reply.lengths(i);
  const uint8_t codec = reply.codecs().empty() ? 0 : static_cast<uint8_t>(reply.codecs()[i]);
  if (codec == 0 || !decode) {
    if (codec != 0) {
      result->codec = codec;
      result->raw_length = reply.raw_lengths(static_cast<int>(i));
    }
    if (result->length > out.size()) {
      result->status = BufferTooSmall(result->length, out.size());
      return {};
    }
    return out.first(result->length);
  }
  const uint64_t raw = reply.raw_lengths(static_cast<int>(i));
  if (raw > out.size()) {
    result->status = BufferTooSmall(raw, out.size());
    result->length = raw;
    return {};
  }
  if (codec != static_cast<uint8_t>(CodecId::kKvz)) {
    result->status =
        absl::UnimplementedError(absl::StrCat("block is encoded with codec ", codec,
                                              ", which this client cannot decode; upgrade it "
                                              "or get with decode off"));
    return {};
  }
  decodes->push_back(PendingDecode{i, std::vector<std::byte>(result->length), out.first(raw)});
  return decodes->back().frame;
}

void Session::DecodeFrames(std::vector<PendingDecode>& decodes, std::span<GetResult> results) {
  for (PendingDecode& d : decodes) {
    GetResult& r = results[d.index];
    if (!r.status.ok()) continue;
    absl::Status s = Decompress(d.frame, d.out);
    if (!s.ok()) {
      // The daemon never changes bytes; a frame that fails its checks was damaged (or lied
      // about): a miss, never wrong bytes.
      r.status = absl::DataLossError(absl::StrCat("the block's kvz frame failed to decode (",
                                                  s.message(), "); count it as a miss"));
      continue;
    }
    r.length = d.out.size();
  }
}

absl::Status Session::GetInline(uint32_t ns_id, std::span<const BlockKey> keys,
                                std::span<const std::span<std::byte>> out, bool decode,
                                std::span<GetResult> results) {
  proto::GetRequest request;
  request.set_namespace_id(ns_id);
  request.set_keys(PackKeys(keys));
  request.set_mode(proto::DATA_INLINE);
  if (auto s = channel_.Send(proto::Opcode::kGet, request); !s.ok()) return s;
  proto::GetReply reply;
  auto payload_len = channel_.ReceiveHead(&reply);
  if (!payload_len.ok()) return payload_len.status();
  const size_t n = keys.size();
  if (static_cast<size_t>(reply.codes_size()) != n ||
      static_cast<size_t>(reply.lengths_size()) != n) {
    return channel_.Break(absl::StrCat("get of ", n, " keys returned ", reply.codes_size(),
                                       " codes and ", reply.lengths_size(), " lengths"));
  }
  if (auto s = CheckEncodings(reply, n); !s.ok()) return s;
  uint64_t total = 0;
  uint64_t largest = 0;
  for (size_t i = 0; i < n; ++i) {
    if (reply.codes(i) != 0) continue;
    total += reply.lengths(i);
    largest = std::max<uint64_t>(largest, reply.lengths(i));
  }
  if (total != *payload_len) {
    return channel_.Break(absl::StrCat("get reply lengths add up to ", total,
                                       " bytes but its payload is ", *payload_len, " bytes"));
  }
  // Read every hit straight into its buffer (an encoded one into its frame buffer); blocks that
  // do not fit land in one shared scratch buffer (their bytes are dropped) so the stream stays
  // in step.
  std::vector<std::byte> scratch;
  std::vector<std::span<std::byte>> dst;
  std::vector<PendingDecode> decodes;
  decodes.reserve(n);  // GetDestination hands out spans into its elements
  dst.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    GetResult& r = results[i];
    r.tier = TierAt(reply.tiers(), i);
    if (reply.codes(i) != 0) {
      r.status = CodeToStatus(reply.codes(i));
      r.tier = proto::TIER_NONE;
      continue;
    }
    std::span<std::byte> to = GetDestination(reply, i, out[i], decode, &r, &decodes);
    if (to.empty()) {
      if (scratch.empty()) scratch.resize(largest);
      to = std::span(scratch).first(reply.lengths(i));
    }
    dst.push_back(to);
  }
  if (auto s = channel_.ReceivePayload(dst); !s.ok()) return s;
  DecodeFrames(decodes, results);
  return absl::OkStatus();
}

absl::Status Session::CallArenaGet(uint32_t ns_id, std::span<const BlockKey> keys,
                                   proto::GetReply* reply) {
  proto::GetRequest request;
  request.set_namespace_id(ns_id);
  request.set_keys(PackKeys(keys));
  request.set_mode(proto::DATA_SHARED_ARENA);
  if (auto s = channel_.Call(proto::Opcode::kGet, request, reply); !s.ok()) return s;
  const size_t n = keys.size();
  if (static_cast<size_t>(reply->codes_size()) != n ||
      static_cast<size_t>(reply->lengths_size()) != n ||
      static_cast<size_t>(reply->offsets_size()) != n ||
      static_cast<size_t>(reply->generations_size()) != n) {
    return channel_.Break(absl::StrCat("shared-arena get of ", n, " keys returned ",
                                       reply->codes_size(), " codes, ", reply->lengths_size(),
                                       " lengths, ", reply->offsets_size(), " offsets, ",
                                       reply->generations_size(), " generations"));
  }
  if (auto s = CheckEncodings(*reply, n); !s.ok()) return s;
  for (size_t i = 0; i < n; ++i) {
    if (reply->codes(i) != 0) continue;
    if (auto s = arena_->CheckSlot(reply->offsets(i), reply->lengths(i)); !s.ok()) {
      return channel_.Break(absl::StrCat("get reply for key ", i, ": ", s.message()));
    }
  }
  return absl::OkStatus();
}

absl::Status Session::GetArena(uint32_t ns_id, std::span<const BlockKey> keys,
                               std::span<const std::span<std::byte>> out, bool decode,
                               std::span<GetResult> results) {
  StartedGet get;
  if (auto s = StartArenaGet(ns_id, keys, &get); !s.ok()) return s;
  // Encoded blocks are copied into frame buffers and decoded once the copies are checked and
  // the lease is released: never decode bytes that another writer may be changing.
  std::vector<PendingDecode> decodes;
  decodes.reserve(keys.size());  // GetDestination hands out spans into its elements
  for (size_t i = 0; i < keys.size(); ++i) {
    if (get.slots_[i].empty()) continue;  // a miss, or a slot reused already
    GetResult& r = get.results_[i];
    r.codec = 0;  // GetDestination says how the bytes arrive
    r.raw_length = 0;
    const std::span<std::byte> to = GetDestination(get.reply_, i, out[i], decode, &r, &decodes);
    if (!r.status.ok()) {
      get.slots_[i] = {};  // nothing copied, nothing to check
      continue;
    }
    std::memcpy(to.data(), get.slots_[i].data(), to.size());
  }
  absl::StatusOr<std::vector<GetResult>> finished = FinishGet(get);
  if (!finished.ok()) return finished.status();
  std::move(finished->begin(), finished->end(), results.begin());
  DecodeFrames(decodes, results);
  return absl::OkStatus();
}

absl::Status Session::FinishArenaGet(const proto::GetReply& reply, std::span<GetResult> results) {
  if (reply.lease_id() == 0) return absl::OkStatus();
  bool expired = false;
  if (auto s = ReleaseLease(reply.lease_id(), &expired); !s.ok()) return s;
  if (expired) {
    // The daemon may have reused the slots after the lease ran out, while we copied.
    for (size_t i = 0; i < results.size(); ++i) {
      if (results[i].status.ok() && reply.codes(i) == 0) {
        results[i].status = VoidedCopy("lease expired");
      }
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<GetResult>> Session::GetInPlace(const NamespaceHandle& ns,
                                                           std::span<const BlockKey> keys,
                                                           ArenaRead read) {
  if (!arena_) {
    return absl::FailedPreconditionError(
        "GetInPlace needs the shared arena (a Unix-socket connection with use_shared_arena); "
        "use Get");
  }
  auto id = NamespaceId(ns);
  if (!id.ok()) return id.status();
  std::vector<GetResult> results(keys.size());
  const size_t batch = BatchSize(0);
  for (size_t start = 0; start < keys.size(); start += batch) {
    const size_t n = std::min(batch, keys.size() - start);
    if (auto s = GetArenaInPlace(*id, keys.subspan(start, n), read,
                                 std::span(results).subspan(start, n));
        !s.ok()) {
      return s;
    }
  }
  return results;
}

absl::Status Session::StartArenaGet(uint32_t ns_id, std::span<const BlockKey> keys,
                                    StartedGet* get) {
  proto::GetReply& reply = get->reply_;
  if (auto s = CallArenaGet(ns_id, keys, &reply); !s.ok()) return s;
  const size_t n = keys.size();
  get->slots_.assign(n, {});
  get->results_.assign(n, GetResult{});
  for (size_t i = 0; i < n; ++i) {
    GetResult& r = get->results_[i];
    if (reply.codes(i) != 0) {
      r.status = CodeToStatus(reply.codes(i));
      continue;
    }
    r.tier = TierAt(reply.tiers(), i);
    r.length = reply.lengths(i);
    if (!reply.codecs().empty() && reply.codecs()[i] != 0) {
      r.codec = static_cast<uint8_t>(reply.codecs()[i]);
      r.raw_length = reply.raw_lengths(static_cast<int>(i));
    }
    // Seqlock read (docs/protocol.md 7.3): a copy counts only if the slot's generation is the
    // quoted one before it and still after it (FinishGet). Checking before saves copying a slot
    // reused already.
    if (arena_->Generation(reply.offsets(i)) != reply.generations(i)) {
      r.status = VoidedCopy("was evicted");
      continue;
    }
    get->slots_[i] = arena_->Slot(reply.offsets(i), reply.lengths(i));
  }
  get->open_.value = true;
  return absl::OkStatus();
}

absl::StatusOr<std::vector<GetResult>> Session::FinishGet(StartedGet& get) {
  if (!get.open_.value) {
    return absl::FailedPreconditionError("FinishGet of a get that was not started or is finished");
  }
  get.open_.value = false;
  std::atomic_thread_fence(std::memory_order_acquire);
  const proto::GetReply& reply = get.reply_;
  std::vector<GetResult> results = std::move(get.results_);
  for (size_t i = 0; i < results.size(); ++i) {
    if (!get.slots_[i].empty() && arena_->Generation(reply.offsets(i)) != reply.generations(i)) {
      results[i].status = VoidedCopy("was evicted");
    }
  }
  if (auto s = FinishArenaGet(reply, results); !s.ok()) return s;
  return results;
}

absl::StatusOr<StartedGet> Session::StartGet(const NamespaceHandle& ns,
                                             std::span<const BlockKey> keys) {
  if (!arena_) {
    return absl::FailedPreconditionError(
        "StartGet needs the shared arena (a Unix-socket connection with use_shared_arena); "
        "use Get");
  }
  if (keys.size() > BatchSize(0)) {
    return absl::InvalidArgumentError(absl::StrCat("StartGet got ", keys.size(),
                                                   " keys; pass at most ", BatchSize(0),
                                                   " (the daemon's max_keys_per_request)"));
  }
  auto id = NamespaceId(ns);
  if (!id.ok()) return id.status();
  StartedGet get;
  if (auto s = StartArenaGet(*id, keys, &get); !s.ok()) return s;
  return get;
}

absl::Status Session::GetArenaInPlace(uint32_t ns_id, std::span<const BlockKey> keys,
                                      ArenaRead read, std::span<GetResult> results) {
  StartedGet get;
  if (auto s = StartArenaGet(ns_id, keys, &get); !s.ok()) return s;
  const absl::Status read_status = read(get.slots_, get.results_);
  absl::StatusOr<std::vector<GetResult>> finished = FinishGet(get);
  if (!finished.ok()) return finished.status();
  std::move(finished->begin(), finished->end(), results.begin());
  return read_status;
}

}  // namespace kvtier::client
