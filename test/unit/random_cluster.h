// Random small clusters for property tests: namespaces a/b/c, a few pods
// with labels, addresses in 10.244.0.0/24 and named container ports, local
// endpoints, and policies. With `tiers`, also SegmentPolicies (Allow/Deny,
// Audit) and ClusterSegmentPolicies (priorities with ties, Allow/Deny/Pass),
// named ports that differ between pods, SCTP and endPort ranges. With
// `ipv6`, pods and endpoints also get IPv6 addresses in fd00:10:244::/64
// (dual-stack, and some IPv6 only) and ipBlocks are of either family.
// Seeded: the same seed always gives the same cluster.
#pragma once

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <random>
#include <string>
#include <vector>

#include "model.h"

namespace microseg::testing {

// Every ingress and egress rule of every policy of all three kinds.
void ForEachRule(const ClusterState& cluster, const std::function<void(const PolicyRule&)>& visit);

// The addresses every probe set needs: every pod and local endpoint, a few
// fixed far ones, and both edges of every ipBlock and except with the
// addresses just outside them.
std::vector<uint32_t> EdgeProbeAddresses(const ClusterState& cluster, const std::vector<LocalEndpoint>& endpoints);
// The same for IPv6 addresses and IPv6 ipBlocks.
std::vector<Ipv6Address> EdgeProbeAddresses6(const ClusterState& cluster,
                                             const std::vector<LocalEndpoint>& endpoints);

class RandomCluster {
 public:
  explicit RandomCluster(uint32_t seed, bool tiers = false, bool ipv6 = false)
      : rng_(seed), tiers_(tiers), ipv6_(ipv6) {}

  void Build(ClusterState& cluster, std::vector<LocalEndpoint>& endpoints);

  // EdgeProbeAddresses plus random ones near the pods.
  std::vector<uint32_t> ProbeAddresses(const ClusterState& cluster, const std::vector<LocalEndpoint>& endpoints);
  std::vector<Ipv6Address> ProbeAddresses6(const ClusterState& cluster, const std::vector<LocalEndpoint>& endpoints);

  // fd00:10:244::<host>, where the generator puts pods.
  static Ipv6Address PodAddress6(uint32_t host);

  // (proto, port) pairs worth probing for the tiered generator.
  static std::vector<std::pair<uint8_t, uint16_t>> TieredProbePorts();

 private:
  static constexpr uint32_t kBase = 0x0af40000;  // 10.244.0.0

  int Uniform(int low, int high) { return std::uniform_int_distribution<int>(low, high)(rng_); }
  bool Chance(double p) { return std::bernoulli_distribution(p)(rng_); }
  template <typename T>
  T Pick(std::initializer_list<T> options) {
    return *(options.begin() + Uniform(0, static_cast<int>(options.size()) - 1));
  }

  Labels RandomLabels(std::initializer_list<const char*> keys);
  LabelSelector RandomSelector(std::initializer_list<const char*> keys);
  Ipv4Cidr RandomCidr(uint8_t min_len);
  Ipv6Cidr RandomCidr6(uint8_t min_len);
  PolicyPeer RandomPeer();
  PolicyPort RandomPort();
  PolicyRule RandomRule();
  NetworkPolicy RandomPolicy(const std::string& name);
  ClusterSegmentPolicy RandomClusterPolicy(const std::string& name);

  std::mt19937 rng_;
  bool tiers_;
  bool ipv6_;
};

}  // namespace microseg::testing
