// Parsing and semantic checks for message bodies. Everything here runs on bytes an untrusted
// peer sent, so each check happens before any size taken from the message is used, and sums
// of peer-supplied sizes are computed so that they cannot wrap.
#include "kvtier/proto/messages.h"

#include <climits>
#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "kvtier/common/block_key.h"
#include "kvtier/common/status_macros.h"
#include "kvtier/common/strings.h"

namespace kvtier::proto {
namespace {

// Requests whose data is not in the frame must not carry a payload: the daemon would
// otherwise have to read and discard bytes it never asked for, and a client that sends them
// has a framing bug that is better reported at once.
absl::Status CheckNoPayload(std::string_view op, uint64_t payload_len) {
  if (payload_len != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        AbslView(op), " carries no payload, but the frame has payload_len=", payload_len,
        "; set payload_len to 0"));
  }
  return absl::OkStatus();
}

absl::Status CheckString(std::string_view op, std::string_view field, size_t size, uint32_t limit) {
  if (size > limit) {
    return absl::ResourceExhaustedError(absl::StrCat(AbslView(op), ".", AbslView(field), " is ",
                                                     size, " bytes, over the limit of ", limit));
  }
  return absl::OkStatus();
}

// Returns the number of keys in a packed key field after checking its shape and count.
absl::StatusOr<size_t> CheckKeys(std::string_view op, const std::string& keys,
                                 const Limits& limits) {
  if (keys.size() % BlockKey::kSize != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(AbslView(op), ".keys is ", keys.size(), " bytes, not a multiple of ",
                     BlockKey::kSize, "; keys travel packed, ", BlockKey::kSize, " bytes each"));
  }
  const size_t n = keys.size() / BlockKey::kSize;
  if (n == 0) {
    return absl::InvalidArgumentError(absl::StrCat(AbslView(op), " needs at least one key"));
  }
  if (n > limits.max_keys_per_request) {
    return absl::ResourceExhaustedError(absl::StrCat(
        AbslView(op), " has ", n, " keys, over max_keys_per_request=", limits.max_keys_per_request,
        "; split it into several requests"));
  }
  return n;
}

absl::Status CheckMode(std::string_view op, int mode) {
  if (!DataMode_IsValid(mode)) {
    return absl::InvalidArgumentError(absl::StrCat(AbslView(op), ".mode ", mode,
                                                   " is not a known DataMode (0 = DATA_INLINE, ",
                                                   "1 = DATA_SHARED_ARENA)"));
  }
  return absl::OkStatus();
}

// Lease ids start at 1 so that 0, the proto3 default, can mean "no lease" in replies.
absl::Status CheckLeaseId(std::string_view op, uint64_t lease_id) {
  if (lease_id == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(AbslView(op),
                     ".lease_id is 0, which the daemon never issues; pass the lease_id from "
                     "the put or get reply"));
  }
  return absl::OkStatus();
}

// Keeps the longest prefix of `s` (at most `max` bytes) made of whole, valid UTF-8 sequences,
// with every invalid byte replaced by '?'.
std::string SanitizeUtf8(std::string_view s, size_t max) {
  std::string out;
  out.reserve(s.size() < max ? s.size() : max);
  size_t i = 0;
  while (i < s.size()) {
    const auto b0 = static_cast<unsigned char>(s[i]);
    size_t len = 0;
    uint32_t cp = 0;
    if (b0 < 0x80) {
      len = 1;
      cp = b0;
    } else if ((b0 & 0xE0) == 0xC0) {
      len = 2;
      cp = b0 & 0x1F;
    } else if ((b0 & 0xF0) == 0xE0) {
      len = 3;
      cp = b0 & 0x0F;
    } else if ((b0 & 0xF8) == 0xF0) {
      len = 4;
      cp = b0 & 0x07;
    }
    bool valid = len != 0 && i + len <= s.size();
    for (size_t k = 1; valid && k < len; ++k) {
      const auto b = static_cast<unsigned char>(s[i + k]);
      valid = (b & 0xC0) == 0x80;
      cp = (cp << 6) | (b & 0x3F);
    }
    // Overlong forms, surrogates and code points past U+10FFFF are invalid UTF-8 too.
    if (valid) {
      static constexpr uint32_t kMinForLen[] = {0, 0, 0x80, 0x800, 0x10000};
      valid = cp >= kMinForLen[len] && cp <= 0x10FFFF && !(cp >= 0xD800 && cp <= 0xDFFF);
    }
    const size_t emit = valid ? len : 1;
    if (out.size() + emit > max) break;
    if (valid) {
      out.append(s.substr(i, len));
    } else {
      out.push_back('?');
    }
    i += emit;
  }
  return out;
}

}  // namespace

std::string TierName(Tier tier) {
  switch (tier) {
    case TIER_HBM:
      return "hbm";
    case TIER_DRAM:
      return "dram";
    case TIER_NVME:
      return "nvme";
    default:
      return "none";
  }
}

const RequestLatency* FindRequestLatency(const StatsReply& stats, std::string_view op) {
  for (const RequestLatency& l : stats.server().request_latency()) {
    if (l.op() == op) return &l;
  }
  return nullptr;
}

absl::StatusOr<std::string> SerializeBody(const google::protobuf::MessageLite& msg,
                                          const Limits& limits) {
  const size_t size = msg.ByteSizeLong();
  if (size > limits.max_body_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(msg.GetTypeName(), " body would be ", size,
                     " bytes, over max_body_bytes=", limits.max_body_bytes, "; split the request"));
  }
  std::string out;
  if (!msg.SerializeToString(&out)) {
    return absl::InternalError(absl::StrCat("could not serialize ", msg.GetTypeName()));
  }
  return out;
}

absl::Status ParseBody(std::string_view body, google::protobuf::MessageLite* msg) {
  // ParseFromArray takes an int size; frame bodies are capped far below this, but the function
  // is public, so it must not truncate a larger view silently.
  if (body.size() > static_cast<size_t>(INT_MAX)) {
    return absl::InvalidArgumentError(
        absl::StrCat(msg->GetTypeName(), " body of ", body.size(), " bytes is too large to parse"));
  }
  if (body.empty()) {
    msg->Clear();  // proto3: the empty encoding is the all-defaults message
    return absl::OkStatus();
  }
  if (!msg->ParseFromArray(body.data(), static_cast<int>(body.size()))) {
    return absl::InvalidArgumentError(absl::StrCat(
        "malformed ", msg->GetTypeName(), " body (", body.size(),
        " bytes): not a valid protobuf encoding of that message, or a string field is not "
        "UTF-8"));
  }
  return absl::OkStatus();
}

absl::Status ParseRequest(std::string_view body, uint64_t payload_len, const Limits& limits,
                          HelloRequest* msg) {
  KVTIER_RETURN_IF_ERROR(ParseBody(body, msg));
  KVTIER_RETURN_IF_ERROR(CheckNoPayload("hello", payload_len));
  if (msg->protocol_version() != kProtocolVersion) {
    return absl::FailedPreconditionError(
        absl::StrCat("hello.protocol_version is ", msg->protocol_version(), ", this side speaks ",
                     kProtocolVersion, "; set it to the version in the frame header"));
  }
  KVTIER_RETURN_IF_ERROR(
      CheckString("hello", "auth_token", msg->auth_token().size(), limits.max_string_bytes));
  KVTIER_RETURN_IF_ERROR(
      CheckString("hello", "client_name", msg->client_name().size(), limits.max_string_bytes));
  return absl::OkStatus();
}

absl::Status ParseRequest(std::string_view body, uint64_t payload_len, const Limits& limits,
                          OpenNamespaceRequest* msg) {
  KVTIER_RETURN_IF_ERROR(ParseBody(body, msg));
  KVTIER_RETURN_IF_ERROR(CheckNoPayload("open_namespace", payload_len));
  if (!msg->has_namespace_descriptor()) {
    return absl::InvalidArgumentError("open_namespace needs a namespace_descriptor");
  }
  if (!Compression_IsValid(msg->options().compression())) {
    return absl::InvalidArgumentError(
        absl::StrCat("open_namespace.options.compression is ", msg->options().compression(),
                     "; use COMPRESSION_NONE (0) or COMPRESSION_KVZ (1)"));
  }
  return ValidateDescriptor(msg->namespace_descriptor(), limits);
}

absl::Status ParseRequest(std::string_view body, uint64_t payload_len, const Limits& limits,
                          LookupRequest* msg) {
  KVTIER_RETURN_IF_ERROR(ParseBody(body, msg));
  KVTIER_RETURN_IF_ERROR(CheckNoPayload("lookup", payload_len));
  return CheckKeys("lookup", msg->keys(), limits).status();
}

namespace {

// A put's codecs and raw_lengths: both empty, or one of each per key, with raw lengths that fit
// their codec. Whether a codec is known, and allowed in the namespace, the daemon checks.
absl::Status CheckEncodings(const PutRequest& msg, size_t n) {
  if (msg.codecs().empty() && msg.raw_lengths_size() == 0) return absl::OkStatus();
  if (msg.codecs().size() != n || static_cast<size_t>(msg.raw_lengths_size()) != n) {
    return absl::InvalidArgumentError(
        absl::StrCat("put has ", n, " keys but ", msg.codecs().size(), " codecs and ",
                     msg.raw_lengths_size(), " raw_lengths; send one of each per key, or none"));
  }
  for (size_t i = 0; i < n; ++i) {
    const uint64_t raw = msg.raw_lengths(static_cast<int>(i));
    const uint64_t len = msg.lengths(static_cast<int>(i));
    const bool stored = msg.codecs()[i] == 0;
    if (stored ? raw != 0 && raw != len : raw < len) {
      return absl::InvalidArgumentError(absl::StrCat(
          "put.raw_lengths[", i, "] is ", raw, " for a block of ", len, " bytes with codec ",
          static_cast<int>(static_cast<uint8_t>(msg.codecs()[i])),
          "; a stored block has 0 or its length, an encoded one at least its length"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ParseRequest(std::string_view body, uint64_t payload_len, const Limits& limits,
                          PutRequest* msg) {
  KVTIER_RETURN_IF_ERROR(ParseBody(body, msg));
  KVTIER_ASSIGN_OR_RETURN(const size_t n, CheckKeys("put", msg->keys(), limits));
  if (static_cast<size_t>(msg->lengths_size()) != n) {
    return absl::InvalidArgumentError(absl::StrCat("put has ", n, " keys but ", msg->lengths_size(),
                                                   " lengths; send one length per key"));
  }
  KVTIER_RETURN_IF_ERROR(CheckMode("put", msg->mode()));
  for (int i = 0; i < msg->lengths_size(); ++i) {
    if (msg->lengths(i) == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("put.lengths[", i, "] is 0; a block has at least one byte"));
    }
  }
  KVTIER_RETURN_IF_ERROR(CheckEncodings(*msg, n));
  if (msg->mode() == DATA_SHARED_ARENA) {
    if (payload_len != 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "put in DATA_SHARED_ARENA mode carries its blocks through the arena, but the frame "
          "has payload_len=",
          payload_len, "; set payload_len to 0"));
    }
    return absl::OkStatus();
  }
  // DATA_INLINE: the payload is the blocks back to back. `sum <= payload_len` holds before
  // each step, so `payload_len - sum` cannot wrap and neither can the sum.
  uint64_t sum = 0;
  for (int i = 0; i < msg->lengths_size(); ++i) {
    const uint64_t len = msg->lengths(i);
    if (len > payload_len - sum) {
      return absl::InvalidArgumentError(absl::StrCat(
          "put.lengths up to index ", i, " add up to more than the frame's payload_len=",
          payload_len, "; in DATA_INLINE mode payload_len must equal the sum of lengths"));
    }
    sum += len;
  }
  if (sum != payload_len) {
    return absl::InvalidArgumentError(absl::StrCat(
        "put.lengths add up to ", sum, " bytes but the frame has payload_len=", payload_len,
        "; in DATA_INLINE mode they must be equal"));
  }
  return absl::OkStatus();
}

absl::Status ParseRequest(std::string_view body, uint64_t payload_len, const Limits& limits,
                          PutCommitRequest* msg) {
  KVTIER_RETURN_IF_ERROR(ParseBody(body, msg));
  KVTIER_RETURN_IF_ERROR(CheckNoPayload("put_commit", payload_len));
  return CheckLeaseId("put_commit", msg->lease_id());
}

absl::Status ParseRequest(std::string_view body, uint64_t payload_len, const Limits& limits,
                          GetRequest* msg) {
  KVTIER_RETURN_IF_ERROR(ParseBody(body, msg));
  KVTIER_RETURN_IF_ERROR(CheckNoPayload("get", payload_len));
  KVTIER_RETURN_IF_ERROR(CheckKeys("get", msg->keys(), limits).status());
  return CheckMode("get", msg->mode());
}

absl::Status ParseRequest(std::string_view body, uint64_t payload_len, const Limits& limits,
                          ReleaseRequest* msg) {
  KVTIER_RETURN_IF_ERROR(ParseBody(body, msg));
  KVTIER_RETURN_IF_ERROR(CheckNoPayload("release", payload_len));
  return CheckLeaseId("release", msg->lease_id());
}

absl::Status ParseRequest(std::string_view body, uint64_t payload_len, const Limits& limits,
                          RemoveRequest* msg) {
  KVTIER_RETURN_IF_ERROR(ParseBody(body, msg));
  KVTIER_RETURN_IF_ERROR(CheckNoPayload("remove", payload_len));
  return CheckKeys("remove", msg->keys(), limits).status();
}

absl::Status ParseRequest(std::string_view body, uint64_t payload_len, const Limits& limits,
                          PrefetchRequest* msg) {
  KVTIER_RETURN_IF_ERROR(ParseBody(body, msg));
  KVTIER_RETURN_IF_ERROR(CheckNoPayload("prefetch", payload_len));
  return CheckKeys("prefetch", msg->keys(), limits).status();
}

absl::Status ParseRequest(std::string_view body, uint64_t payload_len, const Limits& limits,
                          PinRequest* msg) {
  KVTIER_RETURN_IF_ERROR(ParseBody(body, msg));
  KVTIER_RETURN_IF_ERROR(CheckNoPayload("pin", payload_len));
  return CheckKeys("pin", msg->keys(), limits).status();
}

absl::Status ParseRequest(std::string_view body, uint64_t payload_len, const Limits& limits,
                          SetLimitsRequest* msg) {
  KVTIER_RETURN_IF_ERROR(ParseBody(body, msg));
  return CheckNoPayload("set_limits", payload_len);
}

absl::Status ParseRequest(std::string_view body, uint64_t payload_len, const Limits& limits,
                          StatsRequest* msg) {
  KVTIER_RETURN_IF_ERROR(ParseBody(body, msg));
  return CheckNoPayload("stats", payload_len);
}

absl::Status ParseRequest(std::string_view body, uint64_t payload_len, const Limits& limits,
                          HealthRequest* msg) {
  KVTIER_RETURN_IF_ERROR(ParseBody(body, msg));
  return CheckNoPayload("health", payload_len);
}

absl::Status ParseRequest(std::string_view body, uint64_t payload_len, const Limits&,
                          AttachMailboxRequest* msg) {
  KVTIER_RETURN_IF_ERROR(ParseBody(body, msg));
  return CheckNoPayload("attach_mailbox", payload_len);
}

absl::Status ValidateDescriptor(const NamespaceDescriptor& d, const Limits& limits) {
  constexpr std::string_view kOp = "descriptor";
  KVTIER_RETURN_IF_ERROR(
      CheckString(kOp, "model_id", d.model_id().size(), limits.max_string_bytes));
  KVTIER_RETURN_IF_ERROR(CheckString(kOp, "dtype", d.dtype().size(), limits.max_string_bytes));
  KVTIER_RETURN_IF_ERROR(
      CheckString(kOp, "kv_layout", d.kv_layout().size(), limits.max_string_bytes));
  KVTIER_RETURN_IF_ERROR(
      CheckString(kOp, "tenant_salt", d.tenant_salt().size(), limits.max_tenant_salt_bytes));
  if (d.model_id().empty()) {
    return absl::InvalidArgumentError("descriptor.model_id is empty; name the model");
  }
  if (d.dtype().empty()) {
    return absl::InvalidArgumentError(
        "descriptor.dtype is empty; name the KV dtype, e.g. \"bf16\"");
  }
  if (d.block_tokens() == 0) {
    return absl::InvalidArgumentError("descriptor.block_tokens is 0; a block has >= 1 token");
  }
  if (d.block_bytes() == 0) {
    return absl::InvalidArgumentError("descriptor.block_bytes is 0; a block has >= 1 byte");
  }
  const uint32_t tp_size = d.tp_size() == 0 ? 1 : d.tp_size();
  if (d.tp_rank() >= tp_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("descriptor.tp_rank ", d.tp_rank(), " is not below tp_size ", tp_size));
  }
  const uint32_t pp_size = d.pp_size() == 0 ? 1 : d.pp_size();
  if (d.pp_rank() >= pp_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("descriptor.pp_rank ", d.pp_rank(), " is not below pp_size ", pp_size));
  }
  return absl::OkStatus();
}

kvtier::NamespaceDescriptor ToDescriptor(const NamespaceDescriptor& d) {
  kvtier::NamespaceDescriptor out;
  out.model_id = d.model_id();
  out.dtype = d.dtype();
  out.kv_layout = d.kv_layout();
  out.block_tokens = d.block_tokens();
  out.tp_rank = d.tp_rank();
  out.tp_size = d.tp_size() == 0 ? 1 : d.tp_size();
  out.pp_rank = d.pp_rank();
  out.pp_size = d.pp_size() == 0 ? 1 : d.pp_size();
  out.tenant_salt = d.tenant_salt();
  out.block_bytes = d.block_bytes();
  return out;
}

NamespaceDescriptor ToProto(const kvtier::NamespaceDescriptor& d) {
  NamespaceDescriptor out;
  out.set_model_id(d.model_id);
  out.set_dtype(d.dtype);
  out.set_kv_layout(d.kv_layout);
  out.set_block_tokens(d.block_tokens);
  out.set_tp_rank(d.tp_rank);
  out.set_tp_size(d.tp_size);
  out.set_pp_rank(d.pp_rank);
  out.set_pp_size(d.pp_size);
  out.set_tenant_salt(d.tenant_salt);
  out.set_block_bytes(d.block_bytes);
  return out;
}

absl::Status StatusFromErrorReply(const ErrorReply& e) {
  const int code = e.code();
  if (code <= 0 || code > static_cast<int>(absl::StatusCode::kUnauthenticated)) {
    return absl::UnknownError(
        absl::StrCat("error reply with code ", code, " (not an error code): ", e.message()));
  }
  return absl::Status(static_cast<absl::StatusCode>(code), e.message());
}

ErrorReply ErrorReplyFromStatus(const absl::Status& s) {
  ErrorReply e;
  if (s.ok()) {
    e.set_code(static_cast<int32_t>(absl::StatusCode::kInternal));
    e.set_message("internal error: the daemon sent an error reply for an OK status");
    return e;
  }
  e.set_code(static_cast<int32_t>(s.code()));
  e.set_message(SanitizeUtf8(StdView(s.message()), kMaxErrorMessageBytes));
  return e;
}

}  // namespace kvtier::proto
