// libFuzzer target for everything the daemon runs on bytes a peer sends before it trusts them:
// DecodeFrameHeader, then ParseRequest for the decoded opcode on the bytes that follow, then
// every ParseRequest overload on the raw input. Besides "no crash, no sanitizer report", it
// checks properties that must hold for any input:
// - a header that decodes re-encodes to the same 32 bytes;
// - a request that passes ParseRequest passes again after a serialize/parse round trip (the
//   checks depend on field values only, not on how the peer happened to encode them);
// - an error reply built from any status message parses on the other side and maps back to a
//   non-OK status (ErrorReplyFromStatus must always produce valid UTF-8).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "google/protobuf/stubs/logging.h"
#include "kvtier/proto/frame.h"
#include "kvtier/proto/messages.h"

namespace {

using namespace kvtier::proto;  // NOLINT: a fuzz harness names every message type

#define FUZZ_CHECK(cond)                                                            \
  do {                                                                              \
    if (!(cond)) {                                                                  \
      std::fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                 \
    }                                                                               \
  } while (0)

template <typename Msg>
void ParseAndRecheck(std::string_view body, uint64_t payload_len, const Limits& limits) {
  Msg msg;
  const absl::Status s = ParseRequest(body, payload_len, limits, &msg);
  if (!s.ok()) {
    FUZZ_CHECK(!s.message().empty());
    return;
  }
  // Re-encode without the body limit: canonical encoding can differ in size from the peer's.
  Limits unbounded = limits;
  unbounded.max_body_bytes = UINT32_MAX;
  const absl::StatusOr<std::string> again = SerializeBody(msg, unbounded);
  FUZZ_CHECK(again.ok());
  Msg msg2;
  FUZZ_CHECK(ParseRequest(*again, payload_len, limits, &msg2).ok());
}

void ParseAs(Opcode op, std::string_view body, uint64_t payload_len, const Limits& limits) {
  switch (op) {
    case Opcode::kHello:
      return ParseAndRecheck<HelloRequest>(body, payload_len, limits);
    case Opcode::kOpenNamespace:
      return ParseAndRecheck<OpenNamespaceRequest>(body, payload_len, limits);
    case Opcode::kLookup:
      return ParseAndRecheck<LookupRequest>(body, payload_len, limits);
    case Opcode::kPut:
      return ParseAndRecheck<PutRequest>(body, payload_len, limits);
    case Opcode::kPutCommit:
      return ParseAndRecheck<PutCommitRequest>(body, payload_len, limits);
    case Opcode::kGet:
      return ParseAndRecheck<GetRequest>(body, payload_len, limits);
    case Opcode::kRelease:
      return ParseAndRecheck<ReleaseRequest>(body, payload_len, limits);
    case Opcode::kRemove:
      return ParseAndRecheck<RemoveRequest>(body, payload_len, limits);
    case Opcode::kStats:
      return ParseAndRecheck<StatsRequest>(body, payload_len, limits);
    case Opcode::kHealth:
      return ParseAndRecheck<HealthRequest>(body, payload_len, limits);
    case Opcode::kPrefetch:
      return ParseAndRecheck<PrefetchRequest>(body, payload_len, limits);
    case Opcode::kPin:
      return ParseAndRecheck<PinRequest>(body, payload_len, limits);
    case Opcode::kSetLimits:
      return ParseAndRecheck<SetLimitsRequest>(body, payload_len, limits);
    case Opcode::kAttachMailbox:
      return ParseAndRecheck<AttachMailboxRequest>(body, payload_len, limits);
    case Opcode::kMailboxDoorbell:
      return;  // no body to parse: the daemon reads and ignores it
  }
}

void CheckErrorReply(const absl::Status& s) {
  const ErrorReply e = ErrorReplyFromStatus(s);
  FUZZ_CHECK(e.message().size() <= kMaxErrorMessageBytes);
  ErrorReply parsed;
  FUZZ_CHECK(ParseBody(e.SerializeAsString(), &parsed).ok());
  FUZZ_CHECK(!StatusFromErrorReply(parsed).ok());
}

uint64_t LoadLE64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= uint64_t{p[i]} << (8 * i);
  return v;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // Bodies with invalid UTF-8 strings make protobuf log one line each; that is the expected
  // outcome here and would drown libFuzzer's own output.
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  // The daemon's defaults, and tight limits so that the limit paths are reached with inputs
  // the fuzzer can build.
  Limits tight;
  tight.max_body_bytes = 256;
  tight.max_payload_bytes = 4096;
  tight.max_keys_per_request = 3;
  tight.max_string_bytes = 8;
  tight.max_tenant_salt_bytes = 4;
  for (const Limits& limits : {Limits(), tight}) {
    uint64_t payload_len = 0;
    if (size >= kFrameHeaderSize) {
      std::span<const std::byte, kFrameHeaderSize> head(reinterpret_cast<const std::byte*>(data),
                                                        kFrameHeaderSize);
      const absl::StatusOr<FrameHeader> h = DecodeFrameHeader(head, limits);
      if (h.ok()) {
        std::byte again[kFrameHeaderSize];
        EncodeFrameHeader(*h, again);
        FUZZ_CHECK(std::memcmp(again, data, kFrameHeaderSize) == 0);
        FUZZ_CHECK(OpcodeName(h->opcode) != "unknown");
        const std::string_view rest = input.substr(kFrameHeaderSize);
        ParseAs(h->opcode, rest.substr(0, h->body_len), h->payload_len, limits);
        payload_len = h->payload_len;
      } else {
        CheckErrorReply(h.status());
      }
    }
    // Every parser on the raw input, with no payload and with a payload length the fuzzer
    // controls (the last 8 bytes), so inline puts whose lengths add up are reachable.
    const uint64_t tail_len = size >= 8 ? LoadLE64(data + size - 8) : 0;
    for (uint16_t op = 1; op <= kMaxOpcode; ++op) {
      for (uint64_t p : {uint64_t{0}, payload_len, tail_len}) {
        ParseAs(static_cast<Opcode>(op), input, p, limits);
      }
    }
  }
  CheckErrorReply(absl::InvalidArgumentError(std::string(input)));
  return 0;
}
