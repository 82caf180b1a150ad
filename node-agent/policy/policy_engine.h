// The incremental side of the policy compiler: holds the cluster objects and
// this node's endpoints, takes one event at a time (pod, namespace, policy,
// endpoint upserted or deleted) and marks dirty only the local endpoints the
// event can change. Compiling a dirty endpoint is CompileEndpointPolicy over
// a PolicyContext this class keeps up to date in place. Pure: no I/O.
//
// What an event touches (the dependency index):
//  - policies: `selected_by_` maps every policy to the local endpoints it
//    selects. A policy event dirties the endpoints the old or the new
//    version selects, nothing else.
//  - pods (and a local endpoint's address, which stands in for its pod's):
//    the pod's own local endpoints (labels decide selection, container ports
//    resolve ingress named ports) are recompiled whole; the endpoints of
//    every policy (of any kind) whose peers select the old or the new
//    version of the pod (pod/namespace selectors, and ipBlocks when a rule's
//    named egress ports must be resolved on the pods inside the block) only
//    need the entries keyed by the pod's old and new addresses
//    (PeerEntries): they are "peer-dirty" with those addresses.
//  - namespaces: the endpoints of every policy with a namespaceSelector peer
//    that the old or the new labels satisfy, if the namespace has pods.
//  - ClusterSegmentPolicies: endpoints that gain or lose it as a subject are
//    recompiled whole. The ones it keeps (same directions) only need the
//    entries of the addresses its old or new peers touch (selected pods,
//    pods inside its ipBlocks) and, if either version has CIDR peers, their
//    LPM entries: they are peer-dirty with those addresses and "CIDR-dirty"
//    (a policy with only ipBlocks outside the pod range touches no address).
//    A change of endPort ranges makes them CIDR-dirty too (the updater
//    takes the patch only if the ports' cutting stays). Whole all the
//    same: a change of directions, a touched pod with an IPv6 address, or
//    more than 2,048 touched addresses.
// Only policies selecting at least one local endpoint are consulted, so the
// cost of an event grows with the policies that matter on this node, not
// with the cluster.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>

#include "model.h"
#include "policy_compiler.h"

namespace microseg {

class PolicyEngine {
 public:
  PolicyEngine();
  PolicyEngine(const PolicyEngine&) = delete;
  PolicyEngine& operator=(const PolicyEngine&) = delete;

  // Cluster events. Keys are those of ClusterState ("name" for namespaces,
  // "namespace/name" otherwise); upserting an unchanged object dirties nothing.
  void UpsertNamespace(const Namespace& ns);
  void DeleteNamespace(const std::string& name);
  void UpsertPod(const Pod& pod);
  void DeletePod(const std::string& key);
  void UpsertNetworkPolicy(const NetworkPolicy& policy);
  void DeleteNetworkPolicy(const std::string& key);
  // Our CRDs. A SegmentPolicy event dirties the local endpoints of its
  // namespace, a ClusterSegmentPolicy event the endpoints its old or new
  // subject selectors choose; pod events peer-dirty the endpoints they
  // select like a NetworkPolicy's.
  void UpsertSegmentPolicy(const SegmentPolicy& policy);
  void DeleteSegmentPolicy(const std::string& key);
  void UpsertClusterSegmentPolicy(const ClusterSegmentPolicy& policy);
  void DeleteClusterSegmentPolicy(const std::string& name);

  // This node's endpoints, by endpoint_id.
  void UpsertEndpoint(const LocalEndpoint& endpoint);
  void DeleteEndpoint(uint32_t endpoint_id);

  // Turns a whole new state into the events that differ (standalone mode).
  void SetClusterState(const ClusterState& cluster);

  const ClusterState& cluster() const { return cluster_; }
  const std::map<uint32_t, LocalEndpoint>& endpoints() const { return endpoints_; }

  // Endpoint ids whose entries may have changed since the last call; ids of
  // deleted endpoints are included (they are no longer in endpoints()).
  // Peer-dirty endpoints are in it too (to be compiled whole).
  std::set<uint32_t> TakeDirty();
  // The same work, split: endpoints to compile whole, and endpoints whose
  // entries changed only for some peer addresses (CompilePeers), some of
  // them with their LPM entries too.
  struct Work {
    std::set<uint32_t> whole;
    std::map<uint32_t, PeerAddresses> peers;  // endpoint id -> the addresses to patch
    std::set<uint32_t> cidrs;                      // ids in `peers` whose LPM entries changed too
  };
  Work TakeWork();
  // Marks every endpoint dirty (a full rebuild: restart, forced resync).
  void MarkAllDirty();
  // Marks one endpoint dirty (a retry: its last update did not fit).
  void MarkDirty(uint32_t endpoint_id) { dirty_.insert(endpoint_id); }

  // The endpoint's desired entries now. Counted in compiled_endpoints().
  // `selections` (may be nullptr) is shared by the compiles of one batch:
  // no event may come between them.
  EndpointPolicy Compile(uint32_t endpoint_id, PeerSelectionCache* selections = nullptr);
  uint64_t compiled_endpoints() const { return compiled_endpoints_; }
  // The endpoint's entries for these peer addresses now (and with
  // `with_cidrs` its LPM entries). Not counted above. `addresses` end up
  // in the result (by value: a caller done with them moves them in).
  PeerEntries CompilePeers(uint32_t endpoint_id, PeerAddresses addresses, bool with_cidrs = false,
                           PeerSelectionCache* selections = nullptr) const;

 private:
  static std::string KeyOf(const Pod& pod);
  static std::string KeyOf(const NetworkPolicy& policy);
  const Pod* FindPod(const std::string& namespace_name, const std::string& pod_name) const;
  bool PolicySelectsEndpoint(const NetworkPolicy& policy, const LocalEndpoint& endpoint) const;
  void IndexPolicy(const std::string& key, const NetworkPolicy& policy);
  void ReindexEndpoint(const LocalEndpoint& endpoint);
  void DirtyPolicyEndpoints(const std::string& policy_key);
  void DirtyEndpointsOfPodKey(const std::string& pod_key);
  // Dirties the endpoints of policies whose peers select `before` or `after`.
  void DirtyPeersOf(const std::optional<PeerPod>& before, const std::optional<PeerPod>& after);
  bool PolicyMayReferencePeer(const NetworkPolicy& policy, const PeerPod& peer) const;
  // `policy_namespace` nullptr: a cluster-scoped policy.
  bool RulesMayReferencePeer(const std::vector<PolicyRule>& rules, bool egress, const std::string* policy_namespace,
                             const PeerPod& peer) const;
  // `addresses` nullopt: the endpoints recompile whole.
  void PeerDirty(const std::set<uint32_t>& endpoint_ids, const PeerAddresses& addresses);
  // Local endpoints the policy's subject selectors choose (either direction).
  std::set<uint32_t> SubjectsOf(const ClusterSegmentPolicy& policy) const;
  // `before`/`after` nullptr: the policy did not exist / is deleted.
  void DirtyClusterPolicyChange(const ClusterSegmentPolicy* before, const ClusterSegmentPolicy* after);
  bool ClusterPolicyTouchesPeer(const ClusterSegmentPolicy& policy, const PeerPod& peer) const;
  void DirtyNamespaceEndpoints(const std::string& namespace_name);
  bool NamespaceSelects(const LabelSelector& selector, const std::string& namespace_name) const;
  void RefreshPeer(const std::string& pod_key);
  void RefreshNamespaceLabels(const std::string& name);
  bool NamespaceHasPods(const std::string& name) const;

  ClusterState cluster_;
  std::map<uint32_t, LocalEndpoint> endpoints_;
  PolicyContext context_;
  // policy key -> local endpoint ids it selects (only non-empty sets kept).
  std::map<std::string, std::set<uint32_t>> selected_by_;
  std::set<uint32_t> dirty_;
  std::map<uint32_t, PeerAddresses> peer_dirty_;
  std::set<uint32_t> cidr_dirty_;  // a subset of peer_dirty_'s keys
  uint64_t compiled_endpoints_ = 0;
};

}  // namespace microseg
