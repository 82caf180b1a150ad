// In-memory MapWriter with failure injection: operation number
// `fail_at_operation` (0-based) and every later one fail, as a full or
// broken BPF map would.
#pragma once

#include <optional>

#include "map_state.h"

namespace microseg::testing {

class FakeMapWriter : public MapWriter {
 public:
  MapState maps;  // what the "kernel" holds
  std::optional<int> fail_at_operation;
  int attempted_operations = 0;

  absl::Status UpsertEndpoint(uint32_t ifindex, const ms_endpoint& value) override;
  absl::Status DeleteEndpoint(uint32_t ifindex) override;
  absl::Status UpsertExact(const ms_policy_key& key, const ms_policy_value& value) override;
  absl::Status DeleteExact(const ms_policy_key& key) override;
  absl::Status UpsertLpm(const ms_lpm_key& key, const ms_policy_value& value) override;
  absl::Status DeleteLpm(const ms_lpm_key& key) override;

 private:
  absl::Status NextOperation();
};

}  // namespace microseg::testing
