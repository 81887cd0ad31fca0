// kvtier-keys: computes block keys for cases given as JSON, for cross-checking other
// implementations (tools/keys_reference.py --cross-check) and for debugging a key mismatch by
// hand.
//
//   kvtier-keys < cases.json > keys.json
//
// Input: {"cases": [{"name", "descriptor": {...}, "tokens": [...]}, ...]} (the format of
// kernels/testdata/key_vectors.json; other top-level fields and any precomputed outputs are
// ignored). Output: the same document with canonical_encoding_hex, seed and keys of every case
// computed by kvtier's C++ implementation. Exit status 0 on success, 2 on unreadable input.
#include <cstdio>
#include <iostream>
#include <iterator>
#include <string>
#include <string_view>

#include "key_vectors.h"
#include "nlohmann/json.hpp"

namespace {

int Fail(std::string_view message) {
  std::cerr << "kvtier-keys: " << message << "\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1) {
    std::cerr << "usage: kvtier-keys < cases.json > keys.json\n"
                 "Reads {\"cases\": [{\"descriptor\", \"tokens\"}...]} and writes it back with "
                 "canonical_encoding_hex, seed and keys computed (docs/keys.md).\n";
    return std::string_view(argv[1]) == "--help" ? 0 : 2;
  }
  const std::string input{std::istreambuf_iterator<char>(std::cin),
                          std::istreambuf_iterator<char>()};
  nlohmann::json doc = nlohmann::json::parse(input, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return Fail("input is not valid JSON");
  if (!doc.is_object() || !doc.contains("cases") || !doc["cases"].is_array()) {
    return Fail("input must be an object with a \"cases\" array");
  }
  for (nlohmann::json& c : doc["cases"]) {
    absl::StatusOr<nlohmann::json> computed = kvtier::ComputeKeyCase(c);
    if (!computed.ok()) return Fail(computed.status().ToString());
    c = *std::move(computed);
  }
  // Non-ASCII model ids are written back as UTF-8; invalid UTF-8 cannot occur because the input
  // was parsed as JSON text.
  std::cout << doc.dump() << "\n";
  return std::cout.good() ? 0 : Fail("cannot write the output");
}
