#include "endpoint_lockdown.h"

#include <algorithm>
#include <vector>

#include "absl/strings/str_cat.h"

namespace microseg {
namespace {

// Each endpoint's share of `state`: its endpoint entry and its policy entries.
std::map<uint32_t, MapState> SplitByEndpoint(const MapState& state) {
  std::map<uint32_t, MapState> parts;
  for (const auto& [ifindex, endpoint] : state.endpoints) parts[endpoint.endpoint_id].endpoints[ifindex] = endpoint;
  for (const auto& [key, value] : state.exact) parts[key.endpoint_id].exact[key] = value;
  for (const auto& [key, value] : state.lpm) parts[key.endpoint_id].lpm[key] = value;
  return parts;
}

size_t Entries(const MapState& state) { return state.endpoints.size() + state.exact.size() + state.lpm.size(); }

// Replaces, in `live`, one endpoint's share as it was (`before`) by what it is now.
void Mirror(MapState& live, const MapState& before, const MapState& now) {
  for (const auto& [ifindex, endpoint] : before.endpoints) live.endpoints.erase(ifindex);
  for (const auto& [key, value] : before.exact) live.exact.erase(key);
  for (const auto& [key, value] : before.lpm) live.lpm.erase(key);
  for (const auto& [ifindex, endpoint] : now.endpoints) live.endpoints[ifindex] = endpoint;
  for (const auto& [key, value] : now.exact) live.exact[key] = value;
  for (const auto& [key, value] : now.lpm) live.lpm[key] = value;
}

// The locked-down share: the endpoint entry only. Its policy_rev stays what
// the sessions admitted so far carry, so they are not re-judged against a
// policy that is not there; lifting the lockdown bumps it like any change.
MapState LockdownOf(const MapState& desired, const MapState& before) {
  MapState locked;
  for (const auto& [ifindex, endpoint] : desired.endpoints) {
    ms_endpoint value = endpoint;
    value.flags |= MS_EP_F_LOCKDOWN | MS_EP_F_INGRESS_ISOLATED | MS_EP_F_EGRESS_ISOLATED;
    if (auto old = before.endpoints.find(ifindex);
        old != before.endpoints.end() && old->second.endpoint_id == endpoint.endpoint_id) {
      value.policy_rev = old->second.policy_rev;
    }
    locked.endpoints[ifindex] = value;
  }
  return locked;
}

bool AnyLockedDown(const MapState& state) {
  return std::any_of(state.endpoints.begin(), state.endpoints.end(),
                     [](const auto& entry) { return IsLockedDown(entry.second); });
}

}  // namespace

Lockdowns LockedDownIn(const MapState& state) {
  Lockdowns out;
  for (const auto& [ifindex, endpoint] : state.endpoints) {
    if (IsLockedDown(endpoint)) out[endpoint.endpoint_id] = "locked down before this agent started";
  }
  return out;
}

absl::StatusOr<Lockdowns> ApplyEndpointByEndpoint(MapWriter& writer, const MapState& desired, MapState& live) {
  std::map<uint32_t, MapState> before_parts = SplitByEndpoint(live);
  std::map<uint32_t, MapState> desired_parts = SplitByEndpoint(desired);
  std::vector<uint32_t> order;
  for (const auto& [id, part] : before_parts) order.push_back(id);
  for (const auto& [id, part] : desired_parts) {
    if (!before_parts.contains(id)) order.push_back(id);
  }
  // Shrinking endpoints (and departing ones, which may also hand their veth's
  // ifindex to a newcomer) first: what they free is what growing ones need.
  auto growth = [&](uint32_t id) {
    return static_cast<long>(Entries(desired_parts[id])) - static_cast<long>(Entries(before_parts[id]));
  };
  std::stable_sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) { return growth(a) < growth(b); });

  Lockdowns locked_down;
  for (uint32_t id : order) {
    const MapState& before = before_parts[id];
    const MapState& wanted = desired_parts[id];
    MapState current = before;
    absl::Status status = ApplyMapChanges(writer, DiffMapState(current, wanted), current);
    if (status.ok()) {
      Mirror(live, before, current);
      continue;
    }
    if (status.code() != absl::StatusCode::kResourceExhausted || wanted.endpoints.empty()) {
      (void)ApplyMapChanges(writer, DiffMapState(current, before), current);
      Mirror(live, before, current);
      return status;
    }
    // Endpoint entry with the lockdown flag first, then its entries go.
    const MapState locked = LockdownOf(wanted, before);
    if (absl::Status lock = ApplyMapChanges(writer, DiffMapState(current, locked), current); !lock.ok()) {
      (void)ApplyMapChanges(writer, DiffMapState(current, before), current);
      Mirror(live, before, current);
      return absl::Status(status.code(),
                          absl::StrCat(status.message(), "; locking endpoint ", id, " down failed too: ", lock.message()));
    }
    // Old and new policy side by side may be what did not fit: from the
    // empty, locked-down state the new one alone may.
    if (!AnyLockedDown(before)) {
      if (absl::Status retry = ApplyMapChanges(writer, DiffMapState(current, wanted), current); retry.ok()) {
        Mirror(live, before, current);
        continue;
      }
      (void)ApplyMapChanges(writer, DiffMapState(current, locked), current);
    }
    Mirror(live, before, current);
    locked_down[id] = std::string(status.message());
  }
  return locked_down;
}

}  // namespace microseg
