// A reference of the BPF program's policy decision over a MapState, used to
// check the compiler's output by its effect on packets rather than by its
// exact entries. Mirrors the data plane's order: endpoint flags, then exact
// entries (proto,port) -> (proto,interval) -> (proto,any) -> (any,any)
// (the first found decides); then the
// LPM classes in the same order, the first class with a matching prefix
// decides; nothing matched: drop.
#pragma once

#include <cstdint>

#include "map_state.h"
#include "model.h"

namespace microseg::testing {

enum class Decision {
  kUnknownEndpoint,
  kAllowNotIsolated,
  kAllowExact,
  kAllowLpm,
  kDenyLpm,
  kDenyNoMatch,
  kDenyExact,
  kAuditExact,  // allowed, reason ALLOW_AUDIT
  kAuditLpm,
};

struct ReferenceVerdict {
  Decision decision = Decision::kDenyNoMatch;
  uint32_t rule_id = 0;
  bool allowed() const {
    return decision == Decision::kAllowNotIsolated || decision == Decision::kAllowExact ||
           decision == Decision::kAllowLpm || audited();
  }
  bool audited() const { return decision == Decision::kAuditExact || decision == Decision::kAuditLpm; }
};

// peer_ipv4 in host order; port 0 for protocols without ports.
ReferenceVerdict ReferenceLookup(const MapState& maps, uint32_t ifindex, ms_direction direction,
                                 uint32_t peer_ipv4, uint8_t proto, uint16_t port);
// An IPv6 peer: the same steps on the IPv6 maps (exact6, lpm6).
ReferenceVerdict ReferenceLookup(const MapState& maps, uint32_t ifindex, ms_direction direction,
                                 const Ipv6Address& peer_ipv6, uint8_t proto, uint16_t port);

}  // namespace microseg::testing
