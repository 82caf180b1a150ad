// NetworkPolicy semantics evaluated directly, packet by packet, from the
// cluster objects: the oracle the compiled maps are compared against. Kept
// deliberately simple and independent of the compiler's code.
#pragma once

#include <cstdint>
#include <variant>
#include <vector>

#include "microseg/datapath.h"
#include "model.h"

namespace microseg::testing {

// The verdict for one new flow at one endpoint and direction, by the
// semantic contract: cluster tier (ClusterSegmentPolicy rules in (priority,
// name, rule index) order, first match decides, Pass skips to the next
// tier), then the namespace tier (NetworkPolicy + SegmentPolicy: any Deny
// wins, else any Allow, else deny when isolated), Audit policies turning
// would-be drops into kAllowAudit.
enum class NaiveVerdict { kAllow, kDeny, kAllowAudit };

// A peer of either family: IPv4 (host order) or IPv6. An ipBlock matches
// addresses of its own family only; a rule without peers matches both.
using PeerAddress = std::variant<uint32_t, Ipv6Address>;

NaiveVerdict NaiveVerdictOf(const ClusterState& cluster, const std::vector<LocalEndpoint>& endpoints,
                            const LocalEndpoint& endpoint, ms_direction direction, const PeerAddress& peer,
                            uint8_t proto, uint16_t port);

const char* NameOf(NaiveVerdict verdict);

// NaiveVerdictOf(...) != kDeny. Does Kubernetes allow a new flow between the local `endpoint` and
// `peer`? `port` is the destination port (the endpoint's
// own port on ingress, the peer's on egress); 0 for portless protocols.
bool NaiveAllows(const ClusterState& cluster, const std::vector<LocalEndpoint>& endpoints,
                 const LocalEndpoint& endpoint, ms_direction direction, const PeerAddress& peer, uint8_t proto,
                 uint16_t port);

}  // namespace microseg::testing
