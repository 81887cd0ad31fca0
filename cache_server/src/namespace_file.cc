#include "namespace_file.h"

#include <fcntl.h>
#include <unistd.h>
#include <xxhash.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "kvtier.pb.h"
#include "kvtier/kernels/block_hash.h"
#include "kvtier/proto/messages.h"

namespace kvtier::server {
namespace {

constexpr char kMagic[8] = {'K', 'V', 'T', 'N', 'S', 'v', '0', '1'};
constexpr size_t kHeaderBytes = 8 + 4 + 8;
constexpr size_t kMaxPayload = 64u << 20;

absl::Status Errno(const std::string& what) {
  return absl::UnavailableError(absl::StrCat(what, ": ", std::strerror(errno)));
}

absl::Status WriteAll(int fd, const std::string& data, const std::string& path) {
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Errno(absl::StrCat("cannot write ", path));
    }
    done += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::vector<NamespaceInfo>> LoadNamespaceFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    if (!std::filesystem::exists(path)) {
      return absl::NotFoundError(absl::StrCat("namespace file ", path, " does not exist"));
    }
    return absl::UnavailableError(absl::StrCat("cannot open namespace file ", path));
  }
  std::stringstream buffer;
  buffer << in.rdbuf();
  const std::string data = buffer.str();
  auto damaged = [&](std::string_view what) {
    return absl::DataLossError(
        absl::StrCat("namespace file ", path, " is damaged (", std::string(what), ")"));
  };
  if (data.size() < kHeaderBytes || std::memcmp(data.data(), kMagic, 8) != 0) {
    return damaged("bad header");
  }
  uint32_t length = 0;
  uint64_t checksum = 0;
  std::memcpy(&length, data.data() + 8, 4);
  std::memcpy(&checksum, data.data() + 12, 8);
  if (length > kMaxPayload || data.size() != kHeaderBytes + length) return damaged("bad length");
  const char* payload = data.data() + kHeaderBytes;
  if (XXH64(payload, length, 0) != checksum) return damaged("checksum mismatch");
  proto::PersistedNamespaces file;
  if (!file.ParseFromArray(payload, static_cast<int>(length))) return damaged("bad payload");
  std::vector<NamespaceInfo> out;
  out.reserve(file.namespaces_size());
  for (const proto::PersistedNamespace& n : file.namespaces()) {
    NamespaceInfo info;
    info.id = n.id();
    info.descriptor = proto::ToDescriptor(n.namespace_descriptor());
    info.seed = NamespaceSeed(info.descriptor);
    info.options = n.options();
    out.push_back(std::move(info));
  }
  return out;
}

absl::Status SaveNamespaceFile(const std::string& path,
                               const std::vector<NamespaceInfo>& namespaces) {
  proto::PersistedNamespaces file;
  for (const NamespaceInfo& info : namespaces) {
    proto::PersistedNamespace* n = file.add_namespaces();
    n->set_id(info.id);
    *n->mutable_namespace_descriptor() = proto::ToProto(info.descriptor);
    *n->mutable_options() = info.options;
  }
  const std::string payload = file.SerializeAsString();
  std::string data(kMagic, 8);
  const uint32_t length = static_cast<uint32_t>(payload.size());
  const uint64_t checksum = XXH64(payload.data(), payload.size(), 0);
  data.append(reinterpret_cast<const char*>(&length), 4);
  data.append(reinterpret_cast<const char*>(&checksum), 8);
  data += payload;

  const std::string tmp = path + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return Errno(absl::StrCat("cannot create ", tmp));
  absl::Status s = WriteAll(fd, data, tmp);
  if (s.ok() && ::fsync(fd) != 0) s = Errno(absl::StrCat("cannot sync ", tmp));
  ::close(fd);
  if (!s.ok()) return s;
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    return Errno(absl::StrCat("cannot rename ", tmp, " to ", path));
  }
  const std::string dir = std::filesystem::path(path).parent_path().string();
  const int dfd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) return Errno(absl::StrCat("cannot open directory ", dir));
  const bool synced = ::fsync(dfd) == 0;
  ::close(dfd);
  if (!synced) return Errno(absl::StrCat("cannot sync directory ", dir));
  return absl::OkStatus();
}

}  // namespace kvtier::server
