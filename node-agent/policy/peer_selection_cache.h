// The peer pods one selector pair chooses, resolved once per batch of
// compiles instead of once per rule and endpoint. Resolving a namespace
// selector walks every namespace of the cluster, and the same selectors
// recur across policies (a team's namespaces, "every monitoring pod") and
// across the endpoints a ClusterSegmentPolicy applies to.
//
// A cache is valid for one unchanged PolicyContext: create one per batch
// (PlanEndpointUpdates, CompilePolicy) and drop it before the next event.
// Passed to the compiler explicitly, so compiling stays a pure function.
#pragma once

#include <map>
#include <optional>
#include <set>
#include <string>
#include <unordered_set>
#include <vector>

#include "model.h"
#include "policy_compiler.h"

namespace microseg {

class PeerSelectionCache {
 public:
  // The pods `peer` (a selector peer, not an ipBlock) selects, in
  // context.peers order. `policy_namespace` nullopt: a cluster-scoped
  // policy (a podSelector alone then means every namespace).
  const std::vector<const PeerPod*>& Select(const PolicyContext& context, const PolicyPeer& peer,
                                            const std::optional<std::string>& policy_namespace);
  // The same pods as a set, for peer patches: they ask, endpoint after
  // endpoint, which of a few pods each selector chooses.
  const std::unordered_set<const PeerPod*>& SelectSet(const PolicyContext& context, const PolicyPeer& peer,
                                                      const std::optional<std::string>& policy_namespace);
  // PeersAt(context, addresses), once per address set and batch: the
  // subjects of one cluster policy change share one.
  const std::vector<const PeerPod*>& PeersAt(const PolicyContext& context, const PeerAddresses& addresses);

 private:
  struct NamespacePods {
    const Labels* labels = nullptr;  // as namespace selectors see them
    std::vector<const PeerPod*> pods;
  };
  void IndexNamespaces(const PolicyContext& context);

  bool indexed_ = false;
  std::vector<NamespacePods> namespaces_;
  std::map<std::string, Labels> implicit_labels_;  // namespaces known only by name
  std::map<std::string, std::vector<const PeerPod*>> selections_;  // key: SelectionKey()
  std::map<std::string, std::unordered_set<const PeerPod*>> selection_sets_;  // key: SelectionKey()
  std::map<PeerAddresses, std::vector<const PeerPod*>> scopes_;
};

}  // namespace microseg
