#include "namespace_file.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "namespace_registry.h"

namespace kvtier::server {
namespace {

NamespaceDescriptor Descriptor(std::string model, uint64_t block_bytes) {
  NamespaceDescriptor d;
  d.model_id = std::move(model);
  d.dtype = "bf16";
  d.block_tokens = 16;
  d.block_bytes = block_bytes;
  return d;
}

class NamespaceFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("kvtier-nsfile-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
    path_ = (dir_ / "namespaces").string();
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::filesystem::path dir_;
  std::string path_;
};

TEST_F(NamespaceFileTest, SavedIdsAndDescriptorsComeBack) {
  NamespaceRegistry registry;
  bool created = false;
  ASSERT_TRUE(registry.Open(Descriptor("a", 4096), {}, &created).ok());
  ASSERT_TRUE(registry.Open(Descriptor("b", 65536), {}, &created).ok());
  ASSERT_TRUE(SaveNamespaceFile(path_, registry.List()).ok());
  EXPECT_FALSE(std::filesystem::exists(path_ + ".tmp"));

  auto loaded = LoadNamespaceFile(path_);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  ASSERT_EQ(loaded->size(), 2u);
  EXPECT_EQ((*loaded)[0].id, 1u);
  EXPECT_EQ((*loaded)[1].descriptor, Descriptor("b", 65536));
  EXPECT_EQ((*loaded)[1].seed, registry.Get(2)->seed);
}

TEST_F(NamespaceFileTest, OptionsAreFixedAtCreationAndSaved) {
  NamespaceRegistry registry;
  bool created = false;
  proto::NamespaceOptions kvz;
  kvz.set_compression(proto::COMPRESSION_KVZ);
  ASSERT_TRUE(registry.Open(Descriptor("z", 4096), kvz, &created).ok());
  EXPECT_TRUE(created);
  // Another open with other options is refused; the same options find it.
  auto other = registry.Open(Descriptor("z", 4096), {}, &created);
  EXPECT_TRUE(absl::IsFailedPrecondition(other.status())) << other.status();
  auto same = registry.Open(Descriptor("z", 4096), kvz, &created);
  ASSERT_TRUE(same.ok());
  EXPECT_FALSE(created);
  ASSERT_TRUE(SaveNamespaceFile(path_, registry.List()).ok());
  auto loaded = LoadNamespaceFile(path_);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  ASSERT_EQ(loaded->size(), 1u);
  EXPECT_EQ((*loaded)[0].options.compression(), proto::COMPRESSION_KVZ);
  NamespaceRegistry restored;
  ASSERT_TRUE(
      restored.Restore((*loaded)[0].id, (*loaded)[0].descriptor, (*loaded)[0].options).ok());
  EXPECT_TRUE(
      absl::IsFailedPrecondition(restored.Open(Descriptor("z", 4096), {}, &created).status()));
}

TEST_F(NamespaceFileTest, MissingAndDamagedFilesAreTold) {
  EXPECT_TRUE(absl::IsNotFound(LoadNamespaceFile(path_).status()));
  NamespaceRegistry registry;
  bool created = false;
  ASSERT_TRUE(registry.Open(Descriptor("a", 4096), {}, &created).ok());
  ASSERT_TRUE(SaveNamespaceFile(path_, registry.List()).ok());
  const uint64_t size = std::filesystem::file_size(path_);
  // Every single flipped byte is caught (magic, length, checksum or payload).
  for (uint64_t at = 0; at < size; ++at) {
    ASSERT_TRUE(SaveNamespaceFile(path_, registry.List()).ok());
    std::fstream f(path_, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(static_cast<std::streamoff>(at));
    char c = 0;
    f.read(&c, 1);
    c = static_cast<char>(c ^ 0x10);
    f.seekp(static_cast<std::streamoff>(at));
    f.write(&c, 1);
    f.close();
    auto loaded = LoadNamespaceFile(path_);
    EXPECT_TRUE(absl::IsDataLoss(loaded.status())) << "byte " << at << ": " << loaded.status();
  }
  std::filesystem::resize_file(path_, size - 1);
  EXPECT_TRUE(absl::IsDataLoss(LoadNamespaceFile(path_).status()));
}

TEST(NamespaceRegistryTest, RestoredAndReservedIdsAreNeverHandedOutAgain) {
  NamespaceRegistry registry;
  ASSERT_TRUE(registry.Restore(3, Descriptor("a", 4096)).ok());
  EXPECT_TRUE(absl::IsAlreadyExists(registry.Restore(3, Descriptor("b", 4096))));
  EXPECT_TRUE(absl::IsAlreadyExists(registry.Restore(4, Descriptor("a", 4096))));
  EXPECT_TRUE(absl::IsInvalidArgument(registry.Restore(0, Descriptor("c", 4096))));
  // Ids the NVMe tier holds blocks under, with no descriptor known: skipped too.
  registry.ReserveIdsUpTo(7);
  bool created = false;
  auto a = registry.Open(Descriptor("a", 4096), {}, &created);
  ASSERT_TRUE(a.ok());
  EXPECT_FALSE(created);
  EXPECT_EQ(a->id, 3u);
  auto c = registry.Open(Descriptor("c", 4096), {}, &created);
  ASSERT_TRUE(c.ok());
  EXPECT_TRUE(created);
  EXPECT_EQ(c->id, 8u);
  EXPECT_EQ(registry.List().size(), 2u);
  EXPECT_FALSE(registry.Get(5).has_value());
}

}  // namespace
}  // namespace kvtier::server
