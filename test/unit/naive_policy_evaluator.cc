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

// The pod that owns `ipv4`, if any: a local endpoint's address first, then
// a manifest's status.podIP (unless a local endpoint took over that pod).
std::optional<PodView> PodAt(const ClusterState& cluster, const std::vector<LocalEndpoint>& endpoints,
                             uint32_t ipv4) {
  for (const LocalEndpoint& endpoint : endpoints) {
    if (endpoint.ipv4 != ipv4) continue;
    const auto pod = cluster.pods.find(endpoint.pod_namespace + "/" + endpoint.pod_name);
    if (pod == cluster.pods.end()) return PodView{endpoint.pod_namespace, {}, {}};
    return PodView{pod->second.namespace_name, pod->second.labels, pod->second.container_ports};
  }
  for (const auto& [key, pod] : cluster.pods) {
    if (pod.ipv4 != ipv4) continue;
    bool replaced_by_endpoint = false;
    for (const LocalEndpoint& endpoint : endpoints) {
      replaced_by_endpoint |= endpoint.pod_namespace == pod.namespace_name && endpoint.pod_name == pod.name;
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
bool PeerAllows(const ClusterState& cluster, const PolicyPeer& peer, const std::optional<std::string>& policy_namespace,
                uint32_t peer_ipv4, const std::optional<PodView>& peer_pod) {
  if (peer.ip_block) {
    if (!InCidr(peer_ipv4, peer.ip_block->cidr)) return false;
    for (const Ipv4Cidr& except : peer.ip_block->except) {
      if (InCidr(peer_ipv4, except)) return false;
    }
    return true;
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
  uint32_t peer_ipv4;
  uint8_t proto;
  uint16_t port;
  std::optional<PodView> peer_pod;
  std::optional<PodView> destination;
};

bool RuleMatches(const ClusterState& cluster, const PolicyRule& rule,
                 const std::optional<std::string>& policy_namespace, const Packet& packet) {
  if (rule.only_ipv6_peers) return false;
  bool peer_ok = rule.peers.empty();
  for (const PolicyPeer& peer : rule.peers) {
    peer_ok |= PeerAllows(cluster, peer, policy_namespace, packet.peer_ipv4, packet.peer_pod);
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
                            const LocalEndpoint& endpoint, ms_direction direction, uint32_t peer_ipv4,
                            uint8_t proto, uint16_t port) {
  PodView local{endpoint.pod_namespace, {}, {}};
  if (const auto pod = cluster.pods.find(endpoint.pod_namespace + "/" + endpoint.pod_name);
      pod != cluster.pods.end()) {
    local = PodView{pod->second.namespace_name, pod->second.labels, pod->second.container_ports};
  }
  Packet packet{peer_ipv4, proto, port, PodAt(cluster, endpoints, peer_ipv4), std::nullopt};
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
                 const LocalEndpoint& endpoint, ms_direction direction, uint32_t peer_ipv4, uint8_t proto,
                 uint16_t port) {
  return NaiveVerdictOf(cluster, endpoints, endpoint, direction, peer_ipv4, proto, port) != NaiveVerdict::kDeny;
}

}  // namespace microseg::testing
