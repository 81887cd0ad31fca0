#include "tiers/src/nvme/index.h"

#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "kvtier/common/status_macros.h"
#include "kvtier/common/strings.h"
#include "rocksdb/db.h"
#include "rocksdb/options.h"
#include "rocksdb/table.h"
#include "rocksdb/write_batch.h"
#include "tiers/src/nvme/le.h"

namespace kvtier::tiers::nvme {
namespace {

constexpr char kBlock = 'B';
constexpr char kLocator = 'L';
constexpr char kRegion = 'R';
constexpr char kNamespace = 'N';
constexpr char kNextGeneration = 'G';
constexpr char kIdentity = 'I';
constexpr size_t kLocationBytes = 40;
constexpr uint8_t kLocationVersion = 1;
constexpr size_t kIdentityBytes = 40;

// The memtable is the index's largest fixed DRAM cost; 16 MiB keeps it small and flushes often
// enough that a restart replays little log.
constexpr size_t kWriteBufferBytes = 16u << 20;

absl::Status FromRocks(const rocksdb::Status& s, std::string_view what) {
  if (s.ok()) return absl::OkStatus();
  const std::string msg = absl::StrCat("NVMe index ", AbslView(what), ": ", s.ToString());
  if (s.IsNotFound()) return absl::NotFoundError(msg);
  if (s.IsCorruption()) return absl::DataLossError(msg);
  if (s.IsIOError()) return absl::UnavailableError(msg);
  return absl::InternalError(msg);
}

std::string Key(char kind, std::initializer_list<uint32_t> numbers, const BlockKey* key = nullptr) {
  std::string k(1 + 4 * numbers.size() + (key ? BlockKey::kSize : 0), '\0');
  k[0] = kind;
  auto* p = reinterpret_cast<std::byte*>(k.data()) + 1;
  for (uint32_t n : numbers) {
    StoreBe(p, n);
    p += 4;
  }
  if (key != nullptr) std::memcpy(p, key->bytes.data(), BlockKey::kSize);
  return k;
}

std::string BlockEntryKey(uint32_t ns, const BlockKey& key) { return Key(kBlock, {ns}, &key); }
std::string LocatorKey(uint32_t region, uint32_t offset) { return Key(kLocator, {region, offset}); }

std::string U64Value(uint64_t v) {
  std::string s(8, '\0');
  StoreLe64(reinterpret_cast<std::byte*>(s.data()), v);
  return s;
}

absl::StatusOr<uint64_t> ParseU64(const rocksdb::Slice& v) {
  if (v.size() != 8) return absl::DataLossError("NVMe index: malformed number value");
  return LoadLe64(reinterpret_cast<const std::byte*>(v.data()));
}

std::string EncodeLocation(const BlockLocation& l) {
  std::string s(kLocationBytes, '\0');
  auto* p = reinterpret_cast<std::byte*>(s.data());
  p[0] = std::byte{kLocationVersion};
  p[1] = std::byte{l.codec};
  p[2] = std::byte{l.flags};
  StoreLe32(p + 4, l.region);
  StoreLe32(p + 8, l.offset);
  StoreLe32(p + 12, l.expiry_unix_s);
  StoreLe64(p + 16, l.length);
  StoreLe64(p + 24, l.generation);
  StoreLe64(p + 32, l.checksum);
  return s;
}

absl::StatusOr<BlockLocation> DecodeLocation(const rocksdb::Slice& v) {
  const auto* p = reinterpret_cast<const std::byte*>(v.data());
  if (v.size() != kLocationBytes || static_cast<uint8_t>(p[0]) != kLocationVersion) {
    return absl::DataLossError("NVMe index: malformed block location");
  }
  BlockLocation l;
  l.codec = static_cast<uint8_t>(p[1]);
  l.flags = static_cast<uint8_t>(p[2]);
  l.region = LoadLe32(p + 4);
  l.offset = LoadLe32(p + 8);
  l.expiry_unix_s = LoadLe32(p + 12);
  l.length = LoadLe64(p + 16);
  l.generation = LoadLe64(p + 24);
  l.checksum = LoadLe64(p + 32);
  return l;
}

rocksdb::Options IndexOptions(uint64_t block_cache_bytes) {
  rocksdb::Options o;
  o.create_if_missing = true;
  o.paranoid_checks = true;
  o.OptimizeForPointLookup(std::max<uint64_t>(1, block_cache_bytes >> 20));
  o.write_buffer_size = kWriteBufferBytes;
  o.max_write_buffer_number = 2;
  o.wal_recovery_mode = rocksdb::WALRecoveryMode::kPointInTimeRecovery;
  o.keep_log_file_num = 3;
  o.max_log_file_size = 8u << 20;
  o.info_log_level = rocksdb::InfoLogLevel::WARN_LEVEL;
  o.skip_stats_update_on_db_open = true;
  return o;
}

bool IsLockError(const rocksdb::Status& s) {
  return s.IsIOError() && s.ToString().find("lock") != std::string::npos;
}

}  // namespace

NvmeIndex::Batch::Batch() : batch_(std::make_unique<rocksdb::WriteBatch>()) {}
NvmeIndex::Batch::~Batch() = default;

void NvmeIndex::Batch::PutBlock(uint32_t ns, const BlockKey& key, const BlockLocation& loc) {
  batch_->Put(BlockEntryKey(ns, key), EncodeLocation(loc));
  std::string who(4 + BlockKey::kSize, '\0');
  StoreLe32(reinterpret_cast<std::byte*>(who.data()), ns);
  std::memcpy(who.data() + 4, key.bytes.data(), BlockKey::kSize);
  batch_->Put(LocatorKey(loc.region, loc.offset), who);
}

void NvmeIndex::Batch::DeleteBlock(uint32_t ns, const BlockKey& key, const BlockLocation& loc) {
  DeleteBlockEntry(ns, key);
  DeleteLocator(loc.region, loc.offset);
}

void NvmeIndex::Batch::DeleteBlockEntry(uint32_t ns, const BlockKey& key) {
  batch_->Delete(BlockEntryKey(ns, key));
}

void NvmeIndex::Batch::DeleteLocator(uint32_t region, uint32_t offset) {
  batch_->Delete(LocatorKey(region, offset));
}

void NvmeIndex::Batch::PutRegion(uint32_t region, uint64_t generation) {
  batch_->Put(Key(kRegion, {region}), U64Value(generation));
}

void NvmeIndex::Batch::PutNextGeneration(uint64_t generation) {
  batch_->Put(std::string(1, kNextGeneration), U64Value(generation));
}

void NvmeIndex::Batch::PutNamespace(uint32_t ns, uint64_t block_bytes) {
  batch_->Put(Key(kNamespace, {ns}), U64Value(block_bytes));
}

void NvmeIndex::Batch::PutIdentity(const IndexIdentity& id) {
  std::string s(kIdentityBytes, '\0');
  auto* p = reinterpret_cast<std::byte*>(s.data());
  StoreLe64(p, id.instance_id);
  StoreLe32(p + 8, id.format);
  StoreLe32(p + 12, id.alignment);
  StoreLe64(p + 16, id.capacity_bytes);
  StoreLe64(p + 24, id.region_bytes);
  batch_->Put(std::string(1, kIdentity), s);
}

size_t NvmeIndex::Batch::Count() const { return batch_->Count(); }
void NvmeIndex::Batch::Clear() { batch_->Clear(); }

absl::StatusOr<std::unique_ptr<NvmeIndex>> NvmeIndex::Open(const std::string& path,
                                                           uint64_t block_cache_bytes,
                                                           OpenReport* report) {
  const rocksdb::Options options = IndexOptions(block_cache_bytes);
  rocksdb::DB* raw = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(options, path, &raw);
  if (!s.ok()) {
    if (IsLockError(s)) {
      return absl::UnavailableError(absl::StrCat(
          "NVMe index ", path,
          " is in use by another process (is another kvtierd running?): ", s.ToString()));
    }
    // The caller logs what it does about it (the tier: rebuild from the device or start empty).
    report->recreated = true;
    report->reason = s.ToString();
    if (!rocksdb::DestroyDB(path, options).ok()) {
      std::error_code ec;
      std::filesystem::remove_all(path, ec);
    }
    s = rocksdb::DB::Open(options, path, &raw);
    if (!s.ok()) {
      return absl::UnavailableError(
          absl::StrCat("NVMe index ", path, " cannot be created: ", s.ToString()));
    }
  }
  return std::unique_ptr<NvmeIndex>(new NvmeIndex(std::unique_ptr<rocksdb::DB>(raw)));
}

absl::Status NvmeIndex::Destroy(const std::string& path) {
  if (rocksdb::DestroyDB(path, IndexOptions(1 << 20)).ok()) return absl::OkStatus();
  std::error_code ec;
  std::filesystem::remove_all(path, ec);
  if (ec) {
    return absl::UnavailableError(
        absl::StrCat("cannot delete NVMe index ", path, ": ", ec.message()));
  }
  return absl::OkStatus();
}

NvmeIndex::NvmeIndex(std::unique_ptr<rocksdb::DB> db) : db_(std::move(db)) {}

NvmeIndex::~NvmeIndex() {
  if (db_ != nullptr) db_->Close();
}

absl::Status NvmeIndex::Commit(Batch& batch, bool sync) {
  rocksdb::WriteOptions wo;
  wo.sync = sync;
  return FromRocks(db_->Write(wo, batch.batch_.get()), "write");
}

absl::StatusOr<BlockLocation> NvmeIndex::GetBlock(uint32_t ns, const BlockKey& key) {
  rocksdb::PinnableSlice value;
  KVTIER_RETURN_IF_ERROR(FromRocks(
      db_->Get(rocksdb::ReadOptions(), db_->DefaultColumnFamily(), BlockEntryKey(ns, key), &value),
      "get"));
  return DecodeLocation(value);
}

absl::StatusOr<std::optional<IndexIdentity>> NvmeIndex::GetIdentity() {
  std::string value;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), std::string(1, kIdentity), &value);
  if (s.IsNotFound()) return std::optional<IndexIdentity>();
  KVTIER_RETURN_IF_ERROR(FromRocks(s, "get identity"));
  if (value.size() != kIdentityBytes) return absl::DataLossError("NVMe index: malformed identity");
  const auto* p = reinterpret_cast<const std::byte*>(value.data());
  IndexIdentity id;
  id.instance_id = LoadLe64(p);
  id.format = LoadLe32(p + 8);
  id.alignment = LoadLe32(p + 12);
  id.capacity_bytes = LoadLe64(p + 16);
  id.region_bytes = LoadLe64(p + 24);
  return std::optional<IndexIdentity>(id);
}

absl::StatusOr<uint64_t> NvmeIndex::GetNextGeneration() {
  std::string value;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), std::string(1, kNextGeneration), &value);
  if (s.IsNotFound()) return 0;
  KVTIER_RETURN_IF_ERROR(FromRocks(s, "get next generation"));
  return ParseU64(value);
}

namespace {

// Iterates the keys that start with `prefix`, calling fn(key, value) until it returns an error.
absl::Status Scan(
    rocksdb::DB* db, const std::string& prefix,
    const std::function<absl::Status(const rocksdb::Slice& key, const rocksdb::Slice& value)>& fn) {
  rocksdb::ReadOptions ro;
  ro.fill_cache = false;  // a full scan would only push the hot entries out
  ro.verify_checksums = true;
  std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(ro));
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
    KVTIER_RETURN_IF_ERROR(fn(it->key(), it->value()));
  }
  return FromRocks(it->status(), "scan");
}

const std::byte* Bytes(const rocksdb::Slice& s) {
  return reinterpret_cast<const std::byte*>(s.data());
}

}  // namespace

absl::Status NvmeIndex::ForEachNamespace(
    const std::function<void(uint32_t ns, uint64_t block_bytes)>& fn) {
  return Scan(db_.get(), std::string(1, kNamespace), [&](auto& k, auto& v) -> absl::Status {
    if (k.size() != 5) return absl::DataLossError("NVMe index: malformed namespace key");
    KVTIER_ASSIGN_OR_RETURN(uint64_t block_bytes, ParseU64(v));
    fn(LoadBe<uint32_t>(Bytes(k) + 1), block_bytes);
    return absl::OkStatus();
  });
}

absl::Status NvmeIndex::ForEachRegion(
    const std::function<void(uint32_t region, uint64_t gen)>& fn) {
  return Scan(db_.get(), std::string(1, kRegion), [&](auto& k, auto& v) -> absl::Status {
    if (k.size() != 5) return absl::DataLossError("NVMe index: malformed region key");
    KVTIER_ASSIGN_OR_RETURN(uint64_t gen, ParseU64(v));
    fn(LoadBe<uint32_t>(Bytes(k) + 1), gen);
    return absl::OkStatus();
  });
}

absl::Status NvmeIndex::ForEachBlock(
    const std::function<void(uint32_t ns, const BlockKey& key, const BlockLocation& loc)>& fn) {
  return Scan(db_.get(), std::string(1, kBlock), [&](auto& k, auto& v) -> absl::Status {
    if (k.size() != 5 + BlockKey::kSize) {
      return absl::DataLossError("NVMe index: malformed block key");
    }
    KVTIER_ASSIGN_OR_RETURN(BlockLocation loc, DecodeLocation(v));
    fn(LoadBe<uint32_t>(Bytes(k) + 1), BlockKey::FromBytes(k.data() + 5), loc);
    return absl::OkStatus();
  });
}

absl::Status NvmeIndex::ForEachInRegion(
    uint32_t region,
    const std::function<void(uint32_t offset, uint32_t ns, const BlockKey& key)>& fn) {
  return Scan(db_.get(), Key(kLocator, {region}), [&](auto& k, auto& v) -> absl::Status {
    if (k.size() != 9 || v.size() != 4 + BlockKey::kSize) {
      return absl::DataLossError("NVMe index: malformed locator");
    }
    fn(LoadBe<uint32_t>(Bytes(k) + 5), LoadLe32(Bytes(v)), BlockKey::FromBytes(v.data() + 4));
    return absl::OkStatus();
  });
}

absl::Status NvmeIndex::ScanRegion(
    uint32_t region, uint32_t from_offset,
    const std::function<bool(uint32_t offset, uint32_t ns, const BlockKey& key)>& fn) {
  const std::string prefix = Key(kLocator, {region});
  rocksdb::ReadOptions ro;
  ro.verify_checksums = true;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro));
  for (it->Seek(LocatorKey(region, from_offset)); it->Valid() && it->key().starts_with(prefix);
       it->Next()) {
    const rocksdb::Slice k = it->key();
    const rocksdb::Slice v = it->value();
    if (k.size() != 9 || v.size() != 4 + BlockKey::kSize) {
      return absl::DataLossError("NVMe index: malformed locator");
    }
    if (!fn(LoadBe<uint32_t>(Bytes(k) + 5), LoadLe32(Bytes(v)),
            BlockKey::FromBytes(v.data() + 4))) {
      break;
    }
  }
  return FromRocks(it->status(), "scan");
}

absl::Status NvmeIndex::Clear() {
  rocksdb::WriteBatch batch;
  // Every key starts with one uppercase letter, so ["\0", "\x7f") covers the keyspace.
  batch.DeleteRange(std::string(1, '\0'), std::string(1, '\x7f'));
  rocksdb::WriteOptions wo;
  wo.sync = true;
  return FromRocks(db_->Write(wo, &batch), "clear");
}

absl::Status NvmeIndex::Flush() { return FromRocks(db_->Flush(rocksdb::FlushOptions()), "flush"); }

uint64_t NvmeIndex::MemoryBytes() {
  uint64_t total = 0;
  for (const char* property : {"rocksdb.estimate-table-readers-mem",
                               "rocksdb.cur-size-all-mem-tables", "rocksdb.block-cache-usage"}) {
    uint64_t v = 0;
    if (db_->GetIntProperty(property, &v)) total += v;
  }
  return total;
}

}  // namespace kvtier::tiers::nvme
