#include "kvtier/proto/frame.h"

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kvtier::proto {
namespace {

using ::testing::HasSubstr;

using HeaderBytes = std::array<std::byte, kFrameHeaderSize>;

HeaderBytes Encode(const FrameHeader& h) {
  HeaderBytes b;
  EncodeFrameHeader(h, b);
  return b;
}

absl::StatusOr<FrameHeader> Decode(const HeaderBytes& b, const Limits& limits = Limits()) {
  return DecodeFrameHeader(b, limits);
}

void Put16(HeaderBytes& b, size_t off, uint16_t v) {
  b[off] = std::byte(v & 0xFF);
  b[off + 1] = std::byte(v >> 8);
}
void Put32(HeaderBytes& b, size_t off, uint32_t v) {
  for (int i = 0; i < 4; ++i) b[off + i] = std::byte((v >> (8 * i)) & 0xFF);
}
void Put64(HeaderBytes& b, size_t off, uint64_t v) {
  for (int i = 0; i < 8; ++i) b[off + i] = std::byte((v >> (8 * i)) & 0xFF);
}

FrameHeader Sample() {
  FrameHeader h;
  h.opcode = Opcode::kPut;
  h.flags = kFlagReply | kFlagFdAttached;
  h.body_len = 0x00012345;
  h.request_id = 0x0102030405060708ull;
  h.payload_len = 0x0000000039ABCDEFull;
  return h;
}

TEST(FrameHeaderTest, RoundTripsEveryField) {
  const FrameHeader h = Sample();
  auto d = Decode(Encode(h));
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->version, kProtocolVersion);
  EXPECT_EQ(d->opcode, Opcode::kPut);
  EXPECT_EQ(d->flags, h.flags);
  EXPECT_EQ(d->body_len, h.body_len);
  EXPECT_EQ(d->request_id, h.request_id);
  EXPECT_EQ(d->payload_len, h.payload_len);
}

TEST(FrameHeaderTest, RoundTripsEveryOpcode) {
  for (uint16_t op = 1; op <= kMaxOpcode; ++op) {
    FrameHeader h;
    h.opcode = static_cast<Opcode>(op);
    auto d = Decode(Encode(h));
    ASSERT_TRUE(d.ok()) << op << ": " << d.status();
    EXPECT_EQ(static_cast<uint16_t>(d->opcode), op);
  }
}

TEST(FrameHeaderTest, RoundTripsExtremeValuesWithinLimits) {
  Limits limits;
  limits.max_body_bytes = UINT32_MAX;
  limits.max_payload_bytes = UINT64_MAX;
  FrameHeader h;
  h.opcode = Opcode::kHealth;
  h.flags = kKnownFlags;
  h.body_len = UINT32_MAX;
  h.request_id = UINT64_MAX;
  h.payload_len = UINT64_MAX;
  auto d = Decode(Encode(h), limits);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->body_len, UINT32_MAX);
  EXPECT_EQ(d->request_id, UINT64_MAX);
  EXPECT_EQ(d->payload_len, UINT64_MAX);
}

// The byte layout is the contract with clients in other languages: pin it exactly.
TEST(FrameHeaderTest, EncodingIsLittleEndianAtDocumentedOffsets) {
  const HeaderBytes b = Encode(Sample());
  const std::array<uint8_t, kFrameHeaderSize> want = {
      'K',  'V',  'T',  'R',                           // magic
      0x01, 0x00,                                      // version 1
      0x04, 0x00,                                      // opcode put
      0x05, 0x00, 0x00, 0x00,                          // flags reply|fd
      0x45, 0x23, 0x01, 0x00,                          // body_len
      0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01,  // request_id
      0xEF, 0xCD, 0xAB, 0x39, 0x00, 0x00, 0x00, 0x00,  // payload_len
  };
  for (size_t i = 0; i < kFrameHeaderSize; ++i) {
    EXPECT_EQ(std::to_integer<uint8_t>(b[i]), want[i]) << "byte " << i;
  }
}

TEST(FrameHeaderTest, DecodesHandBuiltBytes) {
  HeaderBytes b{};
  b[0] = std::byte{'K'};
  b[1] = std::byte{'V'};
  b[2] = std::byte{'T'};
  b[3] = std::byte{'R'};
  Put16(b, 4, 1);
  Put16(b, 6, static_cast<uint16_t>(Opcode::kLookup));
  Put32(b, 8, 0);
  Put32(b, 12, 64);
  Put64(b, 16, 77);
  Put64(b, 24, 0);
  auto d = Decode(b);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->opcode, Opcode::kLookup);
  EXPECT_EQ(d->body_len, 64u);
  EXPECT_EQ(d->request_id, 77u);
}

TEST(FrameHeaderTest, RejectsBadMagic) {
  HeaderBytes b = Encode(Sample());
  b[0] = std::byte{'G'};  // e.g. an HTTP "GET " hitting the port
  auto d = Decode(b);
  EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(d.status().message(), HasSubstr("not a kvtier frame"));

  HeaderBytes big_endian = Encode(Sample());
  Put32(big_endian, 0, 0x4B565452);  // the magic written in the wrong byte order
  EXPECT_EQ(Decode(big_endian).status().code(), absl::StatusCode::kInvalidArgument);

  HeaderBytes zeros{};
  EXPECT_EQ(Decode(zeros).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(FrameHeaderTest, RejectsOtherVersionsNamingBoth) {
  for (uint16_t v : {uint16_t{0}, uint16_t{2}, uint16_t{0xFFFF}}) {
    HeaderBytes b = Encode(Sample());
    Put16(b, 4, v);
    auto d = Decode(b);
    EXPECT_EQ(d.status().code(), absl::StatusCode::kFailedPrecondition) << v;
    EXPECT_THAT(d.status().message(), HasSubstr("version " + std::to_string(v)));
    EXPECT_THAT(d.status().message(), HasSubstr("speaks 1"));
  }
}

TEST(FrameHeaderTest, VersionIsCheckedBeforeOpcodeAndFlags) {
  HeaderBytes b = Encode(Sample());
  Put16(b, 4, 2);
  Put16(b, 6, 999);
  Put32(b, 8, 0xFFFFFFFF);
  EXPECT_EQ(Decode(b).status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST(FrameHeaderTest, RejectsUnknownOpcodes) {
  for (uint16_t op : {uint16_t{0}, uint16_t{kMaxOpcode + 1}, uint16_t{0x0100}, uint16_t{0xFFFF}}) {
    HeaderBytes b = Encode(Sample());
    Put16(b, 6, op);
    auto d = Decode(b);
    EXPECT_EQ(d.status().code(), absl::StatusCode::kUnimplemented) << op;
    EXPECT_THAT(d.status().message(), HasSubstr("unknown opcode " + std::to_string(op)));
  }
}

TEST(FrameHeaderTest, RejectsUnknownFlagBits) {
  for (uint32_t bit = 3; bit < 32; ++bit) {
    HeaderBytes b = Encode(Sample());
    Put32(b, 8, kFlagReply | (1u << bit));
    auto d = Decode(b);
    EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument) << bit;
    EXPECT_THAT(d.status().message(), HasSubstr("unknown frame flag bits"));
  }
}

TEST(FrameHeaderTest, AcceptsEveryValidFlagCombination) {
  for (uint32_t flags :
       {0u, uint32_t{kFlagReply}, uint32_t{kFlagFdAttached}, uint32_t{kFlagReply | kFlagError},
        uint32_t{kFlagReply | kFlagFdAttached}, uint32_t{kKnownFlags}}) {
    FrameHeader h = Sample();
    h.flags = flags;
    auto d = Decode(Encode(h));
    ASSERT_TRUE(d.ok()) << flags << ": " << d.status();
    EXPECT_EQ(d->flags, flags);
  }
}

TEST(FrameHeaderTest, RejectsErrorFlagWithoutReplyFlag) {
  FrameHeader h = Sample();
  h.flags = kFlagError;
  auto d = Decode(Encode(h));
  EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(d.status().message(), HasSubstr("without the reply flag"));
}

TEST(FrameHeaderTest, BodyLimitIsInclusive) {
  const Limits limits;
  FrameHeader h = Sample();
  h.body_len = limits.max_body_bytes;
  EXPECT_TRUE(Decode(Encode(h)).ok());

  h.body_len = 5000000;
  auto d = Decode(Encode(h));
  EXPECT_EQ(d.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(d.status().message(),
              HasSubstr("frame body of 5000000 bytes exceeds max_body_bytes=1048576"));

  h.body_len = limits.max_body_bytes + 1;
  EXPECT_EQ(Decode(Encode(h)).status().code(), absl::StatusCode::kResourceExhausted);
  h.body_len = UINT32_MAX;
  EXPECT_EQ(Decode(Encode(h)).status().code(), absl::StatusCode::kResourceExhausted);
}

TEST(FrameHeaderTest, PayloadLimitIsInclusive) {
  Limits limits;
  limits.max_payload_bytes = 4096;
  FrameHeader h = Sample();
  h.payload_len = 4096;
  EXPECT_TRUE(Decode(Encode(h), limits).ok());

  h.payload_len = 4097;
  auto d = Decode(Encode(h), limits);
  EXPECT_EQ(d.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(d.status().message(), HasSubstr("max_payload_bytes=4096"));

  h.payload_len = UINT64_MAX;
  EXPECT_EQ(Decode(Encode(h)).status().code(), absl::StatusCode::kResourceExhausted);
}

TEST(FrameHeaderTest, ZeroLimitsAllowOnlyEmptyFrames) {
  Limits limits;
  limits.max_body_bytes = 0;
  limits.max_payload_bytes = 0;
  FrameHeader h;
  EXPECT_TRUE(Decode(Encode(h), limits).ok());
  h.body_len = 1;
  EXPECT_FALSE(Decode(Encode(h), limits).ok());
  h.body_len = 0;
  h.payload_len = 1;
  EXPECT_FALSE(Decode(Encode(h), limits).ok());
}

TEST(OpcodeNameTest, NamesEveryOpcode) {
  EXPECT_EQ(OpcodeName(Opcode::kHello), "hello");
  EXPECT_EQ(OpcodeName(Opcode::kOpenNamespace), "open_namespace");
  EXPECT_EQ(OpcodeName(Opcode::kLookup), "lookup");
  EXPECT_EQ(OpcodeName(Opcode::kPut), "put");
  EXPECT_EQ(OpcodeName(Opcode::kPutCommit), "put_commit");
  EXPECT_EQ(OpcodeName(Opcode::kGet), "get");
  EXPECT_EQ(OpcodeName(Opcode::kRelease), "release");
  EXPECT_EQ(OpcodeName(Opcode::kRemove), "remove");
  EXPECT_EQ(OpcodeName(Opcode::kStats), "stats");
  EXPECT_EQ(OpcodeName(Opcode::kHealth), "health");
  EXPECT_EQ(OpcodeName(Opcode::kPrefetch), "prefetch");
  EXPECT_EQ(OpcodeName(Opcode::kPin), "pin");
  EXPECT_EQ(OpcodeName(Opcode::kSetLimits), "set_limits");
  EXPECT_EQ(OpcodeName(Opcode::kAttachMailbox), "attach_mailbox");
  EXPECT_EQ(OpcodeName(Opcode::kMailboxDoorbell), "mailbox_doorbell");
  EXPECT_EQ(OpcodeName(static_cast<Opcode>(0)), "unknown");
  EXPECT_EQ(OpcodeName(static_cast<Opcode>(kMaxOpcode + 1)), "unknown");
}

}  // namespace
}  // namespace kvtier::proto
