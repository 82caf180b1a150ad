// Endpoint lockdown: what the agent does when a policy map is full
// (docs/map-pressure.md). Instead of one all-or-nothing write for the whole
// node, the desired state is applied endpoint by endpoint; an endpoint whose
// policy does not fit is locked down: its endpoint entry gets
// MS_EP_F_LOCKDOWN (plus both isolation bits, so nothing unparsed passes),
// all its policy entries are removed, and the data path refuses its new flows
// in both directions while tracked sessions go on. No endpoint is ever left
// with a part of its policy. A later apply that fits lifts the lockdown.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "map_state.h"

namespace microseg {

inline bool IsLockedDown(const ms_endpoint& endpoint) { return (endpoint.flags & MS_EP_F_LOCKDOWN) != 0; }

// endpoint_id -> why it is locked down (the map write that did not fit).
using Lockdowns = std::map<uint32_t, std::string>;

// Endpoint ids whose entry in `state` carries MS_EP_F_LOCKDOWN.
Lockdowns LockedDownIn(const MapState& state);

// Applies `desired` (no lockdown flags in it) one endpoint at a time,
// shrinking endpoints first so their freed entries make room for growing
// ones. Each endpoint ends up either exactly as desired or locked down with
// no policy entries. `live` mirrors every successful write. Returns the
// endpoints locked down now; an error only for failures other than a full
// map, or when even the lockdown cannot be written (then that endpoint is
// rolled back to what it had).
[[nodiscard]] absl::StatusOr<Lockdowns> ApplyEndpointByEndpoint(MapWriter& writer, const MapState& desired,
                                                                  MapState& live);

}  // namespace microseg
