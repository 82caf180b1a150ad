#include "policy_engine.h"

#include <algorithm>
#include <tuple>
#include <utility>
#include <variant>

#include "absl/strings/str_cat.h"
#include "ipv4_cidr.h"
#include "ipv6_address.h"
#include "selector.h"

namespace microseg {
namespace {

bool RuleHasNamedPorts(const PolicyRule& rule) {
  for (const PolicyPort& port : rule.ports) {
    if (port.port && std::holds_alternative<std::string>(*port.port)) return true;
  }
  return false;
}

template <typename Block, typename Address>
bool InsideBlock(const Block& block, const Address& address) {
  if (!CidrContainsAddress(block.cidr, address)) return false;
  for (const auto& except : block.except) {
    if (CidrContainsAddress(except, address)) return false;
  }
  return true;
}

}  // namespace

PolicyEngine::PolicyEngine() { context_.cluster = &cluster_; }

std::string PolicyEngine::KeyOf(const Pod& pod) { return absl::StrCat(pod.namespace_name, "/", pod.name); }
std::string PolicyEngine::KeyOf(const NetworkPolicy& policy) {
  return absl::StrCat(policy.namespace_name, "/", policy.name);
}

const Pod* PolicyEngine::FindPod(const std::string& namespace_name, const std::string& pod_name) const {
  const auto found = cluster_.pods.find(absl::StrCat(namespace_name, "/", pod_name));
  return found == cluster_.pods.end() ? nullptr : &found->second;
}

bool PolicyEngine::PolicySelectsEndpoint(const NetworkPolicy& policy, const LocalEndpoint& endpoint) const {
  if (policy.namespace_name != endpoint.pod_namespace) return false;
  static const Labels kNoLabels;
  const Pod* pod = FindPod(endpoint.pod_namespace, endpoint.pod_name);
  return SelectorMatches(policy.pod_selector, pod ? pod->labels : kNoLabels);
}

void PolicyEngine::IndexPolicy(const std::string& key, const NetworkPolicy& policy) {
  std::set<uint32_t> selected;
  for (const auto& [id, endpoint] : endpoints_) {
    if (PolicySelectsEndpoint(policy, endpoint)) selected.insert(id);
  }
  if (selected.empty()) {
    selected_by_.erase(key);
  } else {
    selected_by_[key] = std::move(selected);
  }
}

void PolicyEngine::ReindexEndpoint(const LocalEndpoint& endpoint) {
  for (auto it = selected_by_.begin(); it != selected_by_.end();) {
    it->second.erase(endpoint.endpoint_id);
    it = it->second.empty() ? selected_by_.erase(it) : std::next(it);
  }
  if (!endpoints_.contains(endpoint.endpoint_id)) return;
  // Only this endpoint's namespace can hold policies selecting it.
  const std::string prefix = endpoint.pod_namespace + "/";
  for (auto it = cluster_.network_policies.lower_bound(prefix);
       it != cluster_.network_policies.end() && it->first.starts_with(prefix); ++it) {
    if (PolicySelectsEndpoint(it->second, endpoint)) selected_by_[it->first].insert(endpoint.endpoint_id);
  }
}

void PolicyEngine::DirtyPolicyEndpoints(const std::string& policy_key) {
  if (auto found = selected_by_.find(policy_key); found != selected_by_.end()) {
    dirty_.insert(found->second.begin(), found->second.end());
  }
}

void PolicyEngine::DirtyEndpointsOfPodKey(const std::string& pod_key) {
  for (const auto& [id, endpoint] : endpoints_) {
    if (absl::StrCat(endpoint.pod_namespace, "/", endpoint.pod_name) == pod_key) dirty_.insert(id);
  }
}

bool PolicyEngine::NamespaceSelects(const LabelSelector& selector, const std::string& namespace_name) const {
  if (auto found = context_.namespace_labels.find(namespace_name); found != context_.namespace_labels.end()) {
    return SelectorMatches(selector, found->second);
  }
  return SelectorMatches(selector, {{kNamespaceNameLabel, namespace_name}});
}

// Conservative: true whenever the peer's presence, labels, address or ports
// can change the entries these rules give an endpoint.
bool PolicyEngine::RulesMayReferencePeer(const std::vector<PolicyRule>& rules, bool egress,
                                         const std::string* policy_namespace, const PeerPod& peer) const {
  for (const PolicyRule& rule : rules) {
    const bool named_egress = egress && RuleHasNamedPorts(rule);
    if (rule.peers.empty()) {
      if (named_egress) return true;  // named ports resolve on every pod
      continue;                       // "every peer" is an LPM /0 entry, no pod in it
    }
    for (const PolicyPeer& policy_peer : rule.peers) {
      if (policy_peer.ip_block) {
        if (named_egress && peer.ipv4 != 0 && InsideBlock(*policy_peer.ip_block, peer.ipv4)) return true;
        continue;
      }
      if (policy_peer.ipv6_block) {
        if (named_egress && HasIpv6(peer) && InsideBlock(*policy_peer.ipv6_block, peer.ipv6)) return true;
        continue;
      }
      if (policy_peer.namespace_selector) {
        if (!NamespaceSelects(*policy_peer.namespace_selector, peer.namespace_name)) continue;
      } else if (policy_namespace && peer.namespace_name != *policy_namespace) {
        continue;  // a podSelector alone: the policy's namespace (every one for a cluster policy)
      }
      if (!policy_peer.pod_selector || SelectorMatches(*policy_peer.pod_selector, peer.labels)) return true;
    }
  }
  return false;
}

bool PolicyEngine::PolicyMayReferencePeer(const NetworkPolicy& policy, const PeerPod& peer) const {
  return (policy.isolates_ingress && RulesMayReferencePeer(policy.ingress, false, &policy.namespace_name, peer)) ||
         (policy.isolates_egress && RulesMayReferencePeer(policy.egress, true, &policy.namespace_name, peer));
}

void PolicyEngine::DirtyNamespaceEndpoints(const std::string& namespace_name) {
  for (const auto& [id, endpoint] : endpoints_) {
    if (endpoint.pod_namespace == namespace_name) dirty_.insert(id);
  }
}

void PolicyEngine::PeerDirty(const std::set<uint32_t>& endpoint_ids, const PeerAddresses& addresses) {
  for (uint32_t id : endpoint_ids) peer_dirty_[id].Merge(addresses);
}

// Only the entries keyed by the pod's old and new addresses (both
// families) can change at the endpoints whose policies reference it: they
// get a peer patch.
void PolicyEngine::DirtyPeersOf(const std::optional<PeerPod>& before, const std::optional<PeerPod>& after) {
  PeerAddresses addresses;
  for (const std::optional<PeerPod>* peer : {&before, &after}) {
    if (!*peer) continue;
    if ((*peer)->ipv4 != 0) addresses.ipv4.insert((*peer)->ipv4);
    if (HasIpv6(**peer)) addresses.ipv6.insert((*peer)->ipv6);
  }
  auto references = [&](const NetworkPolicy& policy) {
    return (before && PolicyMayReferencePeer(policy, *before)) || (after && PolicyMayReferencePeer(policy, *after));
  };
  for (const auto& [policy_key, selected] : selected_by_) {
    if (references(cluster_.network_policies.at(policy_key))) PeerDirty(selected, addresses);
  }
  for (const auto& [key, segment] : cluster_.segment_policies) {
    if (!references(segment.policy)) continue;
    std::set<uint32_t> selected;
    for (const auto& [id, endpoint] : endpoints_) {
      if (PolicySelectsEndpoint(segment.policy, endpoint)) selected.insert(id);
    }
    PeerDirty(selected, addresses);
  }
  for (const auto& [name, csp] : cluster_.cluster_segment_policies) {
    bool referenced = false;
    for (const std::optional<PeerPod>* peer : {&before, &after}) {
      if (*peer && ((csp.applies_ingress && RulesMayReferencePeer(csp.ingress, false, nullptr, **peer)) ||
                    (csp.applies_egress && RulesMayReferencePeer(csp.egress, true, nullptr, **peer)))) {
        referenced = true;
      }
    }
    if (referenced) PeerDirty(SubjectsOf(csp), addresses);
  }
}

// Recomputes the peer entry of one pod from the pod object and any local
// endpoint of it, and dirties whatever the change touches.
void PolicyEngine::RefreshPeer(const std::string& pod_key) {
  std::optional<PeerPod> before;
  if (auto found = context_.peers.find(pod_key); found != context_.peers.end()) before = found->second;

  PeerPod peer;
  bool known = false;
  if (auto pod = cluster_.pods.find(pod_key); pod != cluster_.pods.end()) {
    known = true;
    peer.namespace_name = pod->second.namespace_name;
    peer.labels = pod->second.labels;
    peer.ipv4 = pod->second.ipv4.value_or(0);
    peer.ipv6 = pod->second.ipv6.value_or(Ipv6Address{});
    peer.container_ports = pod->second.container_ports;
  }
  // Same precedence as BuildPolicyContext: endpoints in id order, the last
  // one with an address of a family wins for that family.
  for (const auto& [id, endpoint] : endpoints_) {
    if (absl::StrCat(endpoint.pod_namespace, "/", endpoint.pod_name) != pod_key) continue;
    known = true;
    ApplyEndpointAddresses(endpoint, peer);
  }
  std::optional<PeerPod> after;
  if (known && HasAddress(peer)) after = std::move(peer);

  if (before == after) return;
  if (after) {
    context_.peers[pod_key] = *after;
  } else {
    context_.peers.erase(pod_key);
  }
  if (before && before->ipv4 != 0) {
    auto keys = context_.peers_by_address.find(before->ipv4);
    keys->second.erase(pod_key);
    if (keys->second.empty()) context_.peers_by_address.erase(keys);
  }
  if (after && after->ipv4 != 0) context_.peers_by_address[after->ipv4].insert(pod_key);
  if (before && HasIpv6(*before)) {
    auto keys = context_.peers_by_address6.find(before->ipv6);
    keys->second.erase(pod_key);
    if (keys->second.empty()) context_.peers_by_address6.erase(keys);
  }
  if (after && HasIpv6(*after)) context_.peers_by_address6[after->ipv6].insert(pod_key);
  DirtyPeersOf(before, after);
}

void PolicyEngine::RefreshNamespaceLabels(const std::string& name) {
  if (auto found = cluster_.namespaces.find(name); found != cluster_.namespaces.end()) {
    Labels labels = found->second.labels;
    labels[kNamespaceNameLabel] = name;
    context_.namespace_labels[name] = std::move(labels);
  } else {
    context_.namespace_labels.erase(name);
  }
}

bool PolicyEngine::NamespaceHasPods(const std::string& name) const {
  const std::string prefix = name + "/";
  auto it = context_.peers.lower_bound(prefix);
  return it != context_.peers.end() && it->first.starts_with(prefix);
}

void PolicyEngine::UpsertNamespace(const Namespace& ns) {
  if (auto found = cluster_.namespaces.find(ns.name); found != cluster_.namespaces.end() && found->second == ns) {
    return;
  }
  std::optional<Labels> before;
  if (auto labels = context_.namespace_labels.find(ns.name); labels != context_.namespace_labels.end()) {
    before = labels->second;
  }
  cluster_.namespaces[ns.name] = ns;
  RefreshNamespaceLabels(ns.name);
  if (!NamespaceHasPods(ns.name)) return;  // selects no peer either way
  const Labels implicit{{kNamespaceNameLabel, ns.name}};
  const Labels& old_labels = before ? *before : implicit;
  const Labels& new_labels = context_.namespace_labels.at(ns.name);
  for (const auto& [policy_key, selected] : selected_by_) {
    const NetworkPolicy& policy = cluster_.network_policies.at(policy_key);
    bool touches = false;
    for (const auto* rules : {&policy.ingress, &policy.egress}) {
      for (const PolicyRule& rule : *rules) {
        for (const PolicyPeer& peer : rule.peers) {
          if (peer.namespace_selector && (SelectorMatches(*peer.namespace_selector, old_labels) ||
                                          SelectorMatches(*peer.namespace_selector, new_labels))) {
            touches = true;
          }
        }
      }
    }
    if (touches) dirty_.insert(selected.begin(), selected.end());
  }
  for (const auto& [key, segment] : cluster_.segment_policies) {
    for (const auto* rules : {&segment.policy.ingress, &segment.policy.egress}) {
      for (const PolicyRule& rule : *rules) {
        for (const PolicyPeer& peer : rule.peers) {
          if (peer.namespace_selector && (SelectorMatches(*peer.namespace_selector, old_labels) ||
                                          SelectorMatches(*peer.namespace_selector, new_labels))) {
            DirtyNamespaceEndpoints(segment.policy.namespace_name);
          }
        }
      }
    }
  }
  // Cluster policies choose their subjects by namespace labels too.
  if (!cluster_.cluster_segment_policies.empty()) MarkAllDirty();
}

void PolicyEngine::DeleteNamespace(const std::string& name) {
  if (!cluster_.namespaces.contains(name)) return;
  // Dirty as a relabel to the implicit labels, then forget the object.
  UpsertNamespace(Namespace{name, {}});
  cluster_.namespaces.erase(name);
  RefreshNamespaceLabels(name);
}

void PolicyEngine::UpsertPod(const Pod& pod) {
  const std::string key = KeyOf(pod);
  if (auto found = cluster_.pods.find(key); found != cluster_.pods.end() && found->second == pod) return;
  cluster_.pods[key] = pod;
  DirtyEndpointsOfPodKey(key);
  for (const auto& [id, endpoint] : endpoints_) {
    if (endpoint.pod_namespace == pod.namespace_name && endpoint.pod_name == pod.name) ReindexEndpoint(endpoint);
  }
  RefreshPeer(key);
}

void PolicyEngine::DeletePod(const std::string& key) {
  if (cluster_.pods.erase(key) == 0) return;
  DirtyEndpointsOfPodKey(key);
  for (const auto& [id, endpoint] : endpoints_) {
    if (absl::StrCat(endpoint.pod_namespace, "/", endpoint.pod_name) == key) ReindexEndpoint(endpoint);
  }
  RefreshPeer(key);
}

void PolicyEngine::UpsertNetworkPolicy(const NetworkPolicy& policy) {
  const std::string key = KeyOf(policy);
  if (auto found = cluster_.network_policies.find(key); found != cluster_.network_policies.end() && found->second == policy) {
    return;
  }
  DirtyPolicyEndpoints(key);  // what the old version selected
  cluster_.network_policies[key] = policy;
  IndexPolicy(key, policy);
  DirtyPolicyEndpoints(key);  // what the new version selects
}

void PolicyEngine::DeleteNetworkPolicy(const std::string& key) {
  if (!cluster_.network_policies.contains(key)) return;
  DirtyPolicyEndpoints(key);
  cluster_.network_policies.erase(key);
  selected_by_.erase(key);
}

void PolicyEngine::UpsertSegmentPolicy(const SegmentPolicy& policy) {
  const std::string key = KeyOf(policy.policy);
  auto found = cluster_.segment_policies.find(key);
  if (found != cluster_.segment_policies.end() && found->second.policy == policy.policy &&
      found->second.enforcement == policy.enforcement) {
    return;
  }
  cluster_.segment_policies[key] = policy;
  DirtyNamespaceEndpoints(policy.policy.namespace_name);
}

void PolicyEngine::DeleteSegmentPolicy(const std::string& key) {
  auto found = cluster_.segment_policies.find(key);
  if (found == cluster_.segment_policies.end()) return;
  DirtyNamespaceEndpoints(found->second.policy.namespace_name);
  cluster_.segment_policies.erase(found);
}

void PolicyEngine::UpsertClusterSegmentPolicy(const ClusterSegmentPolicy& policy) {
  auto found = cluster_.cluster_segment_policies.find(policy.name);
  std::optional<ClusterSegmentPolicy> before;
  if (found != cluster_.cluster_segment_policies.end()) {
    const ClusterSegmentPolicy& old = found->second;
    if (old.priority == policy.priority && old.subject_namespace_selector == policy.subject_namespace_selector &&
        old.subject_pod_selector == policy.subject_pod_selector && old.applies_ingress == policy.applies_ingress &&
        old.applies_egress == policy.applies_egress && old.ingress == policy.ingress && old.egress == policy.egress) {
      return;
    }
    before = old;
  }
  cluster_.cluster_segment_policies[policy.name] = policy;
  DirtyClusterPolicyChange(before ? &*before : nullptr, &policy);
}

void PolicyEngine::DeleteClusterSegmentPolicy(const std::string& name) {
  auto found = cluster_.cluster_segment_policies.find(name);
  if (found == cluster_.cluster_segment_policies.end()) return;
  const ClusterSegmentPolicy before = std::move(found->second);
  cluster_.cluster_segment_policies.erase(found);
  DirtyClusterPolicyChange(&before, nullptr);
}

std::set<uint32_t> PolicyEngine::SubjectsOf(const ClusterSegmentPolicy& policy) const {
  static const Labels kNoLabels;
  std::set<uint32_t> subjects;
  for (const auto& [id, endpoint] : endpoints_) {
    const Pod* pod = FindPod(endpoint.pod_namespace, endpoint.pod_name);
    if (NamespaceSelects(policy.subject_namespace_selector, endpoint.pod_namespace) &&
        SelectorMatches(policy.subject_pod_selector, pod ? pod->labels : kNoLabels)) {
      subjects.insert(id);
    }
  }
  return subjects;
}

namespace {

// Rules that give LPM entries: ipBlock peers, or no peers (every address).
bool HasCidrPeers(const ClusterSegmentPolicy& policy) {
  for (const auto* rules : {&policy.ingress, &policy.egress}) {
    for (const PolicyRule& rule : *rules) {
      if (rule.peers.empty()) return true;
      for (const PolicyPeer& peer : rule.peers) {
        if (peer.is_ip_block()) return true;
      }
    }
  }
  return false;
}

// The policy's endPort ranges per direction and protocol, sorted. They cut
// the ports of every rule of a direction into intervals (port_intervals.h):
// while they stay the same, so do the endpoint's port-interval lookups.
std::vector<std::tuple<bool, Protocol, uint16_t, uint16_t>> PortRanges(const ClusterSegmentPolicy& policy) {
  std::vector<std::tuple<bool, Protocol, uint16_t, uint16_t>> ranges;
  for (const bool egress : {false, true}) {
    for (const PolicyRule& rule : egress ? policy.egress : policy.ingress) {
      for (const PolicyPort& port : rule.ports) {
        if (!port.end_port || !port.port || !std::holds_alternative<uint16_t>(*port.port)) continue;
        ranges.emplace_back(egress, port.protocol, std::get<uint16_t>(*port.port), *port.end_port);
      }
    }
  }
  std::sort(ranges.begin(), ranges.end());
  return ranges;
}

// Beyond this many addresses a patch costs about what a whole compile does.
constexpr size_t kMaxPatchAddresses = 2048;

}  // namespace

// Whether the entries keyed by the peer's address can depend on the policy:
// its selectors choose the pod, or the pod is inside one of its ipBlocks
// (its exact entries then carry the block's verdict too).
bool PolicyEngine::ClusterPolicyTouchesPeer(const ClusterSegmentPolicy& policy, const PeerPod& peer) const {
  for (const bool egress : {false, true}) {
    if (!(egress ? policy.applies_egress : policy.applies_ingress)) continue;
    const std::vector<PolicyRule>& rules = egress ? policy.egress : policy.ingress;
    if (RulesMayReferencePeer(rules, egress, nullptr, peer)) return true;
    for (const PolicyRule& rule : rules) {
      if (rule.peers.empty()) return true;
      for (const PolicyPeer& policy_peer : rule.peers) {
        if (policy_peer.ip_block && peer.ipv4 != 0 && InsideBlock(*policy_peer.ip_block, peer.ipv4)) return true;
        if (policy_peer.ipv6_block && HasIpv6(peer) && InsideBlock(*policy_peer.ipv6_block, peer.ipv6)) return true;
      }
    }
  }
  return false;
}

void PolicyEngine::DirtyClusterPolicyChange(const ClusterSegmentPolicy* before, const ClusterSegmentPolicy* after) {
  const std::set<uint32_t> old_subjects = before ? SubjectsOf(*before) : std::set<uint32_t>{};
  const std::set<uint32_t> new_subjects = after ? SubjectsOf(*after) : std::set<uint32_t>{};
  // Gaining or losing the policy changes which rules apply at all: whole.
  std::set<uint32_t> kept;
  for (uint32_t id : old_subjects) (new_subjects.contains(id) ? kept : dirty_).insert(id);
  for (uint32_t id : new_subjects) {
    if (!old_subjects.contains(id)) dirty_.insert(id);
  }
  if (kept.empty()) return;
  if (before->applies_ingress != after->applies_ingress || before->applies_egress != after->applies_egress) {
    dirty_.insert(kept.begin(), kept.end());
    return;
  }
  // Its rules' verdicts (priority included) reach only entries some rule of
  // it matches: those of the addresses below (both families), and the LPM
  // entries.
  PeerAddresses addresses;
  for (const auto& [key, peer] : context_.peers) {
    if (ClusterPolicyTouchesPeer(*before, peer) || ClusterPolicyTouchesPeer(*after, peer)) {
      if (peer.ipv4 != 0) addresses.ipv4.insert(peer.ipv4);
      if (HasIpv6(peer)) addresses.ipv6.insert(peer.ipv6);
      if (addresses.size() > kMaxPatchAddresses) {
        dirty_.insert(kept.begin(), kept.end());
        return;
      }
    }
  }
  PeerDirty(kept, addresses);
  // New endPort ranges may cut the ports anew: the patch then carries the
  // port-interval lookups too, and the updater takes it only if they stay.
  if (HasCidrPeers(*before) || HasCidrPeers(*after) || PortRanges(*before) != PortRanges(*after)) {
    cidr_dirty_.insert(kept.begin(), kept.end());
  }
}

void PolicyEngine::UpsertEndpoint(const LocalEndpoint& endpoint) {
  std::optional<std::string> old_pod_key;
  if (auto found = endpoints_.find(endpoint.endpoint_id); found != endpoints_.end()) {
    const LocalEndpoint& old = found->second;
    if (old == endpoint) return;
    old_pod_key = absl::StrCat(old.pod_namespace, "/", old.pod_name);
  }
  endpoints_[endpoint.endpoint_id] = endpoint;
  dirty_.insert(endpoint.endpoint_id);
  ReindexEndpoint(endpoint);
  const std::string pod_key = absl::StrCat(endpoint.pod_namespace, "/", endpoint.pod_name);
  if (old_pod_key && *old_pod_key != pod_key) RefreshPeer(*old_pod_key);
  RefreshPeer(pod_key);
}

void PolicyEngine::DeleteEndpoint(uint32_t endpoint_id) {
  auto found = endpoints_.find(endpoint_id);
  if (found == endpoints_.end()) return;
  const LocalEndpoint gone = found->second;
  endpoints_.erase(found);
  dirty_.insert(endpoint_id);
  ReindexEndpoint(gone);
  RefreshPeer(absl::StrCat(gone.pod_namespace, "/", gone.pod_name));
}

void PolicyEngine::SetClusterState(const ClusterState& cluster) {
  // Deletions first and namespaces before pods before policies: the order
  // only affects how much is dirtied, never the result.
  std::vector<std::string> gone;
  for (const auto& [key, policy] : cluster_.network_policies) {
    if (!cluster.network_policies.contains(key)) gone.push_back(key);
  }
  for (const std::string& key : gone) DeleteNetworkPolicy(key);
  gone.clear();
  for (const auto& [key, pod] : cluster_.pods) {
    if (!cluster.pods.contains(key)) gone.push_back(key);
  }
  for (const std::string& key : gone) DeletePod(key);
  gone.clear();
  for (const auto& [key, ns] : cluster_.namespaces) {
    if (!cluster.namespaces.contains(key)) gone.push_back(key);
  }
  for (const std::string& key : gone) DeleteNamespace(key);

  gone.clear();
  for (const auto& [key, policy] : cluster_.segment_policies) {
    if (!cluster.segment_policies.contains(key)) gone.push_back(key);
  }
  for (const std::string& key : gone) DeleteSegmentPolicy(key);
  gone.clear();
  for (const auto& [name, policy] : cluster_.cluster_segment_policies) {
    if (!cluster.cluster_segment_policies.contains(name)) gone.push_back(name);
  }
  for (const std::string& name : gone) DeleteClusterSegmentPolicy(name);

  for (const auto& [key, ns] : cluster.namespaces) UpsertNamespace(ns);
  for (const auto& [key, pod] : cluster.pods) UpsertPod(pod);
  for (const auto& [key, policy] : cluster.network_policies) {
    auto found = cluster_.network_policies.find(key);
    if (found != cluster_.network_policies.end() && found->second == policy) continue;
    UpsertNetworkPolicy(policy);
  }
  for (const auto& [key, policy] : cluster.segment_policies) UpsertSegmentPolicy(policy);
  for (const auto& [name, policy] : cluster.cluster_segment_policies) UpsertClusterSegmentPolicy(policy);
}

std::set<uint32_t> PolicyEngine::TakeDirty() {
  Work work = TakeWork();
  for (const auto& [id, addresses] : work.peers) work.whole.insert(id);
  return work.whole;
}

PolicyEngine::Work PolicyEngine::TakeWork() {
  Work work{std::exchange(dirty_, {}), std::exchange(peer_dirty_, {}), std::exchange(cidr_dirty_, {})};
  std::erase_if(work.peers, [&](const auto& entry) { return work.whole.contains(entry.first); });
  std::erase_if(work.cidrs, [&](uint32_t id) { return !work.peers.contains(id); });
  return work;
}

void PolicyEngine::MarkAllDirty() {
  for (const auto& [id, endpoint] : endpoints_) dirty_.insert(id);
}

EndpointPolicy PolicyEngine::Compile(uint32_t endpoint_id, PeerSelectionCache* selections) {
  ++compiled_endpoints_;
  return CompileEndpointPolicy(context_, endpoints_.at(endpoint_id), selections);
}

PeerEntries PolicyEngine::CompilePeers(uint32_t endpoint_id, PeerAddresses addresses, bool with_cidrs,
                                       PeerSelectionCache* selections) const {
  return CompileEndpointPeers(context_, endpoints_.at(endpoint_id), std::move(addresses), with_cidrs, selections);
}

}  // namespace microseg
