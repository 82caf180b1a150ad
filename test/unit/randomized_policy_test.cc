// Compiles a few hundred random small clusters and compares the verdict of
// the compiled maps (through the reference datapath lookup) with the naive
// per-packet evaluation of the same policies, over many probe packets.
#include <catch2/catch.hpp>
#include <map>
#include <random>
#include <sstream>

#include "fake_map_writer.h"
#include "ipv4_cidr.h"
#include "naive_policy_evaluator.h"
#include "policy_compiler.h"
#include "reference_datapath.h"
#include "test_helpers.h"

namespace microseg {
namespace {

using testing::NaiveAllows;
using testing::ReferenceLookup;

class RandomCluster {
 public:
  explicit RandomCluster(uint32_t seed) : rng_(seed) {}

  void Build(ClusterState& cluster, std::vector<LocalEndpoint>& endpoints) {
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
      if (Chance(0.5)) pod.container_ports.push_back({"http", Pick<uint16_t>({80, 8080}), Protocol::kTcp});
      if (Chance(0.3)) pod.container_ports.push_back({"dns", 53, Protocol::kUdp});
      cluster.pods[pod.namespace_name + "/" + pod.name] = pod;
    }
    // Local endpoints: some pods of the cluster (the CNI's address replaces
    // the manifest's) and sometimes a pod with no Pod object.
    uint32_t next_id = 1;
    for (const auto& [key, pod] : cluster.pods) {
      if (!Chance(0.5)) continue;
      endpoints.push_back({next_id, 100 + next_id, pod.namespace_name, pod.name, kBase + free_hosts[32 + next_id]});
      ++next_id;
    }
    if (Chance(0.3)) {
      endpoints.push_back({next_id, 100 + next_id, Pick<std::string>({"a", "b"}), "ghost",
                           kBase + free_hosts[32 + next_id]});
    }
    const int policy_count = Uniform(1, 4);
    for (int i = 0; i < policy_count; ++i) {
      NetworkPolicy policy = RandomPolicy("np" + std::to_string(i));
      cluster.network_policies[policy.namespace_name + "/" + policy.name] = policy;
    }
  }

  // Addresses worth probing: every pod, random ones near them, far ones.
  std::vector<uint32_t> ProbeAddresses(const ClusterState& cluster, const std::vector<LocalEndpoint>& endpoints) {
    std::vector<uint32_t> addresses = {kBase, kBase + 255, 0x08080808, 0x0a000001, 0xc0a80001};
    for (const auto& [key, pod] : cluster.pods) {
      if (pod.ipv4) addresses.push_back(*pod.ipv4);
    }
    for (const LocalEndpoint& endpoint : endpoints) addresses.push_back(endpoint.ipv4);
    for (int i = 0; i < 12; ++i) addresses.push_back(kBase + static_cast<uint32_t>(Uniform(0, 255)));
    // Both edges of every block and except, and the addresses just outside.
    const auto add_edges = [&](const Ipv4Cidr& cidr) {
      const uint32_t last = cidr.addr | ~PrefixMask(cidr.prefix_len);
      for (uint32_t address : {cidr.addr, last, cidr.addr - 1, last + 1}) addresses.push_back(address);
    };
    for (const auto& [key, policy] : cluster.network_policies) {
      for (const auto* rules : {&policy.ingress, &policy.egress}) {
        for (const PolicyRule& rule : *rules) {
          for (const PolicyPeer& peer : rule.peers) {
            if (!peer.ip_block) continue;
            add_edges(peer.ip_block->cidr);
            for (const Ipv4Cidr& except : peer.ip_block->except) add_edges(except);
          }
        }
      }
    }
    return addresses;
  }

 private:
  static constexpr uint32_t kBase = 0x0af40000;  // 10.244.0.0

  int Uniform(int low, int high) { return std::uniform_int_distribution<int>(low, high)(rng_); }
  bool Chance(double p) { return std::bernoulli_distribution(p)(rng_); }
  template <typename T>
  T Pick(std::initializer_list<T> options) {
    return *(options.begin() + Uniform(0, static_cast<int>(options.size()) - 1));
  }

  Labels RandomLabels(std::initializer_list<const char*> keys) {
    Labels labels;
    for (const char* key : keys) {
      if (Chance(0.6)) labels[key] = Pick<std::string>({"x", "y"});
    }
    return labels;
  }

  LabelSelector RandomSelector(std::initializer_list<const char*> keys) {
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

  Ipv4Cidr RandomCidr(uint8_t min_len) {
    const uint8_t len = static_cast<uint8_t>(
        std::max<int>(min_len, Pick<int>({0, 8, 16, 24, 25, 26, 27, 28, 29, 30, 31, 32})));
    const uint32_t addr = kBase + static_cast<uint32_t>(Uniform(0, 255));
    return Ipv4Cidr{addr & PrefixMask(len), len};
  }

  PolicyPeer RandomPeer() {
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

  PolicyPort RandomPort() {
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
    return port;
  }

  PolicyRule RandomRule() {
    PolicyRule rule;
    const int peers = Uniform(0, 3);
    for (int i = 0; i < peers; ++i) rule.peers.push_back(RandomPeer());
    const int ports = Uniform(0, 2);
    for (int i = 0; i < ports; ++i) rule.ports.push_back(RandomPort());
    rule.only_ipv6_peers = rule.peers.empty() && Chance(0.05);
    return rule;
  }

  NetworkPolicy RandomPolicy(const std::string& name) {
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

  std::mt19937 rng_;
};

TEST_CASE("compiled maps agree with a naive NetworkPolicy evaluator on random clusters", "[compiler][random]") {
  constexpr int kClusters = 400;
  const std::pair<uint8_t, uint16_t> probes[] = {{6, 80},   {6, 81},  {6, 82},   {6, 83},  {6, 8080}, {6, 53},
                                                 {17, 53},  {17, 80}, {132, 80}, {132, 81}, {1, 0}};
  int checked = 0;
  int allowed = 0;
  std::map<testing::Decision, int> decisions;
  for (uint32_t seed = 1; seed <= kClusters; ++seed) {
    RandomCluster generator(seed);
    ClusterState cluster;
    std::vector<LocalEndpoint> endpoints;
    generator.Build(cluster, endpoints);
    const CompiledPolicy compiled = CompilePolicy(cluster, endpoints);

    // The maps as the kernel would hold them after an apply from empty.
    testing::FakeMapWriter writer;
    MapState live;
    REQUIRE(ApplyMapChanges(writer, DiffMapState(live, compiled.maps), live).ok());
    REQUIRE(testing::SameMapState(writer.maps, compiled.maps));

    for (const LocalEndpoint& endpoint : endpoints) {
      for (uint32_t peer : generator.ProbeAddresses(cluster, endpoints)) {
        for (ms_direction direction : {MS_DIR_INGRESS, MS_DIR_EGRESS}) {
          for (const auto& [proto, port] : probes) {
            const bool expected = NaiveAllows(cluster, endpoints, endpoint, direction, peer, proto, port);
            const testing::ReferenceVerdict actual =
                ReferenceLookup(writer.maps, endpoint.ifindex, direction, peer, proto, port);
            if (actual.allowed() != expected) {
              FAIL("seed " << seed << ": endpoint " << endpoint.pod_namespace << "/" << endpoint.pod_name
                           << (direction == MS_DIR_INGRESS ? " ingress from " : " egress to ") << FormatIpv4(peer)
                           << " proto " << int(proto) << " port " << port << ": naive says "
                           << (expected ? "allow" : "deny") << ", maps say " << (actual.allowed() ? "allow" : "deny"));
            }
            ++checked;
            allowed += expected;
            ++decisions[actual.decision];
          }
        }
      }
    }
  }
  // Guard against a generator that only ever produces trivial answers:
  // every way the data plane can decide must be exercised a lot.
  INFO("checked " << checked << ", allowed " << allowed);
  CHECK(checked > 100000);
  CHECK(allowed > checked / 10);
  CHECK(allowed < checked * 9 / 10);
  for (testing::Decision decision : {testing::Decision::kAllowNotIsolated, testing::Decision::kAllowExact,
                                     testing::Decision::kAllowLpm, testing::Decision::kDenyLpm,
                                     testing::Decision::kDenyNoMatch}) {
    INFO("decision " << static_cast<int>(decision) << " seen " << decisions[decision] << " times");
    CHECK(decisions[decision] > 5000);
  }
}

}  // namespace
}  // namespace microseg
