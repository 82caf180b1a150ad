// Endpoint lockdown: what the agent does when a policy map is full
// (docs/map-pressure.md). Instead of one all-or-nothing update for the whole
// batch, the updates are applied endpoint by endpoint; an endpoint whose
// policy does not fit is locked down: its endpoint entry gets
// MS_EP_F_LOCKDOWN (plus both isolation bits, so nothing unparsed passes),
// all its policy entries are removed, and the data path refuses its new flows
// in both directions while tracked sessions go on. No endpoint is ever left
// with a part of its policy. A later update that fits lifts the lockdown.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "map_state.h"
#include "policy_map_updater.h"

namespace microseg {

inline bool IsLockedDown(const ms_endpoint& endpoint) { return (endpoint.flags & MS_EP_F_LOCKDOWN) != 0; }

// endpoint_id -> why it is locked down (the map write that did not fit).
using Lockdowns = std::map<uint32_t, std::string>;

// Endpoint ids whose entry in `state` carries MS_EP_F_LOCKDOWN.
Lockdowns LockedDownIn(const MapState& state);

// The locked-down form of an endpoint's desired policy: the endpoint entry
// only, flagged. (The updater keeps policy_rev across a lockdown, so the
// sessions admitted so far are not re-judged against a policy that is not
// there; lifting the lockdown bumps it like any change.)
EndpointPolicy LockedDown(const EndpointPolicy& desired);

// Applies `updates` one endpoint at a time through `updater` (each one
// atomic), shrinking endpoints first so their freed entries make room for
// growing ones. Each endpoint ends up either exactly as desired or locked
// down with no policy entries. Returns the endpoints locked down now; an
// error only for failures other than a full map, or when even the lockdown
// cannot be written (then that endpoint keeps what it had; the endpoints
// before it in the order above have their update).
[[nodiscard]] absl::StatusOr<Lockdowns> ApplyEndpointByEndpoint(PolicyMapUpdater& updater,
                                                                  std::vector<EndpointUpdate> updates);

}  // namespace microseg
