#include "backend.h"

#include "absl/strings/str_cat.h"

namespace kvtier::bench {

bool BackendAvailable(const std::string& kind) {
  if (kind == "kvtier") return true;
#ifdef KVTIER_BENCH_HAVE_REDIS
  if (kind == "redis") return true;
#endif
#ifdef KVTIER_BENCH_HAVE_MEMCACHED
  if (kind == "memcached") return true;
#endif
  return false;
}

absl::StatusOr<std::unique_ptr<Backend>> OpenBackend(const BackendOptions& options) {
  if (!BackendAvailable(options.kind)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "backend \"", options.kind,
        "\" is not available in this build (kvtier always is; redis and memcached need hiredis "
        "and libmemcached at build time)"));
  }
  if (options.kind == "redis") return OpenRedisBackend(options);
  if (options.kind == "memcached") return OpenMemcachedBackend(options);
  return OpenKvtierBackend(options);
}

}  // namespace kvtier::bench
