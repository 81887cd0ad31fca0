#include "kvtier/compression/batch_encoder.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace kvtier {
namespace {

class CpuBatchEncoder final : public BatchEncoder {
 public:
  explicit CpuBatchEncoder(int threads) : threads_(std::max(threads, 1)) {}

  absl::Status Compress(std::span<CompressJob> jobs, const CodecOptions& options) override {
    return CompressBatch(jobs, options, threads_);
  }

  std::string Describe() const override { return absl::StrCat("cpu (", threads_, " threads)"); }

 private:
  const int threads_;
};

}  // namespace

std::unique_ptr<BatchEncoder> NewCpuBatchEncoder(int threads) {
  return std::make_unique<CpuBatchEncoder>(threads);
}

}  // namespace kvtier
