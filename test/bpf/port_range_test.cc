// endPort ranges of any width on the real data path (docs/policy-compiler.md,
// "Port ranges"): policies of all three kinds compiled by the policy library
// into port intervals, written into the loaded object, and packets at and
// around every range boundary run through to_pod/from_pod. Each case checks
// the TC action and that exactly the expected (direction, reason) counter
// moved. Hand-written entries then pin down the data path's interval rung on
// its own: the endpoint flag gates it, and IPv6 flows take it too.
#include <arpa/inet.h>
#include <bpf/bpf.h>

#include <catch2/catch.hpp>
#include <cstdint>
#include <string>
#include <vector>

#include "datapath_test_support.h"
#include "ipv6_packet_builder.h"
#include "loaded_datapath.h"
#include "packet_builder.h"
#include "policy_compiler.h"
#include "test_helpers.h"

namespace microseg::test {
namespace {

constexpr const char* kWeb = "10.244.0.10";
constexpr const char* kMon = "10.244.0.12";     // prod, app=mon
constexpr const char* kClient = "10.244.1.20";  // dev, app=client
constexpr std::uint32_t kWebEndpointId = 7;

const char* const kClusterAndPolicies = R"(
apiVersion: v1
kind: Namespace
metadata: {name: prod, labels: {env: prod}}
---
apiVersion: v1
kind: Namespace
metadata: {name: dev, labels: {env: dev}}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: prod, labels: {app: web}}
status: {podIP: 10.244.0.10}
---
apiVersion: v1
kind: Pod
metadata: {name: mon, namespace: prod, labels: {app: mon}}
status: {podIP: 10.244.0.12}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: dev, labels: {app: client}}
status: {podIP: 10.244.1.20}
---
apiVersion: microseg.io/v1alpha1
kind: ClusterSegmentPolicy
metadata: {name: pass-range}
spec:
  priority: 1
  ingress:
  - action: Pass
    from: [{podSelector: {matchLabels: {app: mon}}}]
    ports: [{port: 20000, endPort: 20999}]
---
apiVersion: microseg.io/v1alpha1
kind: ClusterSegmentPolicy
metadata: {name: deny-range}
spec:
  priority: 2
  ingress:
  - action: Deny
    ports: [{port: 20000, endPort: 29999}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-wide, namespace: prod}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Ingress, Egress]
  ingress:
  - from: [{namespaceSelector: {}}]
    ports: [{port: 1000, endPort: 40000}]
  - from: [{ipBlock: {cidr: 8.8.0.0/16}}]
    ports: [{port: 1000, endPort: 40000, protocol: UDP}, {port: 5000, endPort: 5010, protocol: SCTP}]
  - from: [{ipBlock: {cidr: 10.244.0.12/32}}]
    ports: [{port: 5500}]
  egress:
  - to: [{podSelector: {}}]
    ports: [{port: 1, endPort: 65534}]
  - to: [{ipBlock: {cidr: 0.0.0.0/0}}]
    ports: [{port: 53, protocol: UDP}]
---
apiVersion: microseg.io/v1alpha1
kind: SegmentPolicy
metadata: {name: deny-middle, namespace: prod}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - action: Deny
    from: [{podSelector: {matchLabels: {app: mon}}}]
    ports: [{port: 5000, endPort: 5999}, {port: 7000}]
)";

// Writes the compiled state into the object, web's endpoint on the test-run ifindex.
void Install(LoadedDatapath& datapath, const CompiledPolicy& compiled, std::uint32_t web_ifindex) {
  ms_endpoint web = compiled.maps.endpoints.at(web_ifindex);
  REQUIRE((web.flags & MS_EP_F_PORT_RANGES) != 0);
  const std::uint32_t ifindex = kTestRunIfindex;
  REQUIRE(bpf_map_update_elem(datapath.map_fd("ms_endpoints"), &ifindex, &web, BPF_ANY) == 0);
  for (const auto& [key, value] : compiled.maps.exact) {
    REQUIRE(bpf_map_update_elem(datapath.map_fd("ms_policy"), &key, &value, BPF_ANY) == 0);
  }
  for (const auto& [key, value] : compiled.maps.lpm) {
    REQUIRE(bpf_map_update_elem(datapath.map_fd("ms_policy_lpm"), &key, &value, BPF_ANY) == 0);
  }
}

struct RangeCase {
  Program program;
  const char* peer;
  std::uint8_t proto;
  std::uint16_t port;
  ms_reason expected;
};

TEST_CASE("endPort ranges: verdicts at and around every boundary, all tiers", "[bpf][port-ranges]") {
  auto datapath = load_or_skip();
  if (!datapath) return;
  const ClusterState cluster = microseg::testing::ClusterFromYaml(kClusterAndPolicies);
  const std::uint32_t web_ifindex = 40;
  const CompiledPolicy compiled =
      CompilePolicy(cluster, {{kWebEndpointId, web_ifindex, "prod", "web", microseg::testing::Ip(kWeb)}});
  Install(*datapath, compiled, web_ifindex);

  constexpr auto kIn = Program::kToPod;
  constexpr auto kOut = Program::kFromPod;
  constexpr auto kAllow = MS_REASON_ALLOW_POLICY;
  constexpr auto kDrop = MS_REASON_DROP_POLICY;
  const std::vector<RangeCase> cases = {
      // NetworkPolicy 1000-40000 from every pod; CSP Deny 20000-29999 for all.
      {kIn, kClient, kProtoTcp, 999, kDrop},
      {kIn, kClient, kProtoTcp, 1000, kAllow},
      {kIn, kClient, kProtoTcp, 5000, kAllow},  // deny-middle is for mon only
      {kIn, kClient, kProtoTcp, 19999, kAllow},
      {kIn, kClient, kProtoTcp, 20000, kDrop},
      {kIn, kClient, kProtoTcp, 24321, kDrop},
      {kIn, kClient, kProtoTcp, 29999, kDrop},
      {kIn, kClient, kProtoTcp, 30000, kAllow},
      {kIn, kClient, kProtoTcp, 40000, kAllow},
      {kIn, kClient, kProtoTcp, 40001, kDrop},
      {kIn, kClient, kProtoUdp, 1000, kDrop},  // the pod ranges are TCP
      // mon: SegmentPolicy Deny 5000-5999 and 7000 over the Allow; an exact
      // Allow of 5500 inside the Deny range; CSP Pass 20000-20999 first.
      {kIn, kMon, kProtoTcp, 4999, kAllow},
      {kIn, kMon, kProtoTcp, 5000, kDrop},
      {kIn, kMon, kProtoTcp, 5500, kDrop},
      {kIn, kMon, kProtoTcp, 5501, kDrop},
      {kIn, kMon, kProtoTcp, 5999, kDrop},
      {kIn, kMon, kProtoTcp, 6000, kAllow},
      {kIn, kMon, kProtoTcp, 6999, kAllow},
      {kIn, kMon, kProtoTcp, 7000, kDrop},
      {kIn, kMon, kProtoTcp, 7001, kAllow},
      {kIn, kMon, kProtoTcp, 19999, kAllow},
      {kIn, kMon, kProtoTcp, 20000, kAllow},  // passed to the namespace tier
      {kIn, kMon, kProtoTcp, 20999, kAllow},
      {kIn, kMon, kProtoTcp, 21000, kDrop},   // deny-range
      {kIn, kMon, kProtoTcp, 29999, kDrop},
      {kIn, kMon, kProtoTcp, 30000, kAllow},
      // CIDR peers: UDP 1000-40000 and SCTP 5000-5010 from 8.8.0.0/16 (LPM interval classes).
      {kIn, "8.8.8.8", kProtoUdp, 999, kDrop},
      {kIn, "8.8.8.8", kProtoUdp, 1000, kAllow},
      {kIn, "8.8.8.8", kProtoUdp, 25000, kAllow},  // deny-range is TCP
      {kIn, "8.8.8.8", kProtoUdp, 40000, kAllow},
      {kIn, "8.8.8.8", kProtoUdp, 40001, kDrop},
      {kIn, "8.8.8.8", kProtoTcp, 25000, kDrop},
      {kIn, "8.8.8.8", kProtoTcp, 1000, kDrop},
      {kIn, "8.8.8.8", kProtoSctp, 4999, kDrop},
      {kIn, "8.8.8.8", kProtoSctp, 5000, kAllow},
      {kIn, "8.8.8.8", kProtoSctp, 5010, kAllow},
      {kIn, "8.8.8.8", kProtoSctp, 5011, kDrop},
      {kIn, "8.9.0.1", kProtoUdp, 1000, kDrop},
      // Egress: every pod on TCP 1-65534 (an interval ending below the top).
      {kOut, kMon, kProtoTcp, 1, kAllow},
      {kOut, kMon, kProtoTcp, 65534, kAllow},
      {kOut, kMon, kProtoTcp, 65535, kDrop},
      {kOut, kMon, kProtoTcp, 32768, kAllow},
      {kOut, kClient, kProtoTcp, 32768, kDrop},  // a podSelector alone: prod's pods only
      {kOut, "8.8.8.8", kProtoTcp, 1000, kDrop},
      {kOut, "8.8.8.8", kProtoUdp, 53, kAllow},
      {kOut, "8.8.8.8", kProtoUdp, 54, kDrop},
  };
  // Source ports unique and above every probed ingress port: no case meets another's session.
  std::uint16_t source_port = 50000;
  for (const RangeCase& c : cases) {
    const bool ingress = c.program == kIn;
    const std::string src = ingress ? c.peer : kWeb;
    const std::string dst = ingress ? kWeb : c.peer;
    INFO((ingress ? "to web from " : "from web to ") << c.peer << " proto " << int(c.proto) << " port " << c.port);
    Bytes frame;
    if (c.proto == kProtoTcp) frame = tcp_packet(src, source_port, dst, c.port);
    if (c.proto == kProtoUdp) frame = udp_packet(src, source_port, dst, c.port);
    if (c.proto == kProtoSctp) {
      frame = ethernet(kEthertypeIpv4, ipv4({src, dst, kProtoSctp}, sctp_common_header(source_port, c.port)));
    }
    ++source_port;
    check_verdict(*datapath, c.program, frame, c.expected);
  }
}

// A MS_DIR_F_PORT_LOOKUP entry: [first, first + 2^(16 - bits) - 1] -> interval `first`.
void PutPortLookup(LoadedDatapath& datapath, std::uint32_t endpoint_id, ms_direction direction, std::uint8_t proto,
                   std::uint16_t first, std::uint8_t bits) {
  ms_lpm_key key{};
  key.prefixlen = MS_PORT_LOOKUP_FIXED_BITS + bits;
  key.endpoint_id = endpoint_id;
  key.direction = static_cast<std::uint8_t>(direction | MS_DIR_F_PORT_LOOKUP);
  key.proto = proto;
  key.port = htons(first);
  const ms_policy_value value = PortIntervalValue(first);
  REQUIRE(bpf_map_update_elem(datapath.map_fd("ms_policy_lpm"), &key, &value, BPF_ANY) == 0);
}

const auto kIntervalIngress = static_cast<ms_direction>(MS_DIR_INGRESS | MS_DIR_F_PORT_INTERVAL);

TEST_CASE("endPort ranges: the interval rung is taken only for endpoints flagged with ranges",
          "[bpf][port-ranges]") {
  auto datapath = load_or_skip();
  if (!datapath) return;
  constexpr const char* kPod = "10.244.0.10";
  constexpr const char* kPeer = "10.244.0.20";
  // 4096-8191 is one interval; an Allow for it from kPeer.
  PutPortLookup(*datapath, 5, MS_DIR_INGRESS, kProtoTcp, 4096, 4);
  datapath->put_exact(5, kIntervalIngress, kPeer, kProtoTcp, 4096, MS_ACTION_ALLOW);

  SECTION("flagged: the interval decides") {
    datapath->set_endpoint(5, MS_EP_F_INGRESS_ISOLATED | MS_EP_F_PORT_RANGES, kPod);
    check_verdict(*datapath, Program::kToPod, tcp_packet(kPeer, 50001, kPod, 4095), MS_REASON_DROP_POLICY);
    check_verdict(*datapath, Program::kToPod, tcp_packet(kPeer, 50002, kPod, 4096), MS_REASON_ALLOW_POLICY);
    check_verdict(*datapath, Program::kToPod, tcp_packet(kPeer, 50003, kPod, 8191), MS_REASON_ALLOW_POLICY);
    check_verdict(*datapath, Program::kToPod, tcp_packet(kPeer, 50004, kPod, 8192), MS_REASON_DROP_POLICY);
    // The interval key is no exact port: port 4096's own key would shadow it, not match it.
    datapath->put_exact(5, MS_DIR_INGRESS, kPeer, kProtoTcp, 5000, MS_ACTION_DENY);
    check_verdict(*datapath, Program::kToPod, tcp_packet(kPeer, 50005, kPod, 5000), MS_REASON_DROP_POLICY);
    check_verdict(*datapath, Program::kToPod, tcp_packet(kPeer, 50006, kPod, 5001), MS_REASON_ALLOW_POLICY);
  }
  SECTION("not flagged: no lookup, the interval entries are unreachable") {
    datapath->set_endpoint(5, MS_EP_F_INGRESS_ISOLATED, kPod);
    check_verdict(*datapath, Program::kToPod, tcp_packet(kPeer, 50011, kPod, 4096), MS_REASON_DROP_POLICY);
    check_verdict(*datapath, Program::kToPod, tcp_packet(kPeer, 50012, kPod, 6000), MS_REASON_DROP_POLICY);
  }
  SECTION("another generation's lookup entries are not this one's") {
    datapath->set_endpoint(5, MS_EP_F_INGRESS_ISOLATED | MS_EP_F_PORT_RANGES | MS_EP_F_POLICY_GEN, kPod);
    check_verdict(*datapath, Program::kToPod, tcp_packet(kPeer, 50021, kPod, 4096), MS_REASON_DROP_POLICY);
  }
}

TEST_CASE("endPort ranges: IPv6 flows take the interval rung on ms_policy6", "[bpf][port-ranges][ipv6]") {
  auto datapath = load_or_skip();
  if (!datapath) return;
  constexpr const char* kPod6 = "fd00:10:244:1::a";
  constexpr const char* kPeer6 = "fd00:10:244:2::14";
  datapath->set_endpoint(9, MS_EP_F_INGRESS_ISOLATED | MS_EP_F_PORT_RANGES, "10.244.1.10");
  datapath->set_endpoint_ipv6(kPod6);
  // Interval 10000-10255 (one /8 port prefix) allowed from kPeer6, and from fd00:10:244:3::/64 by CIDR.
  PutPortLookup(*datapath, 9, MS_DIR_INGRESS, kProtoUdp, 10000 & 0xff00, 8);
  datapath->put_exact6(9, kIntervalIngress, kPeer6, kProtoUdp, 10000 & 0xff00, MS_ACTION_ALLOW);
  datapath->put_lpm6(9, kIntervalIngress, "fd00:10:244:3::", 64, kProtoUdp, 10000 & 0xff00, MS_ACTION_ALLOW);
  const std::uint16_t first = 10000 & 0xff00;  // 9984
  check_verdict(*datapath, Program::kToPod, udp6_frame(kPeer6, 50001, kPod6, first - 1), MS_REASON_DROP_POLICY);
  check_verdict(*datapath, Program::kToPod, udp6_frame(kPeer6, 50002, kPod6, first), MS_REASON_ALLOW_POLICY);
  check_verdict(*datapath, Program::kToPod, udp6_frame(kPeer6, 50003, kPod6, first + 255), MS_REASON_ALLOW_POLICY);
  check_verdict(*datapath, Program::kToPod, udp6_frame(kPeer6, 50004, kPod6, first + 256), MS_REASON_DROP_POLICY);
  check_verdict(*datapath, Program::kToPod, udp6_frame("fd00:10:244:3::99", 50005, kPod6, first + 7),
                MS_REASON_ALLOW_POLICY);
  check_verdict(*datapath, Program::kToPod, udp6_frame("fd00:10:244:4::99", 50006, kPod6, first + 7),
                MS_REASON_DROP_POLICY);
}

}  // namespace
}  // namespace microseg::test
