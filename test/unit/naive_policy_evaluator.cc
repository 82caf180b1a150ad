#include "naive_policy_evaluator.h"

#include <algorithm>
#include <optional>
#include <string>

#include "selector.h"

namespace microseg::testing {
namespace {

struct PodView {
  std::string namespace_name;
  Labels labels;
  std::vector<ContainerPort> ports;
};

bool InCidr(uint32_t addr, const Ipv4Cidr& cidr) {
  const uint32_t mask = cidr.prefix_len == 0 ? 0 : ~uint32_t{0} << (32 - cidr.prefix_len);
  return (addr & mask) == (cidr.addr & mask);
}

// Bit by bit over the 16 bytes as on the wire.
bool InCidr(const Ipv6Address& addr, const Ipv6Cidr& cidr) {
  const auto* a = reinterpret_cast<const uint8_t*>(addr.data());
  const auto* c = reinterpret_cast<const uint8_t*>(cidr.addr.data());
  for (int bit = 0; bit < cidr.prefix_len; ++bit) {
    const int shift = 7 - bit % 8;
    if (((a[bit / 8] >> shift) & 1) != ((c[bit / 8] >> shift) & 1)) return false;
  }
  return true;
}

// A pod's or endpoint's address of the peer's family (0 / all zero: none).
PeerAddress AddressOf(const LocalEndpoint& endpoint, const PeerAddress& family) {
  if (std::holds_alternative<uint32_t>(family)) return endpoint.ipv4;
  return endpoint.ipv6;
}
PeerAddress AddressOf(const Pod& pod, const PeerAddress& family) {
  if (std::holds_alternative<uint32_t>(family)) return pod.ipv4.value_or(0);
  return pod.ipv6.value_or(Ipv6Address{});
}
bool IsNone(const PeerAddress& address) {
  return address == PeerAddress(uint32_t{0}) || address == PeerAddress(Ipv6Address{});
}

// The pod that owns `address`, if any: a local endpoint's address first,
// then a manifest's status.podIPs of that family (unless a local endpoint
// of that pod has an address of that family: the CNI's replaces it).
std::optional<PodView> PodAt(const ClusterState& cluster, const std::vector<LocalEndpoint>& endpoints,
                             const PeerAddress& address) {
  for (const LocalEndpoint& endpoint : endpoints) {
    if (AddressOf(endpoint, address) != address) continue;
    const auto pod = cluster.pods.find(endpoint.pod_namespace + "/" + endpoint.pod_name);
    if (pod == cluster.pods.end()) return PodView{endpoint.pod_namespace, {}, {}};
    return PodView{pod->second.namespace_name, pod->second.labels, pod->second.container_ports};
  }
  for (const auto& [key, pod] : cluster.pods) {
    if (AddressOf(pod, address) != address) continue;
    bool replaced_by_endpoint = false;
    for (const LocalEndpoint& endpoint : endpoints) {
      replaced_by_endpoint |= endpoint.pod_namespace == pod.namespace_name && endpoint.pod_name == pod.name &&
                              !IsNone(AddressOf(endpoint, address));
    }
    if (!replaced_by_endpoint) return PodView{pod.namespace_name, pod.labels, pod.container_ports};
  }
  return std::nullopt;
}

Labels NamespaceLabels(const ClusterState& cluster, const std::string& name) {
  Labels labels;
  if (const auto ns = cluster.namespaces.find(name); ns != cluster.namespaces.end()) labels = ns->second.labels;
  labels["kubernetes.io/metadata.name"] = name;
  return labels;
}

// policy_namespace nullopt: a cluster-scoped policy, whose podSelector alone
// selects in every namespace.
template <typename Block, typename Address>
bool InBlock(const Block& block, const Address& address) {
  if (!InCidr(address, block.cidr)) return false;
  for (const auto& except : block.except) {
    if (InCidr(address, except)) return false;
  }
  return true;
}

bool PeerAllows(const ClusterState& cluster, const PolicyPeer& peer, const std::optional<std::string>& policy_namespace,
                const PeerAddress& address, const std::optional<PodView>& peer_pod) {
  // An ipBlock never matches an address of the other family.
  if (peer.ip_block) return std::holds_alternative<uint32_t>(address) && InBlock(*peer.ip_block, std::get<uint32_t>(address));
  if (peer.ipv6_block) {
    return std::holds_alternative<Ipv6Address>(address) && InBlock(*peer.ipv6_block, std::get<Ipv6Address>(address));
  }
  if (!peer_pod) return false;
  if (peer.namespace_selector) {
    if (!SelectorMatches(*peer.namespace_selector, NamespaceLabels(cluster, peer_pod->namespace_name))) return false;
  } else if (policy_namespace && peer_pod->namespace_name != *policy_namespace) {
    return false;
  }
  return !peer.pod_selector || SelectorMatches(*peer.pod_selector, peer_pod->labels);
}

bool PortAllows(const PolicyPort& policy_port, uint8_t proto, uint16_t port,
                const std::optional<PodView>& destination_pod) {
  if (static_cast<uint8_t>(policy_port.protocol) != proto) return false;
  if (!policy_port.port) return true;
  if (const auto* number = std::get_if<uint16_t>(&*policy_port.port)) {
    return port >= *number && port <= policy_port.end_port.value_or(*number);
  }
  if (!destination_pod) return false;
  for (const ContainerPort& container_port : destination_pod->ports) {
    if (container_port.name == std::get<std::string>(*policy_port.port) &&
        static_cast<uint8_t>(container_port.protocol) == proto && container_port.port == port) {
      return true;
    }
  }
  return false;
}

struct Packet {
  PeerAddress peer;
  uint8_t proto;
  uint16_t port;
  std::optional<PodView> peer_pod;
  std::optional<PodView> destination;
};

bool RuleMatches(const ClusterState& cluster, const PolicyRule& rule,
                 const std::optional<std::string>& policy_namespace, const Packet& packet) {
  bool peer_ok = rule.peers.empty();
  for (const PolicyPeer& peer : rule.peers) {
    peer_ok |= PeerAllows(cluster, peer, policy_namespace, packet.peer, packet.peer_pod);
  }
  bool port_ok = rule.ports.empty();
  for (const PolicyPort& policy_port : rule.ports) {
    port_ok |= PortAllows(policy_port, packet.proto, packet.port, packet.destination);
  }
  return peer_ok && port_ok;
}

// The namespace tier with or without the Audit SegmentPolicies: true = allow.
bool NamespaceTierAllows(const ClusterState& cluster, const PodView& local, ms_direction direction,
                         const Packet& packet, bool include_audit) {
  std::vector<const NetworkPolicy*> policies;
  for (const auto& [key, policy] : cluster.network_policies) policies.push_back(&policy);
  for (const auto& [key, segment] : cluster.segment_policies) {
    if (segment.enforcement == Enforcement::kEnforce || include_audit) policies.push_back(&segment.policy);
  }
  bool isolated = false;
  bool allowed = false;
  for (const NetworkPolicy* policy : policies) {
    if (policy->namespace_name != local.namespace_name || !SelectorMatches(policy->pod_selector, local.labels)) {
      continue;
    }
    if (!(direction == MS_DIR_INGRESS ? policy->isolates_ingress : policy->isolates_egress)) continue;
    isolated = true;
    for (const PolicyRule& rule : direction == MS_DIR_INGRESS ? policy->ingress : policy->egress) {
      if (!RuleMatches(cluster, rule, policy->namespace_name, packet)) continue;
      if (rule.action == RuleAction::kDeny) return false;
      allowed = true;
    }
  }
  return allowed || !isolated;
}

}  // namespace

const char* NameOf(NaiveVerdict verdict) {
  switch (verdict) {
    case NaiveVerdict::kAllow:
      return "allow";
    case NaiveVerdict::kDeny:
      return "deny";
    case NaiveVerdict::kAllowAudit:
      return "allow-audit";
  }
  return "?";
}

NaiveVerdict NaiveVerdictOf(const ClusterState& cluster, const std::vector<LocalEndpoint>& endpoints,
                            const LocalEndpoint& endpoint, ms_direction direction, const PeerAddress& peer,
                            uint8_t proto, uint16_t port) {
  PodView local{endpoint.pod_namespace, {}, {}};
  if (const auto pod = cluster.pods.find(endpoint.pod_namespace + "/" + endpoint.pod_name);
      pod != cluster.pods.end()) {
    local = PodView{pod->second.namespace_name, pod->second.labels, pod->second.container_ports};
  }
  // An all-zero address is nobody's (pods without one of a family have none).
  Packet packet{peer, proto, port, IsNone(peer) ? std::nullopt : PodAt(cluster, endpoints, peer), std::nullopt};
  packet.destination = direction == MS_DIR_INGRESS ? std::optional<PodView>(local) : packet.peer_pod;

  // Cluster tier, in (priority, name) order; rules in their listed order.
  std::vector<const ClusterSegmentPolicy*> ordered;
  for (const auto& [name, policy] : cluster.cluster_segment_policies) ordered.push_back(&policy);
  std::stable_sort(ordered.begin(), ordered.end(), [](const auto* a, const auto* b) {
    return a->priority != b->priority ? a->priority < b->priority : a->name < b->name;
  });
  bool passed = false;
  for (const ClusterSegmentPolicy* policy : ordered) {
    if (passed) break;
    if (!SelectorMatches(policy->subject_namespace_selector, NamespaceLabels(cluster, local.namespace_name)) ||
        !SelectorMatches(policy->subject_pod_selector, local.labels)) {
      continue;
    }
    if (!(direction == MS_DIR_INGRESS ? policy->applies_ingress : policy->applies_egress)) continue;
    for (const PolicyRule& rule : direction == MS_DIR_INGRESS ? policy->ingress : policy->egress) {
      if (!RuleMatches(cluster, rule, std::nullopt, packet)) continue;
      if (rule.action == RuleAction::kAllow) return NaiveVerdict::kAllow;
      if (rule.action == RuleAction::kDeny) return NaiveVerdict::kDeny;
      passed = true;  // Pass: the rest of the cluster tier is skipped
      break;
    }
  }

  if (!NamespaceTierAllows(cluster, local, direction, packet, /*include_audit=*/false)) return NaiveVerdict::kDeny;
  if (!NamespaceTierAllows(cluster, local, direction, packet, /*include_audit=*/true)) {
    return NaiveVerdict::kAllowAudit;
  }
  return NaiveVerdict::kAllow;
}

bool NaiveAllows(const ClusterState& cluster, const std::vector<LocalEndpoint>& endpoints,
                 const LocalEndpoint& endpoint, ms_direction direction, const PeerAddress& peer, uint8_t proto,
                 uint16_t port) {
  return NaiveVerdictOf(cluster, endpoints, endpoint, direction, peer, proto, port) != NaiveVerdict::kDeny;
}

}  // namespace microseg::testing
