// The BPF maps' contents as plain C++ containers: what the compiler wants
// (desired) and what the maps hold (live), the ordered diff between them and
// the writer interface that applies it.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <map>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "microseg/datapath.h"

namespace microseg {

// Orders map keys by their bytes, which is what the kernel compares too.
// Keys must be zero-initialised (`T key{};`) so padding compares equal.
// memcmp's order, read 8 and 4 bytes at a time as big-endian words (which
// compare like their bytes): the policy maps' lookups were dominated by
// library memcmp calls on 12- to 28-byte keys.
template <typename T>
struct BytewiseLess {
  bool operator()(const T& a, const T& b) const {
    const auto* x = reinterpret_cast<const unsigned char*>(&a);
    const auto* y = reinterpret_cast<const unsigned char*>(&b);
    size_t i = 0;
    for (; i + 8 <= sizeof(T); i += 8) {
      uint64_t u, v;
      std::memcpy(&u, x + i, 8);
      std::memcpy(&v, y + i, 8);
      if (u != v) return BigEndian(u) < BigEndian(v);
    }
    if (i + 4 <= sizeof(T)) {
      uint32_t u, v;
      std::memcpy(&u, x + i, 4);
      std::memcpy(&v, y + i, 4);
      if (u != v) return BigEndian(u) < BigEndian(v);
      i += 4;
    }
    for (; i < sizeof(T); ++i) {
      if (x[i] != y[i]) return x[i] < y[i];
    }
    return false;
  }

 private:
  template <typename Word>
  static Word BigEndian(Word word) {
    if constexpr (std::endian::native == std::endian::big) return word;
    if constexpr (sizeof(Word) == 8) return __builtin_bswap64(word);
    return __builtin_bswap32(word);
  }
};
template <typename T>
bool BytewiseEqual(const T& a, const T& b) {
  return std::memcmp(&a, &b, sizeof(T)) == 0;
}

// exact/lpm: ms_policy/ms_policy_lpm (IPv4 peers); exact6/lpm6: their
// IPv6 twins ms_policy6/ms_policy6_lpm.
struct MapState {
  using ExactMap = std::map<ms_policy_key, ms_policy_value, BytewiseLess<ms_policy_key>>;
  using LpmMap = std::map<ms_lpm_key, ms_policy_value, BytewiseLess<ms_lpm_key>>;
  using Exact6Map = std::map<ms_policy6_key, ms_policy_value, BytewiseLess<ms_policy6_key>>;
  using Lpm6Map = std::map<ms_lpm6_key, ms_policy_value, BytewiseLess<ms_lpm6_key>>;
  std::map<uint32_t, ms_endpoint> endpoints;  // key: host veth ifindex
  ExactMap exact;
  LpmMap lpm;
  Exact6Map exact6;
  Lpm6Map lpm6;
};

// Applied in member order. Policy entries are added before the endpoint flags
// that make them matter and removed only after, so a packet never sees an
// endpoint isolated without its allow entries.
struct MapChanges {
  std::vector<std::pair<ms_policy_key, ms_policy_value>> exact_upserts;
  std::vector<std::pair<ms_lpm_key, ms_policy_value>> lpm_upserts;
  std::vector<std::pair<ms_policy6_key, ms_policy_value>> exact6_upserts;
  std::vector<std::pair<ms_lpm6_key, ms_policy_value>> lpm6_upserts;
  std::vector<std::pair<uint32_t, ms_endpoint>> endpoint_upserts;
  std::vector<uint32_t> endpoint_deletes;
  std::vector<ms_policy_key> exact_deletes;
  std::vector<ms_lpm_key> lpm_deletes;
  std::vector<ms_policy6_key> exact6_deletes;
  std::vector<ms_lpm6_key> lpm6_deletes;

  bool empty() const {
    return exact_upserts.empty() && lpm_upserts.empty() && exact6_upserts.empty() && lpm6_upserts.empty() &&
           endpoint_upserts.empty() && endpoint_deletes.empty() && exact_deletes.empty() && lpm_deletes.empty() &&
           exact6_deletes.empty() && lpm6_deletes.empty();
  }
};

// Only entries that differ: unchanged entries produce no operation.
MapChanges DiffMapState(const MapState& live, const MapState& desired);

// Policy entries of one map, in the order a batch writes them.
template <typename Key>
using PolicyEntryList = std::vector<std::pair<Key, ms_policy_value>>;

// One map operation each; the real one writes BPF maps, tests use a fake.
class MapWriter {
 public:
  virtual ~MapWriter() = default;
  [[nodiscard]] virtual absl::Status UpsertEndpoint(uint32_t ifindex, const ms_endpoint& value) = 0;
  [[nodiscard]] virtual absl::Status DeleteEndpoint(uint32_t ifindex) = 0;
  [[nodiscard]] virtual absl::Status UpsertExact(const ms_policy_key& key, const ms_policy_value& value) = 0;
  [[nodiscard]] virtual absl::Status DeleteExact(const ms_policy_key& key) = 0;
  [[nodiscard]] virtual absl::Status UpsertLpm(const ms_lpm_key& key, const ms_policy_value& value) = 0;
  [[nodiscard]] virtual absl::Status DeleteLpm(const ms_lpm_key& key) = 0;
  [[nodiscard]] virtual absl::Status UpsertExact6(const ms_policy6_key& key, const ms_policy_value& value) = 0;
  [[nodiscard]] virtual absl::Status DeleteExact6(const ms_policy6_key& key) = 0;
  [[nodiscard]] virtual absl::Status UpsertLpm6(const ms_lpm6_key& key, const ms_policy_value& value) = 0;
  [[nodiscard]] virtual absl::Status DeleteLpm6(const ms_lpm6_key& key) = 0;

  // Ordered batches on one policy map: the entries are written one after
  // the other in the given order, each exactly as its single operation
  // would (a packet may see any prefix of a batch done, never another
  // order); `done` = how many took effect before the error returned
  // (deleting an absent key counts as done). The BPF writer sends a batch
  // in one syscall (BPF_MAP_UPDATE_BATCH / BPF_MAP_DELETE_BATCH, which the
  // kernel runs element by element in array order); these defaults make
  // one call per entry, so test writers see every step.
  [[nodiscard]] virtual absl::Status UpsertBatch(const PolicyEntryList<ms_policy_key>& entries, size_t& done);
  [[nodiscard]] virtual absl::Status UpsertBatch(const PolicyEntryList<ms_lpm_key>& entries, size_t& done);
  [[nodiscard]] virtual absl::Status UpsertBatch(const PolicyEntryList<ms_policy6_key>& entries, size_t& done);
  [[nodiscard]] virtual absl::Status UpsertBatch(const PolicyEntryList<ms_lpm6_key>& entries, size_t& done);
  [[nodiscard]] virtual absl::Status DeleteBatch(const std::vector<ms_policy_key>& keys, size_t& done);
  [[nodiscard]] virtual absl::Status DeleteBatch(const std::vector<ms_lpm_key>& keys, size_t& done);
  [[nodiscard]] virtual absl::Status DeleteBatch(const std::vector<ms_policy6_key>& keys, size_t& done);
  [[nodiscard]] virtual absl::Status DeleteBatch(const std::vector<ms_lpm6_key>& keys, size_t& done);
};

// The single operation of a MapWriter for each policy key type, so code
// over the four policy maps is written once.
[[nodiscard]] inline absl::Status UpsertEntry(MapWriter& writer, const ms_policy_key& key, const ms_policy_value& value) {
  return writer.UpsertExact(key, value);
}
[[nodiscard]] inline absl::Status UpsertEntry(MapWriter& writer, const ms_lpm_key& key, const ms_policy_value& value) {
  return writer.UpsertLpm(key, value);
}
[[nodiscard]] inline absl::Status UpsertEntry(MapWriter& writer, const ms_policy6_key& key, const ms_policy_value& value) {
  return writer.UpsertExact6(key, value);
}
[[nodiscard]] inline absl::Status UpsertEntry(MapWriter& writer, const ms_lpm6_key& key, const ms_policy_value& value) {
  return writer.UpsertLpm6(key, value);
}
[[nodiscard]] inline absl::Status DeleteEntry(MapWriter& writer, const ms_policy_key& key) { return writer.DeleteExact(key); }
[[nodiscard]] inline absl::Status DeleteEntry(MapWriter& writer, const ms_lpm_key& key) { return writer.DeleteLpm(key); }
[[nodiscard]] inline absl::Status DeleteEntry(MapWriter& writer, const ms_policy6_key& key) { return writer.DeleteExact6(key); }
[[nodiscard]] inline absl::Status DeleteEntry(MapWriter& writer, const ms_lpm6_key& key) { return writer.DeleteLpm6(key); }

// Applies `changes` in order and mirrors each successful operation into
// `live`, so after a failure `live` is exactly what the maps hold and the
// caller can roll back with DiffMapState(live, previous).
[[nodiscard]] absl::Status ApplyMapChanges(MapWriter& writer, const MapChanges& changes, MapState& live);

}  // namespace microseg
