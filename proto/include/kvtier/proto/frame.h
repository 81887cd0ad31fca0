// The kvtier frame: a fixed 32-byte header, a protobuf body, raw payload bytes.
//
//   offset size  field        notes (all integers little-endian)
//   0      4     magic        "KVTR" (0x4B 0x56 0x54 0x52)
//   4      2     version      kProtocolVersion; another value gets kFailedPrecondition
//   6      2     opcode       Opcode below; unknown values get kUnimplemented
//   8      4     flags        FrameFlags below; unknown bits get kInvalidArgument
//   12     4     body_len     <= Limits::max_body_bytes
//   16     8     request_id   chosen by the client, echoed in the reply
//   24     8     payload_len  <= Limits::max_payload_bytes
//
// The header is decoded and checked before anything is allocated for body or payload, so a
// peer cannot make the daemon allocate more than the limits allow. Pure functions; thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "absl/status/statusor.h"

namespace kvtier::proto {

inline constexpr uint32_t kMagic = 0x5254564B;  // "KVTR" read as little-endian uint32
inline constexpr uint16_t kProtocolVersion = 1;
inline constexpr size_t kFrameHeaderSize = 32;

enum class Opcode : uint16_t {
  kHello = 1,
  kOpenNamespace = 2,
  kLookup = 3,
  kPut = 4,
  kPutCommit = 5,
  kGet = 6,
  kRelease = 7,
  kRemove = 8,
  kStats = 9,
  kHealth = 10,
  kPrefetch = 11,
  kPin = 12,
  kSetLimits = 13,
  // Unix socket only (protocol.md 7.4): maps a request mailbox, then rings its doorbell.
  kAttachMailbox = 14,
  kMailboxDoorbell = 15,  // no reply: tells the daemon a mailbox request is waiting
};
inline constexpr uint16_t kMaxOpcode = 15;

// Returns "hello", "lookup", ... or "unknown".
std::string_view OpcodeName(Opcode op);

enum FrameFlags : uint32_t {
  kFlagReply = 1u << 0,       // sent by the daemon in answer to request_id
  kFlagError = 1u << 1,       // reply whose body is ErrorReply
  kFlagFdAttached = 1u << 2,  // an fd arrives by SCM_RIGHTS with the frame's first byte
  kKnownFlags = kFlagReply | kFlagError | kFlagFdAttached,
};

// Hard limits on everything a peer controls. The daemon sets them from its config and tells
// clients at hello; defaults are safe for production.
struct Limits {
  uint32_t max_body_bytes = 1u << 20;       // 1 MiB: 8192 packed keys need 256 KiB
  uint64_t max_payload_bytes = 1ull << 30;  // 1 GiB per frame
  uint32_t max_keys_per_request = 8192;
  uint32_t max_string_bytes = 256;  // model ids, dtypes, layouts, names, tokens
  uint32_t max_tenant_salt_bytes = 64;
};

struct FrameHeader {
  uint16_t version = kProtocolVersion;
  Opcode opcode = Opcode::kHealth;
  uint32_t flags = 0;
  uint32_t body_len = 0;
  uint64_t request_id = 0;
  uint64_t payload_len = 0;
};

// Writes the 32-byte encoding of `h` to `out`.
void EncodeFrameHeader(const FrameHeader& h, std::span<std::byte, kFrameHeaderSize> out);

// Decodes and checks a header: magic (kInvalidArgument: "not a kvtier frame"), version
// (kFailedPrecondition naming both versions), opcode (kUnimplemented), flags, and both lengths
// against `limits` (kResourceExhausted naming the limit). Never allocates.
absl::StatusOr<FrameHeader> DecodeFrameHeader(std::span<const std::byte, kFrameHeaderSize> in,
                                              const Limits& limits);

}  // namespace kvtier::proto
