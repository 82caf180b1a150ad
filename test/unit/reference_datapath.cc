#include "reference_datapath.h"

#include <arpa/inet.h>

#include <cstring>
#include <optional>
#include <tuple>
#include <utility>
#include <vector>

namespace microseg::testing {
namespace {

// Longest-prefix match restricted to one (endpoint, direction, class), the
// way the kernel's LPM trie answers it (the fixed fields are matched in full).
std::optional<ms_policy_value> LongestPrefix(const MapState& maps, uint32_t endpoint_id, uint8_t direction,
                                             uint32_t peer_ipv4, uint8_t proto, uint16_t port) {
  std::optional<ms_policy_value> best;
  uint32_t best_len = 0;
  for (const auto& [key, value] : maps.lpm) {
    if (key.endpoint_id != endpoint_id || key.direction != direction || key.proto != proto || key.port != port) {
      continue;
    }
    const uint32_t len = key.prefixlen - MS_LPM_FIXED_BITS;
    const uint32_t mask = len == 0 ? 0 : ~uint32_t{0} << (32 - len);
    if ((peer_ipv4 & mask) != (ntohl(key.peer_ipv4) & mask)) continue;
    if (!best || len > best_len) {
      best = value;
      best_len = len;
    }
  }
  return best;
}

// The same for IPv6: the first `len` bits of the 16 address bytes.
bool Ipv6PrefixMatches(const Ipv6Address& peer, const uint32_t (&prefix)[4], uint32_t len) {
  const auto* a = reinterpret_cast<const uint8_t*>(peer.data());
  const auto* b = reinterpret_cast<const uint8_t*>(prefix);
  for (uint32_t bit = 0; bit < len; ++bit) {
    const int shift = 7 - static_cast<int>(bit % 8);
    if (((a[bit / 8] >> shift) & 1) != ((b[bit / 8] >> shift) & 1)) return false;
  }
  return true;
}

std::optional<ms_policy_value> LongestPrefix6(const MapState& maps, uint32_t endpoint_id, uint8_t direction,
                                              const Ipv6Address& peer, uint8_t proto, uint16_t port) {
  std::optional<ms_policy_value> best;
  uint32_t best_len = 0;
  for (const auto& [key, value] : maps.lpm6) {
    if (key.endpoint_id != endpoint_id || key.direction != direction || key.proto != proto || key.port != port) {
      continue;
    }
    const uint32_t len = key.prefixlen - MS_LPM_FIXED_BITS;
    if (!Ipv6PrefixMatches(peer, key.peer_ipv6, len)) continue;
    if (!best || len > best_len) {
      best = value;
      best_len = len;
    }
  }
  return best;
}

// The first port of the interval holding `port`, as the data path's
// MS_DIR_F_PORT_LOOKUP lookup in ms_policy_lpm finds it (both families);
// nullopt: no range covers it.
std::optional<uint16_t> PortInterval(const MapState& maps, uint32_t policy_id, ms_direction direction,
                                     uint8_t proto, uint16_t port) {
  std::optional<uint16_t> found;
  uint32_t best_len = 0;
  for (const auto& [key, value] : maps.lpm) {
    if (key.endpoint_id != policy_id || key.direction != (direction | MS_DIR_F_PORT_LOOKUP) || key.proto != proto) {
      continue;
    }
    const uint32_t len = key.prefixlen - MS_PORT_LOOKUP_FIXED_BITS;
    const uint32_t mask = len == 0 ? 0 : (0xffffu << (16 - len)) & 0xffffu;
    if ((port & mask) != (ntohs(key.port) & mask)) continue;
    if (!found || len > best_len) {
      found = value.action == MS_ACTION_PORT_INTERVAL ? std::optional<uint16_t>(value.rule_id) : std::nullopt;
      best_len = len;
    }
  }
  return found;
}

// The data plane's steps after the endpoint: exact classes, LPM classes, default.
template <typename ExactLookup, typename LpmLookup>
ReferenceVerdict Decide(const MapState& maps, uint32_t ifindex, ms_direction direction, uint8_t proto, uint16_t port,
                        ExactLookup&& exact, LpmLookup&& lpm) {
  const auto endpoint = maps.endpoints.find(ifindex);
  if (endpoint == maps.endpoints.end()) return {Decision::kUnknownEndpoint, 0};
  const uint8_t isolation_flag = direction == MS_DIR_INGRESS ? MS_EP_F_INGRESS_ISOLATED : MS_EP_F_EGRESS_ISOLATED;
  const uint8_t lookup_flag = direction == MS_DIR_INGRESS ? MS_EP_F_INGRESS_LOOKUP : MS_EP_F_EGRESS_LOOKUP;
  const bool isolated = (endpoint->second.flags & isolation_flag) != 0;
  if (!isolated && !(endpoint->second.flags & lookup_flag)) return {Decision::kAllowNotIsolated, 0};

  // The entries of the generation the endpoint's flags name.
  const uint32_t policy_id = ms_policy_id(endpoint->second.endpoint_id, endpoint->second.flags);
  // (direction byte, proto, port) per rung; the interval rung only when a range covers the port.
  std::vector<std::tuple<uint8_t, uint8_t, uint16_t>> classes;
  const auto dir = static_cast<uint8_t>(direction);
  classes.emplace_back(dir, proto, port);
  if ((endpoint->second.flags & MS_EP_F_PORT_RANGES) != 0 && port != 0) {
    if (const std::optional<uint16_t> first = PortInterval(maps, policy_id, direction, proto, port)) {
      classes.emplace_back(static_cast<uint8_t>(dir | MS_DIR_F_PORT_INTERVAL), proto, *first);
    }
  }
  classes.emplace_back(dir, proto, 0);
  classes.emplace_back(dir, 0, 0);
  for (const auto& [class_direction, class_proto, class_port] : classes) {
    const std::optional<ms_policy_value> found = exact(policy_id, class_direction, class_proto, class_port);
    if (!found) continue;
    const Decision decision = found->action == MS_ACTION_ALLOW         ? Decision::kAllowExact
                              : found->action == MS_ACTION_ALLOW_AUDIT ? Decision::kAuditExact
                                                                       : Decision::kDenyExact;
    return {decision, found->rule_id};
  }
  for (const auto& [class_direction, class_proto, class_port] : classes) {
    const std::optional<ms_policy_value> value = lpm(policy_id, class_direction, class_proto, class_port);
    if (!value) continue;
    const Decision decision = value->action == MS_ACTION_ALLOW         ? Decision::kAllowLpm
                              : value->action == MS_ACTION_ALLOW_AUDIT ? Decision::kAuditLpm
                                                                       : Decision::kDenyLpm;
    return {decision, value->rule_id};
  }
  return {isolated ? Decision::kDenyNoMatch : Decision::kAllowNotIsolated, 0};
}

}  // namespace

ReferenceVerdict ReferenceLookup(const MapState& maps, uint32_t ifindex, ms_direction direction,
                                 uint32_t peer_ipv4, uint8_t proto, uint16_t port) {
  return Decide(
      maps, ifindex, direction, proto, port,
      [&](uint32_t policy_id, uint8_t class_direction, uint8_t class_proto,
          uint16_t class_port) -> std::optional<ms_policy_value> {
        ms_policy_key key{};
        key.endpoint_id = policy_id;
        key.peer_ipv4 = htonl(peer_ipv4);
        key.port = class_port;
        key.proto = class_proto;
        key.direction = class_direction;
        const auto found = maps.exact.find(key);
        if (found == maps.exact.end()) return std::nullopt;
        return found->second;
      },
      [&](uint32_t policy_id, uint8_t class_direction, uint8_t class_proto, uint16_t class_port) {
        return LongestPrefix(maps, policy_id, class_direction, peer_ipv4, class_proto, class_port);
      });
}

ReferenceVerdict ReferenceLookup(const MapState& maps, uint32_t ifindex, ms_direction direction,
                                 const Ipv6Address& peer_ipv6, uint8_t proto, uint16_t port) {
  return Decide(
      maps, ifindex, direction, proto, port,
      [&](uint32_t policy_id, uint8_t class_direction, uint8_t class_proto,
          uint16_t class_port) -> std::optional<ms_policy_value> {
        ms_policy6_key key{};
        key.endpoint_id = policy_id;
        std::memcpy(key.peer_ipv6, peer_ipv6.data(), sizeof key.peer_ipv6);
        key.port = class_port;
        key.proto = class_proto;
        key.direction = class_direction;
        const auto found = maps.exact6.find(key);
        if (found == maps.exact6.end()) return std::nullopt;
        return found->second;
      },
      [&](uint32_t policy_id, uint8_t class_direction, uint8_t class_proto, uint16_t class_port) {
        return LongestPrefix6(maps, policy_id, class_direction, peer_ipv6, class_proto, class_port);
      });
}

}  // namespace microseg::testing
