#include "fake_map_writer.h"

#include <string>

namespace microseg::testing {

absl::Status FakeMapWriter::NextOperation() {
  const int operation = attempted_operations++;
  if (fail_at_operation && operation >= *fail_at_operation) {
    return absl::ResourceExhaustedError("injected map failure");
  }
  return absl::OkStatus();
}

template <typename Map, typename Key>
absl::Status FakeMapWriter::Room(const Map& map, const Key& key, const std::optional<size_t>& capacity,
                                 const char* name) {
  if (!capacity || map.contains(key) || map.size() < *capacity) return absl::OkStatus();
  ++capacity_refusals;
  return absl::ResourceExhaustedError(std::string(name) + " is full (fake capacity)");
}

absl::Status FakeMapWriter::UpsertEndpoint(uint32_t ifindex, const ms_endpoint& value) {
  if (absl::Status status = NextOperation(); !status.ok()) return status;
  if (absl::Status status = Room(maps.endpoints, ifindex, endpoint_capacity, "ms_endpoints"); !status.ok()) {
    return status;
  }
  maps.endpoints[ifindex] = value;
  return absl::OkStatus();
}

absl::Status FakeMapWriter::DeleteEndpoint(uint32_t ifindex) {
  if (absl::Status status = NextOperation(); !status.ok()) return status;
  // Like bpf_map_delete_elem: deleting a missing key is an error.
  if (maps.endpoints.erase(ifindex) == 0) return absl::NotFoundError("no such endpoint");
  return absl::OkStatus();
}

absl::Status FakeMapWriter::UpsertExact(const ms_policy_key& key, const ms_policy_value& value) {
  if (absl::Status status = NextOperation(); !status.ok()) return status;
  if (absl::Status status = Room(maps.exact, key, exact_capacity, "ms_policy"); !status.ok()) return status;
  maps.exact[key] = value;
  return absl::OkStatus();
}

absl::Status FakeMapWriter::DeleteExact(const ms_policy_key& key) {
  if (absl::Status status = NextOperation(); !status.ok()) return status;
  if (maps.exact.erase(key) == 0) return absl::NotFoundError("no such exact entry");
  return absl::OkStatus();
}

absl::Status FakeMapWriter::UpsertLpm(const ms_lpm_key& key, const ms_policy_value& value) {
  if (absl::Status status = NextOperation(); !status.ok()) return status;
  if (absl::Status status = Room(maps.lpm, key, lpm_capacity, "ms_policy_lpm"); !status.ok()) return status;
  maps.lpm[key] = value;
  return absl::OkStatus();
}

absl::Status FakeMapWriter::DeleteLpm(const ms_lpm_key& key) {
  if (absl::Status status = NextOperation(); !status.ok()) return status;
  if (maps.lpm.erase(key) == 0) return absl::NotFoundError("no such LPM entry");
  return absl::OkStatus();
}

absl::Status FakeMapWriter::UpsertExact6(const ms_policy6_key& key, const ms_policy_value& value) {
  if (absl::Status status = NextOperation(); !status.ok()) return status;
  if (absl::Status status = Room(maps.exact6, key, exact6_capacity, "ms_policy6"); !status.ok()) return status;
  maps.exact6[key] = value;
  return absl::OkStatus();
}

absl::Status FakeMapWriter::DeleteExact6(const ms_policy6_key& key) {
  if (absl::Status status = NextOperation(); !status.ok()) return status;
  if (maps.exact6.erase(key) == 0) return absl::NotFoundError("no such IPv6 exact entry");
  return absl::OkStatus();
}

absl::Status FakeMapWriter::UpsertLpm6(const ms_lpm6_key& key, const ms_policy_value& value) {
  if (absl::Status status = NextOperation(); !status.ok()) return status;
  if (absl::Status status = Room(maps.lpm6, key, lpm6_capacity, "ms_policy6_lpm"); !status.ok()) return status;
  maps.lpm6[key] = value;
  return absl::OkStatus();
}

absl::Status FakeMapWriter::DeleteLpm6(const ms_lpm6_key& key) {
  if (absl::Status status = NextOperation(); !status.ok()) return status;
  if (maps.lpm6.erase(key) == 0) return absl::NotFoundError("no such IPv6 LPM entry");
  return absl::OkStatus();
}

}  // namespace microseg::testing
