// Writes the seed corpus for frame_fuzz: one valid frame (header + body, plus payload bytes
// for inline puts) per request kind, into the directory named on the command line.
// Regenerate with: build/fuzz/bin/make_frame_corpus tests/fuzz/corpus/frame
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <string>

#include "kvtier/proto/frame.h"
#include "kvtier/proto/messages.h"

namespace {

using namespace kvtier::proto;  // NOLINT: names every message type

std::string Keys(int n) {
  std::string s(32 * n, '\0');
  for (size_t i = 0; i < s.size(); ++i) s[i] = static_cast<char>(i * 31 + 7);
  return s;
}

bool Write(const std::string& dir, const std::string& name, Opcode op,
           const google::protobuf::MessageLite& body, const std::string& payload = "") {
  const std::string b = body.SerializeAsString();
  FrameHeader h;
  h.opcode = op;
  h.body_len = static_cast<uint32_t>(b.size());
  h.request_id = 1;
  h.payload_len = payload.size();
  std::byte head[kFrameHeaderSize];
  EncodeFrameHeader(h, head);
  std::ofstream out(dir + "/" + name, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(head), kFrameHeaderSize);
  out << b << payload;
  return static_cast<bool>(out);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <corpus-dir>\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[1];
  bool ok = true;

  HelloRequest hello;
  hello.set_protocol_version(kProtocolVersion);
  hello.set_auth_token("token");
  hello.set_client_name("seed");
  hello.set_want_shared_arena(true);
  ok &= Write(dir, "hello", Opcode::kHello, hello);

  OpenNamespaceRequest open;
  NamespaceDescriptor* d = open.mutable_namespace_descriptor();
  d->set_model_id("llama");
  d->set_dtype("bf16");
  d->set_kv_layout("nhd");
  d->set_block_tokens(16);
  d->set_tp_rank(1);
  d->set_tp_size(2);
  d->set_pp_size(1);
  d->set_tenant_salt("salt");
  d->set_block_bytes(4096);
  ok &= Write(dir, "open_namespace", Opcode::kOpenNamespace, open);

  LookupRequest lookup;
  lookup.set_namespace_id(1);
  lookup.set_keys(Keys(3));
  ok &= Write(dir, "lookup", Opcode::kLookup, lookup);

  PutRequest put;
  put.set_namespace_id(1);
  put.set_keys(Keys(2));
  put.add_lengths(5);
  put.add_lengths(3);
  put.set_mode(DATA_INLINE);
  ok &= Write(dir, "put_inline", Opcode::kPut, put, "abcdefgh");
  put.set_mode(DATA_SHARED_ARENA);
  ok &= Write(dir, "put_arena", Opcode::kPut, put);

  PutCommitRequest commit;
  commit.set_lease_id(7);
  ok &= Write(dir, "put_commit", Opcode::kPutCommit, commit);

  GetRequest get;
  get.set_namespace_id(1);
  get.set_keys(Keys(2));
  get.set_mode(DATA_INLINE);
  ok &= Write(dir, "get_inline", Opcode::kGet, get);
  get.set_mode(DATA_SHARED_ARENA);
  ok &= Write(dir, "get_arena", Opcode::kGet, get);

  ReleaseRequest release;
  release.set_lease_id(7);
  ok &= Write(dir, "release", Opcode::kRelease, release);

  RemoveRequest remove;
  remove.set_namespace_id(1);
  remove.set_keys(Keys(1));
  ok &= Write(dir, "remove", Opcode::kRemove, remove);

  PrefetchRequest prefetch;
  prefetch.set_namespace_id(1);
  prefetch.set_keys(Keys(2));
  ok &= Write(dir, "prefetch", Opcode::kPrefetch, prefetch);

  PinRequest pin;
  pin.set_namespace_id(1);
  pin.set_keys(Keys(1));
  pin.set_pinned(true);
  ok &= Write(dir, "pin", Opcode::kPin, pin);

  SetLimitsRequest set_limits;
  set_limits.set_namespace_id(1);
  set_limits.mutable_limits()->set_dram_quota_bytes(1 << 20);
  set_limits.mutable_limits()->set_priority(-1);
  set_limits.mutable_limits()->set_default_ttl_seconds(60);
  ok &= Write(dir, "set_limits", Opcode::kSetLimits, set_limits);

  ok &= Write(dir, "stats", Opcode::kStats, StatsRequest());
  ok &= Write(dir, "health", Opcode::kHealth, HealthRequest());
  ok &= Write(dir, "attach_mailbox", Opcode::kAttachMailbox, AttachMailboxRequest());

  if (!ok) {
    std::fprintf(stderr, "could not write the corpus to %s\n", dir.c_str());
    return 1;
  }
  return 0;
}
