// MapWriter over the real BPF maps.
#pragma once

#include "bpf_datapath.h"
#include "map_state.h"

namespace microseg {

class BpfMapWriter final : public MapWriter {
 public:
  explicit BpfMapWriter(const BpfDatapath& datapath) : datapath_(datapath) {}

  absl::Status UpsertEndpoint(uint32_t ifindex, const ms_endpoint& value) override;
  absl::Status DeleteEndpoint(uint32_t ifindex) override;
  absl::Status UpsertExact(const ms_policy_key& key, const ms_policy_value& value) override;
  absl::Status DeleteExact(const ms_policy_key& key) override;
  absl::Status UpsertLpm(const ms_lpm_key& key, const ms_policy_value& value) override;
  absl::Status DeleteLpm(const ms_lpm_key& key) override;

 private:
  const BpfDatapath& datapath_;
};

}  // namespace microseg
