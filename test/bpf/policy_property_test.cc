// The property test of the whole policy engine on the real data path:
// thousands of random clusters (namespaces, pods, labels, named ports that
// differ per pod, NetworkPolicies, SegmentPolicies with Deny and Audit,
// ClusterSegmentPolicies with priorities and Allow/Deny/Pass) are compiled,
// the maps written into the loaded BPF object, and crafted TCP/UDP/SCTP/ICMP
// packets run through from_pod/to_pod with BPF_PROG_TEST_RUN; dual-stack
// clusters also with crafted IPv6 frames (IPv6 ipBlocks, IPv6-only pods). Each verdict
// (TC action and the counted reason) must equal the reference evaluator's
// (test/unit/naive_policy_evaluator), pair by pair. Seeded and reproducible:
// a failure prints the seed, the probe and both verdicts.
#include <arpa/inet.h>
#include <bpf/bpf.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cerrno>
#include <cstring>
#include <map>
#include <random>

#include "datapath_test_support.h"
#include "ipv4_cidr.h"
#include "ipv6_address.h"
#include "ipv6_packet_builder.h"
#include "loaded_datapath.h"
#include "map_state.h"
#include "naive_policy_evaluator.h"
#include "packet_builder.h"
#include "policy_compiler.h"
#include "random_cluster.h"

namespace microseg::test {
namespace {

using microseg::testing::NaiveVerdict;

// Writes MapState entries into the loaded object's maps.
class LoadedMapWriter : public MapWriter {
 public:
  explicit LoadedMapWriter(const LoadedDatapath& datapath)
      : endpoints_(datapath.map_fd("ms_endpoints")),
        exact_(datapath.map_fd("ms_policy")),
        lpm_(datapath.map_fd("ms_policy_lpm")),
        exact6_(datapath.map_fd("ms_policy6")),
        lpm6_(datapath.map_fd("ms_policy6_lpm")) {}

  absl::Status UpsertEndpoint(uint32_t ifindex, const ms_endpoint& value) override {
    return Result(bpf_map_update_elem(endpoints_, &ifindex, &value, BPF_ANY), "update ms_endpoints");
  }
  absl::Status DeleteEndpoint(uint32_t ifindex) override {
    return Result(bpf_map_delete_elem(endpoints_, &ifindex), "delete ms_endpoints");
  }
  absl::Status UpsertExact(const ms_policy_key& key, const ms_policy_value& value) override {
    return Result(bpf_map_update_elem(exact_, &key, &value, BPF_ANY), "update ms_policy");
  }
  absl::Status DeleteExact(const ms_policy_key& key) override {
    return Result(bpf_map_delete_elem(exact_, &key), "delete ms_policy");
  }
  absl::Status UpsertLpm(const ms_lpm_key& key, const ms_policy_value& value) override {
    return Result(bpf_map_update_elem(lpm_, &key, &value, BPF_ANY), "update ms_policy_lpm");
  }
  absl::Status DeleteLpm(const ms_lpm_key& key) override {
    return Result(bpf_map_delete_elem(lpm_, &key), "delete ms_policy_lpm");
  }
  absl::Status UpsertExact6(const ms_policy6_key& key, const ms_policy_value& value) override {
    return Result(bpf_map_update_elem(exact6_, &key, &value, BPF_ANY), "update ms_policy6");
  }
  absl::Status DeleteExact6(const ms_policy6_key& key) override {
    return Result(bpf_map_delete_elem(exact6_, &key), "delete ms_policy6");
  }
  absl::Status UpsertLpm6(const ms_lpm6_key& key, const ms_policy_value& value) override {
    return Result(bpf_map_update_elem(lpm6_, &key, &value, BPF_ANY), "update ms_policy6_lpm");
  }
  absl::Status DeleteLpm6(const ms_lpm6_key& key) override {
    return Result(bpf_map_delete_elem(lpm6_, &key), "delete ms_policy6_lpm");
  }

 private:
  static absl::Status Result(int rc, const char* what) {
    if (rc == 0) return absl::OkStatus();
    return absl::InternalError(std::string(what) + ": " + std::strerror(errno));
  }
  int endpoints_;
  int exact_;
  int lpm_;
  int exact6_;
  int lpm6_;
};

const char* NameOfVerdict(NaiveVerdict verdict) { return microseg::testing::NameOf(verdict); }

bool ReasonMatches(NaiveVerdict expected, std::uint32_t reason) {
  switch (expected) {
    case NaiveVerdict::kAllow:
      return reason == MS_REASON_ALLOW_POLICY || reason == MS_REASON_ALLOW_NOT_ISOLATED;
    case NaiveVerdict::kDeny:
      return reason == MS_REASON_DROP_POLICY;
    case NaiveVerdict::kAllowAudit:
      return reason == MS_REASON_ALLOW_AUDIT;
  }
  return false;
}

// The one reason counted by a run, or MS_REASON_MAX when not exactly one moved.
std::uint32_t CountedReason(const StatsSnapshot& delta, ms_direction direction) {
  std::uint32_t found = MS_REASON_MAX;
  int moved = 0;
  for (std::uint32_t index = 0; index < MS_STATS_ENTRIES; ++index) {
    if (delta[index].packets == 0) continue;
    ++moved;
    if (index / MS_REASON_MAX == static_cast<std::uint32_t>(direction)) found = index % MS_REASON_MAX;
  }
  return moved == 1 ? found : static_cast<std::uint32_t>(MS_REASON_MAX);
}

// Verdicts seen, by family.
struct Tally {
  int checked = 0;
  int checked6 = 0;
  std::map<std::uint32_t, int> reasons;
  std::map<std::uint32_t, int> reasons6;
  int clusters_with_port_ranges = 0;  // the random endPort ranges reached the data path's interval rung
};

// The frame of a new flow's first packet; `v6` picks the family (ICMP
// becomes ICMPv6 echo).
Bytes ProbeFrame(bool v6, const std::string& src, std::uint16_t source_port, const std::string& dst, std::uint8_t proto,
                 std::uint16_t port) {
  if (v6) {
    if (proto == kProtoTcp) return tcp6_frame(src, dst, TcpFields{source_port, port});
    if (proto == kProtoUdp) return udp6_frame(src, source_port, dst, port);
    if (proto == kProtoSctp) return ipv6_frame({src, dst}, kProtoSctp, sctp_common_header(source_port, port));
    return ipv6_frame({src, dst}, kProtoIcmpv6, icmp6_echo(kIcmp6EchoRequest, source_port));
  }
  if (proto == kProtoTcp) return tcp_packet(src, source_port, dst, port);
  if (proto == kProtoUdp) return udp_packet(src, source_port, dst, port);
  if (proto == kProtoSctp) return ethernet(kEthertypeIpv4, ipv4({src, dst, kProtoSctp}, sctp_common_header(source_port, port)));
  return icmp_packet(src, dst, kIcmpEchoRequest, source_port);
}

// Compiles `clusters` random clusters (dual-stack with `ipv6`) into the
// loaded maps and runs kProbesPerCluster probes each through the programs,
// comparing every verdict with the reference evaluator's. With `ipv6`, each
// probe picks a family the chosen endpoint has.
void ProbeRandomClusters(LoadedDatapath& datapath, bool ipv6, uint32_t clusters, Tally& tally) {
  LoadedMapWriter writer(datapath);
  MapState live;  // what the policy maps hold (ms_endpoints is written per probe)
  constexpr int kProbesPerCluster = 24;
  const auto probe_ports = microseg::testing::RandomCluster::TieredProbePorts();
  uint16_t next_source_port = 0;
  for (uint32_t seed = 1; seed <= clusters; ++seed) {
    microseg::testing::RandomCluster generator(seed, /*tiers=*/true, ipv6);
    ClusterState cluster;
    std::vector<LocalEndpoint> endpoints;
    generator.Build(cluster, endpoints);
    if (endpoints.empty()) continue;
    // Endpoint ids unique across clusters (and across the two families'
    // runs), so no session of an earlier cluster can answer for this one.
    for (size_t i = 0; i < endpoints.size(); ++i) {
      endpoints[i].endpoint_id = (ipv6 ? 0x100000 : 0) + seed * 16 + static_cast<uint32_t>(i);
    }
    const CompiledPolicy compiled = CompilePolicy(cluster, endpoints);
    tally.clusters_with_port_ranges += std::any_of(compiled.maps.endpoints.begin(), compiled.maps.endpoints.end(),
                                                   [](const auto& entry) { return (entry.second.flags & MS_EP_F_PORT_RANGES) != 0; });

    MapState desired = compiled.maps;
    desired.endpoints.clear();
    REQUIRE(ApplyMapChanges(writer, DiffMapState(live, desired), live).ok());

    const std::vector<uint32_t> addresses = generator.ProbeAddresses(cluster, endpoints);
    const std::vector<Ipv6Address> addresses6 =
        ipv6 ? generator.ProbeAddresses6(cluster, endpoints) : std::vector<Ipv6Address>{};
    std::mt19937 rng(seed);
    for (int probe = 0; probe < kProbesPerCluster; ++probe) {
      const LocalEndpoint& endpoint = endpoints[rng() % endpoints.size()];
      const bool has_v6 = endpoint.ipv6 != Ipv6Address{};
      const bool v6 = has_v6 && (endpoint.ipv4 == 0 || rng() % 2 == 0);
      const ms_direction direction = rng() % 2 ? MS_DIR_INGRESS : MS_DIR_EGRESS;
      auto [proto, port] = probe_ports[rng() % probe_ports.size()];
      if (v6 && proto == kProtoIcmp) proto = kProtoIcmpv6;

      ms_endpoint value = compiled.maps.endpoints.at(endpoint.ifindex);
      REQUIRE(writer.UpsertEndpoint(kTestRunIfindex, value).ok());

      // Source ports (and echo ids) never repeat within a cluster and stay
      // above every probed destination port, so no packet meets a session.
      const uint16_t source_port = static_cast<uint16_t>(30000 + (next_source_port++ % 30000));
      microseg::testing::PeerAddress peer;
      std::string pod_ip, peer_ip;
      if (v6) {
        const Ipv6Address peer6 = addresses6[rng() % addresses6.size()];
        peer = peer6;
        pod_ip = FormatIpv6(endpoint.ipv6);
        peer_ip = FormatIpv6(peer6);
      } else {
        const uint32_t peer4 = addresses[rng() % addresses.size()];
        peer = peer4;
        pod_ip = FormatIpv4(endpoint.ipv4);
        peer_ip = FormatIpv4(peer4);
      }
      const std::string& src = direction == MS_DIR_INGRESS ? peer_ip : pod_ip;
      const std::string& dst = direction == MS_DIR_INGRESS ? pod_ip : peer_ip;
      const Bytes frame = ProbeFrame(v6, src, source_port, dst, proto, port);

      const Program program = direction == MS_DIR_INGRESS ? Program::kToPod : Program::kFromPod;
      const RunResult result = datapath.run(program, frame);
      const std::uint32_t reason = CountedReason(result.stats_delta, direction);
      const NaiveVerdict expected =
          microseg::testing::NaiveVerdictOf(cluster, endpoints, endpoint, direction, peer, proto, port);
      const bool verdict_ok = ReasonMatches(expected, reason) &&
                              result.tc_action == tc_action_for(static_cast<ms_reason>(reason));
      if (!verdict_ok) {
        FAIL("seed " << seed << " (RandomCluster(seed, tiers=true, ipv6=" << ipv6 << ")), probe " << probe
                     << ": endpoint " << endpoint.pod_namespace << "/" << endpoint.pod_name << " " << pod_ip
                     << (direction == MS_DIR_INGRESS ? " ingress from " : " egress to ") << peer_ip << " proto "
                     << int(proto) << " port " << port << ": reference says " << NameOfVerdict(expected)
                     << ", data path counted reason " << reason << " (" << name_of_reason(reason)
                     << "), tc action " << result.tc_action << "; counters: " << describe(result.stats_delta));
      }
      ++(v6 ? tally.checked6 : tally.checked);
      ++(v6 ? tally.reasons6 : tally.reasons)[reason];
    }
  }
  // Empty the maps again (the object goes away anyway; this checks deletes).
  REQUIRE(ApplyMapChanges(writer, DiffMapState(live, MapState{}), live).ok());
}

constexpr std::uint32_t kReasonsSeen[] = {MS_REASON_ALLOW_POLICY, MS_REASON_ALLOW_NOT_ISOLATED, MS_REASON_DROP_POLICY,
                                          MS_REASON_ALLOW_AUDIT};

TEST_CASE("property: compiled maps in the BPF data path agree with the reference evaluator", "[bpf][property]") {
  auto datapath = load_or_skip();
  if (!datapath) return;
  Tally tally;
  ProbeRandomClusters(*datapath, /*ipv6=*/false, 2000, tally);
  INFO("checked " << tally.checked << " packets: ALLOW_POLICY " << tally.reasons[MS_REASON_ALLOW_POLICY]
                  << ", ALLOW_NOT_ISOLATED " << tally.reasons[MS_REASON_ALLOW_NOT_ISOLATED] << ", DROP_POLICY "
                  << tally.reasons[MS_REASON_DROP_POLICY] << ", ALLOW_AUDIT " << tally.reasons[MS_REASON_ALLOW_AUDIT]
                  << "; " << tally.clusters_with_port_ranges << " clusters had endpoints with port ranges");
  CHECK(tally.checked > 30000);
  CHECK(tally.clusters_with_port_ranges > 200);
  for (std::uint32_t reason : kReasonsSeen) CHECK(tally.reasons[reason] > tally.checked / 50);
}

TEST_CASE("property: dual-stack clusters, IPv4 and crafted IPv6 frames, agree with the reference evaluator",
          "[bpf][property][ipv6]") {
  auto datapath = load_or_skip();
  if (!datapath) return;
  Tally tally;
  ProbeRandomClusters(*datapath, /*ipv6=*/true, 1500, tally);
  INFO("checked " << tally.checked6 << " IPv6 packets: ALLOW_POLICY " << tally.reasons6[MS_REASON_ALLOW_POLICY]
                  << ", ALLOW_NOT_ISOLATED " << tally.reasons6[MS_REASON_ALLOW_NOT_ISOLATED] << ", DROP_POLICY "
                  << tally.reasons6[MS_REASON_DROP_POLICY] << ", ALLOW_AUDIT " << tally.reasons6[MS_REASON_ALLOW_AUDIT]
                  << "; and " << tally.checked << " IPv4 packets; " << tally.clusters_with_port_ranges
                  << " clusters had endpoints with port ranges");
  CHECK(tally.checked6 > 10000);
  CHECK(tally.checked > 5000);
  CHECK(tally.clusters_with_port_ranges > 150);
  for (std::uint32_t reason : kReasonsSeen) CHECK(tally.reasons6[reason] > tally.checked6 / 50);
}

}  // namespace
}  // namespace microseg::test
