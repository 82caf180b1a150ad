// Manifests (YAML: Namespace, Pod, NetworkPolicy, SegmentPolicy,
// ClusterSegmentPolicy) through both parse modes, then, for whatever parses,
// a differential check: the compiled maps (read by the reference data path)
// must give every probed flow the verdict the naive evaluator gives. Bad
// input must come back as an error with a reason, never as a crash, an
// escaped exception or a policy the compiler gets wrong.
#include <algorithm>
#include <cstdint>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "fuzz_check.h"
#include "ipv4_cidr.h"
#include "ipv6_address.h"
#include "manifest_parser.h"
#include "naive_policy_evaluator.h"
#include "policy_compiler.h"
#include "random_cluster.h"
#include "reference_datapath.h"

namespace {

using microseg::ClusterState;
using microseg::LocalEndpoint;
using microseg::testing::NaiveVerdict;

// Bounds that keep one input well under a millisecond on average.
constexpr size_t kMaxLocalEndpoints = 4;
constexpr size_t kMaxProbeAddresses = 24;
constexpr size_t kMaxProbePorts = 24;

size_t ObjectCount(const microseg::ParsedManifests& parsed) {
  return parsed.namespaces.size() + parsed.pods.size() + parsed.network_policies.size() +
         parsed.segment_policies.size() + parsed.cluster_segment_policies.size();
}

// Two live pods never share an address; a fuzzed cluster where they do has
// no single right verdict, so such inputs stop after parsing.
bool PodAddressesUnique(const ClusterState& cluster) {
  std::set<uint32_t> seen;
  std::set<microseg::Ipv6Address> seen6;
  for (const auto& [key, pod] : cluster.pods) {
    if (pod.ipv4 && !seen.insert(*pod.ipv4).second) return false;
    if (pod.ipv6 && !seen6.insert(*pod.ipv6).second) return false;
  }
  return true;
}

std::vector<LocalEndpoint> LocalEndpointsOf(const ClusterState& cluster) {
  std::vector<LocalEndpoint> endpoints;
  for (const auto& [key, pod] : cluster.pods) {
    if ((!pod.ipv4 && !pod.ipv6) || endpoints.size() == kMaxLocalEndpoints) continue;
    const uint32_t id = static_cast<uint32_t>(endpoints.size()) + 1;
    endpoints.push_back({id, 100 + id, pod.namespace_name, pod.name, pod.ipv4.value_or(0)});
    endpoints.back().ipv6 = pod.ipv6.value_or(microseg::Ipv6Address{});
  }
  return endpoints;
}

// Each port a policy or a container names, with its neighbours, so range
// ends and named ports are probed on both sides; ICMP as the portless case.
std::vector<std::pair<uint8_t, uint16_t>> ProbePorts(const ClusterState& cluster) {
  std::set<std::pair<uint8_t, uint16_t>> ports = {{6, 80}, {17, 53}, {132, 80}, {1, 0}};
  const auto add = [&](microseg::Protocol protocol, uint32_t port) {
    for (uint32_t near : {port - 1, port, port + 1}) {
      if (near >= 1 && near <= 65535) ports.insert({static_cast<uint8_t>(protocol), static_cast<uint16_t>(near)});
    }
  };
  microseg::testing::ForEachRule(cluster, [&](const microseg::PolicyRule& rule) {
    for (const microseg::PolicyPort& port : rule.ports) {
      if (port.port && std::holds_alternative<uint16_t>(*port.port)) add(port.protocol, std::get<uint16_t>(*port.port));
      if (port.end_port) add(port.protocol, *port.end_port);
    }
  });
  for (const auto& [key, pod] : cluster.pods) {
    for (const microseg::ContainerPort& port : pod.container_ports) add(port.protocol, port.port);
  }
  std::vector<std::pair<uint8_t, uint16_t>> list(ports.begin(), ports.end());
  if (list.size() > kMaxProbePorts) list.resize(kMaxProbePorts);
  return list;
}

NaiveVerdict VerdictOfMaps(const microseg::testing::ReferenceVerdict& verdict) {
  if (!verdict.allowed()) return NaiveVerdict::kDeny;
  return verdict.audited() ? NaiveVerdict::kAllowAudit : NaiveVerdict::kAllow;
}

void CheckCompiledAgainstNaive(const ClusterState& cluster) {
  const std::vector<LocalEndpoint> endpoints = LocalEndpointsOf(cluster);
  if (endpoints.empty()) return;
  const microseg::CompiledPolicy compiled = microseg::CompilePolicy(cluster, endpoints);

  std::vector<uint32_t> addresses = microseg::testing::EdgeProbeAddresses(cluster, endpoints);
  std::sort(addresses.begin(), addresses.end());
  addresses.erase(std::unique(addresses.begin(), addresses.end()), addresses.end());
  if (addresses.size() > kMaxProbeAddresses) addresses.resize(kMaxProbeAddresses);
  const std::vector<std::pair<uint8_t, uint16_t>> ports = ProbePorts(cluster);

  std::vector<microseg::Ipv6Address> addresses6 = microseg::testing::EdgeProbeAddresses6(cluster, endpoints);
  std::sort(addresses6.begin(), addresses6.end());
  addresses6.erase(std::unique(addresses6.begin(), addresses6.end()), addresses6.end());
  if (addresses6.size() > kMaxProbeAddresses) addresses6.resize(kMaxProbeAddresses);

  // Both families: each address is looked up in its own family's maps.
  const auto check = [&](const LocalEndpoint& endpoint, const auto& peer, const std::string& peer_text) {
    for (ms_direction direction : {MS_DIR_INGRESS, MS_DIR_EGRESS}) {
      for (const auto& [proto, port] : ports) {
        const NaiveVerdict expected =
            microseg::testing::NaiveVerdictOf(cluster, endpoints, endpoint, direction, peer, proto, port);
        const NaiveVerdict actual = VerdictOfMaps(
            microseg::testing::ReferenceLookup(compiled.maps, endpoint.ifindex, direction, peer, proto, port));
        FUZZ_CHECK(actual == expected, "endpoint %s/%s %s %s proto %u port %u: naive says %s, maps say %s",
                   endpoint.pod_namespace.c_str(), endpoint.pod_name.c_str(),
                   direction == MS_DIR_INGRESS ? "ingress from" : "egress to", peer_text.c_str(), proto, port,
                   microseg::testing::NameOf(expected), microseg::testing::NameOf(actual));
      }
    }
  };
  for (const LocalEndpoint& endpoint : endpoints) {
    for (uint32_t peer : addresses) check(endpoint, peer, microseg::FormatIpv4(peer));
    for (const microseg::Ipv6Address& peer : addresses6) check(endpoint, peer, microseg::FormatIpv6(peer));
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);

  const absl::StatusOr<microseg::ParsedManifests> all_or_nothing = microseg::ParseManifests(text);
  const absl::StatusOr<microseg::PerObjectParse> per_object = microseg::ParseManifestsPerObject(text);
  if (!all_or_nothing.ok()) {
    FUZZ_CHECK(!all_or_nothing.status().message().empty(), "rejected without a reason");
  }
  if (!per_object.ok()) {
    FUZZ_CHECK(!all_or_nothing.ok(), "text accepted whole but not object by object: %s",
               per_object.status().ToString().c_str());
    return 0;
  }
  for (const microseg::RejectedObject& rejected : per_object->rejected) {
    FUZZ_CHECK(!rejected.message.empty(), "object %s %s rejected without a reason", rejected.kind.c_str(),
               rejected.key.c_str());
  }
  if (all_or_nothing.ok()) {
    // The two modes differ only in what they do with invalid objects.
    FUZZ_CHECK(per_object->rejected.empty(), "valid text, yet %zu objects rejected (first: %s)",
               per_object->rejected.size(), per_object->rejected.front().message.c_str());
    FUZZ_CHECK(ObjectCount(*all_or_nothing) == ObjectCount(per_object->parsed), "%zu objects vs %zu",
               ObjectCount(*all_or_nothing), ObjectCount(per_object->parsed));
  } else {
    FUZZ_CHECK(!per_object->rejected.empty(), "text rejected whole (%s) but every object accepted",
               all_or_nothing.status().ToString().c_str());
  }

  const ClusterState cluster = microseg::ClusterStateOf(per_object->parsed);
  if (PodAddressesUnique(cluster)) CheckCompiledAgainstNaive(cluster);
  return 0;
}
