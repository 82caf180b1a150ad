#include "peer_selection_cache.h"

#include "selector.h"

namespace microseg {
namespace {

// Separators that label keys and values cannot contain (they are limited
// to alphanumerics, '-', '_', '.', '/').
void AppendSelector(const LabelSelector& selector, std::string& key) {
  for (const auto& [label, value] : selector.match_labels) {
    key.append(label).push_back('\x1f');
    key.append(value).push_back('\x1e');
  }
  key.push_back('\x1d');
  for (const LabelRequirement& requirement : selector.match_expressions) {
    key.append(requirement.key).push_back('\x1f');
    key.push_back(static_cast<char>('0' + static_cast<int>(requirement.op)));
    for (const std::string& value : requirement.values) key.append(value).push_back('\x1f');
    key.push_back('\x1e');
  }
}

std::string SelectionKey(const PolicyPeer& peer, const std::optional<std::string>& policy_namespace) {
  std::string key;
  if (peer.namespace_selector) {
    key.push_back('N');
    AppendSelector(*peer.namespace_selector, key);
  } else if (policy_namespace) {
    key.push_back('P');
    key.append(*policy_namespace);
  } else {
    key.push_back('A');  // every namespace
  }
  key.push_back('\x1c');
  if (peer.pod_selector) {
    key.push_back('S');
    AppendSelector(*peer.pod_selector, key);
  }
  return key;
}

}  // namespace

void PeerSelectionCache::IndexNamespaces(const PolicyContext& context) {
  indexed_ = true;
  // context.peers is keyed "namespace/name": each namespace is one run.
  for (const auto& [key, pod] : context.peers) {
    if (namespaces_.empty() || namespaces_.back().pods.front()->namespace_name != pod.namespace_name) {
      NamespacePods& group = namespaces_.emplace_back();
      if (auto found = context.namespace_labels.find(pod.namespace_name); found != context.namespace_labels.end()) {
        group.labels = &found->second;
      } else {
        Labels& implicit = implicit_labels_[pod.namespace_name];
        implicit = {{kNamespaceNameLabel, pod.namespace_name}};
        group.labels = &implicit;
      }
    }
    namespaces_.back().pods.push_back(&pod);
  }
}

const std::vector<const PeerPod*>& PeerSelectionCache::Select(const PolicyContext& context, const PolicyPeer& peer,
                                                              const std::optional<std::string>& policy_namespace) {
  auto [found, inserted] = selections_.try_emplace(SelectionKey(peer, policy_namespace));
  std::vector<const PeerPod*>& selected = found->second;
  if (!inserted) return selected;
  auto take = [&](const PeerPod& pod) {
    if (!peer.pod_selector || SelectorMatches(*peer.pod_selector, pod.labels)) selected.push_back(&pod);
  };
  if (!peer.namespace_selector && policy_namespace) {
    // A podSelector alone selects within the policy's namespace: one run of keys.
    const std::string prefix = *policy_namespace + "/";
    for (auto it = context.peers.lower_bound(prefix);
         it != context.peers.end() && it->first.compare(0, prefix.size(), prefix) == 0; ++it) {
      take(it->second);
    }
    return selected;
  }
  if (!indexed_) IndexNamespaces(context);
  for (const NamespacePods& group : namespaces_) {
    if (peer.namespace_selector && !SelectorMatches(*peer.namespace_selector, *group.labels)) continue;
    for (const PeerPod* pod : group.pods) take(*pod);
  }
  return selected;
}

const std::unordered_set<const PeerPod*>& PeerSelectionCache::SelectSet(
    const PolicyContext& context, const PolicyPeer& peer, const std::optional<std::string>& policy_namespace) {
  auto [found, inserted] = selection_sets_.try_emplace(SelectionKey(peer, policy_namespace));
  if (inserted) {
    const std::vector<const PeerPod*>& selected = Select(context, peer, policy_namespace);
    found->second.insert(selected.begin(), selected.end());
  }
  return found->second;
}

const std::vector<const PeerPod*>& PeerSelectionCache::PeersAt(const PolicyContext& context,
                                                               const PeerAddresses& addresses) {
  auto [found, inserted] = scopes_.try_emplace(addresses);
  if (inserted) found->second = microseg::PeersAt(context, addresses);
  return found->second;
}

}  // namespace microseg
