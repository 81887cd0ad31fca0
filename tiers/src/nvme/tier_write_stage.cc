// NvmeTier's write stage: placing queued blocks in the active region and streaming their records
// to the device, one thread.
//
// The stage keeps one device submission open for as long as calls keep arriving
// (NvmeDevice::SubmitStream): while the records of one group of calls are in flight, the next
// group is placed and its records join the same queue, so that the device does not drain
// between groups (at 256 KiB records and queue depth 32 that drain cost about a tenth of the
// write rate). Each group's records form a segment; a segment goes to the commit thread as soon
// as all of its records have completed and every earlier segment has gone, so commit jobs keep
// the order in which the blocks were placed (a key written twice is indexed at its later copy).
//
// The stream ends, and the device drains, only where it must: when the active region is full
// and the next one holds live records (reclaiming it waits for every commit in flight), when
// no call is waiting, or when another thread wants write_mu_ (Remove, SetPinned, ...), so that
// a steady flow of writes cannot starve them.
#include <algorithm>
#include <array>
#include <cstring>
#include <deque>
#include <iterator>
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "tiers/src/nvme/record.h"
#include "tiers/src/nvme/tier_impl.h"

namespace kvtier::tiers {

using nvme::AlignedBytes;
using nvme::RecordBytes;
using nvme::RoundUp;

// The records of one placement run on their way to the device: their buffers and ops, and the
// commit job they become once every op has completed.
struct NvmeTier::Impl::WriteSegment {
  AlignedBytes headers;
  std::vector<AlignedBytes> staging;  // padded copies of unaligned payloads
  std::vector<std::array<IoSegment, 2>> io;
  std::vector<IoOp> ops;
  CommitJob job;
  size_t unfinished = 0;  // ops not completed yet
};

void NvmeTier::Impl::WriteLoop() {
  while (true) {
    PlaceCursor cur;
    {
      absl::MutexLock lock(&pipe_mu_);
      pipe_mu_.Await(absl::Condition(
          +[](Impl* self) ABSL_EXCLUSIVE_LOCKS_REQUIRED(self->pipe_mu_) {
            return self->stopping_ || !self->write_queue_.empty();
          },
          this));
      if (write_queue_.empty()) return;
      cur.calls.assign(std::make_move_iterator(write_queue_.begin()),
                       std::make_move_iterator(write_queue_.end()));
      write_queue_.clear();
      writing_ = true;
    }
    {
      absl::MutexLock wlock(&write_mu_);
      WriteBlocks(cur, /*take_queued=*/true);
    }
    // `done` may call back into the tier, so the holds that were the calls' last go here,
    // outside write_mu_.
    for (const auto& call : cur.deferred) ReleaseCall(call);
    absl::MutexLock lock(&pipe_mu_);
    writing_ = false;
  }
}

void NvmeTier::Impl::PlaceBlocks(PlaceCursor& cur, std::vector<Placed>& placed) {
  cur.blocked = false;
  while (cur.call < cur.calls.size()) {
    WriteCall& call = *cur.calls[cur.call];
    if (cur.block == call.blocks.size()) {
      ++cur.call;
      cur.block = 0;
      continue;
    }
    const PendingBlock& b = call.blocks[cur.block];
    const uint64_t record_bytes = RecordBytes(b.payload.size(), alignment_);
    if (record_bytes > sb_.region_bytes) {
      *b.status = absl::InvalidArgumentError("block does not fit an NVMe region");
      ++cur.block;
      continue;
    }
    {
      absl::MutexLock lock(&mu_);
      if (std::optional<uint32_t> offset = log_->Allocate(record_bytes)) {
        const uint32_t region = *log_->active();
        log_->AddPending(region);  // until CommitLoop has committed (or failed) it
        placed.push_back(Placed{&b, &call, region, *offset, log_->generation(region)});
        ++cur.block;
        continue;
      }
    }
    // The active region is full. If the next region holds nothing (a free region, one emptied
    // by removals, or one reclaimed ahead), it is opened at once and placement goes on, so that
    // the records on both sides of the boundary reach the device in one submission. Otherwise
    // placement stops here: reclaiming that region waits for every commit in flight.
    absl::StatusOr<bool> opened = OpenQuietRegion();
    if (opened.ok() && *opened) {
      ReclaimAhead(call.keep_from);
      continue;
    }
    cur.open_error = opened.ok() ? absl::OkStatus() : opened.status();
    cur.blocked = true;
    return;
  }
}

void NvmeTier::Impl::WriteBlocks(PlaceCursor& cur, bool take_queued) {
  int evictions_left = static_cast<int>(sb_.region_count) + 1;
  while (true) {
    std::vector<Placed> placed;
    PlaceBlocks(cur, placed);
    if (!placed.empty()) StreamRecords(cur, std::move(placed), take_queued, evictions_left);
    DropWriterHolds(cur);
    if (!cur.blocked) return;
    if (cur.open_error.ok() && ReclaimPending()) {
      // The commit thread is reclaiming regions for us: waiting for it (and the commits
      // before it) is all a reclaim here would do too.
      Drain();
      continue;
    }
    WriteCall& call = *cur.calls[cur.call];
    if (cur.open_error.ok() && ReclaimsFrom(call.keep_from)) {
      // The call's remaining blocks would evict records it asked to keep; other calls go on
      // (their region may be opened for them).
      for (; cur.block < call.blocks.size(); ++cur.block) {
        *call.blocks[cur.block].status = absl::ResourceExhaustedError(
            "NVMe tier full: more room would reclaim a region written since the write's "
            "keep_from mark");
      }
      continue;
    }
    const absl::Status s =
        cur.open_error.ok() ? OpenNextRegion(evictions_left, call.keep_from) : cur.open_error;
    if (!s.ok()) {
      for (; cur.call < cur.calls.size(); ++cur.call, cur.block = 0) {
        const std::vector<PendingBlock>& blocks = cur.calls[cur.call]->blocks;
        for (; cur.block < blocks.size(); ++cur.block) *blocks[cur.block].status = s;
      }
      DropWriterHolds(cur);
      return;
    }
  }
}

std::unique_ptr<NvmeTier::Impl::WriteSegment> NvmeTier::Impl::BuildSegment(
    PlaceCursor& cur, std::vector<Placed> placed) {
  auto seg = std::make_unique<WriteSegment>();
  const size_t n = placed.size();
  seg->headers = nvme::AllocateAligned(n * alignment_, alignment_);
  seg->staging.resize(n);
  seg->io.resize(n);
  seg->ops.resize(n);
  for (size_t k = 0; k < n; ++k) {
    const Placed& p = placed[k];
    const PendingBlock& b = *p.block;
    const uint64_t len = b.payload.size();
    std::byte* header = seg->headers.get() + k * alignment_;
    nvme::EncodeRecordHeader(nvme::RecordHeader{b.ns, b.key, len, p.generation, b.checksum,
                                                b.expiry_unix_s, b.codec, b.flags},
                             {header, alignment_});
    seg->io[k][0] = {header, alignment_};
    // Aligned payloads (the DRAM arena's slots are) go to the device as they are; others are
    // copied into a padded buffer, since O_DIRECT takes whole aligned units.
    if ((reinterpret_cast<uintptr_t>(b.payload.data()) & (alignment_ - 1)) == 0 &&
        len % alignment_ == 0) {
      seg->io[k][1] = {const_cast<std::byte*>(b.payload.data()), len};
    } else {
      seg->staging[k] = nvme::AllocateAligned(len, alignment_);
      std::memcpy(seg->staging[k].get(), b.payload.data(), len);
      seg->io[k][1] = {seg->staging[k].get(), RoundUp(len, alignment_)};
    }
    seg->ops[k].type = IoOp::Type::kWrite;
    seg->ops[k].offset = RegionOffset(p.region) + p.offset;
    seg->ops[k].segments = seg->io[k];
  }
  seg->unfinished = n;
  seg->job.io_status.resize(n);
  seg->job.placed = std::move(placed);
  // The job holds a count on each call it carries, taken now, so that the writer's own hold
  // can go as soon as a call is wholly placed.
  absl::MutexLock lock(&pipe_mu_);
  for (const Placed& p : seg->job.placed) {
    if (!seg->job.calls.empty() && seg->job.calls.back().get() == p.call) continue;
    auto it = std::find_if(cur.calls.begin(), cur.calls.end(),
                           [&](const auto& c) { return c.get() == p.call; });
    ++(*it)->outstanding;
    seg->job.calls.push_back(*it);
  }
  return seg;
}

void NvmeTier::Impl::StreamRecords(PlaceCursor& cur, std::vector<Placed> placed, bool take_queued,
                                   int& evictions_left) {
  // In placement order; the front ones leave for the commit thread as they complete.
  std::deque<std::unique_ptr<WriteSegment>> open;
  // Segments handed to the commit thread, freed at the next `more()` (see SubmitStream).
  std::vector<std::unique_ptr<WriteSegment>> retired;
  absl::Mutex seg_mu;  // the default SubmitStream may complete ops on several threads

  auto on_complete = [&](IoOp& op) {
    absl::MutexLock lock(&seg_mu);
    for (auto& seg : open) {
      if (&op < seg->ops.data() || &op >= seg->ops.data() + seg->ops.size()) continue;
      seg->job.io_status[static_cast<size_t>(&op - seg->ops.data())] = op.status;
      --seg->unfinished;
      break;
    }
    while (!open.empty() && open.front()->unfinished == 0) {
      {
        absl::MutexLock pipe_lock(&pipe_mu_);
        commit_queue_.push_back(std::move(open.front()->job));
      }
      retired.push_back(std::move(open.front()));
      open.pop_front();
    }
  };
  auto more = [&]() -> std::span<IoOp> {
    {
      absl::MutexLock lock(&seg_mu);
      retired.clear();
    }
    DropWriterHolds(cur);
    if (!take_queued || cur.blocked || write_mu_wanted_.load(std::memory_order_relaxed) > 0) {
      return {};
    }
    {
      absl::MutexLock lock(&pipe_mu_);
      if (write_queue_.empty()) return {};
      std::move(write_queue_.begin(), write_queue_.end(), std::back_inserter(cur.calls));
      write_queue_.clear();
    }
    // A new group of calls: the bound on reclaims (which catches a tier full of pins) is per
    // group, as it is for the group the stream started with.
    evictions_left = static_cast<int>(sb_.region_count) + 1;
    std::vector<Placed> next;
    PlaceBlocks(cur, next);
    if (next.empty()) return {};
    std::unique_ptr<WriteSegment> seg = BuildSegment(cur, std::move(next));
    const std::span<IoOp> ops = seg->ops;
    absl::MutexLock lock(&seg_mu);
    open.push_back(std::move(seg));
    return ops;
  };

  std::unique_ptr<WriteSegment> first = BuildSegment(cur, std::move(placed));
  const std::span<IoOp> first_ops = first->ops;
  open.push_back(std::move(first));
  (void)device_->SubmitStream(first_ops, on_complete, more);
}

void NvmeTier::Impl::DropWriterHolds(PlaceCursor& cur) {
  // Calls before cur.call are wholly placed (blocked or not, the one at cur.call is not). They
  // leave the cursor too, so that a stream running for minutes keeps only the calls in hand.
  {
    absl::MutexLock lock(&pipe_mu_);
    for (size_t i = 0; i < cur.call; ++i) {
      const std::shared_ptr<WriteCall>& call = cur.calls[i];
      if (call->outstanding > 1) {
        --call->outstanding;  // a commit job still holds it and runs `done`
      } else {
        cur.deferred.push_back(call);  // the last hold: dropped outside write_mu_
      }
    }
  }
  cur.calls.erase(cur.calls.begin(), cur.calls.begin() + static_cast<ptrdiff_t>(cur.call));
  cur.call = 0;
}

void NvmeTier::Impl::ReleaseCall(const std::shared_ptr<WriteCall>& call) {
  {
    absl::MutexLock lock(&pipe_mu_);
    if (--call->outstanding > 0) return;
  }
  if (call->done) call->done(std::move(call->statuses));
}

void NvmeTier::Impl::Drain() {
  absl::MutexLock lock(&pipe_mu_);
  pipe_mu_.Await(absl::Condition(
      +[](Impl* self) ABSL_EXCLUSIVE_LOCKS_REQUIRED(self->pipe_mu_) {
        return self->commit_queue_.empty() && !self->committing_;
      },
      this));
}

void NvmeTier::Impl::DrainAll() {
  absl::MutexLock lock(&pipe_mu_);
  pipe_mu_.Await(absl::Condition(
      +[](Impl* self) ABSL_EXCLUSIVE_LOCKS_REQUIRED(self->pipe_mu_) {
        return self->write_queue_.empty() && self->commit_queue_.empty() && !self->writing_ &&
               !self->committing_;
      },
      this));
}

}  // namespace kvtier::tiers
