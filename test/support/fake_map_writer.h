// In-memory MapWriter with failure injection: operation number
// `fail_at_operation` (0-based) and every later one fail, as a full or
// broken BPF map would. Capacities make it behave like a full hash map: an
// upsert of a new key into a map holding `*_capacity` entries fails with
// RESOURCE_EXHAUSTED (the real writer's E2BIG), updates and deletes work.
#pragma once

#include <optional>

#include "map_state.h"

namespace microseg::testing {

class FakeMapWriter : public MapWriter {
 public:
  MapState maps;  // what the "kernel" holds
  std::optional<int> fail_at_operation;
  int attempted_operations = 0;
  std::optional<size_t> endpoint_capacity;
  std::optional<size_t> exact_capacity;
  std::optional<size_t> lpm_capacity;
  std::optional<size_t> exact6_capacity;
  std::optional<size_t> lpm6_capacity;
  int capacity_refusals = 0;

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

 private:
  absl::Status NextOperation();
  template <typename Map, typename Key>
  absl::Status Room(const Map& map, const Key& key, const std::optional<size_t>& capacity, const char* name);
};

}  // namespace microseg::testing
