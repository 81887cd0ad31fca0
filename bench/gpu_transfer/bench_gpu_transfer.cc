// bench_gpu_transfer: end-to-end batched transfers between GPU memory and kvtierd's DRAM tier
// through GpuBlockClient (client/cuda/gpu_blocks.h), with kvz compression on the GPU (a
// COMPRESSION_KVZ namespace) and without (a plain namespace), on the same bf16 KV-like data in
// the same run.
//   bench_gpu_transfer [--kvtierd PATH | --uri URI] [--batch-mib 64] [--block-kib 256,2048]
//                      [--reps 11] [--dram-capacity 8GiB] [--stage-mib 16]
// Without --uri it starts the kvtierd at --kvtierd (default: beside this binary) on a Unix
// socket in a temporary directory and stops it at the end. Per block size and repetition: one
// PutFromDevice of the whole batch under fresh keys (every block must be stored, not found
// already), one GetToDevice of it (every block must hit), then the keys are removed (not timed).
// The two modes alternate which goes first. Reported: medians over --reps after a warm-up
// repetition (which also checks the bytes), in ms and GB/s of original bytes, the ratio of the
// speeds (on/off > 1: compression is faster), the compression ratio of the frames sent and of
// the daemon's DRAM (raw_bytes / used_bytes), and for reference a single pinned cudaMemcpy of
// the batch each way and Client::Put/Get of the same bytes from host memory. Also the daemon's
// own time per batch on each kind of request (from its request-duration histograms: request
// read to reply written), which tells the client's share of a batch from the daemon's.
#include <cuda_runtime_api.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "kv_like_data.h"
#include "kvtier/client/client.h"
#include "kvtier/client/gpu_blocks.h"
#include "kvtier/kernels/cuda_status.h"
#include "kvtier/proto/messages.h"

namespace kvtier::bench {
namespace {

using client::Client;
using client::DeviceBlock;
using client::DeviceBuffer;
using client::GpuBlockClient;
using client::NamespaceHandle;
using Clock = std::chrono::steady_clock;

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "bench_gpu_transfer: %s\n", what.c_str());
  std::exit(1);
}
void CheckOk(const absl::Status& s, const char* what) {
  if (!s.ok()) Die(absl::StrCat(what, ": ", s.ToString()));
}
void CheckCuda(cudaError_t e, const char* what) {
  if (e != cudaSuccess) Die(absl::StrCat(what, ": ", cudaGetErrorString(e)));
}

// A kvtierd started for the run; killed and its directory removed at the end.
class Daemon {
 public:
  Daemon(const std::string& binary, const std::string& dram_capacity) {
    if (!std::filesystem::exists(binary)) {
      Die(absl::StrCat(binary, " does not exist; pass --kvtierd PATH or --uri URI"));
    }
    char tmpl[] = "/tmp/kvtier-gpu-bench-XXXXXX";
    if (::mkdtemp(tmpl) == nullptr) Die("mkdtemp failed");
    dir_ = tmpl;
    const std::string socket = dir_ + "/kvtierd.sock";
    std::vector<std::string> args = {binary,        "--data-dir",  dir_,
                                     "--socket",    socket,        "--dram-capacity",
                                     dram_capacity, "--log-level", "warn"};
    pid_ = ::fork();
    if (pid_ < 0) Die("fork failed");
    if (pid_ == 0) {
      std::vector<char*> argv;
      for (std::string& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    uri_ = "unix://" + socket;
  }
  ~Daemon() {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      int status = 0;
      for (int i = 0; i < 1000 && ::waitpid(pid_, &status, WNOHANG) == 0; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
      if (::waitpid(pid_, &status, WNOHANG) == 0) {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, &status, 0);
      }
    }
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  const std::string& uri() const { return uri_; }
  bool exited() const {
    int status = 0;
    return ::waitpid(pid_, &status, WNOHANG) == pid_;
  }

 private:
  std::string dir_;
  std::string uri_;
  pid_t pid_ = -1;
};

std::unique_ptr<Client> ConnectWithRetry(const std::string& uri, const Daemon* daemon) {
  const auto deadline = Clock::now() + std::chrono::seconds(60);
  for (;;) {
    auto c = Client::Connect(uri, client::ClientOptions{.client_name = "bench_gpu_transfer"});
    if (c.ok()) return std::move(*c);
    if (daemon == nullptr || Clock::now() > deadline || daemon->exited()) {
      Die(absl::StrCat("cannot connect to ", uri, ": ", c.status().ToString()));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

BlockKey FreshKey() {
  static uint64_t counter = 0x9e3779b97f4a7c15ULL ^ static_cast<uint64_t>(::getpid());
  BlockKey k;
  for (size_t j = 0; j < BlockKey::kSize; j += 8) {
    uint64_t z = (counter += 0x9e3779b97f4a7c15ULL);  // splitmix64
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    std::memcpy(k.bytes.data() + j, &z, 8);
  }
  return k;
}

double Ms(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}
double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

struct Mode {
  const char* name;
  NamespaceHandle ns;
  std::vector<double> put_ms;
  std::vector<double> get_ms;
  double dram_ratio = 0;
  uint64_t raw_sent = 0;
  uint64_t bytes_sent = 0;
  // The daemon's time per batch, ms, on put, put_commit, get and release requests.
  std::vector<double> daemon_ms[4];
};

constexpr const char* kDaemonOps[4] = {"put", "put_commit", "get", "release"};

// Nanoseconds the daemon spent on `op` requests between two snapshots.
double DaemonMs(const proto::StatsReply& before, const proto::StatsReply& after,
                const std::string& op) {
  const proto::RequestLatency* b = proto::FindRequestLatency(before, op);
  const proto::RequestLatency* a = proto::FindRequestLatency(after, op);
  const uint64_t before_ns = b != nullptr ? b->sum_ns() : 0;
  return a == nullptr ? 0 : static_cast<double>(a->sum_ns() - before_ns) / 1e6;
}

struct BlockSizeResult {
  size_t block_bytes;
  Mode off;
  Mode on;
  double d2h_ms, h2d_ms, host_put_ms, host_get_ms;
};

class Bench {
 public:
  Bench(Client* client, GpuBlockClient* gpu, size_t batch_bytes, int reps)
      : client_(client), gpu_(gpu), batch_bytes_(batch_bytes), reps_(reps) {}

  BlockSizeResult Run(size_t block_bytes) {
    const size_t n = batch_bytes_ / block_bytes;
    const size_t batch = n * block_bytes;
    // 4 layers x K/V x tokens x 8 heads x 128 dims of bf16 per block.
    const int tokens = static_cast<int>(block_bytes / (4 * 2 * 8 * 128 * 2));
    if (n == 0 || tokens * size_t{4 * 2 * 8 * 128 * 2} != block_bytes) {
      Die(absl::StrCat("block size ", block_bytes,
                       " must be a multiple of 16 KiB up to the batch"));
    }
    std::printf("generating %zu KV-like blocks of %zu KiB...\n", n, block_bytes >> 10);
    std::fflush(stdout);
    std::vector<std::byte> host(batch);
    for (size_t b = 0; b < n; ++b) {
      const std::vector<std::byte> block =
          testing::GenerateKvBlock(KvDtype::kBf16, 4, tokens, 8, 128, 1000 * block_bytes + b);
      std::memcpy(host.data() + b * block_bytes, block.data(), block_bytes);
    }
    std::byte *src = nullptr, *dst = nullptr, *pinned = nullptr;
    CheckCuda(cudaMalloc(reinterpret_cast<void**>(&src), batch), "cudaMalloc");
    CheckCuda(cudaMalloc(reinterpret_cast<void**>(&dst), batch), "cudaMalloc");
    CheckCuda(cudaMallocHost(reinterpret_cast<void**>(&pinned), batch), "cudaMallocHost");
    CheckCuda(cudaMemcpy(src, host.data(), batch, cudaMemcpyHostToDevice), "upload");
    // GpuBlockClient's streams do not wait for the legacy default stream.
    CheckCuda(cudaDeviceSynchronize(), "upload");
    std::vector<DeviceBlock> blocks;
    std::vector<DeviceBuffer> out;
    for (size_t b = 0; b < n; ++b) {
      blocks.push_back({src + b * block_bytes, block_bytes});
      out.push_back({dst + b * block_bytes, block_bytes});
    }

    BlockSizeResult result{block_bytes, Mode{"off"}, Mode{"on"}};
    result.off.ns = Open(block_bytes, false);
    result.on.ns = Open(block_bytes, true);
    for (int rep = -1; rep < reps_; ++rep) {  // rep -1: warm-up and checks
      Mode* order[2] = {&result.off, &result.on};
      if (rep % 2 != 0) std::swap(order[0], order[1]);
      for (Mode* m : order) {
        OneRep(*m, blocks, out, rep < 0, [&] {
          CheckCuda(cudaMemcpy(pinned, dst, batch, cudaMemcpyDeviceToHost), "check copy");
          if (std::memcmp(pinned, host.data(), batch) != 0) {
            Die(absl::StrCat(m->name, ": the batch came back different"));
          }
        });
      }
    }

    // References: one pinned copy of the batch each way; Client::Put/Get from host memory.
    std::vector<double> d2h, h2d, host_put, host_get;
    std::memcpy(pinned, host.data(), batch);
    for (int rep = -1; rep < reps_; ++rep) {
      auto t0 = Clock::now();
      CheckCuda(cudaMemcpy(pinned, src, batch, cudaMemcpyDeviceToHost), "d2h");
      auto t1 = Clock::now();
      CheckCuda(cudaMemcpy(dst, pinned, batch, cudaMemcpyHostToDevice), "h2d");
      auto t2 = Clock::now();
      std::vector<BlockKey> keys(n);
      for (BlockKey& k : keys) k = FreshKey();
      std::vector<std::span<const std::byte>> in;
      std::vector<std::span<std::byte>> back;
      for (size_t b = 0; b < n; ++b) {
        in.emplace_back(pinned + b * block_bytes, block_bytes);
        back.emplace_back(host.data() + b * block_bytes, block_bytes);
      }
      auto t3 = Clock::now();
      auto put = client_->Put(result.off.ns, keys, in);
      auto t4 = Clock::now();
      auto got = client_->Get(result.off.ns, keys, back);
      auto t5 = Clock::now();
      CheckOk(put.status(), "host put");
      CheckOk(got.status(), "host get");
      CheckOk(client_->Remove(result.off.ns, keys).status(), "remove");
      if (rep < 0) continue;
      d2h.push_back(Ms(t0, t1));
      h2d.push_back(Ms(t1, t2));
      host_put.push_back(Ms(t3, t4));
      host_get.push_back(Ms(t4, t5));
    }
    result.d2h_ms = Median(d2h);
    result.h2d_ms = Median(h2d);
    result.host_put_ms = Median(host_put);
    result.host_get_ms = Median(host_get);
    cudaFree(src);
    cudaFree(dst);
    cudaFreeHost(pinned);
    return result;
  }

 private:
  NamespaceHandle Open(size_t block_bytes, bool kvz) {
    NamespaceDescriptor d;
    d.model_id = absl::StrCat("bench-gpu-transfer-", block_bytes >> 10, "k", kvz ? "-kvz" : "");
    d.dtype = "bf16";
    d.block_tokens = 16;
    d.block_bytes = block_bytes;
    proto::NamespaceOptions options;
    options.set_compression(kvz ? proto::COMPRESSION_KVZ : proto::COMPRESSION_NONE);
    auto ns = client_->OpenNamespace(d, options);
    CheckOk(ns.status(), "open namespace");
    return *ns;
  }

  void OneRep(Mode& m, std::span<const DeviceBlock> blocks, std::span<const DeviceBuffer> out,
              bool warmup, const std::function<void()>& check) {
    std::vector<BlockKey> keys(blocks.size());
    for (BlockKey& k : keys) k = FreshKey();
    const client::GpuTransferCounters before = gpu_->counters();
    auto stats_before = client_->Stats();
    CheckOk(stats_before.status(), "stats");
    const auto t0 = Clock::now();
    auto put = gpu_->PutFromDevice(m.ns, keys, blocks);
    const auto t1 = Clock::now();
    CheckOk(put.status(), "PutFromDevice");
    for (size_t i = 0; i < put->size(); ++i) {
      if (!(*put)[i].ok()) Die(absl::StrCat(m.name, ": put block ", i, ": ", (*put)[i].ToString()));
    }
    const auto t2 = Clock::now();
    auto got = gpu_->GetToDevice(m.ns, keys, out);
    const auto t3 = Clock::now();
    CheckOk(got.status(), "GetToDevice");
    for (size_t i = 0; i < got->size(); ++i) {
      const client::GetResult& r = (*got)[i];
      if (!r.status.ok() || r.length != blocks[i].bytes) {
        Die(absl::StrCat(m.name, ": get block ", i, ": ", r.status.ToString(), " length ",
                         r.length));
      }
    }
    if (warmup) {
      check();
      const client::GpuTransferCounters& after = gpu_->counters();
      m.raw_sent = after.put_raw_bytes - before.put_raw_bytes;
      m.bytes_sent = after.put_sent_bytes - before.put_sent_bytes;
      auto stats = client_->Stats();
      CheckOk(stats.status(), "stats");
      for (const proto::NamespaceStats& s : stats->namespaces()) {
        if (s.namespace_id() == m.ns.id && s.used_bytes() > 0) {
          m.dram_ratio = static_cast<double>(s.raw_bytes()) / static_cast<double>(s.used_bytes());
        }
      }
    } else {
      m.put_ms.push_back(Ms(t0, t1));
      m.get_ms.push_back(Ms(t2, t3));
      auto stats_after = client_->Stats();
      CheckOk(stats_after.status(), "stats");
      for (int k = 0; k < 4; ++k) {
        m.daemon_ms[k].push_back(DaemonMs(*stats_before, *stats_after, kDaemonOps[k]));
      }
    }
    auto removed = client_->Remove(m.ns, keys);
    CheckOk(removed.status(), "remove");
  }

  Client* client_;
  GpuBlockClient* gpu_;
  size_t batch_bytes_;
  int reps_;
};

int Main(int argc, char** argv) {
  CLI::App app{"GPU <-> kvtierd DRAM transfers with and without kvz compression"};
  std::string kvtierd = (std::filesystem::path(argv[0]).parent_path() / "kvtierd").string();
  std::string uri;
  std::string dram_capacity = "8GiB";
  size_t batch_mib = 64;
  std::vector<size_t> block_kib = {256, 2048};
  int reps = 11;
  size_t stage_mib = 16;
  app.add_option("--kvtierd", kvtierd, "kvtierd binary to start (default: beside this one)");
  app.add_option("--uri", uri, "use a running kvtierd instead (unix://... for the arena)");
  app.add_option("--dram-capacity", dram_capacity, "DRAM tier of the kvtierd started");
  app.add_option("--batch-mib", batch_mib, "MiB per batch");
  app.add_option("--block-kib", block_kib, "block sizes in KiB (multiples of 16)")->delimiter(',');
  app.add_option("--reps", reps, "timed repetitions per mode (median reported)")
      ->check(CLI::PositiveNumber);
  app.add_option("--stage-mib", stage_mib, "GpuBlockClient stage size")->check(CLI::PositiveNumber);
  CLI11_PARSE(app, argc, argv);

  auto devices = CudaDeviceCount();
  CheckOk(devices.status(), "CUDA");
  if (*devices == 0) Die("no CUDA device");
  cudaDeviceProp prop{};
  CheckCuda(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties");

  std::unique_ptr<Daemon> daemon;
  if (uri.empty()) {
    daemon = std::make_unique<Daemon>(kvtierd, dram_capacity);
    uri = daemon->uri();
  }
  std::unique_ptr<Client> client = ConnectWithRetry(uri, daemon.get());
  std::printf("GPU: %s; kvtierd %s at %s (%s); batch %zu MiB, %d reps + warm-up, stage %zu MiB\n",
              prop.name, client->server_info().server_version().c_str(), uri.c_str(),
              client->shared_arena() ? "shared arena" : "inline frames", batch_mib, reps,
              stage_mib);
  const double batch = static_cast<double>(batch_mib << 20);
  auto gbs = [&](double ms) { return batch / ms / 1e6; };

  // Both ways of moving the bytes: through pinned staging buffers and the CPU's memcpy, and
  // straight between device memory and the daemon's arena (zero copy; needs the arena).
  // Zero copy also with the copy engines alone (kernel_copies off), to show what the piece-copy
  // kernel adds for small frames.
  std::vector<BlockSizeResult> staged, zero, zero_engines;
  struct Variant {
    const char* name;
    bool zero_copy;
    bool kernel_copies;
    std::vector<BlockSizeResult>* results;
  };
  for (const Variant& v : {Variant{"staged", false, true, &staged},
                           Variant{"zero copy, engines only", true, false, &zero_engines},
                           Variant{"zero copy", true, true, &zero}}) {
    const bool zero_copy = v.zero_copy;
    auto gpu = GpuBlockClient::Create(
        client.get(), client::GpuBlockClientOptions{.stage_bytes = stage_mib << 20,
                                                    .zero_copy = zero_copy,
                                                    .kernel_copies = v.kernel_copies});
    CheckOk(gpu.status(), "GpuBlockClient");
    if (zero_copy && !(*gpu)->zero_copy()) break;  // no arena: staged only
    Bench bench(client.get(), gpu->get(), batch_mib << 20, reps);
    std::vector<BlockSizeResult>& results = *v.results;
    for (size_t kib : block_kib) results.push_back(bench.Run(kib << 10));
    const client::GpuTransferCounters& c = (*gpu)->counters();
    std::printf(
        "\n%s: blocks copied straight to or from the arena %llu; arena granules registered %llu, "
        "failed %llu\n",
        v.name, static_cast<unsigned long long>(c.zero_copy_blocks),
        static_cast<unsigned long long>(c.arena_granules_registered),
        static_cast<unsigned long long>(c.arena_granules_failed));
    std::printf(
        "\n| copies | block | direction | off ms | on ms | off GB/s | on GB/s | on/off speed |\n"
        "|---|---|---|---|---|---|---|---|\n");
    for (const BlockSizeResult& r : results) {
      const double off_put = Median(r.off.put_ms), on_put = Median(r.on.put_ms);
      const double off_get = Median(r.off.get_ms), on_get = Median(r.on.get_ms);
      const char* name = v.name;
      std::printf("| %s | %zu KiB | put GPU -> DRAM | %.2f | %.2f | %.1f | %.1f | %.2f |\n", name,
                  r.block_bytes >> 10, off_put, on_put, gbs(off_put), gbs(on_put),
                  off_put / on_put);
      std::printf("| %s | %zu KiB | get DRAM -> GPU | %.2f | %.2f | %.1f | %.1f | %.2f |\n", name,
                  r.block_bytes >> 10, off_get, on_get, gbs(off_get), gbs(on_get),
                  off_get / on_get);
    }
  }
  if (!zero.empty()) {
    std::printf(
        "\n| block | direction | kvz | staged ms | zero copy, engines only ms | zero copy ms | "
        "zero copy GB/s | speed-up over staged |\n|---|---|---|---|---|---|---|---|\n");
    for (size_t k = 0; k < zero.size(); ++k) {
      const BlockSizeResult& a = staged[k];
      const BlockSizeResult& e = zero_engines[k];
      const BlockSizeResult& b = zero[k];
      const struct {
        const char* dir;
        const char* kvz;
        const std::vector<double>& s;
        const std::vector<double>& en;
        const std::vector<double>& z;
      } rows[] = {{"put", "off", a.off.put_ms, e.off.put_ms, b.off.put_ms},
                  {"put", "on", a.on.put_ms, e.on.put_ms, b.on.put_ms},
                  {"get", "off", a.off.get_ms, e.off.get_ms, b.off.get_ms},
                  {"get", "on", a.on.get_ms, e.on.get_ms, b.on.get_ms}};
      for (const auto& row : rows) {
        const double sm = Median(row.s), em = Median(row.en), zm = Median(row.z);
        std::printf("| %zu KiB | %s | %s | %.2f | %.2f | %.2f | %.1f | %.2fx |\n",
                    a.block_bytes >> 10, row.dir, row.kvz, sm, em, zm, gbs(zm), sm / zm);
      }
    }
  }
  if (!zero.empty()) {
    std::printf(
        "\n| block | kvz | zero copy: put ms | daemon ms on put / put_commit | get ms | daemon ms "
        "on get / release |\n|---|---|---|---|---|---|\n");
    for (const BlockSizeResult& r : zero) {
      for (const Mode* m : {&r.off, &r.on}) {
        std::printf("| %zu KiB | %s | %.2f | %.2f / %.2f | %.2f | %.2f / %.2f |\n",
                    r.block_bytes >> 10, m->name, Median(m->put_ms), Median(m->daemon_ms[0]),
                    Median(m->daemon_ms[1]), Median(m->get_ms), Median(m->daemon_ms[2]),
                    Median(m->daemon_ms[3]));
      }
    }
  }
  const std::vector<BlockSizeResult>& results = staged;
  std::printf(
      "\n| block | kvz frames: raw / sent bytes | daemon DRAM with kvz: raw / used bytes | "
      "without: raw / used |\n|---|---|---|---|\n");
  for (const BlockSizeResult& r : results) {
    std::printf("| %zu KiB | %.3f | %.3f | %.3f |\n", r.block_bytes >> 10,
                static_cast<double>(r.on.raw_sent) / static_cast<double>(r.on.bytes_sent),
                r.on.dram_ratio, r.off.dram_ratio);
  }
  std::printf("\n| block | reference | ms | GB/s |\n|---|---|---|---|\n");
  for (const BlockSizeResult& r : results) {
    const size_t kib = r.block_bytes >> 10;
    std::printf("| %zu KiB | cudaMemcpy D2H, one pinned copy | %.2f | %.1f |\n", kib, r.d2h_ms,
                gbs(r.d2h_ms));
    std::printf("| %zu KiB | cudaMemcpy H2D, one pinned copy | %.2f | %.1f |\n", kib, r.h2d_ms,
                gbs(r.h2d_ms));
    std::printf("| %zu KiB | Client::Put from host memory | %.2f | %.1f |\n", kib, r.host_put_ms,
                gbs(r.host_put_ms));
    std::printf("| %zu KiB | Client::Get into host memory | %.2f | %.1f |\n", kib, r.host_get_ms,
                gbs(r.host_get_ms));
  }
  return 0;
}

}  // namespace
}  // namespace kvtier::bench

int main(int argc, char** argv) { return kvtier::bench::Main(argc, argv); }
