// MapWriter over the real BPF maps.
#pragma once

#include <array>
#include <atomic>

#include "bpf_datapath.h"
#include "map_state.h"

namespace microseg {

class BpfMapWriter final : public MapWriter {
 public:
  // The maps it writes, by fd (tests load the object without pinning it).
  struct MapFds {
    int endpoints = -1;
    int policy = -1;
    int policy_lpm = -1;
    int policy6 = -1;
    int policy6_lpm = -1;
  };

  explicit BpfMapWriter(const BpfDatapath& datapath)
      : BpfMapWriter(MapFds{datapath.endpoints_fd(), datapath.policy_fd(), datapath.policy_lpm_fd(),
                            datapath.policy6_fd(), datapath.policy6_lpm_fd()}) {}
  explicit BpfMapWriter(const MapFds& fds) : fds_(fds) {}

  absl::Status UpsertEndpoint(uint32_t ifindex, const ms_endpoint& value) override;
  absl::Status DeleteEndpoint(uint32_t ifindex) override;
  absl::Status UpsertExact(const ms_policy_key& key, const ms_policy_value& value) override;
  absl::Status DeleteExact(const ms_policy_key& key) override;
  absl::Status UpsertLpm(const ms_lpm_key& key, const ms_policy_value& value) override;
  absl::Status DeleteLpm(const ms_lpm_key& key) override;
  absl::Status UpsertExact6(const ms_policy6_key& key, const ms_policy_value& value) override;
  absl::Status DeleteExact6(const ms_policy6_key& key) override;
  absl::Status UpsertLpm6(const ms_lpm6_key& key, const ms_policy_value& value) override;
  absl::Status DeleteLpm6(const ms_lpm6_key& key) override;
  absl::Status UpsertBatch(const PolicyEntryList<ms_policy_key>& entries, size_t& done) override;
  absl::Status UpsertBatch(const PolicyEntryList<ms_lpm_key>& entries, size_t& done) override;
  absl::Status UpsertBatch(const PolicyEntryList<ms_policy6_key>& entries, size_t& done) override;
  absl::Status UpsertBatch(const PolicyEntryList<ms_lpm6_key>& entries, size_t& done) override;
  absl::Status DeleteBatch(const std::vector<ms_policy_key>& keys, size_t& done) override;
  absl::Status DeleteBatch(const std::vector<ms_lpm_key>& keys, size_t& done) override;
  absl::Status DeleteBatch(const std::vector<ms_policy6_key>& keys, size_t& done) override;
  absl::Status DeleteBatch(const std::vector<ms_lpm6_key>& keys, size_t& done) override;

  // Failed upserts per map (index: enum ms_pressure_map), for the metrics.
  uint64_t insert_failures(unsigned map) const { return map < MS_PMAP_MAX ? insert_failures_[map].load() : 0; }

 private:
  absl::Status Update(int fd, const void* key, const void* value, const char* name, unsigned map);
  template <typename Key>
  absl::Status UpdateBatch(int fd, const PolicyEntryList<Key>& entries, size_t& done, const char* name, unsigned map);
  template <typename Key>
  absl::Status DeleteBatchFrom(int fd, const std::vector<Key>& keys, size_t& done, const char* name);

  MapFds fds_;
  std::array<std::atomic<uint64_t>, MS_PMAP_MAX> insert_failures_{};
};

}  // namespace microseg
