// Frame header codec. Every field is read and written byte by byte in little-endian order so
// the encoding is the same on every host and no unaligned or type-punned access is ever made
// on bytes a peer controls.
#include "kvtier/proto/frame.h"

#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "kvtier/common/strings.h"

namespace kvtier::proto {
namespace {

// Field offsets; the table in frame.h is the contract.
constexpr size_t kMagicOffset = 0;
constexpr size_t kVersionOffset = 4;
constexpr size_t kOpcodeOffset = 6;
constexpr size_t kFlagsOffset = 8;
constexpr size_t kBodyLenOffset = 12;
constexpr size_t kRequestIdOffset = 16;
constexpr size_t kPayloadLenOffset = 24;
static_assert(kPayloadLenOffset + sizeof(uint64_t) == kFrameHeaderSize);

template <typename T>
void StoreLE(std::byte* out, T v) {
  for (size_t i = 0; i < sizeof(T); ++i) {
    out[i] = static_cast<std::byte>(static_cast<uint8_t>(v >> (8 * i)));
  }
}

template <typename T>
T LoadLE(const std::byte* in) {
  T v = 0;
  for (size_t i = 0; i < sizeof(T); ++i) {
    v |= static_cast<T>(static_cast<T>(std::to_integer<uint8_t>(in[i])) << (8 * i));
  }
  return v;
}

}  // namespace

std::string_view OpcodeName(Opcode op) {
  switch (op) {
    case Opcode::kHello:
      return "hello";
    case Opcode::kOpenNamespace:
      return "open_namespace";
    case Opcode::kLookup:
      return "lookup";
    case Opcode::kPut:
      return "put";
    case Opcode::kPutCommit:
      return "put_commit";
    case Opcode::kGet:
      return "get";
    case Opcode::kRelease:
      return "release";
    case Opcode::kRemove:
      return "remove";
    case Opcode::kStats:
      return "stats";
    case Opcode::kHealth:
      return "health";
    case Opcode::kPrefetch:
      return "prefetch";
    case Opcode::kPin:
      return "pin";
    case Opcode::kSetLimits:
      return "set_limits";
    case Opcode::kAttachMailbox:
      return "attach_mailbox";
    case Opcode::kMailboxDoorbell:
      return "mailbox_doorbell";
  }
  return "unknown";
}

void EncodeFrameHeader(const FrameHeader& h, std::span<std::byte, kFrameHeaderSize> out) {
  std::byte* p = out.data();
  StoreLE<uint32_t>(p + kMagicOffset, kMagic);
  StoreLE<uint16_t>(p + kVersionOffset, h.version);
  StoreLE<uint16_t>(p + kOpcodeOffset, static_cast<uint16_t>(h.opcode));
  StoreLE<uint32_t>(p + kFlagsOffset, h.flags);
  StoreLE<uint32_t>(p + kBodyLenOffset, h.body_len);
  StoreLE<uint64_t>(p + kRequestIdOffset, h.request_id);
  StoreLE<uint64_t>(p + kPayloadLenOffset, h.payload_len);
}

absl::StatusOr<FrameHeader> DecodeFrameHeader(std::span<const std::byte, kFrameHeaderSize> in,
                                              const Limits& limits) {
  const std::byte* p = in.data();
  const uint32_t magic = LoadLE<uint32_t>(p + kMagicOffset);
  if (magic != kMagic) {
    return absl::InvalidArgumentError(absl::StrCat(
        "not a kvtier frame: magic is 0x", absl::Hex(magic, absl::kZeroPad8), " where \"KVTR\" (0x",
        absl::Hex(kMagic, absl::kZeroPad8),
        " little-endian) was expected; check that the peer speaks the kvtier protocol"));
  }
  FrameHeader h;
  h.version = LoadLE<uint16_t>(p + kVersionOffset);
  // The version is checked before anything else so that a newer peer gets told about the
  // version mismatch rather than about an opcode or flag it is entitled to use.
  if (h.version != kProtocolVersion) {
    return absl::FailedPreconditionError(
        absl::StrCat("peer speaks kvtier protocol version ", h.version, ", this side speaks ",
                     kProtocolVersion, "; upgrade the older side"));
  }
  const uint16_t opcode = LoadLE<uint16_t>(p + kOpcodeOffset);
  if (opcode == 0 || opcode > kMaxOpcode) {
    return absl::UnimplementedError(absl::StrCat("unknown opcode ", opcode, "; protocol version ",
                                                 kProtocolVersion, " defines opcodes 1..",
                                                 kMaxOpcode));
  }
  h.opcode = static_cast<Opcode>(opcode);
  h.flags = LoadLE<uint32_t>(p + kFlagsOffset);
  if ((h.flags & ~static_cast<uint32_t>(kKnownFlags)) != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "unknown frame flag bits 0x", absl::Hex(h.flags & ~static_cast<uint32_t>(kKnownFlags)),
        " in flags 0x", absl::Hex(h.flags), "; protocol version ", kProtocolVersion,
        " defines only 0x", absl::Hex(static_cast<uint32_t>(kKnownFlags))));
  }
  // An error body is only ever a reply; a request carrying kFlagError would be read as an
  // ErrorReply by nobody, so it is a peer bug worth reporting early.
  if ((h.flags & kFlagError) != 0 && (h.flags & kFlagReply) == 0) {
    return absl::InvalidArgumentError(
        "frame has the error flag (0x2) without the reply flag (0x1); only replies carry "
        "errors");
  }
  h.body_len = LoadLE<uint32_t>(p + kBodyLenOffset);
  if (h.body_len > limits.max_body_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "frame body of ", h.body_len, " bytes exceeds max_body_bytes=", limits.max_body_bytes,
        "; split the request (", AbslView(OpcodeName(h.opcode)), ")"));
  }
  h.request_id = LoadLE<uint64_t>(p + kRequestIdOffset);
  h.payload_len = LoadLE<uint64_t>(p + kPayloadLenOffset);
  if (h.payload_len > limits.max_payload_bytes) {
    return absl::ResourceExhaustedError(
        absl::StrCat("frame payload of ", h.payload_len,
                     " bytes exceeds max_payload_bytes=", limits.max_payload_bytes, "; split the ",
                     AbslView(OpcodeName(h.opcode)), " into requests with fewer blocks"));
  }
  return h;
}

}  // namespace kvtier::proto
