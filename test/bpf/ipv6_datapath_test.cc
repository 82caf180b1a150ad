// IPv6 through the data path (docs/ipv6.md), crafted frames through
// BPF_PROG_TEST_RUN only: no IPv6 address is ever put on a real interface.
// Every run checks the TC action and that exactly one verdict counter, the
// expected (direction, reason), moved by one packet of the frame's size.
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "datapath_test_support.h"
#include "ipv6_packet_builder.h"
#include "loaded_datapath.h"
#include "microseg.skel.h"

namespace microseg::test {
namespace {

constexpr const char* kPod4 = "10.244.1.10";
constexpr const char* kPod = "fd00:10:244:1::a";
constexpr const char* kPeer = "fd00:10:244:2::14";
constexpr const char* kOtherPeer = "fd00:10:244:2::15";
constexpr const char* kExceptedPeer = "fd00:10:244:3::7";
constexpr const char* kRouter = "fd00:10:244:ff::1";
constexpr const char* kLinkLocal = "fe80::a8c1:abff:fe00:1";
constexpr std::uint32_t kEndpointId = 101;

constexpr std::uint8_t kIngressIsolated = MS_EP_F_INGRESS_ISOLATED;
constexpr std::uint8_t kEgressIsolated = MS_EP_F_EGRESS_ISOLATED;
constexpr std::uint8_t kBothIsolated = MS_EP_F_INGRESS_ISOLATED | MS_EP_F_EGRESS_ISOLATED;

struct Entry6 {
  bool lpm = false;
  ms_direction direction = MS_DIR_INGRESS;
  std::string peer;
  std::uint8_t prefix_length = 128;
  std::uint8_t proto = 0;
  std::uint16_t port = 0;
  ms_action action = MS_ACTION_ALLOW;
};

Entry6 exact6(ms_direction direction, std::string peer, std::uint8_t proto, std::uint16_t port,
              ms_action action = MS_ACTION_ALLOW) {
  return {false, direction, std::move(peer), 128, proto, port, action};
}

Entry6 cidr6(ms_direction direction, std::string network, std::uint8_t prefix_length,
             std::uint8_t proto, std::uint16_t port, ms_action action = MS_ACTION_ALLOW) {
  return {true, direction, std::move(network), prefix_length, proto, port, action};
}

void install(LoadedDatapath& datapath, const std::vector<Entry6>& entries,
             std::uint32_t endpoint_id = kEndpointId) {
  for (const Entry6& e : entries) {
    if (e.lpm) {
      datapath.put_lpm6(endpoint_id, e.direction, e.peer, e.prefix_length, e.proto, e.port,
                        e.action);
    } else {
      datapath.put_exact6(endpoint_id, e.direction, e.peer, e.proto, e.port, e.action);
    }
  }
}

void register_pod(LoadedDatapath& datapath, std::uint8_t flags, std::uint32_t policy_rev = 1,
                  const char* pod_ipv6 = kPod, std::uint32_t endpoint_id = kEndpointId,
                  std::uint8_t lookup_actions = 0) {
  datapath.set_endpoint(endpoint_id, flags, kPod4, kTestRunIfindex, policy_rev, lookup_actions);
  if (pod_ipv6 != nullptr) datapath.set_endpoint_ipv6(pod_ipv6);
}

Bytes tcp_syn(const std::string& src, std::uint16_t sport, const std::string& dst,
              std::uint16_t dport, const std::vector<Ipv6Extension>& extensions = {}) {
  return ipv6_frame({.src = src, .dst = dst, .extensions = extensions}, kProtoTcp,
                    tcp_segment({.sport = sport, .dport = dport, .seq = 1000}));
}

std::vector<Ipv6Extension> chain_of(std::size_t count) {
  std::vector<Ipv6Extension> chain;
  for (std::size_t i = 0; i < count; ++i) chain.push_back(options_header(kIpv6DestOptions));
  return chain;
}

struct Case {
  std::string name;
  std::optional<std::uint8_t> flags;  // nullopt: no endpoint registered
  std::vector<Entry6> policy;
  Program program;
  Bytes frame;
  ms_reason expected;
  const char* pod_ipv6 = kPod;  // nullptr: the pod has no IPv6 address
};

std::vector<Case> single_packet_cases() {
  const Bytes syn_to_pod_80 = tcp_syn(kPeer, 40000, kPod, 80);
  const std::vector<Ipv6Extension> every_kind = {
      options_header(kIpv6HopByHop, 16), options_header(kIpv6DestOptions),
      options_header(kIpv6Routing, 24), fragment_header(0, false), auth_header(),
      options_header(kIpv6DestOptions)};
  const Bytes later_fragment = ipv6_frame(
      {.src = kPeer, .dst = kPod, .extensions = {fragment_header(185, true)}}, kProtoUdp,
      Bytes(32, 0xCD));
  Bytes short_ext = ipv6_frame({.src = kPeer, .dst = kPod, .extensions = {options_header(kIpv6HopByHop, 16)}},
                               kProtoTcp, {});
  return {
      {"unknown endpoint", std::nullopt, {}, Program::kToPod, syn_to_pod_80,
       MS_REASON_DROP_UNKNOWN_ENDPOINT},

      // Isolation and the *6 policy maps, same order as IPv4.
      {"not isolated", 0, {}, Program::kToPod, syn_to_pod_80, MS_REASON_ALLOW_NOT_ISOLATED},
      {"isolated, no entry", kIngressIsolated, {}, Program::kToPod, syn_to_pod_80,
       MS_REASON_DROP_POLICY},
      {"exact allow proto+port", kIngressIsolated, {exact6(MS_DIR_INGRESS, kPeer, kProtoTcp, 80)},
       Program::kToPod, syn_to_pod_80, MS_REASON_ALLOW_POLICY},
      {"exact allow, other port", kIngressIsolated,
       {exact6(MS_DIR_INGRESS, kPeer, kProtoTcp, 80)}, Program::kToPod,
       tcp_syn(kPeer, 40000, kPod, 81), MS_REASON_DROP_POLICY},
      {"exact allow, other peer", kIngressIsolated,
       {exact6(MS_DIR_INGRESS, kPeer, kProtoTcp, 80)}, Program::kToPod,
       tcp_syn(kOtherPeer, 40000, kPod, 80), MS_REASON_DROP_POLICY},
      {"exact any port", kIngressIsolated, {exact6(MS_DIR_INGRESS, kPeer, kProtoTcp, 0)},
       Program::kToPod, tcp_syn(kPeer, 40000, kPod, 8080), MS_REASON_ALLOW_POLICY},
      {"exact any proto", kIngressIsolated, {exact6(MS_DIR_INGRESS, kPeer, 0, 0)},
       Program::kToPod, udp6_frame(kPeer, 40000, kPod, 53), MS_REASON_ALLOW_POLICY},
      {"exact DENY", kIngressIsolated, {exact6(MS_DIR_INGRESS, kPeer, kProtoTcp, 80, MS_ACTION_DENY)},
       Program::kToPod, syn_to_pod_80, MS_REASON_DROP_POLICY},
      {"exact audit", kIngressIsolated,
       {exact6(MS_DIR_INGRESS, kPeer, kProtoTcp, 80, MS_ACTION_ALLOW_AUDIT)}, Program::kToPod,
       syn_to_pod_80, MS_REASON_ALLOW_AUDIT},
      {"egress exact allow matches the destination", kEgressIsolated,
       {exact6(MS_DIR_EGRESS, kPeer, kProtoTcp, 5432)}, Program::kFromPod,
       tcp_syn(kPod, 40000, kPeer, 5432), MS_REASON_ALLOW_POLICY},
      {"SCTP port", kIngressIsolated, {exact6(MS_DIR_INGRESS, kPeer, kProtoSctp, 3868)},
       Program::kToPod, ipv6_frame({.src = kPeer, .dst = kPod}, kProtoSctp, sctp_common_header(5000, 3868)),
       MS_REASON_ALLOW_POLICY},
      {"LPM allow /64", kIngressIsolated, {cidr6(MS_DIR_INGRESS, "fd00:10:244:2::", 64, kProtoTcp, 80)},
       Program::kToPod, syn_to_pod_80, MS_REASON_ALLOW_POLICY},
      {"LPM outside the /64", kIngressIsolated,
       {cidr6(MS_DIR_INGRESS, "fd00:10:244:2::", 64, kProtoTcp, 80)}, Program::kToPod,
       tcp_syn("fd00:10:244:4::1", 40000, kPod, 80), MS_REASON_DROP_POLICY},
      // A direction only looked up (a cluster Deny or an Audit policy on a
      // pod nobody isolates): the same lookups as IPv4, in the *6 maps.
      {"not isolated with the lookup flag: an exact DENY drops", MS_EP_F_INGRESS_LOOKUP,
       {exact6(MS_DIR_INGRESS, kPeer, kProtoTcp, 80, MS_ACTION_DENY)}, Program::kToPod, syn_to_pod_80,
       MS_REASON_DROP_POLICY},
      {"not isolated with the lookup flag: an LPM DENY drops", MS_EP_F_EGRESS_LOOKUP,
       {cidr6(MS_DIR_EGRESS, "fd00:10:244::", 48, kProtoTcp, 0, MS_ACTION_DENY)}, Program::kFromPod,
       tcp_syn(kPod, 40000, kPeer, 22), MS_REASON_DROP_POLICY},
      {"not isolated with the lookup flag: an audit entry is counted", MS_EP_F_INGRESS_LOOKUP,
       {cidr6(MS_DIR_INGRESS, "::", 0, 0, 0, MS_ACTION_ALLOW_AUDIT)}, Program::kToPod, syn_to_pod_80,
       MS_REASON_ALLOW_AUDIT},
      {"not isolated with the lookup flag: a miss allows", MS_EP_F_INGRESS_LOOKUP,
       {exact6(MS_DIR_INGRESS, kOtherPeer, kProtoTcp, 80, MS_ACTION_DENY)}, Program::kToPod, syn_to_pod_80,
       MS_REASON_ALLOW_NOT_ISOLATED},
      {"the other direction's lookup flag changes nothing", MS_EP_F_EGRESS_LOOKUP,
       {exact6(MS_DIR_INGRESS, kPeer, kProtoTcp, 80, MS_ACTION_DENY)}, Program::kToPod, syn_to_pod_80,
       MS_REASON_ALLOW_NOT_ISOLATED},
      {"LPM except (longer DENY prefix) wins inside it", kIngressIsolated,
       {cidr6(MS_DIR_INGRESS, "fd00:10:244::", 48, 0, 0),
        cidr6(MS_DIR_INGRESS, "fd00:10:244:3::", 64, 0, 0, MS_ACTION_DENY)},
       Program::kToPod, tcp_syn(kExceptedPeer, 40000, kPod, 80), MS_REASON_DROP_POLICY},
      {"LPM except leaves the rest allowed", kIngressIsolated,
       {cidr6(MS_DIR_INGRESS, "fd00:10:244::", 48, 0, 0),
        cidr6(MS_DIR_INGRESS, "fd00:10:244:3::", 64, 0, 0, MS_ACTION_DENY)},
       Program::kToPod, syn_to_pod_80, MS_REASON_ALLOW_POLICY},
      {"exact before LPM", kIngressIsolated,
       {exact6(MS_DIR_INGRESS, kPeer, kProtoTcp, 80),
        cidr6(MS_DIR_INGRESS, "::", 0, 0, 0, MS_ACTION_DENY)},
       Program::kToPod, syn_to_pod_80, MS_REASON_ALLOW_POLICY},
      {"ICMPv6 echo id is not a port", kIngressIsolated,
       {exact6(MS_DIR_INGRESS, kPeer, kProtoIcmpv6, 80)}, Program::kToPod,
       ipv6_frame({.src = kPeer, .dst = kPod}, kProtoIcmpv6, icmp6_echo(kIcmp6EchoRequest, 80)),
       MS_REASON_DROP_POLICY},
      {"ICMPv6 error about nothing tracked needs a policy", kIngressIsolated, {}, Program::kToPod,
       icmp6_error_frame(kRouter, kPod, kIcmp6PacketTooBig,
                         ipv6_packet({.src = kPod, .dst = kPeer}, kProtoUdp, udp_datagram(5000, 53))),
       MS_REASON_DROP_POLICY},

      // Extension headers: bounded walk, L4 found behind them.
      {"six extension headers of every kind, port allowed", kIngressIsolated,
       {exact6(MS_DIR_INGRESS, kPeer, kProtoTcp, 80)}, Program::kToPod,
       tcp_syn(kPeer, 40000, kPod, 80, every_kind), MS_REASON_ALLOW_POLICY},
      {"six extension headers, the port behind them is not allowed", kIngressIsolated,
       {exact6(MS_DIR_INGRESS, kPeer, kProtoTcp, 80)}, Program::kToPod,
       tcp_syn(kPeer, 40000, kPod, 81, every_kind), MS_REASON_DROP_POLICY},
      {"eight extension headers: the limit", kIngressIsolated,
       {exact6(MS_DIR_INGRESS, kPeer, kProtoTcp, 80)}, Program::kToPod,
       tcp_syn(kPeer, 40000, kPod, 80, chain_of(8)), MS_REASON_ALLOW_POLICY},
      {"nine extension headers, isolated", kIngressIsolated,
       {exact6(MS_DIR_INGRESS, kPeer, 0, 0)}, Program::kToPod,
       tcp_syn(kPeer, 40000, kPod, 80, chain_of(9)), MS_REASON_DROP_MALFORMED},
      {"nine extension headers, not isolated", kEgressIsolated, {}, Program::kToPod,
       tcp_syn(kPeer, 40000, kPod, 80, chain_of(9)), MS_REASON_ALLOW_NOT_ISOLATED},
      {"extension header longer than the payload", kIngressIsolated,
       {exact6(MS_DIR_INGRESS, kPeer, 0, 0)}, Program::kToPod,
       ipv6_frame({.src = kPeer,
                   .dst = kPod,
                   .extensions = {options_header(kIpv6HopByHop, 16)},
                   .payload_length = 8},
                  kProtoTcp, {}),
       MS_REASON_DROP_MALFORMED},
      {"TCP cut short behind an extension header", 0, {}, Program::kToPod,
       ipv6_frame({.src = kPeer, .dst = kPod, .extensions = {options_header(kIpv6DestOptions)}},
                  kProtoTcp, truncated(tcp_segment({.sport = 1, .dport = 80}), 12)),
       MS_REASON_DROP_MALFORMED},
      // A fixed header cut short never reaches the program through
      // BPF_PROG_TEST_RUN (the kernel refuses it); veth_injection_test.cc has it.
      {"payload length beyond the frame", 0, {}, Program::kToPod,
       truncated(short_ext, short_ext.size() - 4), MS_REASON_DROP_MALFORMED},

      // Fragments: the first is judged, later ones as for IPv4.
      {"first fragment judged by its ports", kIngressIsolated,
       {exact6(MS_DIR_INGRESS, kPeer, kProtoUdp, 53)}, Program::kToPod,
       ipv6_frame({.src = kPeer, .dst = kPod, .extensions = {fragment_header(0, true)}}, kProtoUdp,
                  udp_datagram(40000, 53, 64)),
       MS_REASON_ALLOW_POLICY},
      {"first fragment, port not allowed", kIngressIsolated,
       {exact6(MS_DIR_INGRESS, kPeer, kProtoUdp, 53)}, Program::kToPod,
       ipv6_frame({.src = kPeer, .dst = kPod, .extensions = {fragment_header(0, true)}}, kProtoUdp,
                  udp_datagram(40000, 54, 64)),
       MS_REASON_DROP_POLICY},
      {"later fragment, isolated", kIngressIsolated, {exact6(MS_DIR_INGRESS, kPeer, 0, 0)},
       Program::kToPod, later_fragment, MS_REASON_DROP_FRAGMENT},
      {"later fragment, not isolated", 0, {}, Program::kToPod, later_fragment,
       MS_REASON_ALLOW_NOT_ISOLATED},
      // A direction with verdicts to look up (cluster-tier Deny) judges
      // what it cannot parse like an isolated one: no bypass by fragmenting.
      {"later fragment, lookup flag", MS_EP_F_INGRESS_LOOKUP,
       {exact6(MS_DIR_INGRESS, kPeer, 0, 0, MS_ACTION_DENY)}, Program::kToPod, later_fragment,
       MS_REASON_DROP_FRAGMENT},
      {"later fragment, lookup flag, only Audit entries", MS_EP_F_INGRESS_LOOKUP,
       {cidr6(MS_DIR_INGRESS, "::", 0, 0, 0, MS_ACTION_ALLOW_AUDIT)}, Program::kToPod, later_fragment,
       MS_REASON_ALLOW_AUDIT},
      {"nine extension headers, lookup flag, only Audit entries", MS_EP_F_INGRESS_LOOKUP,
       {cidr6(MS_DIR_INGRESS, "::", 0, 0, 0, MS_ACTION_ALLOW_AUDIT)}, Program::kToPod,
       tcp_syn(kPeer, 40000, kPod, 80, chain_of(9)), MS_REASON_ALLOW_AUDIT},
      {"later fragment, only the other direction's lookup flag", MS_EP_F_EGRESS_LOOKUP, {},
       Program::kToPod, later_fragment, MS_REASON_ALLOW_NOT_ISOLATED},
      {"nine extension headers, lookup flag", MS_EP_F_INGRESS_LOOKUP,
       {exact6(MS_DIR_INGRESS, kPeer, 0, 0, MS_ACTION_DENY)}, Program::kToPod,
       tcp_syn(kPeer, 40000, kPod, 80, chain_of(9)), MS_REASON_DROP_MALFORMED},

      // Anti-spoofing on pod egress.
      {"own source", 0, {}, Program::kFromPod, tcp_syn(kPod, 40000, kPeer, 80),
       MS_REASON_ALLOW_NOT_ISOLATED},
      {"spoofed source, not isolated", 0, {}, Program::kFromPod,
       tcp_syn(kOtherPeer, 40000, kPeer, 80), MS_REASON_DROP_SPOOFED_SOURCE},
      {"spoofed source, egress allowed to anyone", kEgressIsolated,
       {cidr6(MS_DIR_EGRESS, "::", 0, 0, 0)}, Program::kFromPod,
       tcp_syn(kOtherPeer, 40000, kPeer, 80), MS_REASON_DROP_SPOOFED_SOURCE},
      {"spoofed source as a later fragment", 0, {}, Program::kFromPod,
       ipv6_frame({.src = kOtherPeer, .dst = kPeer, .extensions = {fragment_header(185, false)}},
                  kProtoUdp, Bytes(32, 0xCD)),
       MS_REASON_DROP_SPOOFED_SOURCE},
      {"spoofed source behind too many extension headers", 0, {}, Program::kFromPod,
       tcp_syn(kOtherPeer, 40000, kPeer, 80, chain_of(9)), MS_REASON_DROP_SPOOFED_SOURCE},
      {"pod without an IPv6 address", 0, {}, Program::kFromPod, tcp_syn(kPod, 40000, kPeer, 80),
       MS_REASON_DROP_SPOOFED_SOURCE, nullptr},
      // Its all-zero address is no address: :: is not its own.
      {"pod without an IPv6 address, TCP from ::", 0, {}, Program::kFromPod,
       tcp_syn("::", 40000, kPeer, 80), MS_REASON_DROP_SPOOFED_SOURCE, nullptr},
      {"pod without an IPv6 address, DAD from ::", kBothIsolated, {}, Program::kFromPod,
       ndp_frame("::", "ff02::1:ff00:a", kIcmp6NeighborSolicit), MS_REASON_ALLOW_NON_IP, nullptr},
      {"pod without an IPv6 address, router solicitation from link-local", kBothIsolated, {},
       Program::kFromPod, ndp_frame(kLinkLocal, "ff02::2", kIcmp6RouterSolicit),
       MS_REASON_ALLOW_NON_IP, nullptr},
      {"link-local source, TCP", 0, {}, Program::kFromPod, tcp_syn(kLinkLocal, 40000, kPeer, 80),
       MS_REASON_DROP_SPOOFED_SOURCE},
      {"link-local source, too many extension headers", 0, {}, Program::kFromPod,
       tcp_syn(kLinkLocal, 40000, kPeer, 80, chain_of(9)), MS_REASON_DROP_SPOOFED_SOURCE},
      {"any source towards the pod", kIngressIsolated, {cidr6(MS_DIR_INGRESS, "::", 0, 0, 0)},
       Program::kToPod, tcp_syn(kOtherPeer, 40000, kPod, 80), MS_REASON_ALLOW_POLICY},

      // NDP and MLD pass like ARP, also from link-local and :: sources.
      {"router solicitation from link-local", kBothIsolated, {}, Program::kFromPod,
       ndp_frame(kLinkLocal, "ff02::2", kIcmp6RouterSolicit), MS_REASON_ALLOW_NON_IP},
      {"router advertisement to the pod", kBothIsolated, {}, Program::kToPod,
       ndp_frame("fe80::1", "ff02::1", kIcmp6RouterAdvert), MS_REASON_ALLOW_NON_IP},
      {"neighbour solicitation for DAD from ::", kBothIsolated, {}, Program::kFromPod,
       ndp_frame("::", "ff02::1:ff00:a", kIcmp6NeighborSolicit), MS_REASON_ALLOW_NON_IP},
      {"neighbour solicitation from the pod's address", kBothIsolated, {}, Program::kFromPod,
       ndp_frame(kPod, "ff02::1:ff00:1", kIcmp6NeighborSolicit), MS_REASON_ALLOW_NON_IP},
      {"neighbour advertisement to the pod", kBothIsolated, {}, Program::kToPod,
       ndp_frame("fe80::1", kPod, kIcmp6NeighborAdvert), MS_REASON_ALLOW_NON_IP},
      {"redirect to the pod", kBothIsolated, {}, Program::kToPod,
       ndp_frame("fe80::1", kPod, kIcmp6Redirect), MS_REASON_ALLOW_NON_IP},
      {"NDP with a hop limit below 255", 0, {}, Program::kToPod,
       ndp_frame("fe80::1", kPod, kIcmp6NeighborAdvert, 64), MS_REASON_DROP_MALFORMED},
      {"NDP from a spoofed global source", 0, {}, Program::kFromPod,
       ndp_frame(kOtherPeer, "ff02::1", kIcmp6NeighborAdvert), MS_REASON_DROP_SPOOFED_SOURCE},
      {"MLDv2 report behind hop-by-hop from ::", kBothIsolated, {}, Program::kFromPod,
       ipv6_frame({.src = "::",
                   .dst = "ff02::16",
                   .hop_limit = 1,
                   .extensions = {options_header(kIpv6HopByHop)}},
                  kProtoIcmpv6, icmp6_message(kIcmp6Mld2Report, 0, Bytes(4, 0))),
       MS_REASON_ALLOW_NON_IP},
  };
}

TEST_CASE("IPv6: each packet gets the expected verdict and counter", "[bpf][privileged][ipv6]") {
  auto datapath = load_or_skip();
  if (!datapath) return;
  // One load for all cases (a load per case costs the verifier's time each):
  // every case is its own endpoint id, so no case sees another's entries
  // or sessions.
  std::uint32_t endpoint_id = 1000;
  for (const Case& c : single_packet_cases()) {
    INFO("case: " << c.name);
    ++endpoint_id;
    if (c.flags) register_pod(*datapath, *c.flags, 1, c.pod_ipv6, endpoint_id, lookup_actions_of(*c.flags, c.policy));
    else datapath->remove_endpoint();
    install(*datapath, c.policy, endpoint_id);
    check_verdict(*datapath, c.program, c.frame, c.expected);
  }
}

TEST_CASE("IPv6: an IPv4 policy entry never admits IPv6 and the other way round",
          "[bpf][privileged][ipv6]") {
  auto datapath = load_or_skip();
  if (!datapath) return;
  register_pod(*datapath, kIngressIsolated);
  datapath->put_exact(kEndpointId, MS_DIR_INGRESS, "10.244.2.20", 0, 0, MS_ACTION_ALLOW);
  datapath->put_lpm(kEndpointId, MS_DIR_INGRESS, "0.0.0.0", 0, 0, 0, MS_ACTION_ALLOW);
  check_verdict(*datapath, Program::kToPod, tcp_syn(kPeer, 40000, kPod, 80), MS_REASON_DROP_POLICY);
  install(*datapath, {cidr6(MS_DIR_INGRESS, "::", 0, 0, 0)});
  check_verdict(*datapath, Program::kToPod, tcp_syn(kPeer, 40000, kPod, 80), MS_REASON_ALLOW_POLICY);
  CHECK(datapath->session6_count() == 1);
  CHECK(datapath->session_count() == 0);  // IPv6 sessions live in ms_sessions6 only
}

TEST_CASE("IPv6: an IPv6-only pod sends no IPv4, not even from 0.0.0.0", "[bpf][privileged][ipv6]") {
  auto datapath = load_or_skip();
  if (!datapath) return;
  datapath->set_endpoint(kEndpointId, 0, "0.0.0.0", kTestRunIfindex, 1);
  datapath->set_endpoint_ipv6(kPod);
  for (const char* source : {"0.0.0.0", kPod4}) {
    INFO("IPv4 source " << source);
    check_verdict(*datapath, Program::kFromPod,
                  ethernet(kEthertypeIpv4, ipv4({.src = source, .dst = "10.244.2.20", .proto = kProtoTcp},
                                                tcp_header(40000, 80))),
                  MS_REASON_DROP_SPOOFED_SOURCE);
  }
  // Its IPv6 traffic is unaffected.
  check_verdict(*datapath, Program::kFromPod, tcp_syn(kPod, 40000, kPeer, 80), MS_REASON_ALLOW_NOT_ISOLATED);
}

struct Step {
  std::string what;
  Program program;
  Bytes frame;
  ms_reason expected;
};

void run_steps(LoadedDatapath& datapath, const std::vector<Step>& steps) {
  for (const Step& step : steps) {
    INFO("step: " << step.what);
    check_verdict(datapath, step.program, step.frame, step.expected);
  }
}

Bytes tcp6(const std::string& src, std::uint16_t sport, const std::string& dst, std::uint16_t dport,
           std::uint32_t seq, std::uint32_t ack, std::uint8_t flags, std::size_t payload = 0) {
  return tcp6_frame(src, dst,
                    {.sport = sport, .dport = dport, .seq = seq, .ack = ack, .flags = flags,
                     .payload_bytes = payload});
}

TEST_CASE("IPv6 sessions: TCP both ways, UDP, ICMPv6 echo and related errors",
          "[bpf][privileged][ipv6][session]") {
  auto datapath = load_or_skip();
  if (!datapath) return;
  // Both directions isolated: only what a rule or a session admits passes.
  register_pod(*datapath, kBothIsolated);
  install(*datapath, {exact6(MS_DIR_EGRESS, kPeer, kProtoTcp, 80),
                      exact6(MS_DIR_INGRESS, kPeer, kProtoUdp, 53),
                      exact6(MS_DIR_EGRESS, kPeer, kProtoIcmpv6, 0)});

  SECTION("TCP opened by the pod, every packet of the connection") {
    run_steps(*datapath, {
        {"SYN out", Program::kFromPod, tcp6(kPod, 40000, kPeer, 80, 1000, 0, kTcpSyn),
         MS_REASON_ALLOW_POLICY},
        {"SYN-ACK in", Program::kToPod, tcp6(kPeer, 80, kPod, 40000, 5000, 1001, kTcpSyn | kTcpAck),
         MS_REASON_ALLOW_SESSION},
        {"ACK out", Program::kFromPod, tcp6(kPod, 40000, kPeer, 80, 1001, 5001, kTcpAck),
         MS_REASON_ALLOW_SESSION},
        {"data in", Program::kToPod, tcp6(kPeer, 80, kPod, 40000, 5001, 1001, kTcpAck | kTcpPsh, 100),
         MS_REASON_ALLOW_SESSION},
        {"data far outside the window", Program::kToPod,
         tcp6(kPeer, 80, kPod, 40000, 5001 + 0x40000000, 1001, kTcpAck, 10), MS_REASON_DROP_INVALID_SEQ},
        {"a new connection from the peer is not the session", Program::kToPod,
         tcp6(kPeer, 80, kPod, 40001, 9000, 0, kTcpSyn), MS_REASON_DROP_POLICY},
    });
    const auto session = datapath->session6(session6_key_of(kEndpointId, kPod, 40000, kPeer, 80, kProtoTcp));
    REQUIRE(session.has_value());
    CHECK(session->tcp_state == MS_TCP_ESTABLISHED);
    CHECK(session->direction == MS_DIR_EGRESS);
  }
  SECTION("UDP into the pod, the reply goes out") {
    run_steps(*datapath, {
        {"query in", Program::kToPod, udp6_frame(kPeer, 40000, kPod, 53), MS_REASON_ALLOW_POLICY},
        {"answer out", Program::kFromPod, udp6_frame(kPod, 53, kPeer, 40000), MS_REASON_ALLOW_SESSION},
        {"another port out", Program::kFromPod, udp6_frame(kPod, 53, kPeer, 40001), MS_REASON_DROP_POLICY},
    });
  }
  SECTION("ICMPv6 echo from the pod and its reply") {
    const Bytes request = ipv6_frame({.src = kPod, .dst = kPeer}, kProtoIcmpv6, icmp6_echo(kIcmp6EchoRequest, 77));
    const Bytes reply = ipv6_frame({.src = kPeer, .dst = kPod}, kProtoIcmpv6, icmp6_echo(kIcmp6EchoReply, 77));
    run_steps(*datapath, {
        {"stray reply", Program::kToPod, reply, MS_REASON_DROP_POLICY},
        {"request out", Program::kFromPod, request, MS_REASON_ALLOW_POLICY},
        {"reply in", Program::kToPod, reply, MS_REASON_ALLOW_SESSION},
        {"a request from the peer is not the pod's ping", Program::kToPod,
         ipv6_frame({.src = kPeer, .dst = kPod}, kProtoIcmpv6, icmp6_echo(kIcmp6EchoRequest, 77)),
         MS_REASON_DROP_POLICY},
    });
  }
  SECTION("ICMPv6 errors quoting a tracked flow are related") {
    const Bytes quoted = ipv6_packet({.src = kPod, .dst = kPeer}, kProtoTcp,
                                     tcp_segment({.sport = 40000, .dport = 80, .seq = 1000}));
    run_steps(*datapath, {
        {"packet too big before any session", Program::kToPod,
         icmp6_error_frame(kRouter, kPod, kIcmp6PacketTooBig, quoted), MS_REASON_DROP_POLICY},
        {"SYN out", Program::kFromPod, tcp6(kPod, 40000, kPeer, 80, 1000, 0, kTcpSyn), MS_REASON_ALLOW_POLICY},
        {"packet too big from a router", Program::kToPod,
         icmp6_error_frame(kRouter, kPod, kIcmp6PacketTooBig, quoted), MS_REASON_ALLOW_RELATED},
        {"unreachable from the peer", Program::kToPod,
         icmp6_error_frame(kPeer, kPod, kIcmp6DestUnreachable, quoted), MS_REASON_ALLOW_RELATED},
        // The quote's extension headers are walked like a packet's own.
        {"packet too big quoting the first fragment, behind a destination options header", Program::kToPod,
         icmp6_error_frame(kRouter, kPod, kIcmp6PacketTooBig,
                           ipv6_packet({.src = kPod,
                                        .dst = kPeer,
                                        .extensions = {options_header(kIpv6DestOptions), fragment_header(0, true)}},
                                       kProtoTcp, tcp_segment({.sport = 40000, .dport = 80, .seq = 1000}))),
         MS_REASON_ALLOW_RELATED},
        {"the same behind extension headers, quoting another flow", Program::kToPod,
         icmp6_error_frame(kRouter, kPod, kIcmp6PacketTooBig,
                           ipv6_packet({.src = kPod, .dst = kPeer, .extensions = {fragment_header(0, true)}},
                                       kProtoTcp, tcp_segment({.sport = 40002, .dport = 80, .seq = 1000}))),
         MS_REASON_DROP_POLICY},
        {"quoting a later fragment: no ports, judged by policy", Program::kToPod,
         icmp6_error_frame(kRouter, kPod, kIcmp6PacketTooBig,
                           ipv6_packet({.src = kPod, .dst = kPeer, .extensions = {fragment_header(185, true)}},
                                       kProtoTcp, tcp_segment({.sport = 40000, .dport = 80, .seq = 1000}))),
         MS_REASON_DROP_POLICY},
        {"an error quoting another flow", Program::kToPod,
         icmp6_error_frame(kRouter, kPod, kIcmp6PacketTooBig,
                           ipv6_packet({.src = kPod, .dst = kPeer}, kProtoTcp,
                                       tcp_segment({.sport = 40001, .dport = 80}))),
         MS_REASON_DROP_POLICY},
    });
  }
}

TEST_CASE("IPv6 sessions: a policy change revokes them", "[bpf][privileged][ipv6][session]") {
  auto datapath = load_or_skip();
  if (!datapath) return;
  register_pod(*datapath, kIngressIsolated, 1);
  install(*datapath, {exact6(MS_DIR_INGRESS, kPeer, kProtoTcp, 80)});
  run_steps(*datapath, {
      {"SYN in", Program::kToPod, tcp6(kPeer, 40000, kPod, 80, 1000, 0, kTcpSyn), MS_REASON_ALLOW_POLICY},
      {"SYN-ACK out", Program::kFromPod, tcp6(kPod, 80, kPeer, 40000, 5000, 1001, kTcpSyn | kTcpAck),
       MS_REASON_ALLOW_SESSION},
      {"ACK in", Program::kToPod, tcp6(kPeer, 40000, kPod, 80, 1001, 5001, kTcpAck), MS_REASON_ALLOW_SESSION},
  });
  // Same revision, entry turned into a DENY: the session is not re-checked.
  install(*datapath, {exact6(MS_DIR_INGRESS, kPeer, kProtoTcp, 80, MS_ACTION_DENY)});
  check_verdict(*datapath, Program::kToPod, tcp6(kPeer, 40000, kPod, 80, 1001, 5001, kTcpAck),
                 MS_REASON_ALLOW_SESSION);
  register_pod(*datapath, kIngressIsolated, 2);
  run_steps(*datapath, {
      {"next packet after the revision", Program::kToPod, tcp6(kPeer, 40000, kPod, 80, 1001, 5001, kTcpAck),
       MS_REASON_DROP_POLICY_REVOKED},
      {"the pod's side too", Program::kFromPod, tcp6(kPod, 80, kPeer, 40000, 5001, 1001, kTcpAck),
       MS_REASON_DROP_POLICY_REVOKED},
  });
}

TEST_CASE("IPv6 sessions: SYN cap per endpoint", "[bpf][privileged][ipv6][session]") {
  auto datapath = load_or_skip([](microseg_bpf& s) { s.rodata->max_half_open_per_endpoint = 1; });
  if (!datapath) return;
  register_pod(*datapath, kIngressIsolated);
  install(*datapath, {exact6(MS_DIR_INGRESS, kPeer, kProtoTcp, 80)});
  run_steps(*datapath, {
      {"first SYN", Program::kToPod, tcp6(kPeer, 40000, kPod, 80, 1000, 0, kTcpSyn), MS_REASON_ALLOW_POLICY},
      {"second SYN beyond the cap", Program::kToPod, tcp6(kPeer, 40001, kPod, 80, 3000, 0, kTcpSyn),
       MS_REASON_DROP_SYN_FLOOD},
      {"the first connection completes", Program::kFromPod,
       tcp6(kPod, 80, kPeer, 40000, 5000, 1001, kTcpSyn | kTcpAck), MS_REASON_ALLOW_SESSION},
  });
  CHECK(datapath->half_open(kEndpointId) == 1);
}

TEST_CASE("IPv6 sessions: a full ms_sessions6 refuses new flows, tracked ones go on",
          "[bpf][privileged][ipv6][session]") {
  auto datapath = load_or_skip();
  if (!datapath) return;
  register_pod(*datapath, 0);
  const std::uint32_t slot = MS_PMAP_SESSIONS6;
  const ms_pressure_config config{.removed = 0, .full_entries = 1, .alert_entries = 0};
  REQUIRE(bpf_map__update_elem(datapath->skeleton().maps.ms_pressure_cfg, &slot, sizeof slot, &config,
                               sizeof config, BPF_ANY) == 0);
  ms_allow6_key allowed{};
  allowed.prefixlen = MS_ALLOW_FIXED_BITS + 64;
  allowed.proto = kProtoUdp;
  allowed.port = 53;
  const auto dns = ipv6_net("fd00:10:96::");
  std::memcpy(allowed.peer_ipv6, dns.data(), sizeof allowed.peer_ipv6);
  const std::uint8_t present = 1;
  REQUIRE(bpf_map__update_elem(datapath->skeleton().maps.ms_sess_allow6, &allowed, sizeof allowed, &present,
                               sizeof present, BPF_ANY) == 0);
  run_steps(*datapath, {
      {"first flow fills the map", Program::kFromPod, udp6_frame(kPod, 5000, kPeer, 80), MS_REASON_ALLOW_NOT_ISOLATED},
      {"a second flow is refused", Program::kFromPod, udp6_frame(kPod, 5001, kPeer, 80), MS_REASON_DROP_MAP_FULL},
      {"the tracked flow goes on", Program::kToPod, udp6_frame(kPeer, 80, kPod, 5000), MS_REASON_ALLOW_SESSION},
      {"allow-listed DNS still gets a session", Program::kFromPod, udp6_frame(kPod, 5002, "fd00:10:96::a", 53),
       MS_REASON_ALLOW_NOT_ISOLATED},
      {"IPv4 has its own slot", Program::kFromPod, udp_packet(kPod4, 5000, "10.244.2.20", 80),
       MS_REASON_ALLOW_NOT_ISOLATED},
  });
  ms_pressure_counters counters{};
  REQUIRE(bpf_map__lookup_elem(datapath->skeleton().maps.ms_pressure, &slot, sizeof slot, &counters,
                               sizeof counters, 0) == 0);
  CHECK(counters.inserts == 2);
  CHECK(counters.refused == 1);
  CHECK(datapath->session6_count() == 2);
  CHECK(datapath->session_count() == 1);
}

}  // namespace
}  // namespace microseg::test
