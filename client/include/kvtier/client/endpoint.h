// Endpoint: where a kvtierd listens, parsed from the URI a user types.
//
// Accepted forms:
//   unix:///abs/path.sock   unix://rel/path.sock   /abs/path.sock   ./rel/path.sock   (Unix socket)
//   tcp://host:port         tcp://[::1]:port                                        (TCP)
// A string without "://" is read as a Unix socket path, so `--socket ./var/kvtierd.sock` and
// the same path as a URI mean one thing. Pure value type; thread-compatible.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace kvtier::client {

struct Endpoint {
  enum class Kind { kUnix, kTcp };
  Kind kind = Kind::kUnix;
  std::string path;   // kUnix: the socket path, as given (relative paths stay relative)
  std::string host;   // kTcp: a name or address literal, without brackets
  uint16_t port = 0;  // kTcp: 1..65535

  // The canonical URI: "unix://<path>" or "tcp://<host>:<port>" (IPv6 hosts in brackets).
  std::string ToUri() const;
};

// Parses `uri` in one of the forms above. InvalidArgument naming the accepted forms for an
// unknown scheme, an empty path, a Unix path longer than the kernel's 107-byte limit, a missing
// or out-of-range port.
absl::StatusOr<Endpoint> ParseEndpoint(std::string_view uri);

}  // namespace kvtier::client
