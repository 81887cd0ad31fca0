// Helpers the Session files share (session.cc, session_put.cc, session_get.cc): packing keys
// for a request, the status of a block's code, a reply's tier for block i.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "frame_channel.h"
#include "kvtier.pb.h"
#include "kvtier/common/block_key.h"

namespace kvtier::client::session_internal {

inline std::string PackKeys(std::span<const BlockKey> keys) {
  return std::string(PackedFromKeys(keys));
}

inline std::string_view BlockCodeMessage(int32_t code) {
  switch (static_cast<absl::StatusCode>(code)) {
    case absl::StatusCode::kAlreadyExists:
      return "already cached";
    case absl::StatusCode::kNotFound:
      return "not cached";
    case absl::StatusCode::kResourceExhausted:
      return "no room in any tier even after eviction";
    case absl::StatusCode::kDeadlineExceeded:
      return "the arena lease expired before the commit; nothing was stored";
    case absl::StatusCode::kInvalidArgument:
      return "the daemon rejected the block's length";
    default:
      return "block failed";
  }
}

inline absl::Status CodeToStatus(int32_t code) { return BlockStatus(code, BlockCodeMessage(code)); }

inline proto::Tier TierAt(const std::string& tiers, size_t i) {
  if (i >= tiers.size()) return proto::TIER_NONE;
  const auto t = static_cast<uint8_t>(tiers[i]);
  return proto::Tier_IsValid(t) ? static_cast<proto::Tier>(t) : proto::TIER_NONE;
}

}  // namespace kvtier::client::session_internal
