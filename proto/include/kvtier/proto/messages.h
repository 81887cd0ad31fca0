// Message bodies: the generated protobuf classes plus parsing and semantic checks.
//
// Parse*() turn untrusted bytes into a message and check everything the schema cannot say:
// packed keys are a whole number of 32-byte keys, key counts and string sizes are within
// Limits, per-key arrays have one entry per key, inline payload sizes add up to the frame's
// payload_len. On failure they return kInvalidArgument (or kResourceExhausted for a limit)
// with a message a client author can act on. Thread-safe.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kvtier.pb.h"
#include "kvtier/common/namespace_descriptor.h"
#include "kvtier/proto/frame.h"

namespace kvtier::proto {

// Serializes `msg` for a frame body; kInvalidArgument if it is larger than max_body_bytes.
absl::StatusOr<std::string> SerializeBody(const google::protobuf::MessageLite& msg,
                                          const Limits& limits);

// "hbm", "dram", "nvme", or "none": a tier's name in kvtierctl's output and metrics labels.
std::string TierName(Tier tier);

// The daemon's duration histogram of requests of kind `op` ("get", "lookup", ...; OpcodeName),
// or null when it served none.
const RequestLatency* FindRequestLatency(const StatsReply& stats, std::string_view op);

// Protobuf-level parse only (no semantic checks); kInvalidArgument on malformed bytes.
absl::Status ParseBody(std::string_view body, google::protobuf::MessageLite* msg);

// Parse + semantic checks for each request the daemon accepts. `payload_len` is the frame's.
// On error `*msg` may be partly filled and must not be used. The rules, beyond ParseBody:
// - every request except put: payload_len == 0.
// - hello: protocol_version == kProtocolVersion (else kFailedPrecondition); auth_token and
//   client_name <= max_string_bytes.
// - open_namespace: namespace_descriptor present and ValidateDescriptor() accepts it.
// - lookup, put, get, remove: keys.size() a multiple of 32, 1..max_keys_per_request keys (more
//   is kResourceExhausted).
// - put: one length per key, each >= 1 (the namespace's block_bytes bound is the daemon's to
//   check, per block); mode a known DataMode; DATA_INLINE: sum(lengths) == payload_len;
//   DATA_SHARED_ARENA: payload_len == 0.
// - get: mode a known DataMode.
// - put_commit, release: lease_id != 0 (the daemon never issues lease 0).
// Limits (string sizes, key counts) give kResourceExhausted; every other violation
// kInvalidArgument.
absl::Status ParseRequest(std::string_view body, uint64_t payload_len, const Limits& limits,
                          HelloRequest* msg);
absl::Status ParseRequest(std::string_view body, uint64_t payload_len, const Limits& limits,
                          OpenNamespaceRequest* msg);
absl::Status ParseRequest(std::string_view body, uint64_t payload_len, const Limits& limits,
                          LookupRequest* msg);
absl::Status ParseRequest(std::string_view body, uint64_t payload_len, const Limits& limits,
                          PutRequest* msg);
absl::Status ParseRequest(std::string_view body, uint64_t payload_len, const Limits& limits,
                          PutCommitRequest* msg);
absl::Status ParseRequest(std::string_view body, uint64_t payload_len, const Limits& limits,
                          GetRequest* msg);
absl::Status ParseRequest(std::string_view body, uint64_t payload_len, const Limits& limits,
                          ReleaseRequest* msg);
absl::Status ParseRequest(std::string_view body, uint64_t payload_len, const Limits& limits,
                          RemoveRequest* msg);
absl::Status ParseRequest(std::string_view body, uint64_t payload_len, const Limits& limits,
                          PrefetchRequest* msg);
absl::Status ParseRequest(std::string_view body, uint64_t payload_len, const Limits& limits,
                          PinRequest* msg);
absl::Status ParseRequest(std::string_view body, uint64_t payload_len, const Limits& limits,
                          SetLimitsRequest* msg);
absl::Status ParseRequest(std::string_view body, uint64_t payload_len, const Limits& limits,
                          StatsRequest* msg);
absl::Status ParseRequest(std::string_view body, uint64_t payload_len, const Limits& limits,
                          HealthRequest* msg);
absl::Status ParseRequest(std::string_view body, uint64_t payload_len, const Limits& limits,
                          AttachMailboxRequest* msg);

// Checks a namespace descriptor: non-empty model_id and dtype, block_tokens >= 1,
// block_bytes >= 1, tp/pp rank < size (size 0 is read as 1), strings within limits
// (model_id, dtype, kv_layout <= max_string_bytes; tenant_salt <= max_tenant_salt_bytes;
// kResourceExhausted when over). Other violations: kInvalidArgument.
absl::Status ValidateDescriptor(const NamespaceDescriptor& d, const Limits& limits);

// Converts between the wire descriptor and kvtier's value type. No checks: call
// ValidateDescriptor on untrusted input first. ToDescriptor reads tp_size/pp_size 0 (a field
// the peer left unset) as 1.
kvtier::NamespaceDescriptor ToDescriptor(const NamespaceDescriptor& d);
NamespaceDescriptor ToProto(const kvtier::NamespaceDescriptor& d);

// Converts an error reply body to a Status (code clamped to a known absl::StatusCode): a code
// outside absl's range, or OK (an error reply that claims success), becomes kUnknown.
absl::Status StatusFromErrorReply(const ErrorReply& e);

// The body of an error reply for `s`. The message is cut to kMaxErrorMessageBytes and any
// byte sequence that is not UTF-8 is replaced by '?', because the field is a proto3 string that
// the peer's parser rejects unless it is valid UTF-8. An OK `s` (a caller bug) becomes
// kInternal rather than a reply that claims success.
inline constexpr size_t kMaxErrorMessageBytes = 4096;
ErrorReply ErrorReplyFromStatus(const absl::Status& s);

}  // namespace kvtier::proto
