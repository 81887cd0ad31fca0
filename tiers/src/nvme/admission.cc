#include <algorithm>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "kvtier/common/status_macros.h"
#include "kvtier/common/strings.h"
#include "kvtier/common/units.h"
#include "kvtier/tiers/nvme_admission.h"

namespace kvtier::tiers {
namespace {

class AdmitAll final : public NvmeAdmissionPolicy {
 public:
  std::string_view Name() const override { return "all"; }
  bool Admit(const AdmissionRequest&) override { return true; }
};

class MinHits final : public NvmeAdmissionPolicy {
 public:
  explicit MinHits(uint32_t min_hits)
      : min_hits_(min_hits), name_(absl::StrCat("hits:", min_hits)) {}
  std::string_view Name() const override { return name_; }
  bool Admit(const AdmissionRequest& r) override { return r.upper_tier_hits >= min_hits_; }

 private:
  const uint32_t min_hits_;
  const std::string name_;
};

class WriteRate final : public NvmeAdmissionPolicy {
 public:
  WriteRate(uint64_t bytes_per_second, uint64_t burst_bytes, const Clock* clock)
      : rate_(bytes_per_second),
        burst_(std::max(burst_bytes, uint64_t{1})),
        clock_(clock),
        tokens_(static_cast<double>(burst_)),
        last_ns_(clock->NowNanos()),
        name_(absl::StrCat("rate:", FormatByteSize(bytes_per_second), "/s")) {}

  std::string_view Name() const override { return name_; }

  bool Admit(const AdmissionRequest& r) override {
    const int64_t now = clock_->NowNanos();
    tokens_ =
        std::min(static_cast<double>(burst_),
                 tokens_ + static_cast<double>(now - last_ns_) * 1e-9 * static_cast<double>(rate_));
    last_ns_ = now;
    if (tokens_ < static_cast<double>(r.length)) return false;
    tokens_ -= static_cast<double>(r.length);
    return true;
  }

 private:
  const uint64_t rate_;
  const uint64_t burst_;
  const Clock* clock_;
  double tokens_;
  int64_t last_ns_;
  const std::string name_;
};

}  // namespace

std::unique_ptr<NvmeAdmissionPolicy> NewAdmitAllPolicy() { return std::make_unique<AdmitAll>(); }

std::unique_ptr<NvmeAdmissionPolicy> NewMinHitsAdmissionPolicy(uint32_t min_hits) {
  return std::make_unique<MinHits>(min_hits);
}

std::unique_ptr<NvmeAdmissionPolicy> NewWriteRateAdmissionPolicy(uint64_t bytes_per_second,
                                                                 uint64_t burst_bytes,
                                                                 const Clock* clock) {
  return std::make_unique<WriteRate>(bytes_per_second, burst_bytes, clock);
}

absl::StatusOr<std::unique_ptr<NvmeAdmissionPolicy>> ParseAdmissionPolicy(std::string_view spec,
                                                                          const Clock* clock) {
  const absl::string_view s = AbslView(spec);
  const auto bad = [&] {
    return absl::InvalidArgumentError(absl::StrCat(
        "NVMe admission policy \"", s,
        "\" not understood: use all, hits:N (e.g. hits:1) or rate:SIZE/s (e.g. rate:200MiB/s)"));
  };
  if (s == "all") return NewAdmitAllPolicy();
  if (absl::StartsWith(s, "hits:")) {
    uint32_t n = 0;
    if (!absl::SimpleAtoi(s.substr(5), &n)) return bad();
    return NewMinHitsAdmissionPolicy(n);
  }
  if (absl::StartsWith(s, "rate:") && absl::EndsWith(s, "/s")) {
    absl::StatusOr<uint64_t> rate = ParseByteSize(StdView(s.substr(5, s.size() - 7)));
    if (!rate.ok() || *rate == 0) return bad();
    return NewWriteRateAdmissionPolicy(*rate, *rate, clock);
  }
  return bad();
}

}  // namespace kvtier::tiers
