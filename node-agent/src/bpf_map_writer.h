// MapWriter over the real BPF maps.
#pragma once

#include <array>
#include <atomic>

#include "bpf_datapath.h"
#include "map_state.h"

namespace microseg {

class BpfMapWriter final : public MapWriter {
 public:
  explicit BpfMapWriter(const BpfDatapath& datapath)
      : BpfMapWriter(datapath.endpoints_fd(), datapath.policy_fd(), datapath.policy_lpm_fd()) {}
  // The maps by fd (tests load the object without pinning it).
  BpfMapWriter(int endpoints_fd, int policy_fd, int policy_lpm_fd)
      : endpoints_fd_(endpoints_fd), policy_fd_(policy_fd), policy_lpm_fd_(policy_lpm_fd) {}

  absl::Status UpsertEndpoint(uint32_t ifindex, const ms_endpoint& value) override;
  absl::Status DeleteEndpoint(uint32_t ifindex) override;
  absl::Status UpsertExact(const ms_policy_key& key, const ms_policy_value& value) override;
  absl::Status DeleteExact(const ms_policy_key& key) override;
  absl::Status UpsertLpm(const ms_lpm_key& key, const ms_policy_value& value) override;
  absl::Status DeleteLpm(const ms_lpm_key& key) override;

  // Failed upserts per map (index: enum ms_pressure_map), for the metrics.
  uint64_t insert_failures(unsigned map) const { return map < MS_PMAP_MAX ? insert_failures_[map].load() : 0; }

 private:
  absl::Status Update(int fd, const void* key, const void* value, const char* name, unsigned map);

  int endpoints_fd_;
  int policy_fd_;
  int policy_lpm_fd_;
  std::array<std::atomic<uint64_t>, MS_PMAP_MAX> insert_failures_{};
};

}  // namespace microseg
