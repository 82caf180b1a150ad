#include "naive_policy_evaluator.h"

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

bool PeerAllows(const ClusterState& cluster, const PolicyPeer& peer, const std::string& policy_namespace,
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
  } else if (peer_pod->namespace_name != policy_namespace) {
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

}  // namespace

bool NaiveAllows(const ClusterState& cluster, const std::vector<LocalEndpoint>& endpoints,
                 const LocalEndpoint& endpoint, ms_direction direction, uint32_t peer_ipv4, uint8_t proto,
                 uint16_t port) {
  std::optional<PodView> local;
  if (const auto pod = cluster.pods.find(endpoint.pod_namespace + "/" + endpoint.pod_name);
      pod != cluster.pods.end()) {
    local = PodView{pod->second.namespace_name, pod->second.labels, pod->second.container_ports};
  } else {
    local = PodView{endpoint.pod_namespace, {}, {}};
  }
  const std::optional<PodView> peer_pod = PodAt(cluster, endpoints, peer_ipv4);
  const std::optional<PodView>& destination = direction == MS_DIR_INGRESS ? local : peer_pod;

  bool isolated = false;
  for (const auto& [key, policy] : cluster.network_policies) {
    if (policy.namespace_name != endpoint.pod_namespace || !SelectorMatches(policy.pod_selector, local->labels)) {
      continue;
    }
    const bool isolates = direction == MS_DIR_INGRESS ? policy.isolates_ingress : policy.isolates_egress;
    if (!isolates) continue;
    isolated = true;
    for (const PolicyRule& rule : direction == MS_DIR_INGRESS ? policy.ingress : policy.egress) {
      if (rule.only_ipv6_peers) continue;
      bool peer_ok = rule.peers.empty();
      for (const PolicyPeer& peer : rule.peers) {
        peer_ok |= PeerAllows(cluster, peer, policy.namespace_name, peer_ipv4, peer_pod);
      }
      bool port_ok = rule.ports.empty();
      for (const PolicyPort& policy_port : rule.ports) port_ok |= PortAllows(policy_port, proto, port, destination);
      if (peer_ok && port_ok) return true;
    }
  }
  return !isolated;
}

}  // namespace microseg::testing
