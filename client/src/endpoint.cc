#include "kvtier/client/endpoint.h"

#include <sys/un.h>

#include <string>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "kvtier/common/strings.h"

namespace kvtier::client {
namespace {

constexpr std::string_view kForms =
    "expected unix:///path/to.sock, a bare socket path, or tcp://host:port";

absl::Status Bad(std::string_view uri, std::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat(
      "bad kvtierd address \"", AbslView(uri), "\": ", AbslView(why), " (", AbslView(kForms), ")"));
}

absl::StatusOr<Endpoint> ParseUnix(std::string_view uri, std::string_view path) {
  if (path.empty()) return Bad(uri, "empty socket path");
  // sun_path holds the path and its terminating NUL.
  constexpr size_t kMaxPath = sizeof(sockaddr_un::sun_path) - 1;
  if (path.size() > kMaxPath) {
    return Bad(uri, absl::StrCat("socket path is ", path.size(), " bytes, the kernel allows ",
                                 kMaxPath, "; use a shorter or relative path"));
  }
  Endpoint e;
  e.kind = Endpoint::Kind::kUnix;
  e.path = std::string(path);
  return e;
}

absl::StatusOr<Endpoint> ParseTcp(std::string_view uri, std::string_view rest) {
  std::string_view host;
  std::string_view port;
  if (!rest.empty() && rest.front() == '[') {  // [v6-literal]:port
    const size_t close = rest.find(']');
    if (close == std::string_view::npos) return Bad(uri, "unterminated '[' in host");
    host = rest.substr(1, close - 1);
    std::string_view after = rest.substr(close + 1);
    if (after.empty() || after.front() != ':') return Bad(uri, "missing :port");
    port = after.substr(1);
  } else {
    const size_t colon = rest.rfind(':');
    if (colon == std::string_view::npos) return Bad(uri, "missing :port");
    host = rest.substr(0, colon);
    port = rest.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) {
      return Bad(uri, "IPv6 addresses need brackets, e.g. tcp://[::1]:7070");
    }
  }
  if (host.empty()) return Bad(uri, "empty host");
  uint32_t port_number = 0;
  if (!absl::SimpleAtoi(AbslView(port), &port_number) || port_number == 0 || port_number > 65535) {
    return Bad(uri, absl::StrCat("port \"", AbslView(port), "\" is not in 1..65535"));
  }
  Endpoint e;
  e.kind = Endpoint::Kind::kTcp;
  e.host = std::string(host);
  e.port = static_cast<uint16_t>(port_number);
  return e;
}

}  // namespace

std::string Endpoint::ToUri() const {
  if (kind == Kind::kUnix) return absl::StrCat("unix://", path);
  if (host.find(':') != std::string::npos) return absl::StrCat("tcp://[", host, "]:", port);
  return absl::StrCat("tcp://", host, ":", port);
}

absl::StatusOr<Endpoint> ParseEndpoint(std::string_view uri) {
  if (uri.empty()) return Bad(uri, "empty address");
  const size_t scheme_end = uri.find("://");
  if (scheme_end == std::string_view::npos) return ParseUnix(uri, uri);
  const std::string_view scheme = uri.substr(0, scheme_end);
  const std::string_view rest = uri.substr(scheme_end + 3);
  if (scheme == "unix") return ParseUnix(uri, rest);
  if (scheme == "tcp") return ParseTcp(uri, rest);
  return Bad(uri, absl::StrCat("unknown scheme \"", AbslView(scheme), "\""));
}

}  // namespace kvtier::client
