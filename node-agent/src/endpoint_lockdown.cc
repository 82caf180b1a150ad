#include "endpoint_lockdown.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace microseg {
namespace {

long EntriesOf(const EndpointPolicy& policy) {
  return static_cast<long>(policy.exact.size() + policy.lpm.size() + policy.exact6.size() + policy.lpm6.size());
}

}  // namespace

Lockdowns LockedDownIn(const MapState& state) {
  Lockdowns out;
  for (const auto& [ifindex, endpoint] : state.endpoints) {
    if (IsLockedDown(endpoint)) out[endpoint.endpoint_id] = "locked down before this agent started";
  }
  return out;
}

EndpointPolicy LockedDown(const EndpointPolicy& desired) {
  EndpointPolicy locked;
  locked.ifindex = desired.ifindex;
  locked.endpoint = desired.endpoint;
  locked.endpoint.flags |= MS_EP_F_LOCKDOWN | MS_EP_F_INGRESS_ISOLATED | MS_EP_F_EGRESS_ISOLATED;
  locked.summary = desired.summary;
  locked.summary.exact_entries = 0;
  locked.summary.lpm_entries = 0;
  return locked;
}

absl::StatusOr<Lockdowns> ApplyEndpointByEndpoint(PolicyMapUpdater& updater, std::vector<EndpointUpdate> updates) {
  // Shrinking endpoints (and departing ones, which may also hand their veth's
  // ifindex to a newcomer) first: what they free is what growing ones need.
  auto growth = [&](const EndpointUpdate& update) {
    const InstalledEndpoint* installed = updater.Find(update.endpoint_id);
    return (update.desired ? EntriesOf(*update.desired) : 0) - (installed ? EntriesOf(installed->policy) : 0);
  };
  std::stable_sort(updates.begin(), updates.end(),
                   [&](const EndpointUpdate& a, const EndpointUpdate& b) { return growth(a) < growth(b); });

  Lockdowns locked_down;
  for (const EndpointUpdate& update : updates) {
    const InstalledEndpoint* installed = updater.Find(update.endpoint_id);
    const bool was_locked_down = installed && IsLockedDown(installed->policy.endpoint);
    absl::Status status = updater.Apply({update});
    if (status.ok()) continue;
    // The updater rolled this endpoint back: it still has what it had.
    if (status.code() != absl::StatusCode::kResourceExhausted || !update.desired) return status;
    if (absl::Status lock = updater.Apply({{update.endpoint_id, LockedDown(*update.desired)}}); !lock.ok()) {
      return absl::Status(status.code(), absl::StrCat(status.message(), "; locking endpoint ", update.endpoint_id,
                                                      " down failed too: ", lock.message()));
    }
    // Old and new policy side by side may be what did not fit: from the
    // empty, locked-down state the new one alone may.
    if (!was_locked_down && updater.Apply({update}).ok()) continue;
    locked_down[update.endpoint_id] = std::string(status.message());
  }
  return locked_down;
}

}  // namespace microseg
