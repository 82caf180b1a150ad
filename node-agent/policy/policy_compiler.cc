#include "policy_compiler.h"

#include <arpa/inet.h>

#include <algorithm>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "ipv4_cidr.h"
#include "lpm_verdicts.h"
#include "rule_id.h"
#include "selector.h"

namespace microseg {
namespace {

struct NumericPort {
  uint8_t proto = 0;  // 0 = any
  uint16_t port = 0;  // 0 = any
};

struct NamedPort {
  uint8_t proto = 0;
  std::string name;
};

std::string PodKey(absl::string_view ns, absl::string_view name) { return absl::StrCat(ns, "/", name); }

// Ports of a rule with named ports resolved where the port's owner is known:
// on ingress the destination is the local pod itself; on egress it is each
// peer pod, so named ports stay symbolic until paired with a peer.
struct RulePorts {
  std::vector<NumericPort> numeric;
  std::vector<NamedPort> named_egress;
};

std::vector<uint16_t> ResolveNamedPort(const std::vector<ContainerPort>& ports, uint8_t proto,
                                       const std::string& name) {
  std::vector<uint16_t> resolved;
  for (const ContainerPort& port : ports) {
    if (port.name == name && static_cast<uint8_t>(port.protocol) == proto) resolved.push_back(port.port);
  }
  return resolved;
}

RulePorts ResolveRulePorts(const PolicyRule& rule, ms_direction direction,
                           const std::vector<ContainerPort>& local_ports) {
  RulePorts ports;
  if (rule.ports.empty()) {
    ports.numeric.push_back({0, 0});
    return ports;
  }
  for (const PolicyPort& policy_port : rule.ports) {
    const auto proto = static_cast<uint8_t>(policy_port.protocol);
    if (!policy_port.port) {
      ports.numeric.push_back({proto, 0});
    } else if (const auto* number = std::get_if<uint16_t>(&*policy_port.port)) {
      const uint32_t last = policy_port.end_port.value_or(*number);
      for (uint32_t port = *number; port <= last; ++port) {
        ports.numeric.push_back({proto, static_cast<uint16_t>(port)});
      }
    } else {
      const std::string& name = std::get<std::string>(*policy_port.port);
      if (direction == MS_DIR_EGRESS) {
        ports.named_egress.push_back({proto, name});
      } else {
        // A name the local pod does not define allows nothing (k8s semantics).
        for (uint16_t port : ResolveNamedPort(local_ports, proto, name)) ports.numeric.push_back({proto, port});
      }
    }
  }
  return ports;
}

class EndpointCompiler {
 public:
  EndpointCompiler(const PolicyContext& context, const LocalEndpoint& endpoint, EndpointPolicy& out)
      : peers_(context.peers), namespace_labels_(context.namespace_labels), endpoint_(endpoint), out_(out) {}

  // Adds the allow entries of one rule of a policy selecting the endpoint.
  void AddRule(const NetworkPolicy& policy, const PolicyRule& rule, ms_direction direction, size_t index,
               const std::vector<ContainerPort>& local_ports) {
    if (rule.only_ipv6_peers) return;  // allows no IPv4 peer at all
    const uint32_t rule_id = PolicyRuleId(policy.namespace_name, policy.name, direction, index);
    const RulePorts ports = ResolveRulePorts(rule, direction, local_ports);
    if (rule.peers.empty()) {
      AddCidrPeer(IpBlock{Ipv4Cidr{0, 0}, {}}, ports, direction, rule_id);
      return;
    }
    for (const PolicyPeer& peer : rule.peers) {
      if (peer.ip_block) {
        AddCidrPeer(*peer.ip_block, ports, direction, rule_id);
        continue;
      }
      if (!peer.namespace_selector) {
        // podSelector alone selects within the policy's namespace: scan only
        // that namespace's contiguous range of peers.
        const std::string prefix = policy.namespace_name + "/";
        for (auto it = peers_.lower_bound(prefix); it != peers_.end() && it->first.starts_with(prefix); ++it) {
          if (SelectorPeerMatches(peer, policy.namespace_name, it->second)) {
            AddPodPeer(it->second, ports, direction, rule_id);
          }
        }
        continue;
      }
      // Namespace by namespace (peers are keyed "namespace/name"): the
      // namespace selector is evaluated once per namespace, and a namespace
      // it rejects is skipped whole ('0' follows '/').
      for (auto it = peers_.begin(); it != peers_.end();) {
        const std::string namespace_name = it->second.namespace_name;
        if (!NamespaceMatches(*peer.namespace_selector, namespace_name)) {
          it = peers_.lower_bound(namespace_name + "0");
          continue;
        }
        const std::string prefix = namespace_name + "/";
        for (; it != peers_.end() && it->first.starts_with(prefix); ++it) {
          if (!peer.pod_selector || SelectorMatches(*peer.pod_selector, it->second.labels)) {
            AddPodPeer(it->second, ports, direction, rule_id);
          }
        }
      }
    }
  }

  // Writes the LPM entries collected from all rules of all policies.
  void FlushLpm() {
    for (ms_direction direction : {MS_DIR_INGRESS, MS_DIR_EGRESS}) {
      for (const LpmVerdict& verdict : ComputeLpmVerdicts(lpm_specs_[direction])) {
        ms_lpm_key key{};
        key.prefixlen = MS_LPM_FIXED_BITS + verdict.prefix.prefix_len;
        key.endpoint_id = endpoint_.endpoint_id;
        key.direction = static_cast<uint8_t>(direction);
        key.proto = verdict.proto;
        key.port = verdict.port;
        key.peer_ipv4 = htonl(verdict.prefix.addr);
        ms_policy_value value{};
        value.action = verdict.allow ? MS_ACTION_ALLOW : MS_ACTION_DENY;
        value.rule_id = verdict.rule_id;
        out_.lpm[key] = value;
        ++lpm_entries_;
      }
    }
  }

  uint32_t exact_entries() const { return exact_entries_; }
  uint32_t lpm_entries() const { return lpm_entries_; }

 private:
  bool NamespaceMatches(const LabelSelector& selector, const std::string& namespace_name) const {
    const auto labels = namespace_labels_.find(namespace_name);
    if (labels != namespace_labels_.end()) return SelectorMatches(selector, labels->second);
    return SelectorMatches(selector, {{kNamespaceNameLabel, namespace_name}});
  }

  bool SelectorPeerMatches(const PolicyPeer& peer, const std::string& policy_namespace,
                           const PeerPod& pod) const {
    if (peer.namespace_selector) {
      const auto labels = namespace_labels_.find(pod.namespace_name);
      if (labels != namespace_labels_.end()) {
        if (!SelectorMatches(*peer.namespace_selector, labels->second)) return false;
      } else if (!SelectorMatches(*peer.namespace_selector, {{kNamespaceNameLabel, pod.namespace_name}})) {
        return false;  // a namespace known only by name has just the implicit label
      }
    } else if (pod.namespace_name != policy_namespace) {
      return false;  // podSelector alone selects within the policy's namespace
    }
    return !peer.pod_selector || SelectorMatches(*peer.pod_selector, pod.labels);
  }

  void AddPodPeer(const PeerPod& pod, const RulePorts& ports, ms_direction direction, uint32_t rule_id) {
    for (const NumericPort& port : ports.numeric) AddExact(pod.ipv4, port, direction, rule_id);
    for (const NamedPort& named : ports.named_egress) {
      for (uint16_t number : ResolveNamedPort(pod.container_ports, named.proto, named.name)) {
        AddExact(pod.ipv4, {named.proto, number}, direction, rule_id);
      }
    }
  }

  void AddCidrPeer(const IpBlock& block, const RulePorts& ports, ms_direction direction, uint32_t rule_id) {
    for (const NumericPort& port : ports.numeric) {
      lpm_specs_[direction].push_back({port.proto, port.port, block.cidr, block.except, rule_id});
    }
    if (ports.named_egress.empty()) return;
    // Egress named ports to a CIDR: a name only means something on a pod, so
    // (as Kubernetes documents for named ports: "a named port on a pod") we
    // resolve it for the pods we know inside the block and allow those pod
    // addresses exactly. Addresses of unknown hosts in the block get nothing
    // for a named port, since no port number can be derived for them.
    for (const auto& [key, pod] : peers_) {
      const bool inside = CidrContainsAddress(block.cidr, pod.ipv4) &&
                          std::none_of(block.except.begin(), block.except.end(), [&](const Ipv4Cidr& except) {
                            return CidrContainsAddress(except, pod.ipv4);
                          });
      if (inside) AddPodPeer(pod, RulePorts{{}, ports.named_egress}, direction, rule_id);
    }
  }

  void AddExact(uint32_t peer_ipv4, const NumericPort& port, ms_direction direction, uint32_t rule_id) {
    ms_policy_key key{};
    key.endpoint_id = endpoint_.endpoint_id;
    key.peer_ipv4 = htonl(peer_ipv4);
    key.port = port.port;
    key.proto = port.proto;
    key.direction = static_cast<uint8_t>(direction);
    auto [it, inserted] = out_.exact.try_emplace(key);
    if (inserted) {
      it->second.action = MS_ACTION_ALLOW;
      it->second.rule_id = rule_id;
      ++exact_entries_;
    } else {
      it->second.rule_id = std::min(it->second.rule_id, rule_id);
    }
  }

  const std::map<std::string, PeerPod>& peers_;
  const std::map<std::string, Labels>& namespace_labels_;
  const LocalEndpoint& endpoint_;
  EndpointPolicy& out_;
  std::vector<LpmRuleSpec> lpm_specs_[MS_DIR_MAX];
  uint32_t exact_entries_ = 0;
  uint32_t lpm_entries_ = 0;
};

// Namespace labels as selectors see them, including the label the API
// server puts on every namespace. Namespaces only referenced by pods (no
// Namespace object known) get just that implicit label.
std::map<std::string, Labels> CollectNamespaceLabels(const ClusterState& cluster,
                                                     const std::vector<LocalEndpoint>& endpoints) {
  std::map<std::string, Labels> labels;
  for (const auto& [key, ns] : cluster.namespaces) labels[ns.name] = ns.labels;
  for (const auto& [key, pod] : cluster.pods) labels.try_emplace(pod.namespace_name);
  for (const auto& [key, policy] : cluster.network_policies) labels.try_emplace(policy.namespace_name);
  for (const LocalEndpoint& endpoint : endpoints) labels.try_emplace(endpoint.pod_namespace);
  for (auto& [name, ns_labels] : labels) ns_labels[kNamespaceNameLabel] = name;
  return labels;
}

// Every pod with an IPv4 address. A local endpoint's address is the one the
// CNI really assigned, so it wins over (or stands in for) the manifest's.
std::map<std::string, PeerPod> CollectPeerPods(const ClusterState& cluster,
                                               const std::vector<LocalEndpoint>& endpoints) {
  std::map<std::string, PeerPod> peers;
  for (const auto& [key, pod] : cluster.pods) {
    PeerPod& peer = peers[PodKey(pod.namespace_name, pod.name)];
    peer.namespace_name = pod.namespace_name;
    peer.labels = pod.labels;
    peer.ipv4 = pod.ipv4.value_or(0);
    peer.container_ports = pod.container_ports;
  }
  for (const LocalEndpoint& endpoint : endpoints) {
    PeerPod& peer = peers[PodKey(endpoint.pod_namespace, endpoint.pod_name)];
    peer.namespace_name = endpoint.pod_namespace;
    if (endpoint.ipv4 != 0) peer.ipv4 = endpoint.ipv4;
  }
  std::erase_if(peers, [](const auto& entry) { return entry.second.ipv4 == 0; });
  return peers;
}

const Pod* FindPod(const ClusterState& cluster, const LocalEndpoint& endpoint) {
  const auto found = cluster.pods.find(PodKey(endpoint.pod_namespace, endpoint.pod_name));
  return found == cluster.pods.end() ? nullptr : &found->second;
}

}  // namespace

PolicyContext BuildPolicyContext(const ClusterState& cluster, const std::vector<LocalEndpoint>& endpoints) {
  PolicyContext context;
  context.cluster = &cluster;
  context.namespace_labels = CollectNamespaceLabels(cluster, endpoints);
  context.peers = CollectPeerPods(cluster, endpoints);
  return context;
}

EndpointPolicy CompileEndpointPolicy(const PolicyContext& context, const LocalEndpoint& endpoint) {
  static const Labels kNoLabels;
  static const std::vector<ContainerPort> kNoPorts;
  const ClusterState& cluster = *context.cluster;
  const Pod* pod = FindPod(cluster, endpoint);
  const Labels& labels = pod ? pod->labels : kNoLabels;
  const std::vector<ContainerPort>& local_ports = pod ? pod->container_ports : kNoPorts;

  EndpointPolicy out;
  EndpointPolicySummary& summary = out.summary;
  EndpointCompiler compiler(context, endpoint, out);
  for (const auto& [key, policy] : cluster.network_policies) {
    if (policy.namespace_name != endpoint.pod_namespace || !SelectorMatches(policy.pod_selector, labels)) {
      continue;
    }
    summary.policies.push_back(PodKey(policy.namespace_name, policy.name));
    // Rules of a direction the policy does not isolate have no effect in k8s.
    if (policy.isolates_ingress) {
      summary.ingress_isolated = true;
      for (size_t i = 0; i < policy.ingress.size(); ++i) {
        compiler.AddRule(policy, policy.ingress[i], MS_DIR_INGRESS, i, local_ports);
      }
    }
    if (policy.isolates_egress) {
      summary.egress_isolated = true;
      for (size_t i = 0; i < policy.egress.size(); ++i) {
        compiler.AddRule(policy, policy.egress[i], MS_DIR_EGRESS, i, local_ports);
      }
    }
  }
  compiler.FlushLpm();
  std::sort(summary.policies.begin(), summary.policies.end());
  summary.exact_entries = compiler.exact_entries();
  summary.lpm_entries = compiler.lpm_entries();

  out.ifindex = endpoint.ifindex;
  out.endpoint.endpoint_id = endpoint.endpoint_id;
  out.endpoint.ipv4 = htonl(endpoint.ipv4);
  out.endpoint.flags = (summary.ingress_isolated ? MS_EP_F_INGRESS_ISOLATED : 0) |
                       (summary.egress_isolated ? MS_EP_F_EGRESS_ISOLATED : 0);
  return out;
}

CompiledPolicy CompilePolicy(const ClusterState& cluster, const std::vector<LocalEndpoint>& endpoints) {
  const PolicyContext context = BuildPolicyContext(cluster, endpoints);
  CompiledPolicy compiled;
  for (const LocalEndpoint& endpoint : endpoints) {
    EndpointPolicy policy = CompileEndpointPolicy(context, endpoint);
    compiled.maps.exact.merge(policy.exact);
    compiled.maps.lpm.merge(policy.lpm);
    compiled.maps.endpoints[policy.ifindex] = policy.endpoint;
    compiled.summaries[endpoint.endpoint_id] = std::move(policy.summary);
  }
  return compiled;
}

}  // namespace microseg
