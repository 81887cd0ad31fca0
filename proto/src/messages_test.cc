#include "kvtier/proto/messages.h"

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kvtier/common/strings.h"

namespace kvtier::proto {
namespace {

using ::testing::HasSubstr;

constexpr size_t kKey = 32;

// n distinct packed keys.
std::string Keys(size_t n) {
  std::string s(n * kKey, '\0');
  for (size_t i = 0; i < s.size(); ++i) s[i] = static_cast<char>(i * 7 + i / kKey);
  return s;
}

template <typename Msg>
absl::Status Parse(const Msg& m, uint64_t payload_len = 0, const Limits& limits = Limits()) {
  Msg out;
  return ParseRequest(m.SerializeAsString(), payload_len, limits, &out);
}

template <typename Msg>
absl::Status ParseRaw(const std::string& body, uint64_t payload_len = 0,
                      const Limits& limits = Limits()) {
  Msg out;
  return ParseRequest(body, payload_len, limits, &out);
}

absl::StatusCode Code(const absl::Status& s) { return s.code(); }

NamespaceDescriptor GoodDescriptor() {
  NamespaceDescriptor d;
  d.set_model_id("meta-llama/Llama-3.1-8B-Instruct");
  d.set_dtype("bf16");
  d.set_kv_layout("vllm-nhd");
  d.set_block_tokens(16);
  d.set_tp_rank(1);
  d.set_tp_size(2);
  d.set_pp_rank(0);
  d.set_pp_size(1);
  d.set_tenant_salt(std::string(64, '\xAB'));
  d.set_block_bytes(64 * 1024);
  return d;
}

PutRequest InlinePut(std::vector<uint64_t> lengths) {
  PutRequest p;
  p.set_namespace_id(3);
  p.set_keys(Keys(lengths.size()));
  for (uint64_t l : lengths) p.add_lengths(l);
  p.set_mode(DATA_INLINE);
  return p;
}

// --- SerializeBody / ParseBody -----------------------------------------------------------

TEST(SerializeBodyTest, RoundTripsThroughParseBody) {
  PutRequest p = InlinePut({10, 20, 30});
  auto body = SerializeBody(p, Limits());
  ASSERT_TRUE(body.ok()) << body.status();
  PutRequest q;
  ASSERT_TRUE(ParseBody(*body, &q).ok());
  EXPECT_EQ(q.keys(), p.keys());
  ASSERT_EQ(q.lengths_size(), 3);
  EXPECT_EQ(q.lengths(2), 30u);
  EXPECT_TRUE(ParseRequest(*body, 60, Limits(), &q).ok());
}

TEST(SerializeBodyTest, RejectsBodiesOverTheLimit) {
  LookupRequest l;
  l.set_keys(Keys(100));
  Limits limits;
  limits.max_body_bytes = 100 * kKey;  // the keys alone fill it; the tag and length overflow it
  auto body = SerializeBody(l, limits);
  EXPECT_EQ(body.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(body.status().message(), HasSubstr("max_body_bytes=3200"));
  limits.max_body_bytes = 100 * kKey + 3;
  EXPECT_TRUE(SerializeBody(l, limits).ok());
}

TEST(ParseBodyTest, EmptyBodyIsTheDefaultMessage) {
  LookupRequest l;
  l.set_namespace_id(9);
  ASSERT_TRUE(ParseBody("", &l).ok());
  EXPECT_EQ(l.namespace_id(), 0u);  // parse replaces, it does not merge
}

TEST(ParseBodyTest, RejectsGarbage) {
  LookupRequest l;
  const std::vector<std::string> garbage = {
      std::string("\xFF\xFF\xFF\xFF\xFF\xFF\xFF\xFF\xFF\xFF\xFF", 11),  // varint too long
      std::string("\x12\x80\x80\x80\x80\x10", 6),                       // keys field, length 2^32+
      std::string("\x12\x05"
                  "ab",
                  4),          // keys field shorter than its length
      std::string("\x07", 1),  // field number 0
      std::string("\x0B", 1),  // start group for field 1 with no end
      std::string("\x0C", 1),  // end group with no start
      "GET / HTTP/1.1\r\n\r\n",
  };
  for (const std::string& g : garbage) {
    absl::Status s = ParseBody(g, &l);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << absl::CHexEscape(AbslView(g));
    EXPECT_THAT(s.message(), HasSubstr("kvtier.proto.LookupRequest"));
  }
}

TEST(ParseBodyTest, RejectsInvalidUtf8InStringFields) {
  HelloRequest h;
  h.set_protocol_version(1);
  std::string body = h.SerializeAsString();
  body += std::string("\x12\x02\xC3\x28", 4);  // auth_token = invalid 2-byte sequence
  EXPECT_EQ(ParseBody(body, &h).code(), absl::StatusCode::kInvalidArgument);
}

TEST(ParseBodyTest, TruncationsNeverPassAsTheOriginal) {
  PutRequest p = InlinePut({100, 200});
  const std::string body = p.SerializeAsString();
  for (size_t n = 0; n < body.size(); ++n) {
    PutRequest q;
    absl::Status s = ParseRequest(body.substr(0, n), 300, Limits(), &q);
    // A prefix may happen to be a valid encoding of a smaller message, but never one that
    // passes the semantic checks for this payload.
    EXPECT_FALSE(s.ok()) << "prefix of " << n << " bytes";
  }
  PutRequest q;
  EXPECT_TRUE(ParseRequest(body, 300, Limits(), &q).ok());
}

TEST(ParseBodyTest, KeepsUnknownFieldsForForwardCompatibility) {
  LookupRequest l;
  l.set_namespace_id(1);
  l.set_keys(Keys(1));
  std::string body = l.SerializeAsString();
  body += std::string("\xF8\x07\x2A", 3);  // field 127, varint 42: a field from a later minor
  LookupRequest out;
  EXPECT_TRUE(ParseRequest(body, 0, Limits(), &out).ok());
  EXPECT_EQ(out.keys(), Keys(1));
}

// --- hello -------------------------------------------------------------------------------

HelloRequest GoodHello() {
  HelloRequest h;
  h.set_protocol_version(kProtocolVersion);
  h.set_auth_token("secret");
  h.set_client_name("vllm-decode-0");
  h.set_want_shared_arena(true);
  return h;
}

TEST(HelloTest, Accepts) { EXPECT_TRUE(Parse(GoodHello()).ok()); }

TEST(HelloTest, RejectsWrongOrMissingVersion) {
  HelloRequest h = GoodHello();
  h.set_protocol_version(0);
  EXPECT_EQ(Code(Parse(h)), absl::StatusCode::kFailedPrecondition);
  h.set_protocol_version(2);
  EXPECT_EQ(Code(Parse(h)), absl::StatusCode::kFailedPrecondition);
}

TEST(HelloTest, RejectsPayload) {
  absl::Status s = Parse(GoodHello(), 1);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("payload_len=1"));
}

TEST(HelloTest, StringLimitsAreInclusive) {
  const Limits limits;
  HelloRequest h = GoodHello();
  h.set_auth_token(std::string(limits.max_string_bytes, 't'));
  h.set_client_name(std::string(limits.max_string_bytes, 'c'));
  EXPECT_TRUE(Parse(h).ok());
  h.set_auth_token(std::string(limits.max_string_bytes + 1, 't'));
  absl::Status s = Parse(h);
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(s.message(), HasSubstr("hello.auth_token"));
  h = GoodHello();
  h.set_client_name(std::string(limits.max_string_bytes + 1, 'c'));
  EXPECT_EQ(Code(Parse(h)), absl::StatusCode::kResourceExhausted);
}

// --- open_namespace and descriptors ------------------------------------------------------

TEST(OpenNamespaceTest, Accepts) {
  OpenNamespaceRequest o;
  *o.mutable_namespace_descriptor() = GoodDescriptor();
  EXPECT_TRUE(Parse(o).ok());
}

TEST(OpenNamespaceTest, RejectsMissingDescriptorAndPayload) {
  OpenNamespaceRequest o;
  EXPECT_EQ(Code(Parse(o)), absl::StatusCode::kInvalidArgument);
  *o.mutable_namespace_descriptor() = GoodDescriptor();
  EXPECT_EQ(Code(Parse(o, 8)), absl::StatusCode::kInvalidArgument);
}

TEST(OpenNamespaceTest, AcceptsKnownCompressionAndRejectsOthers) {
  OpenNamespaceRequest o;
  *o.mutable_namespace_descriptor() = GoodDescriptor();
  o.mutable_options()->set_compression(COMPRESSION_KVZ);
  EXPECT_TRUE(Parse(o).ok());
  o.mutable_options()->set_compression(static_cast<Compression>(9));
  absl::Status s = Parse(o);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("compression is 9"));
}

TEST(OpenNamespaceTest, RejectsBadDescriptor) {
  OpenNamespaceRequest o;
  *o.mutable_namespace_descriptor() = GoodDescriptor();
  o.mutable_namespace_descriptor()->set_block_tokens(0);
  EXPECT_EQ(Code(Parse(o)), absl::StatusCode::kInvalidArgument);
}

TEST(ValidateDescriptorTest, AcceptsGoodAndUnsetSizes) {
  EXPECT_TRUE(ValidateDescriptor(GoodDescriptor(), Limits()).ok());
  NamespaceDescriptor d = GoodDescriptor();
  d.set_tp_rank(0);
  d.set_tp_size(0);  // unset: read as 1
  d.set_pp_size(0);
  d.clear_kv_layout();
  d.clear_tenant_salt();
  EXPECT_TRUE(ValidateDescriptor(d, Limits()).ok());
}

TEST(ValidateDescriptorTest, RejectsEachBadField) {
  struct Case {
    const char* name;
    void (*mutate)(NamespaceDescriptor*);
    absl::StatusCode code;
  };
  const Case cases[] = {
      {"empty model_id", [](NamespaceDescriptor* d) { d->clear_model_id(); },
       absl::StatusCode::kInvalidArgument},
      {"empty dtype", [](NamespaceDescriptor* d) { d->clear_dtype(); },
       absl::StatusCode::kInvalidArgument},
      {"block_tokens 0", [](NamespaceDescriptor* d) { d->set_block_tokens(0); },
       absl::StatusCode::kInvalidArgument},
      {"block_bytes 0", [](NamespaceDescriptor* d) { d->set_block_bytes(0); },
       absl::StatusCode::kInvalidArgument},
      {"tp_rank == tp_size", [](NamespaceDescriptor* d) { d->set_tp_rank(2); },
       absl::StatusCode::kInvalidArgument},
      {"tp_rank 1 with tp_size unset",
       [](NamespaceDescriptor* d) {
         d->set_tp_rank(1);
         d->set_tp_size(0);
       },
       absl::StatusCode::kInvalidArgument},
      {"pp_rank == pp_size", [](NamespaceDescriptor* d) { d->set_pp_rank(1); },
       absl::StatusCode::kInvalidArgument},
      {"pp_rank 1 with pp_size unset",
       [](NamespaceDescriptor* d) {
         d->set_pp_rank(1);
         d->set_pp_size(0);
       },
       absl::StatusCode::kInvalidArgument},
      {"long model_id", [](NamespaceDescriptor* d) { d->set_model_id(std::string(257, 'm')); },
       absl::StatusCode::kResourceExhausted},
      {"long dtype", [](NamespaceDescriptor* d) { d->set_dtype(std::string(257, 'd')); },
       absl::StatusCode::kResourceExhausted},
      {"long kv_layout", [](NamespaceDescriptor* d) { d->set_kv_layout(std::string(257, 'l')); },
       absl::StatusCode::kResourceExhausted},
      {"long tenant_salt", [](NamespaceDescriptor* d) { d->set_tenant_salt(std::string(65, 's')); },
       absl::StatusCode::kResourceExhausted},
  };
  for (const Case& c : cases) {
    NamespaceDescriptor d = GoodDescriptor();
    c.mutate(&d);
    EXPECT_EQ(ValidateDescriptor(d, Limits()).code(), c.code) << c.name;
  }
}

TEST(ValidateDescriptorTest, HonoursConfiguredLimits) {
  Limits limits;
  limits.max_string_bytes = 4;
  limits.max_tenant_salt_bytes = 0;
  NamespaceDescriptor d;
  d.set_model_id("llam");
  d.set_dtype("bf16");
  d.set_block_tokens(1);
  d.set_block_bytes(1);
  EXPECT_TRUE(ValidateDescriptor(d, limits).ok());
  d.set_tenant_salt("x");
  EXPECT_EQ(ValidateDescriptor(d, limits).code(), absl::StatusCode::kResourceExhausted);
  d.clear_tenant_salt();
  d.set_model_id("llama");
  EXPECT_EQ(ValidateDescriptor(d, limits).code(), absl::StatusCode::kResourceExhausted);
}

TEST(DescriptorConversionTest, RoundTrips) {
  kvtier::NamespaceDescriptor d;
  d.model_id = "m";
  d.dtype = "fp8e4m3";
  d.kv_layout = "sglang";
  d.block_tokens = 64;
  d.tp_rank = 3;
  d.tp_size = 8;
  d.pp_rank = 1;
  d.pp_size = 2;
  d.tenant_salt = std::string("\0\x01\xFF", 3);
  d.block_bytes = 1 << 20;
  EXPECT_EQ(ToDescriptor(ToProto(d)), d);
  EXPECT_TRUE(ValidateDescriptor(ToProto(d), Limits()).ok());
}

TEST(DescriptorConversionTest, UnsetSizesBecomeOne) {
  NamespaceDescriptor p = GoodDescriptor();
  p.set_tp_rank(0);
  p.clear_tp_size();
  p.clear_pp_size();
  kvtier::NamespaceDescriptor d = ToDescriptor(p);
  EXPECT_EQ(d.tp_size, 1u);
  EXPECT_EQ(d.pp_size, 1u);
  EXPECT_EQ(d.model_id, p.model_id());
  EXPECT_EQ(d.tenant_salt, p.tenant_salt());
  EXPECT_EQ(d.block_bytes, p.block_bytes());
}

// --- packed keys (lookup, get, remove share the rule; put is tested below) ---------------

template <typename Msg>
class KeyedRequestTest : public ::testing::Test {};
using KeyedRequests =
    ::testing::Types<LookupRequest, GetRequest, RemoveRequest, PrefetchRequest, PinRequest>;
TYPED_TEST_SUITE(KeyedRequestTest, KeyedRequests);

TYPED_TEST(KeyedRequestTest, AcceptsOneToMaxKeys) {
  const Limits limits;
  for (size_t n : {size_t{1}, size_t{2}, size_t{limits.max_keys_per_request}}) {
    TypeParam m;
    m.set_namespace_id(1);
    m.set_keys(Keys(n));
    EXPECT_TRUE(Parse(m).ok()) << n;
  }
}

TYPED_TEST(KeyedRequestTest, RejectsNoKeys) {
  TypeParam m;
  m.set_namespace_id(1);
  absl::Status s = Parse(m);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("at least one key"));
}

TYPED_TEST(KeyedRequestTest, RejectsPartialKeys) {
  for (size_t bytes : {size_t{1}, size_t{31}, size_t{33}, size_t{65}}) {
    TypeParam m;
    m.set_keys(std::string(bytes, 'k'));
    absl::Status s = Parse(m);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << bytes;
    EXPECT_THAT(s.message(), HasSubstr("not a multiple of 32"));
  }
}

TYPED_TEST(KeyedRequestTest, RejectsTooManyKeys) {
  Limits limits;
  limits.max_keys_per_request = 4;
  TypeParam m;
  m.set_keys(Keys(4));
  EXPECT_TRUE(Parse(m, 0, limits).ok());
  m.set_keys(Keys(5));
  absl::Status s = Parse(m, 0, limits);
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(s.message(), HasSubstr("max_keys_per_request=4"));
}

TYPED_TEST(KeyedRequestTest, RejectsPayload) {
  TypeParam m;
  m.set_keys(Keys(1));
  EXPECT_EQ(Code(Parse(m, 32)), absl::StatusCode::kInvalidArgument);
}

// --- put ---------------------------------------------------------------------------------

TEST(PutTest, AcceptsInline) {
  EXPECT_TRUE(Parse(InlinePut({4096, 1, 65536}), 4096 + 1 + 65536).ok());
}

TEST(PutTest, AcceptsSharedArenaWithoutPayload) {
  PutRequest p = InlinePut({4096, 4096});
  p.set_mode(DATA_SHARED_ARENA);
  EXPECT_TRUE(Parse(p, 0).ok());
  absl::Status s = Parse(p, 8192);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("DATA_SHARED_ARENA"));
}

TEST(PutTest, RejectsLengthCountMismatch) {
  PutRequest p = InlinePut({10, 10});
  p.add_lengths(10);  // three lengths, two keys
  absl::Status s = Parse(p, 30);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("2 keys but 3 lengths"));
  p.clear_lengths();
  EXPECT_EQ(Code(Parse(p, 0)), absl::StatusCode::kInvalidArgument);
}

TEST(PutTest, AcceptsEncodedBlocks) {
  PutRequest p = InlinePut({10, 20});
  p.set_codecs(std::string("\x01\x00", 2));
  p.add_raw_lengths(40);  // a frame of 10 bytes that decodes to 40
  p.add_raw_lengths(0);   // stored
  EXPECT_TRUE(Parse(p, 30).ok());
  p.set_raw_lengths(1, 20);  // stored, with its own length: fine too
  EXPECT_TRUE(Parse(p, 30).ok());
}

TEST(PutTest, RejectsEncodingsThatDoNotFit) {
  PutRequest p = InlinePut({10, 20});
  p.set_codecs(std::string("\x01", 1));  // one codec for two keys
  p.add_raw_lengths(40);
  absl::Status s = Parse(p, 30);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("1 codecs and 1 raw_lengths"));
  p.set_codecs(std::string("\x01\x00", 2));  // raw_lengths still short
  EXPECT_EQ(Code(Parse(p, 30)), absl::StatusCode::kInvalidArgument);
  p.add_raw_lengths(0);
  p.set_raw_lengths(0, 9);  // a frame that decodes to fewer bytes than it has
  s = Parse(p, 30);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("raw_lengths[0] is 9"));
  p.set_raw_lengths(0, 40);
  p.set_raw_lengths(1, 21);  // a stored block with another length
  EXPECT_EQ(Code(Parse(p, 30)), absl::StatusCode::kInvalidArgument);
}

TEST(PutTest, RejectsZeroLength) {
  absl::Status s = Parse(InlinePut({10, 0, 10}), 20);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("lengths[1] is 0"));
  PutRequest p = InlinePut({0});
  p.set_mode(DATA_SHARED_ARENA);
  EXPECT_EQ(Code(Parse(p, 0)), absl::StatusCode::kInvalidArgument);
}

TEST(PutTest, RejectsPayloadThatDoesNotMatchLengths) {
  EXPECT_EQ(Code(Parse(InlinePut({10, 20}), 29)), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Code(Parse(InlinePut({10, 20}), 31)), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Code(Parse(InlinePut({10, 20}), 0)), absl::StatusCode::kInvalidArgument);
}

TEST(PutTest, RejectsLengthsWhoseSumWraps) {
  // Each pair wraps a naive uint64 sum around to exactly payload_len.
  EXPECT_EQ(Code(Parse(InlinePut({UINT64_MAX, 2}), 1)), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Code(Parse(InlinePut({1ull << 63, 1ull << 63, 7}), 7)),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Code(Parse(InlinePut({7, UINT64_MAX, 1}), 7)), absl::StatusCode::kInvalidArgument);
  // The largest sum that does not wrap is still judged exactly.
  EXPECT_TRUE(Parse(InlinePut({UINT64_MAX - 1, 1}), UINT64_MAX).ok());
}

TEST(PutTest, RejectsUnknownMode) {
  const std::string body = InlinePut({10}).SerializeAsString() + std::string("\x20\x07", 2);
  absl::Status s = ParseRaw<PutRequest>(body, 10);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("put.mode 7"));
  // A negative enum value is a 10-byte varint on the wire.
  const std::string neg = InlinePut({10}).SerializeAsString() +
                          std::string("\x20\xFF\xFF\xFF\xFF\xFF\xFF\xFF\xFF\xFF\x01", 11);
  EXPECT_EQ(ParseRaw<PutRequest>(neg, 10).code(), absl::StatusCode::kInvalidArgument);
}

TEST(PutTest, KeyRulesApply) {
  PutRequest p = InlinePut({10});
  p.set_keys(std::string(31, 'k'));
  EXPECT_EQ(Code(Parse(p, 10)), absl::StatusCode::kInvalidArgument);
  Limits limits;
  limits.max_keys_per_request = 2;
  EXPECT_EQ(Code(Parse(InlinePut({1, 1, 1}), 3, limits)), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(Code(Parse(InlinePut({}), 0)), absl::StatusCode::kInvalidArgument);
}

// --- get ---------------------------------------------------------------------------------

TEST(GetTest, AcceptsBothModesAndRejectsUnknown) {
  GetRequest g;
  g.set_keys(Keys(3));
  g.set_mode(DATA_SHARED_ARENA);
  EXPECT_TRUE(Parse(g).ok());
  g.set_mode(DATA_INLINE);
  EXPECT_TRUE(Parse(g).ok());
  const std::string body = g.SerializeAsString() + std::string("\x18\x02", 2);
  EXPECT_EQ(ParseRaw<GetRequest>(body).code(), absl::StatusCode::kInvalidArgument);
}

// --- leases ------------------------------------------------------------------------------

TEST(LeaseTest, PutCommitNeedsALeaseAndNoPayload) {
  PutCommitRequest c;
  EXPECT_EQ(Code(Parse(c)), absl::StatusCode::kInvalidArgument);
  c.set_lease_id(42);
  EXPECT_TRUE(Parse(c).ok());
  EXPECT_EQ(Code(Parse(c, 1)), absl::StatusCode::kInvalidArgument);
}

TEST(LeaseTest, ReleaseNeedsALeaseAndNoPayload) {
  ReleaseRequest r;
  EXPECT_EQ(Code(Parse(r)), absl::StatusCode::kInvalidArgument);
  r.set_lease_id(UINT64_MAX);
  EXPECT_TRUE(Parse(r).ok());
  EXPECT_EQ(Code(Parse(r, 1)), absl::StatusCode::kInvalidArgument);
}

// --- stats, health -----------------------------------------------------------------------

TEST(StatsHealthTest, AcceptEmptyBodiesAndRejectPayload) {
  EXPECT_TRUE(ParseRaw<StatsRequest>("").ok());
  EXPECT_TRUE(ParseRaw<HealthRequest>("").ok());
  EXPECT_EQ(ParseRaw<StatsRequest>("", 1).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseRaw<HealthRequest>("", 1).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseRaw<HealthRequest>("\xFF").code(), absl::StatusCode::kInvalidArgument);
}

// --- error replies -----------------------------------------------------------------------

TEST(ErrorReplyTest, RoundTripsEveryCode) {
  for (int c = 1; c <= 16; ++c) {
    const absl::Status s(static_cast<absl::StatusCode>(c), "boom");
    ErrorReply e = ErrorReplyFromStatus(s);
    ErrorReply parsed;
    ASSERT_TRUE(ParseBody(e.SerializeAsString(), &parsed).ok());
    EXPECT_EQ(StatusFromErrorReply(parsed), s) << c;
  }
}

TEST(ErrorReplyTest, ClampsUnknownCodes) {
  for (int c : {0, -1, 17, 1000, INT32_MIN, INT32_MAX}) {
    ErrorReply e;
    e.set_code(c);
    e.set_message("m");
    absl::Status s = StatusFromErrorReply(e);
    EXPECT_EQ(s.code(), absl::StatusCode::kUnknown) << c;
    EXPECT_THAT(s.message(), HasSubstr("m"));
  }
}

TEST(ErrorReplyTest, OkStatusBecomesInternal) {
  EXPECT_EQ(ErrorReplyFromStatus(absl::OkStatus()).code(),
            static_cast<int>(absl::StatusCode::kInternal));
}

TEST(ErrorReplyTest, MessageIsUtf8AndBounded) {
  // A message that quotes peer bytes must still parse on the other side.
  const std::string bad = std::string("bad key \xC3\x28 \xED\xA0\x80 \xF4\x90\x80\x80 ") +
                          "\xC0\xAF ok \xE2\x82\xAC " + std::string("\xF0\x9F\x98", 3);
  ErrorReply e = ErrorReplyFromStatus(absl::InvalidArgumentError(bad));
  ErrorReply parsed;
  ASSERT_TRUE(ParseBody(e.SerializeAsString(), &parsed).ok());
  EXPECT_THAT(parsed.message(), HasSubstr("bad key ?( "));
  EXPECT_THAT(parsed.message(), HasSubstr("ok \xE2\x82\xAC "));  // valid euro sign is kept

  const std::string huge(3 * kMaxErrorMessageBytes, 'x');
  e = ErrorReplyFromStatus(absl::InternalError(huge + "\xE2\x82\xAC"));
  EXPECT_EQ(e.message().size(), kMaxErrorMessageBytes);

  // A multi-byte sequence that straddles the cut is dropped whole, not split.
  const std::string straddle = std::string(kMaxErrorMessageBytes - 1, 'y') + "\xE2\x82\xAC";
  e = ErrorReplyFromStatus(absl::InternalError(straddle));
  EXPECT_EQ(e.message(), std::string(kMaxErrorMessageBytes - 1, 'y'));
  ASSERT_TRUE(ParseBody(e.SerializeAsString(), &parsed).ok());
}

}  // namespace
}  // namespace kvtier::proto
