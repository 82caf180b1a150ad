#include "endpoint_rules.h"

#include <algorithm>
#include <optional>

#include "absl/strings/str_cat.h"
#include "ipv4_cidr.h"
#include "ipv6_address.h"
#include "rule_id.h"
#include "selector.h"

namespace microseg {
namespace {

struct NamedPort {
  uint8_t proto = 0;
  std::string name;
};

std::vector<uint16_t> ResolveNamedPort(const std::vector<ContainerPort>& ports, uint8_t proto,
                                       const std::string& name) {
  std::vector<uint16_t> resolved;
  for (const ContainerPort& port : ports) {
    if (port.name == name && static_cast<uint8_t>(port.protocol) == proto) resolved.push_back(port.port);
  }
  return resolved;
}

const Labels& NamespaceLabelsOf(const PolicyContext& context, const std::string& name, Labels& fallback) {
  if (const auto found = context.namespace_labels.find(name); found != context.namespace_labels.end()) {
    return found->second;
  }
  fallback = {{kNamespaceNameLabel, name}};  // a namespace known only by name
  return fallback;
}

class RuleBuilder {
 public:
  RuleBuilder(const PolicyContext& context, ms_direction direction, const std::vector<ContainerPort>& local_ports,
              const std::vector<const PeerPod*>* scope, PeerSelectionCache* selections)
      : context_(context), direction_(direction), local_ports_(local_ports), scope_(scope), selections_(selections) {}

  // `policy_namespace` nullopt: cluster-scoped (podSelector alone = every namespace).
  std::optional<VerdictRule> Build(const PolicyRule& rule, const std::optional<std::string>& policy_namespace) const {
    VerdictRule out;
    out.action = rule.action;
    std::vector<NamedPort> named_egress;
    if (rule.ports.empty()) out.ports.push_back({0, 0});
    for (const PolicyPort& policy_port : rule.ports) {
      const auto proto = static_cast<uint8_t>(policy_port.protocol);
      if (!policy_port.port) {
        out.ports.push_back({proto, 0});
      } else if (const auto* number = std::get_if<uint16_t>(&*policy_port.port)) {
        const uint32_t last = policy_port.end_port.value_or(*number);
        if (*number == 1 && last == 65535) {
          // Every port: the "any port of proto" key, no interval lookup (it
          // also matches a destination port 0, which no connection uses).
          out.ports.push_back({proto, 0});
          continue;
        }
        // A range is one key whatever its width: the maps hold it as port
        // intervals (port_intervals.h; docs/policy-compiler.md, "Port ranges").
        out.ports.push_back({proto, *number, last == *number ? uint16_t{0} : static_cast<uint16_t>(last)});
      } else if (direction_ == MS_DIR_EGRESS) {
        named_egress.push_back({proto, std::get<std::string>(*policy_port.port)});  // resolved per peer pod
      } else {
        // Ingress: the destination is the local pod. A name it does not define allows nothing.
        for (uint16_t port : ResolveNamedPort(local_ports_, proto, std::get<std::string>(*policy_port.port))) {
          out.ports.push_back({proto, port});
        }
      }
    }
    std::sort(out.ports.begin(), out.ports.end());
    out.ports.erase(std::unique(out.ports.begin(), out.ports.end()), out.ports.end());

    if (rule.peers.empty()) {
      out.blocks.push_back(IpBlock{Ipv4Cidr{0, 0}, {}});
      out.blocks6.push_back(Ipv6Block{Ipv6Cidr{{}, 0}, {}});
    }
    for (const PolicyPeer& peer : rule.peers) {
      if (peer.ip_block) {
        out.blocks.push_back(*peer.ip_block);
      } else if (peer.ipv6_block) {
        out.blocks6.push_back(*peer.ipv6_block);
      } else {
        ForEachSelectedPeer(peer, policy_namespace, [&](const PeerPod& pod) {
          if (pod.ipv4 != 0) AddPodAddress(out.pod_ports, pod.ipv4, out.ports, pod, named_egress);
          if (HasIpv6(pod)) AddPodAddress(out.pod_ports6, pod.ipv6, out.ports, pod, named_egress);
        });
      }
    }
    if (!named_egress.empty()) {
      // A named port means something only on a pod: for CIDR peers it is
      // resolved on the pods we know inside a block (of the address's
      // family); other addresses of the block get the rule's numeric ports only.
      ForEachPodInScope([&](const PeerPod& pod) {
        if (!HasNamedResolution(pod, named_egress)) return;
        if (pod.ipv4 != 0 && !out.pod_ports.contains(pod.ipv4) && InsideAny(out.blocks, pod.ipv4)) {
          AddPodAddress(out.pod_ports, pod.ipv4, out.ports, pod, named_egress);
        }
        if (HasIpv6(pod) && !out.pod_ports6.contains(pod.ipv6) && InsideAny(out.blocks6, pod.ipv6)) {
          AddPodAddress(out.pod_ports6, pod.ipv6, out.ports, pod, named_egress);
        }
      });
    }
    return out;
  }

 private:
  template <typename Fn>
  void ForEachPodInScope(Fn&& fn) const {
    if (scope_) {
      for (const PeerPod* pod : *scope_) fn(*pod);
      return;
    }
    for (const auto& [key, pod] : context_.peers) fn(pod);
  }

  template <typename Fn>
  void ForEachSelectedPeer(const PolicyPeer& peer, const std::optional<std::string>& policy_namespace,
                           Fn&& fn) const {
    Labels fallback;
    if (scope_ && selections_) {
      const std::unordered_set<const PeerPod*>& selected = selections_->SelectSet(context_, peer, policy_namespace);
      for (const PeerPod* pod : *scope_) {
        if (selected.contains(pod)) fn(*pod);
      }
      return;
    }
    if (scope_) {
      for (const PeerPod* pod : *scope_) {
        if (!peer.namespace_selector && policy_namespace) {
          if (pod->namespace_name != *policy_namespace) continue;
        } else if (peer.namespace_selector &&
                   !SelectorMatches(*peer.namespace_selector,
                                    NamespaceLabelsOf(context_, pod->namespace_name, fallback))) {
          continue;
        }
        if (!peer.pod_selector || SelectorMatches(*peer.pod_selector, pod->labels)) fn(*pod);
      }
      return;
    }
    if (selections_) {
      for (const PeerPod* pod : selections_->Select(context_, peer, policy_namespace)) fn(*pod);
      return;
    }
    if (!peer.namespace_selector && policy_namespace) {
      // podSelector alone selects within the policy's namespace: one contiguous range of peers.
      const std::string prefix = *policy_namespace + "/";
      for (auto it = context_.peers.lower_bound(prefix);
           it != context_.peers.end() && it->first.compare(0, prefix.size(), prefix) == 0; ++it) {
        if (!peer.pod_selector || SelectorMatches(*peer.pod_selector, it->second.labels)) fn(it->second);
      }
      return;
    }
    // Namespace by namespace (keys are "namespace/name"): the namespace
    // selector is evaluated once per namespace and a namespace it rejects is
    // skipped whole ('0' sorts right after '/'). Cluster-scoped policies: no
    // namespaceSelector means every namespace.
    for (auto it = context_.peers.begin(); it != context_.peers.end();) {
      const std::string namespace_name = it->second.namespace_name;
      if (peer.namespace_selector &&
          !SelectorMatches(*peer.namespace_selector, NamespaceLabelsOf(context_, namespace_name, fallback))) {
        it = context_.peers.lower_bound(namespace_name + "0");
        continue;
      }
      const std::string prefix = namespace_name + "/";
      for (; it != context_.peers.end() && it->first.compare(0, prefix.size(), prefix) == 0; ++it) {
        if (!peer.pod_selector || SelectorMatches(*peer.pod_selector, it->second.labels)) fn(it->second);
      }
    }
  }

  static bool HasNamedResolution(const PeerPod& pod, const std::vector<NamedPort>& named) {
    return std::any_of(named.begin(), named.end(), [&](const NamedPort& port) {
      return !ResolveNamedPort(pod.container_ports, port.proto, port.name).empty();
    });
  }

  template <typename Block, typename Address>
  static bool InsideAny(const std::vector<Block>& blocks, const Address& address) {
    return std::any_of(blocks.begin(), blocks.end(), [&](const Block& block) {
      return CidrContainsAddress(block.cidr, address) &&
             std::none_of(block.except.begin(), block.except.end(),
                          [&](const auto& except) { return CidrContainsAddress(except, address); });
    });
  }

  // The pod at `address` (one of its family's) gets the rule's ports and its
  // named egress ports resolved on it.
  template <typename Address>
  static void AddPodAddress(std::map<Address, std::vector<PortKey>>& pod_ports, const Address& address,
                            const std::vector<PortKey>& rule_ports, const PeerPod& pod,
                            const std::vector<NamedPort>& named_egress) {
    std::vector<PortKey>& keys = pod_ports[address];
    keys.insert(keys.end(), rule_ports.begin(), rule_ports.end());
    for (const NamedPort& named : named_egress) {
      for (uint16_t number : ResolveNamedPort(pod.container_ports, named.proto, named.name)) {
        keys.push_back({named.proto, number});
      }
    }
    std::sort(keys.begin(), keys.end());
    keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
    if (keys.empty()) pod_ports.erase(address);
  }

  const PolicyContext& context_;
  ms_direction direction_;
  const std::vector<ContainerPort>& local_ports_;
  const std::vector<const PeerPod*>* scope_;
  PeerSelectionCache* selections_;
};

bool Isolates(const NetworkPolicy& policy, ms_direction direction) {
  return direction == MS_DIR_INGRESS ? policy.isolates_ingress : policy.isolates_egress;
}

const std::vector<PolicyRule>& RulesOf(const NetworkPolicy& policy, ms_direction direction) {
  return direction == MS_DIR_INGRESS ? policy.ingress : policy.egress;
}

}  // namespace

DirectionRules CollectDirectionRules(const PolicyContext& context, const LocalEndpoint& endpoint,
                                     const Pod* local_pod, ms_direction direction,
                                     std::vector<std::string>* policies,
                                     const std::vector<const PeerPod*>* scope, PeerSelectionCache* selections) {
  static const Labels kNoLabels;
  static const std::vector<ContainerPort> kNoPorts;
  const ClusterState& cluster = *context.cluster;
  const Labels& labels = local_pod ? local_pod->labels : kNoLabels;
  const RuleBuilder builder(context, direction, local_pod ? local_pod->container_ports : kNoPorts, scope,
                            selections);
  DirectionRules out;

  // Cluster tier.
  Labels fallback;
  const Labels& namespace_labels = NamespaceLabelsOf(context, endpoint.pod_namespace, fallback);
  std::vector<const ClusterSegmentPolicy*> cluster_policies;
  for (const auto& [name, policy] : cluster.cluster_segment_policies) {
    const bool applies = direction == MS_DIR_INGRESS ? policy.applies_ingress : policy.applies_egress;
    if (applies && SelectorMatches(policy.subject_namespace_selector, namespace_labels) &&
        SelectorMatches(policy.subject_pod_selector, labels)) {
      cluster_policies.push_back(&policy);
    }
  }
  // The map is ordered by name, so a stable sort by priority gives (priority, name).
  std::stable_sort(cluster_policies.begin(), cluster_policies.end(),
                   [](const auto* a, const auto* b) { return a->priority < b->priority; });
  uint32_t order = 0;
  for (const ClusterSegmentPolicy* policy : cluster_policies) {
    if (policies) policies->push_back(absl::StrCat("ClusterSegmentPolicy ", policy->name));
    const std::vector<PolicyRule>& rules = direction == MS_DIR_INGRESS ? policy->ingress : policy->egress;
    for (size_t i = 0; i < rules.size(); ++i) {
      const uint32_t position = order++;
      std::optional<VerdictRule> rule = builder.Build(rules[i], std::nullopt);
      if (!rule) continue;
      rule->cluster_tier = true;
      rule->order = position;
      rule->rule_id = RuleIdOf(PolicyKind::kClusterSegmentPolicy, "", policy->name, direction, i);
      out.rules.push_back(*std::move(rule));
    }
  }

  // Namespace tier.
  const auto add_namespaced = [&](const NetworkPolicy& policy, bool audit, PolicyKind kind) {
    if (policy.namespace_name != endpoint.pod_namespace || !SelectorMatches(policy.pod_selector, labels)) return;
    // Rules of a direction the policy does not isolate have no effect in k8s.
    if (!Isolates(policy, direction)) return;
    if (policies) {
      policies->push_back(absl::StrCat(kind == PolicyKind::kSegmentPolicy ? "SegmentPolicy " : "",
                                       policy.namespace_name, "/", policy.name));
    }
    out.isolated_all = true;
    if (!audit) out.isolated_enforced = true;
    // The first Audit policy (by name) answers for the audit isolation default.
    if (audit && out.audit_isolation_rule_id == 0) {
      out.audit_isolation_rule_id = AuditIsolationRuleId(policy.namespace_name, policy.name, direction);
    }
    const std::vector<PolicyRule>& rules = RulesOf(policy, direction);
    for (size_t i = 0; i < rules.size(); ++i) {
      std::optional<VerdictRule> rule = builder.Build(rules[i], policy.namespace_name);
      if (!rule) continue;
      rule->audit = audit;
      rule->rule_id = RuleIdOf(kind, policy.namespace_name, policy.name, direction, i);
      out.rules.push_back(*std::move(rule));
    }
  };
  // Keys are "namespace/name": the endpoint's namespace is one range.
  const std::string prefix = endpoint.pod_namespace + "/";
  for (auto it = cluster.network_policies.lower_bound(prefix);
       it != cluster.network_policies.end() && it->first.compare(0, prefix.size(), prefix) == 0; ++it) {
    add_namespaced(it->second, false, PolicyKind::kNetworkPolicy);
  }
  for (auto it = cluster.segment_policies.lower_bound(prefix);
       it != cluster.segment_policies.end() && it->first.compare(0, prefix.size(), prefix) == 0; ++it) {
    add_namespaced(it->second.policy, it->second.enforcement == Enforcement::kAudit, PolicyKind::kSegmentPolicy);
  }
  return out;
}

}  // namespace microseg
