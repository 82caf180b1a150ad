// StampPolicyRevisions (declared in policy_compiler.h): policy_rev
// bookkeeping between the live maps and a freshly compiled state.
#include <cstring>
#include <set>

#include "policy_compiler.h"

namespace microseg {
namespace {

// Endpoint ids whose exact or LPM entries differ between the two states.
std::set<uint32_t> EndpointsWithChangedEntries(const MapState& live, const MapState& desired) {
  const MapChanges changes = DiffMapState(live, desired);
  std::set<uint32_t> changed;
  for (const auto& [key, value] : changes.exact_upserts) changed.insert(key.endpoint_id);
  for (const auto& key : changes.exact_deletes) changed.insert(key.endpoint_id);
  for (const auto& [key, value] : changes.lpm_upserts) changed.insert(key.endpoint_id);
  for (const auto& key : changes.lpm_deletes) changed.insert(key.endpoint_id);
  return changed;
}

bool SameExceptRevision(const ms_endpoint& a, const ms_endpoint& b) {
  return a.endpoint_id == b.endpoint_id && a.ipv4 == b.ipv4 && a.flags == b.flags &&
         a.lpm_absent == b.lpm_absent && a.lpm6_absent == b.lpm6_absent &&
         a.lookup_actions == b.lookup_actions &&
         std::memcmp(a.ipv6, b.ipv6, sizeof a.ipv6) == 0;
}

}  // namespace

void StampPolicyRevisions(const MapState& live, MapState& desired) {
  const std::set<uint32_t> changed_entries = EndpointsWithChangedEntries(live, desired);
  for (auto& [ifindex, endpoint] : desired.endpoints) {
    const auto found = live.endpoints.find(ifindex);
    if (found == live.endpoints.end()) {
      endpoint.policy_rev = 1;
      continue;
    }
    const ms_endpoint& current = found->second;
    const bool changed = !SameExceptRevision(current, endpoint) || changed_entries.contains(endpoint.endpoint_id);
    endpoint.policy_rev = current.policy_rev;
    if (changed) {
      // 0 is what a fresh session would compare against: never hand it out.
      endpoint.policy_rev = current.policy_rev + 1 == 0 ? 1 : current.policy_rev + 1;
    }
  }
}

}  // namespace microseg
