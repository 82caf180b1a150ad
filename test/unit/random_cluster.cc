#include "random_cluster.h"

#include <arpa/inet.h>

#include <algorithm>

#include "ipv4_cidr.h"
#include "ipv6_address.h"

namespace microseg::testing {
namespace {

// IPv6 arithmetic for edges and "just outside" addresses.
unsigned __int128 ToNumber(const Ipv6Address& address) {
  unsigned __int128 value = 0;
  for (uint32_t word : address) value = (value << 32) | ntohl(word);
  return value;
}
Ipv6Address FromNumber(unsigned __int128 value) {
  Ipv6Address address{};
  for (int word = 3; word >= 0; --word) {
    address[word] = htonl(static_cast<uint32_t>(value));
    value >>= 32;
  }
  return address;
}
unsigned __int128 HostBits(uint8_t prefix_len) {
  return prefix_len == 0 ? ~static_cast<unsigned __int128>(0)
                         : (static_cast<unsigned __int128>(1) << (128 - prefix_len)) - 1;
}

}  // namespace

Ipv6Address RandomCluster::PodAddress6(uint32_t host) { return {htonl(0xfd000010u), htonl(0x02440000u), 0, htonl(host)}; }

void RandomCluster::Build(ClusterState& cluster, std::vector<LocalEndpoint>& endpoints) {
  for (const char* name : {"a", "b", "c"}) {
    if (Chance(0.8)) cluster.namespaces[name] = Namespace{name, RandomLabels({"team", "env"})};
  }
  std::vector<uint32_t> free_hosts;
  for (uint32_t host = 1; host < 64; ++host) free_hosts.push_back(host);
  std::shuffle(free_hosts.begin(), free_hosts.end(), rng_);
  const int pod_count = Uniform(3, 7);
  for (int i = 0; i < pod_count; ++i) {
    Pod pod;
    pod.namespace_name = Pick<std::string>({"a", "b", "c"});
    pod.name = "pod" + std::to_string(i);
    pod.labels = RandomLabels({"app", "role"});
    if (Chance(0.85)) pod.ipv4 = kBase + free_hosts[i];
    if (ipv6_ && Chance(0.6)) {
      pod.ipv6 = PodAddress6(free_hosts[i]);
      if (Chance(0.3)) pod.ipv4.reset();  // IPv6 only
    }
    if (Chance(0.5)) pod.container_ports.push_back({"http", Pick<uint16_t>({80, 8080}), Protocol::kTcp});
    if (Chance(0.3)) pod.container_ports.push_back({"dns", 53, Protocol::kUdp});
    if (tiers_) {
      // The same name at different numbers (and protocols) on different pods.
      if (Chance(0.4)) pod.container_ports.push_back({"dns", 5353, Protocol::kUdp});
      if (Chance(0.4)) pod.container_ports.push_back({"sig", Pick<uint16_t>({9000, 9001}), Protocol::kSctp});
      if (Chance(0.2)) pod.container_ports.push_back({"http", 81, Protocol::kTcp});
    }
    cluster.pods[pod.namespace_name + "/" + pod.name] = pod;
  }
  // Local endpoints: some pods of the cluster (the CNI's address replaces
  // the manifest's) and sometimes a pod with no Pod object.
  uint32_t next_id = 1;
  // Dual-stack or IPv6-only endpoints in `ipv6` mode; always some address.
  const auto give_ipv6 = [&](LocalEndpoint& endpoint) {
    if (!ipv6_ || !Chance(0.7)) return;
    endpoint.ipv6 = PodAddress6(free_hosts[32 + endpoint.endpoint_id]);
    if (Chance(0.3)) endpoint.ipv4 = 0;
  };
  for (const auto& [key, pod] : cluster.pods) {
    if (!Chance(0.5)) continue;
    endpoints.push_back({next_id, 100 + next_id, pod.namespace_name, pod.name, kBase + free_hosts[32 + next_id]});
    give_ipv6(endpoints.back());
    ++next_id;
  }
  if (Chance(0.3)) {
    endpoints.push_back({next_id, 100 + next_id, Pick<std::string>({"a", "b"}), "ghost",
                         kBase + free_hosts[32 + next_id]});
    give_ipv6(endpoints.back());
  }
  const int policy_count = tiers_ ? Uniform(0, 3) : Uniform(1, 4);
  for (int i = 0; i < policy_count; ++i) {
    NetworkPolicy policy = RandomPolicy("np" + std::to_string(i));
    cluster.network_policies[policy.namespace_name + "/" + policy.name] = policy;
  }
  if (!tiers_) return;
  for (int i = Uniform(0, 2); i > 0; --i) {
    // Same names as NetworkPolicies on purpose: the kinds must not collide.
    SegmentPolicy segment{RandomPolicy("np" + std::to_string(i)), Enforcement::kEnforce};
    if (Chance(0.35)) segment.enforcement = Enforcement::kAudit;
    for (auto* rules : {&segment.policy.ingress, &segment.policy.egress}) {
      for (PolicyRule& rule : *rules) rule.action = Chance(0.4) ? RuleAction::kDeny : RuleAction::kAllow;
    }
    cluster.segment_policies[segment.policy.namespace_name + "/" + segment.policy.name] = segment;
  }
  for (int i = Uniform(0, 3); i > 0; --i) {
    ClusterSegmentPolicy policy = RandomClusterPolicy("csp" + std::to_string(i));
    cluster.cluster_segment_policies[policy.name] = policy;
  }
}

ClusterSegmentPolicy RandomCluster::RandomClusterPolicy(const std::string& name) {
  ClusterSegmentPolicy policy;
  policy.name = name;
  policy.priority = Uniform(0, 3);  // ties are ordered by name
  if (Chance(0.5)) policy.subject_namespace_selector = RandomSelector({"team", "env"});
  if (Chance(0.5)) policy.subject_pod_selector = RandomSelector({"app", "role"});
  const int types = Uniform(0, 2);
  policy.applies_ingress = types != 1;
  policy.applies_egress = types != 0;
  for (auto* rules : {&policy.ingress, &policy.egress}) {
    for (int i = Uniform(0, 3); i > 0; --i) {
      PolicyRule rule = RandomRule();
      rule.action = Pick<RuleAction>({RuleAction::kAllow, RuleAction::kDeny, RuleAction::kPass});
      for (PolicyPeer& peer : rule.peers) {
        // The parser's normal form for cluster-scoped peers (sometimes left
        // out: a podSelector alone means every namespace either way).
        if (!peer.is_ip_block() && !peer.namespace_selector && Chance(0.5)) peer.namespace_selector = LabelSelector{};
      }
      rules->push_back(rule);
    }
  }
  return policy;
}

std::vector<std::pair<uint8_t, uint16_t>> RandomCluster::TieredProbePorts() {
  return {{6, 80},      {6, 81},      {6, 82},      {6, 83},      {6, 8080},   {6, 53},     {6, 9000},
          {17, 53},     {17, 80},     {17, 5353},   {17, 5354},   {132, 80},   {132, 81},   {132, 9000},
          {132, 9001},  {132, 9002},  {1, 0},
          // Around the wide ranges' boundaries (RandomPort cases 4-7).
          {6, 78},      {6, 79},      {6, 14999},   {6, 15000},   {6, 20000},  {6, 20001},  {6, 60000},
          {6, 65535},   {17, 4999},   {17, 5000},   {17, 29999},  {132, 8998}, {132, 8999}, {132, 10000},
          {132, 10001}};
}

std::vector<uint32_t> RandomCluster::ProbeAddresses(const ClusterState& cluster,
                                                 const std::vector<LocalEndpoint>& endpoints) {
  std::vector<uint32_t> addresses = EdgeProbeAddresses(cluster, endpoints);
  for (int i = 0; i < 12; ++i) addresses.push_back(kBase + static_cast<uint32_t>(Uniform(0, 255)));
  return addresses;
}

std::vector<Ipv6Address> RandomCluster::ProbeAddresses6(const ClusterState& cluster,
                                                        const std::vector<LocalEndpoint>& endpoints) {
  std::vector<Ipv6Address> addresses = EdgeProbeAddresses6(cluster, endpoints);
  for (int i = 0; i < 12; ++i) addresses.push_back(PodAddress6(static_cast<uint32_t>(Uniform(0, 255))));
  return addresses;
}

void ForEachRule(const ClusterState& cluster, const std::function<void(const PolicyRule&)>& visit) {
  const auto visit_all = [&](const std::vector<PolicyRule>& rules) {
    for (const PolicyRule& rule : rules) visit(rule);
  };
  for (const auto& [key, policy] : cluster.network_policies) {
    visit_all(policy.ingress);
    visit_all(policy.egress);
  }
  for (const auto& [key, segment] : cluster.segment_policies) {
    visit_all(segment.policy.ingress);
    visit_all(segment.policy.egress);
  }
  for (const auto& [key, policy] : cluster.cluster_segment_policies) {
    visit_all(policy.ingress);
    visit_all(policy.egress);
  }
}

std::vector<uint32_t> EdgeProbeAddresses(const ClusterState& cluster, const std::vector<LocalEndpoint>& endpoints) {
  constexpr uint32_t kPodNetwork = 0x0af40000;  // 10.244.0.0
  std::vector<uint32_t> addresses = {kPodNetwork, kPodNetwork + 255, 0x08080808, 0x0a000001, 0xc0a80001};
  for (const auto& [key, pod] : cluster.pods) {
    if (pod.ipv4) addresses.push_back(*pod.ipv4);
  }
  for (const LocalEndpoint& endpoint : endpoints) {
    if (endpoint.ipv4 != 0) addresses.push_back(endpoint.ipv4);
  }
  // Both edges of every block and except, and the addresses just outside.
  const auto add_edges = [&](const Ipv4Cidr& cidr) {
    const uint32_t last = cidr.addr | ~PrefixMask(cidr.prefix_len);
    for (uint32_t address : {cidr.addr, last, cidr.addr - 1, last + 1}) addresses.push_back(address);
  };
  ForEachRule(cluster, [&](const PolicyRule& rule) {
    for (const PolicyPeer& peer : rule.peers) {
      if (!peer.ip_block) continue;
      add_edges(peer.ip_block->cidr);
      for (const Ipv4Cidr& except : peer.ip_block->except) add_edges(except);
    }
  });
  return addresses;
}

std::vector<Ipv6Address> EdgeProbeAddresses6(const ClusterState& cluster,
                                             const std::vector<LocalEndpoint>& endpoints) {
  std::vector<Ipv6Address> addresses = {RandomCluster::PodAddress6(0), RandomCluster::PodAddress6(255),
                                        *ParseIpv6Address("2001:db8::1"), *ParseIpv6Address("fd00:10:245::1"),
                                        *ParseIpv6Address("::ffff:10.244.0.1")};
  for (const auto& [key, pod] : cluster.pods) {
    if (pod.ipv6) addresses.push_back(*pod.ipv6);
  }
  for (const LocalEndpoint& endpoint : endpoints) {
    if (endpoint.ipv6 != Ipv6Address{}) addresses.push_back(endpoint.ipv6);
  }
  const auto add_edges = [&](const Ipv6Cidr& cidr) {
    const unsigned __int128 first = ToNumber(cidr.addr);
    const unsigned __int128 last = first | HostBits(cidr.prefix_len);
    for (unsigned __int128 address : {first, last, first - 1, last + 1}) addresses.push_back(FromNumber(address));
  };
  ForEachRule(cluster, [&](const PolicyRule& rule) {
    for (const PolicyPeer& peer : rule.peers) {
      if (!peer.ipv6_block) continue;
      add_edges(peer.ipv6_block->cidr);
      for (const Ipv6Cidr& except : peer.ipv6_block->except) add_edges(except);
    }
  });
  return addresses;
}

Labels RandomCluster::RandomLabels(std::initializer_list<const char*> keys) {
  Labels labels;
  for (const char* key : keys) {
    if (Chance(0.6)) labels[key] = Pick<std::string>({"x", "y"});
  }
  return labels;
}

LabelSelector RandomCluster::RandomSelector(std::initializer_list<const char*> keys) {
  LabelSelector selector;
  const int kind = Uniform(0, 3);
  const std::string key = *(keys.begin() + Uniform(0, static_cast<int>(keys.size()) - 1));
  if (kind == 1) selector.match_labels[key] = Pick<std::string>({"x", "y"});
  if (kind == 2) {
    using Op = LabelRequirement::Operator;
    const Op op = Pick<Op>({Op::kIn, Op::kNotIn, Op::kExists, Op::kDoesNotExist});
    LabelRequirement requirement{key, op, {}};
    if (op == Op::kIn || op == Op::kNotIn) requirement.values = {Pick<std::string>({"x", "y"})};
    selector.match_expressions.push_back(requirement);
  }
  if (kind == 3) selector.match_expressions.push_back({"kubernetes.io/metadata.name", LabelRequirement::Operator::kIn,
                                                       {Pick<std::string>({"a", "b", "c"})}});
  return selector;
}

Ipv4Cidr RandomCluster::RandomCidr(uint8_t min_len) {
  const uint8_t len = static_cast<uint8_t>(
      std::max<int>(min_len, Pick<int>({0, 8, 16, 24, 25, 26, 27, 28, 29, 30, 31, 32})));
  const uint32_t addr = kBase + static_cast<uint32_t>(Uniform(0, 255));
  return Ipv4Cidr{addr & PrefixMask(len), len};
}

Ipv6Cidr RandomCluster::RandomCidr6(uint8_t min_len) {
  const uint8_t len = static_cast<uint8_t>(
      std::max<int>(min_len, Pick<int>({0, 8, 16, 32, 64, 96, 112, 120, 121, 122, 124, 126, 127, 128})));
  const Ipv6Address address = PodAddress6(static_cast<uint32_t>(Uniform(0, 255)));
  return Ipv6Cidr{MaskIpv6(address, len), len};
}

PolicyPeer RandomCluster::RandomPeer() {
  PolicyPeer peer;
  switch (Uniform(0, 4)) {
    case 0:
      peer.pod_selector = RandomSelector({"app", "role"});
      break;
    case 1:
      peer.namespace_selector = RandomSelector({"team", "env"});
      break;
    case 2:
      peer.pod_selector = RandomSelector({"app", "role"});
      peer.namespace_selector = RandomSelector({"team", "env"});
      break;
    default: {
      if (ipv6_ && Chance(0.5)) {
        Ipv6Block block;
        block.cidr = RandomCidr6(0);
        const int excepts = block.cidr.prefix_len < 128 ? Pick<int>({0, 1, 1, 2, 2}) : 0;
        for (int i = 0; i < excepts; ++i) {
          const Ipv6Cidr except = RandomCidr6(static_cast<uint8_t>(block.cidr.prefix_len + 1));
          // Move the except inside the cidr.
          const unsigned __int128 inside = ToNumber(block.cidr.addr) | (ToNumber(except.addr) & HostBits(block.cidr.prefix_len));
          block.except.push_back({MaskIpv6(FromNumber(inside), except.prefix_len), except.prefix_len});
        }
        peer.ipv6_block = block;
        break;
      }
      IpBlock block;
      block.cidr = RandomCidr(0);
      const int excepts = block.cidr.prefix_len < 32 ? Pick<int>({0, 1, 1, 2, 2}) : 0;
      for (int i = 0; i < excepts; ++i) {
        Ipv4Cidr except = RandomCidr(static_cast<uint8_t>(block.cidr.prefix_len + 1));
        // Move the except inside the cidr.
        except.addr = (block.cidr.addr & PrefixMask(block.cidr.prefix_len)) |
                      (except.addr & ~PrefixMask(block.cidr.prefix_len));
        except.addr &= PrefixMask(except.prefix_len);
        block.except.push_back(except);
      }
      peer.ip_block = block;
    }
  }
  return peer;
}

PolicyPort RandomCluster::RandomPort() {
  PolicyPort port;
  switch (Uniform(0, 6)) {
    case 0:
      port.port = uint16_t{80};
      break;
    case 1:
      break;  // every TCP port
    case 2:
      port.protocol = Protocol::kUdp;
      port.port = uint16_t{53};
      break;
    case 3:
      port.port = uint16_t{80};
      port.end_port = uint16_t{82};
      break;
    case 4:
      port.port = std::string("http");
      break;
    case 5:
      port.protocol = Protocol::kUdp;
      port.port = std::string("dns");
      break;
    default:
      port.protocol = Protocol::kSctp;
      port.port = uint16_t{80};
  }
  if (tiers_ && Chance(0.45)) {
    // Cases 4-7: ranges far wider than the old 1,024-port limit, overlapping
    // each other and the exact ports above (port_intervals.h). They stay
    // clear of 30000-59999, the probes' source ports.
    switch (Uniform(0, 7)) {
      case 4:
        port = PolicyPort{Protocol::kTcp, uint16_t{79}, uint16_t{20000}};
        break;
      case 5:
        port = PolicyPort{Protocol::kTcp, uint16_t{15000}, uint16_t{65535}};
        break;
      case 6:
        port = PolicyPort{Protocol::kUdp, uint16_t{5000}, uint16_t{29999}};
        break;
      case 7:
        port = PolicyPort{Protocol::kSctp, uint16_t{8999}, uint16_t{10000}};
        break;
      case 0:
        port = PolicyPort{Protocol::kSctp, std::string("sig"), std::nullopt};
        break;
      case 1:
        port = PolicyPort{Protocol::kSctp, uint16_t{9000}, uint16_t{9001}};
        break;
      case 2:
        port = PolicyPort{Protocol::kUdp, uint16_t{5353}, uint16_t{5354}};
        break;
      default:
        port = PolicyPort{Protocol::kTcp, uint16_t{81}, std::nullopt};
    }
  }
  return port;
}

PolicyRule RandomCluster::RandomRule() {
  PolicyRule rule;
  const int peers = Uniform(0, 3);
  for (int i = 0; i < peers; ++i) rule.peers.push_back(RandomPeer());
  const int ports = Uniform(0, 2);
  for (int i = 0; i < ports; ++i) rule.ports.push_back(RandomPort());
  if (Chance(0.05)) {
    // An IPv6 block matches no IPv4 address, whatever else the rule lists.
    PolicyPeer v6;
    v6.ipv6_block = Ipv6Block{{{htonl(0x20010db8u), 0, 0, 0}, 32}, {}};
    rule.peers.push_back(std::move(v6));
  }
  return rule;
}

NetworkPolicy RandomCluster::RandomPolicy(const std::string& name) {
  NetworkPolicy policy;
  policy.namespace_name = Pick<std::string>({"a", "b"});
  policy.name = name;
  if (Chance(0.5)) policy.pod_selector = RandomSelector({"app", "role"});
  const int types = Uniform(0, 2);
  policy.isolates_ingress = types != 1;
  policy.isolates_egress = types != 0;
  for (int i = Uniform(0, 3); i > 0; --i) policy.ingress.push_back(RandomRule());
  for (int i = Uniform(0, 3); i > 0; --i) policy.egress.push_back(RandomRule());
  return policy;
}

}  // namespace microseg::testing
