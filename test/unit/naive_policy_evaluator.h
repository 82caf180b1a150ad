// NetworkPolicy semantics evaluated directly, packet by packet, from the
// cluster objects: the oracle the compiled maps are compared against. Kept
// deliberately simple and independent of the compiler's code.
#pragma once

#include <cstdint>
#include <vector>

#include "microseg/datapath.h"
#include "model.h"

namespace microseg::testing {

// Does Kubernetes allow a new flow between the local `endpoint` and
// `peer_ipv4` (host order)? `port` is the destination port (the endpoint's
// own port on ingress, the peer's on egress); 0 for portless protocols.
bool NaiveAllows(const ClusterState& cluster, const std::vector<LocalEndpoint>& endpoints,
                 const LocalEndpoint& endpoint, ms_direction direction, uint32_t peer_ipv4, uint8_t proto,
                 uint16_t port);

}  // namespace microseg::testing
