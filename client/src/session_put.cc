// Session's put paths: checks and requests, inline puts, shared-arena puts (reserve, write,
// commit or abort, also as ReservePut/CommitPut/AbortPut) and cpu_compress encoding.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "kvtier/compression/codec.h"
#include "kvtier/compression/kv_codec.h"
#include "session.h"
#include "session_internal.h"

namespace kvtier::client {

using session_internal::CodeToStatus;
using session_internal::PackKeys;

namespace {

// A put's codes: the failures a daemon with --nvme-write-through adds say so, since the client
// gets only the code and the daemon's log is elsewhere.
absl::Status PutCodeToStatus(int32_t code) {
  switch (static_cast<absl::StatusCode>(code)) {
    case absl::StatusCode::kResourceExhausted:
      return BlockStatus(code,
                         "no room in any tier even after eviction, or (write-through) the NVMe "
                         "device is full; nothing was stored");
    case absl::StatusCode::kUnavailable:
      return BlockStatus(code,
                         "write-through to NVMe failed (device I/O error or failed fdatasync; "
                         "the daemon's log has the cause, nvme.io_errors counts it); nothing "
                         "was stored; retry");
    case absl::StatusCode::kAborted:
      return BlockStatus(code,
                         "not stored: another block of this write-through put could not be "
                         "written to NVMe, and a put is all or nothing; retry");
    default:
      return CodeToStatus(code);
  }
}

// The blocks of a cpu_compress put, encoded: frames where they shrink, the block elsewhere.
struct EncodedBlocks {
  std::vector<std::vector<std::byte>> frames;
  std::vector<std::span<const std::byte>> blocks;
  std::vector<uint8_t> codecs;
  std::vector<uint64_t> raw_lengths;
};

absl::StatusOr<EncodedBlocks> EncodeOnCpu(const NamespaceHandle& ns,
                                          std::span<const std::span<const std::byte>> blocks) {
  absl::StatusOr<KvDtype> dtype = ParseKvDtype(ns.descriptor.dtype);
  if (!dtype.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("cpu_compress: the namespace's dtype: ", dtype.status().message()));
  }
  const CodecOptions codec{.dtype = *dtype};
  EncodedBlocks out;
  out.frames.resize(blocks.size());
  for (size_t i = 0; i < blocks.size(); ++i) {
    out.blocks.push_back(blocks[i]);
    out.codecs.push_back(0);
    out.raw_lengths.push_back(0);
    if (blocks[i].size() % KvDtypeBytes(*dtype) != 0) continue;  // not whole elements: as is
    out.frames[i].resize(MaxCompressedSize(blocks[i].size(), codec));
    absl::StatusOr<size_t> n = Compress(blocks[i], codec, out.frames[i]);
    if (!n.ok()) return n.status();
    if (*n >= blocks[i].size()) continue;  // does not shrink: stored
    out.blocks[i] = std::span<const std::byte>(out.frames[i]).first(*n);
    out.codecs[i] = static_cast<uint8_t>(CodecId::kKvz);
    out.raw_lengths[i] = blocks[i].size();
  }
  return out;
}

}  // namespace

absl::Status Session::CheckPut(const NamespaceHandle& ns, std::span<const uint64_t> lengths,
                               std::span<const uint8_t> codecs,
                               std::span<const uint64_t> raw_lengths) {
  for (size_t i = 0; i < lengths.size(); ++i) {
    if (lengths[i] == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("block ", i, " is empty; blocks hold >= 1 byte"));
    }
    if (lengths[i] > ns.block_bytes) {
      return absl::InvalidArgumentError(
          absl::StrCat("block ", i, " is ", lengths[i],
                       " bytes, larger than the namespace's block_bytes ", ns.block_bytes));
    }
  }
  if (codecs.size() != raw_lengths.size() || (!codecs.empty() && codecs.size() != lengths.size())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "put got ", lengths.size(), " blocks, ", codecs.size(), " codecs and ", raw_lengths.size(),
        " raw lengths; pass one codec and one raw length per block, or none"));
  }
  for (size_t i = 0; i < codecs.size(); ++i) {
    if (codecs[i] == 0) continue;
    if (ns.options.compression() != proto::COMPRESSION_KVZ) {
      return absl::InvalidArgumentError(
          absl::StrCat("block ", i,
                       " is encoded but the namespace was not opened with "
                       "COMPRESSION_KVZ; send it decoded or open a compressed namespace"));
    }
    if (raw_lengths[i] < lengths[i] || raw_lengths[i] > ns.block_bytes) {
      return absl::InvalidArgumentError(
          absl::StrCat("block ", i, " has raw length ", raw_lengths[i], " for ", lengths[i],
                       " encoded bytes; it must be from that to block_bytes ", ns.block_bytes));
    }
  }
  return absl::OkStatus();
}

proto::PutRequest Session::PutRequestFor(uint32_t ns_id, std::span<const BlockKey> keys,
                                         std::span<const uint64_t> lengths,
                                         std::span<const uint8_t> codecs,
                                         std::span<const uint64_t> raw_lengths,
                                         uint32_t ttl_seconds, size_t start, size_t n) const {
  proto::PutRequest request;
  request.set_namespace_id(ns_id);
  request.set_keys(PackKeys(keys.subspan(start, n)));
  request.set_ttl_seconds(ttl_seconds);
  for (uint64_t length : lengths.subspan(start, n)) request.add_lengths(length);
  if (!codecs.empty()) {
    request.set_codecs(reinterpret_cast<const char*>(codecs.data() + start), n);
    for (size_t i = start; i < start + n; ++i) {
      request.add_raw_lengths(codecs[i] == 0 ? 0 : raw_lengths[i]);
    }
  }
  return request;
}

absl::StatusOr<std::vector<absl::Status>> Session::Put(
    const NamespaceHandle& ns, std::span<const BlockKey> keys,
    std::span<const std::span<const std::byte>> blocks, const PutOptions& options) {
  if (keys.size() != blocks.size()) {
    return absl::InvalidArgumentError(absl::StrCat("put got ", keys.size(), " keys but ",
                                                   blocks.size(), " blocks; pass one per key"));
  }
  std::vector<uint64_t> lengths(blocks.size());
  for (size_t i = 0; i < blocks.size(); ++i) lengths[i] = blocks[i].size();
  std::span<const uint8_t> codecs = options.codecs;
  std::span<const uint64_t> raw_lengths = options.raw_lengths;
  if (absl::Status s = CheckPut(ns, lengths, codecs, raw_lengths); !s.ok()) return s;
  EncodedBlocks encoded;
  if (codecs.empty() && options.cpu_compress &&
      ns.options.compression() == proto::COMPRESSION_KVZ) {
    absl::StatusOr<EncodedBlocks> e = EncodeOnCpu(ns, blocks);
    if (!e.ok()) return e.status();
    encoded = *std::move(e);
    blocks = encoded.blocks;
    codecs = encoded.codecs;
    raw_lengths = encoded.raw_lengths;
    for (size_t i = 0; i < blocks.size(); ++i) lengths[i] = blocks[i].size();
  }
  auto id = NamespaceId(ns);
  if (!id.ok()) return id.status();
  std::vector<absl::Status> results(keys.size());
  const size_t batch = BatchSize(arena_ ? 0 : ns.block_bytes);
  for (size_t start = 0; start < keys.size(); start += batch) {
    const size_t n = std::min(batch, keys.size() - start);
    proto::PutRequest request =
        PutRequestFor(*id, keys, lengths, codecs, raw_lengths, options.ttl_seconds, start, n);
    const auto batch_blocks = blocks.subspan(start, n);
    // The CPU copies each block in, checking the deadline before each one.
    auto copy = [&](std::span<const std::span<std::byte>> slots,
                    std::chrono::steady_clock::time_point deadline) -> absl::StatusOr<bool> {
      for (size_t i = 0; i < n; ++i) {
        if (slots[i].empty()) continue;
        if (std::chrono::steady_clock::now() > deadline) return false;
        std::memcpy(slots[i].data(), batch_blocks[i].data(), batch_blocks[i].size());
      }
      return true;
    };
    const auto s = arena_ ? PutArena(request, n, copy, std::span(results).subspan(start, n))
                          : PutInline(request, keys.subspan(start, n), batch_blocks,
                                      std::span(results).subspan(start, n));
    if (!s.ok()) return s;
  }
  return results;
}

absl::StatusOr<std::vector<absl::Status>> Session::PutInPlace(const NamespaceHandle& ns,
                                                              std::span<const BlockKey> keys,
                                                              std::span<const uint64_t> lengths,
                                                              ArenaFill fill,
                                                              const PutOptions& options) {
  if (!arena_) {
    return absl::FailedPreconditionError(
        "PutInPlace needs the shared arena (a Unix-socket connection with use_shared_arena); "
        "use Put");
  }
  if (keys.size() != lengths.size()) {
    return absl::InvalidArgumentError(absl::StrCat("put got ", keys.size(), " keys but ",
                                                   lengths.size(), " lengths; pass one per key"));
  }
  if (absl::Status s = CheckPut(ns, lengths, options.codecs, options.raw_lengths); !s.ok()) {
    return s;
  }
  auto id = NamespaceId(ns);
  if (!id.ok()) return id.status();
  std::vector<absl::Status> results(keys.size());
  const size_t batch = BatchSize(0);
  for (size_t start = 0; start < keys.size(); start += batch) {
    const size_t n = std::min(batch, keys.size() - start);
    proto::PutRequest request = PutRequestFor(*id, keys, lengths, options.codecs,
                                              options.raw_lengths, options.ttl_seconds, start, n);
    // The caller's fill runs as a whole; whether it finished in time is known afterwards.
    auto write = [&](std::span<const std::span<std::byte>> slots,
                     std::chrono::steady_clock::time_point deadline) -> absl::StatusOr<bool> {
      if (absl::Status s = fill(slots); !s.ok()) return s;
      return std::chrono::steady_clock::now() <= deadline;
    };
    if (auto s = PutArena(request, n, write, std::span(results).subspan(start, n)); !s.ok()) {
      return s;
    }
  }
  return results;
}

absl::Status Session::PutInline(proto::PutRequest& request, std::span<const BlockKey> keys,
                                std::span<const std::span<const std::byte>> blocks,
                                std::span<absl::Status> results) {
  request.set_mode(proto::DATA_INLINE);
  if (auto s = channel_.Send(proto::Opcode::kPut, request, blocks); !s.ok()) return s;
  proto::PutReply reply;
  auto payload = channel_.ReceiveHead(&reply);
  if (!payload.ok()) return payload.status();
  if (auto s = channel_.DiscardPayload(*payload); !s.ok()) return s;
  if (static_cast<size_t>(reply.codes_size()) != keys.size()) {
    return channel_.Break(
        absl::StrCat("put of ", keys.size(), " blocks returned ", reply.codes_size(), " codes"));
  }
  for (size_t i = 0; i < keys.size(); ++i) results[i] = PutCodeToStatus(reply.codes(i));
  return absl::OkStatus();
}

absl::Status Session::ReserveArena(proto::PutRequest& request, ReservedPut* put) {
  const size_t n = static_cast<size_t>(request.lengths_size());
  request.set_mode(proto::DATA_SHARED_ARENA);
  proto::PutReply reserved;
  if (auto s = channel_.Call(proto::Opcode::kPut, request, &reserved); !s.ok()) return s;
  if (static_cast<size_t>(reserved.codes_size()) != n ||
      static_cast<size_t>(reserved.offsets_size()) != n) {
    return channel_.Break(absl::StrCat("shared-arena put of ", n, " blocks returned ",
                                       reserved.codes_size(), " codes and ",
                                       reserved.offsets_size(), " offsets"));
  }
  // Check every slot before writing any: a bad offset must not corrupt our own memory.
  put->slots_.assign(n, {});
  put->codes_.assign(reserved.codes().begin(), reserved.codes().end());
  for (size_t i = 0; i < n; ++i) {
    if (reserved.codes(i) != 0) continue;
    if (auto s = arena_->CheckSlot(reserved.offsets(i), request.lengths(static_cast<int>(i)));
        !s.ok()) {
      return channel_.Break(absl::StrCat("put reply for block ", i, ": ", s.message()));
    }
    put->slots_[i] = arena_->Slot(reserved.offsets(i), request.lengths(static_cast<int>(i)));
  }
  put->lease_id_ = reserved.lease_id();
  put->open_.value = true;
  // The protocol forbids writing into a granted slot later than lease_timeout_ms after the
  // reply (the daemon may reuse it then). Stop with a tenth of the lease to spare, since the
  // daemon's clock started before ours.
  put->write_deadline_ = std::chrono::steady_clock::now() + LeaseTimeout() * 9 / 10;
  return absl::OkStatus();
}

absl::Status Session::FinishArenaPut(ReservedPut& put, bool in_time,
                                     std::span<absl::Status> results) {
  const size_t n = put.codes_.size();
  if (!std::exchange(put.open_.value, false)) {
    return absl::FailedPreconditionError(
        "the put was not reserved, or was committed or aborted already");
  }
  const uint64_t lease = put.lease_id_;
  if (!in_time) {
    // Late: give the lease back and report the blocks as DeadlineExceeded, as a late commit
    // would.
    bool expired = false;
    if (lease != 0) {
      if (auto s = ReleaseLease(lease, &expired); !s.ok()) return s;
    }
    for (size_t i = 0; i < n; ++i) {
      results[i] = put.codes_[i] != 0
                       ? PutCodeToStatus(put.codes_[i])
                       : absl::DeadlineExceededError(
                             "copying the batch into the arena outlasted the put lease; nothing "
                             "was stored (use smaller batches)");
    }
    return absl::OkStatus();
  }
  if (lease == 0) {  // nothing was reserved
    for (size_t i = 0; i < n; ++i) results[i] = PutCodeToStatus(put.codes_[i]);
    return absl::OkStatus();
  }
  // Make our stores visible before the daemon, told by the commit, publishes the slots.
  std::atomic_thread_fence(std::memory_order_release);
  proto::PutCommitRequest commit;
  commit.set_lease_id(lease);
  proto::PutCommitReply committed;
  if (auto s = channel_.Call(proto::Opcode::kPutCommit, commit, &committed); !s.ok()) {
    // NotFound: the lease expired and the daemon has forgotten it; nothing was stored.
    if (!absl::IsNotFound(s) || channel_.broken()) return s;
    for (size_t i = 0; i < n; ++i) {
      results[i] = PutCodeToStatus(put.codes_[i] == 0
                                       ? static_cast<int32_t>(absl::StatusCode::kDeadlineExceeded)
                                       : put.codes_[i]);
    }
    return absl::OkStatus();
  }
  // kvtier.proto asks for one code per block of the put; a daemon may also answer with one code
  // per reserved block (in key order), which carries the same information. Accept both.
  size_t reserved_count = 0;
  for (size_t i = 0; i < n; ++i) reserved_count += put.codes_[i] == 0;
  const size_t got = static_cast<size_t>(committed.codes_size());
  if (got != n && got != reserved_count) {
    return channel_.Break(absl::StrCat("put_commit of ", reserved_count, " reserved blocks (", n,
                                       " in the put) returned ", got, " codes"));
  }
  for (size_t i = 0, j = 0; i < n; ++i) {
    if (put.codes_[i] != 0) {
      results[i] = PutCodeToStatus(put.codes_[i]);
    } else {
      results[i] = PutCodeToStatus(committed.codes(got == n ? i : j++));
    }
  }
  return absl::OkStatus();
}

absl::Status Session::PutArena(proto::PutRequest& request, size_t n, SlotWriter write,
                               std::span<absl::Status> results) {
  ReservedPut put;
  if (auto s = ReserveArena(request, &put); !s.ok()) return s;
  // A writer that fails gives the lease back.
  absl::StatusOr<bool> in_time = write(put.slots_, put.write_deadline_);
  if (!in_time.ok()) {
    if (auto s = AbortPut(put); !s.ok()) return s;
    return in_time.status();
  }
  return FinishArenaPut(put, *in_time, results.first(n));
}

absl::StatusOr<ReservedPut> Session::ReservePut(const NamespaceHandle& ns,
                                                std::span<const BlockKey> keys,
                                                std::span<const uint64_t> lengths,
                                                const PutOptions& options) {
  if (!arena_) {
    return absl::FailedPreconditionError(
        "ReservePut needs the shared arena (a Unix-socket connection with use_shared_arena); "
        "use Put");
  }
  if (keys.size() != lengths.size() || keys.size() > BatchSize(0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("ReservePut got ", keys.size(), " keys and ", lengths.size(),
                     " lengths; pass one length per key, and at most ", BatchSize(0),
                     " keys (the daemon's "
                     "max_keys_per_request)"));
  }
  if (absl::Status s = CheckPut(ns, lengths, options.codecs, options.raw_lengths); !s.ok()) {
    return s;
  }
  auto id = NamespaceId(ns);
  if (!id.ok()) return id.status();
  proto::PutRequest request = PutRequestFor(*id, keys, lengths, options.codecs, options.raw_lengths,
                                            options.ttl_seconds, 0, keys.size());
  ReservedPut put;
  if (auto s = ReserveArena(request, &put); !s.ok()) return s;
  return put;
}

absl::StatusOr<std::vector<absl::Status>> Session::CommitPut(ReservedPut& put) {
  if (!put.open_.value) {
    return absl::FailedPreconditionError(
        "CommitPut of a put that was not reserved, or was committed or aborted already");
  }
  std::vector<absl::Status> results(put.codes_.size());
  const bool in_time = std::chrono::steady_clock::now() <= put.write_deadline_;
  if (auto s = FinishArenaPut(put, in_time, std::span(results)); !s.ok()) return s;
  return results;
}

absl::Status Session::AbortPut(ReservedPut& put) {
  if (!std::exchange(put.open_.value, false)) {
    return absl::FailedPreconditionError(
        "the put was not reserved, or was committed or aborted already");
  }
  if (put.lease_id_ == 0) return absl::OkStatus();
  bool expired = false;
  return ReleaseLease(put.lease_id_, &expired);
}

}  // namespace kvtier::client
