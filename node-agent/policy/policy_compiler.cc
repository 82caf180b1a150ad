#include "policy_compiler.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "ipv4_cidr.h"
#include "endpoint_rules.h"
#include "peer_selection_cache.h"
#include "port_intervals.h"
#include "selector.h"
#include "tiered_verdicts.h"

namespace microseg {
namespace {

std::string PodKey(absl::string_view ns, absl::string_view name) { return absl::StrCat(ns, "/", name); }

// MS_EP_LOOKUP_* of a direction that is looked up without being isolated:
// whether any of its entries denies, or only audits (datapath.h).
uint8_t LookupActions(const DirectionEntries& entries, ms_direction direction) {
  uint8_t actions = 0;
  auto scan = [&](const auto& verdicts) {
    for (const auto& verdict : verdicts) actions |= ms_lookup_action_bit(direction, verdict.value.action);
  };
  scan(entries.exact);
  scan(entries.lpm);
  scan(entries.exact6);
  scan(entries.lpm6);
  return actions;
}

// The endpoint's entries for one direction, keyed by its endpoint_id.
void AddDirectionEntries(const DirectionEntries& entries, uint32_t endpoint_id, ms_direction direction,
                         EndpointPolicy& out) {
  for (const ExactVerdict& verdict : entries.exact) {
    ms_policy_key key{};
    key.endpoint_id = endpoint_id;
    key.peer_ipv4 = htonl(verdict.peer);
    key.port = verdict.port.port;
    key.proto = verdict.port.proto;
    key.direction = PolicyKeyDirection(direction, verdict.port);
    out.exact[key] = verdict.value;
  }
  for (const LpmVerdictEntry& verdict : entries.lpm) {
    ms_lpm_key key{};
    key.prefixlen = MS_LPM_FIXED_BITS + verdict.prefix.prefix_len;
    key.endpoint_id = endpoint_id;
    key.direction = PolicyKeyDirection(direction, verdict.port);
    key.proto = verdict.port.proto;
    key.port = verdict.port.port;
    key.peer_ipv4 = htonl(verdict.prefix.addr);
    out.lpm[key] = verdict.value;
  }
  for (const ExactVerdict6& verdict : entries.exact6) {
    ms_policy6_key key{};
    key.endpoint_id = endpoint_id;
    std::memcpy(key.peer_ipv6, verdict.peer.data(), sizeof key.peer_ipv6);
    key.port = verdict.port.port;
    key.proto = verdict.port.proto;
    key.direction = PolicyKeyDirection(direction, verdict.port);
    out.exact6[key] = verdict.value;
  }
  for (const LpmVerdictEntry6& verdict : entries.lpm6) {
    ms_lpm6_key key{};
    key.prefixlen = MS_LPM_FIXED_BITS + verdict.prefix.prefix_len;
    key.endpoint_id = endpoint_id;
    key.direction = PolicyKeyDirection(direction, verdict.port);
    key.proto = verdict.port.proto;
    key.port = verdict.port.port;
    std::memcpy(key.peer_ipv6, verdict.prefix.addr.data(), sizeof key.peer_ipv6);
    out.lpm6[key] = verdict.value;
  }
  // Port -> interval lookups: in ms_policy_lpm only, for both families.
  for (const PortKey& interval : entries.intervals) {
    AddPortLookups(endpoint_id, direction, interval.proto, interval.port, interval.last, out.lpm);
  }
}

// Namespace labels as selectors see them, including the label the API
// server puts on every namespace. Namespaces only referenced by pods (no
// Namespace object known) get just that implicit label.
std::map<std::string, Labels> CollectNamespaceLabels(const ClusterState& cluster,
                                                     const std::vector<LocalEndpoint>& endpoints) {
  std::map<std::string, Labels> labels;
  for (const auto& [key, ns] : cluster.namespaces) labels[ns.name] = ns.labels;
  for (const auto& [key, pod] : cluster.pods) labels.try_emplace(pod.namespace_name);
  for (const auto& [key, policy] : cluster.network_policies) labels.try_emplace(policy.namespace_name);
  for (const auto& [key, segment] : cluster.segment_policies) labels.try_emplace(segment.policy.namespace_name);
  for (const LocalEndpoint& endpoint : endpoints) labels.try_emplace(endpoint.pod_namespace);
  for (auto& [name, ns_labels] : labels) ns_labels[kNamespaceNameLabel] = name;
  return labels;
}

// Every pod with an address of either family. A local endpoint's addresses
// are the ones the CNI really assigned, so each wins over (or stands in for)
// the manifest's of its family.
std::map<std::string, PeerPod> CollectPeerPods(const ClusterState& cluster,
                                               const std::vector<LocalEndpoint>& endpoints) {
  std::map<std::string, PeerPod> peers;
  for (const auto& [key, pod] : cluster.pods) {
    PeerPod& peer = peers[PodKey(pod.namespace_name, pod.name)];
    peer.namespace_name = pod.namespace_name;
    peer.labels = pod.labels;
    peer.ipv4 = pod.ipv4.value_or(0);
    peer.ipv6 = pod.ipv6.value_or(Ipv6Address{});
    peer.container_ports = pod.container_ports;
  }
  for (const LocalEndpoint& endpoint : endpoints) {
    ApplyEndpointAddresses(endpoint, peers[PodKey(endpoint.pod_namespace, endpoint.pod_name)]);
  }
  std::erase_if(peers, [](const auto& entry) { return !HasAddress(entry.second); });
  return peers;
}

const Pod* FindPod(const ClusterState& cluster, const LocalEndpoint& endpoint) {
  const auto found = cluster.pods.find(PodKey(endpoint.pod_namespace, endpoint.pod_name));
  return found == cluster.pods.end() ? nullptr : &found->second;
}

}  // namespace

void ApplyEndpointAddresses(const LocalEndpoint& endpoint, PeerPod& peer) {
  peer.namespace_name = endpoint.pod_namespace;
  if (endpoint.ipv4 != 0) peer.ipv4 = endpoint.ipv4;
  if (endpoint.ipv6 != Ipv6Address{}) peer.ipv6 = endpoint.ipv6;
}

uint8_t PolicyKeyDirection(ms_direction direction, const PortKey& port) {
  const auto plain = static_cast<uint8_t>(direction);
  return port.interval() ? static_cast<uint8_t>(plain | MS_DIR_F_PORT_INTERVAL) : plain;
}

ms_policy_value PortIntervalValue(uint16_t first_port) {
  ms_policy_value value{};
  value.action = MS_ACTION_PORT_INTERVAL;
  value.rule_id = first_port;
  return value;
}

void AddPortLookups(uint32_t endpoint_id, uint8_t direction, uint8_t proto, uint16_t first, uint16_t last,
                    MapState::LpmMap& out) {
  for (const PortPrefix& prefix : PortPrefixes(first, last)) {
    ms_lpm_key key{};
    key.prefixlen = MS_PORT_LOOKUP_FIXED_BITS + prefix.bits;
    key.endpoint_id = endpoint_id;
    key.direction = static_cast<uint8_t>(direction | MS_DIR_F_PORT_LOOKUP);
    key.proto = proto;
    key.port = htons(prefix.port);
    out[key] = PortIntervalValue(first);
  }
}

PolicyContext BuildPolicyContext(const ClusterState& cluster, const std::vector<LocalEndpoint>& endpoints) {
  PolicyContext context;
  context.cluster = &cluster;
  context.namespace_labels = CollectNamespaceLabels(cluster, endpoints);
  context.peers = CollectPeerPods(cluster, endpoints);
  for (const auto& [key, peer] : context.peers) {
    if (peer.ipv4 != 0) context.peers_by_address[peer.ipv4].insert(key);
    if (HasIpv6(peer)) context.peers_by_address6[peer.ipv6].insert(key);
  }
  return context;
}

EndpointPolicy CompileEndpointPolicy(const PolicyContext& context, const LocalEndpoint& endpoint,
                                     PeerSelectionCache* selections) {
  const Pod* pod = FindPod(*context.cluster, endpoint);
  EndpointPolicy out;
  EndpointPolicySummary& summary = out.summary;
  uint8_t flags = 0;
  uint8_t lookup_actions = 0;
  for (ms_direction direction : {MS_DIR_INGRESS, MS_DIR_EGRESS}) {
    const DirectionRules rules =
        CollectDirectionRules(context, endpoint, pod, direction, &summary.policies, nullptr, selections);
    const DirectionEntries entries = CompileDirection(rules);
    AddDirectionEntries(entries, endpoint.endpoint_id, direction, out);
    const bool ingress = direction == MS_DIR_INGRESS;
    (ingress ? summary.ingress_isolated : summary.egress_isolated) = rules.isolated_enforced;
    if (rules.isolated_enforced) flags |= ingress ? MS_EP_F_INGRESS_ISOLATED : MS_EP_F_EGRESS_ISOLATED;
    // An isolated direction is always looked up; the flag is for the others.
    if (!rules.isolated_enforced && !entries.empty()) {
      flags |= ingress ? MS_EP_F_INGRESS_LOOKUP : MS_EP_F_EGRESS_LOOKUP;
      lookup_actions |= LookupActions(entries, direction);
    }
    if (!entries.intervals.empty()) flags |= MS_EP_F_PORT_RANGES;
  }
  // What the maps hold (both families), port-interval lookup entries included.
  summary.exact_entries = static_cast<uint32_t>(out.exact.size() + out.exact6.size());
  summary.lpm_entries = static_cast<uint32_t>(out.lpm.size() + out.lpm6.size());
  std::sort(summary.policies.begin(), summary.policies.end());
  summary.policies.erase(std::unique(summary.policies.begin(), summary.policies.end()), summary.policies.end());

  out.ifindex = endpoint.ifindex;
  out.endpoint.endpoint_id = endpoint.endpoint_id;
  out.endpoint.ipv4 = htonl(endpoint.ipv4);
  std::memcpy(out.endpoint.ipv6, endpoint.ipv6.data(), sizeof out.endpoint.ipv6);
  out.endpoint.flags = flags;
  out.endpoint.lpm_absent = LpmAbsentBits(out.lpm);
  out.endpoint.lpm6_absent = LpmAbsentBits(out.lpm6);
  out.endpoint.lookup_actions = lookup_actions;
  return out;
}

std::vector<const PeerPod*> PeersAt(const PolicyContext& context, const PeerAddresses& addresses) {
  std::set<std::string> keys;  // a dual-stack pod is found by both of its addresses
  auto add = [&](const auto& index, const auto& address) {
    if (const auto found = index.find(address); found != index.end()) keys.insert(found->second.begin(), found->second.end());
  };
  for (uint32_t address : addresses.ipv4) add(context.peers_by_address, address);
  for (const Ipv6Address& address : addresses.ipv6) add(context.peers_by_address6, address);
  std::vector<const PeerPod*> pods;
  for (const std::string& key : keys) pods.push_back(&context.peers.at(key));
  return pods;
}

PeerEntries CompileEndpointPeers(const PolicyContext& context, const LocalEndpoint& endpoint,
                                 PeerAddresses addresses, bool with_cidrs,
                                 PeerSelectionCache* selections) {
  PeerEntries out;
  out.addresses = std::move(addresses);
  const PeerAddresses& patched = out.addresses;
  std::vector<const PeerPod*> own_scope;
  if (!selections) own_scope = PeersAt(context, patched);
  const std::vector<const PeerPod*>& scope = selections ? selections->PeersAt(context, patched) : own_scope;
  const Pod* pod = FindPod(*context.cluster, endpoint);
  EndpointPolicy exact_only;
  for (ms_direction direction : {MS_DIR_INGRESS, MS_DIR_EGRESS}) {
    const DirectionRules rules = CollectDirectionRules(context, endpoint, pod, direction, nullptr, &scope, selections);
    out.default_action[direction] = DefaultAction(rules);
    DirectionEntries entries;
    entries.exact = CompileExactVerdicts(rules, patched.ipv4);
    entries.exact6 = CompileExactVerdicts(rules, patched.ipv6);
    // A rule's CIDRs and ports do not depend on the scope: its LPM entries are whole.
    if (with_cidrs) {
      DirectionEntries cidrs = CompileLpmVerdicts(rules);
      entries.lpm = std::move(cidrs.lpm);
      entries.lpm6 = std::move(cidrs.lpm6);
      entries.intervals = std::move(cidrs.intervals);  // the lookups CanPatch compares
    }
    AddDirectionEntries(entries, endpoint.endpoint_id, direction, exact_only);
  }
  out.exact = std::move(exact_only.exact);
  out.exact6 = std::move(exact_only.exact6);
  if (with_cidrs) {
    out.lpm = std::move(exact_only.lpm);
    out.lpm6 = std::move(exact_only.lpm6);
  }
  return out;
}

CompiledPolicy CompilePolicy(const ClusterState& cluster, const std::vector<LocalEndpoint>& endpoints) {
  const PolicyContext context = BuildPolicyContext(cluster, endpoints);
  PeerSelectionCache selections;
  CompiledPolicy compiled;
  for (const LocalEndpoint& endpoint : endpoints) {
    EndpointPolicy policy = CompileEndpointPolicy(context, endpoint, &selections);
    compiled.maps.exact.merge(policy.exact);
    compiled.maps.lpm.merge(policy.lpm);
    compiled.maps.exact6.merge(policy.exact6);
    compiled.maps.lpm6.merge(policy.lpm6);
    compiled.maps.endpoints[policy.ifindex] = policy.endpoint;
    compiled.summaries[endpoint.endpoint_id] = std::move(policy.summary);
  }
  return compiled;
}

}  // namespace microseg
