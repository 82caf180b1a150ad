// The TC data path judged packet by packet through BPF_PROG_TEST_RUN. Every
// run checks both the TC action and that exactly one verdict counter, the
// expected (direction, reason), moved by one packet of the frame's size.
#include <catch2/catch.hpp>
#include <chrono>
#include <optional>
#include <thread>
#include <vector>

#include "datapath_test_support.h"
#include "loaded_datapath.h"
#include "microseg.skel.h"
#include "packet_builder.h"

namespace microseg::test {
namespace {

// The pod behind the veth under test, and peers in the cluster range.
constexpr const char* kPod = "10.244.1.10";
constexpr const char* kPeer = "10.244.2.20";
constexpr const char* kOtherPeer = "10.244.2.21";

constexpr std::uint8_t kIngressIsolated = MS_EP_F_INGRESS_ISOLATED;
constexpr std::uint8_t kEgressIsolated = MS_EP_F_EGRESS_ISOLATED;
constexpr std::uint8_t kBothIsolated = MS_EP_F_INGRESS_ISOLATED | MS_EP_F_EGRESS_ISOLATED;

struct PolicyEntry {
  enum class Map { kExact, kLpm } map = Map::kExact;
  ms_direction direction = MS_DIR_INGRESS;
  std::string peer;
  std::uint8_t prefix_length = 32;  // kLpm only
  std::uint8_t proto = 0;
  std::uint16_t port = 0;
  ms_action action = MS_ACTION_ALLOW;
};

PolicyEntry exact(ms_direction direction, std::string peer, std::uint8_t proto,
                  std::uint16_t port, ms_action action = MS_ACTION_ALLOW) {
  return {PolicyEntry::Map::kExact, direction, std::move(peer), 32, proto, port, action};
}

PolicyEntry cidr(ms_direction direction, std::string network, std::uint8_t prefix_length,
                 std::uint8_t proto, std::uint16_t port, ms_action action) {
  return {PolicyEntry::Map::kLpm, direction, std::move(network), prefix_length, proto, port,
          action};
}

struct VerdictCase {
  std::string name;
  std::optional<std::uint8_t> endpoint_flags;  // nullopt: no endpoint registered
  std::vector<PolicyEntry> policy;
  Program program;
  Bytes frame;
  ms_reason expected;
};

Bytes ipv4_frame(const Ipv4Fields& fields, const Bytes& l4) {
  return ethernet(kEthertypeIpv4, ipv4(fields, l4));
}

std::vector<VerdictCase> single_packet_cases() {
  const Bytes tcp_to_pod_80 = tcp_packet(kPeer, 40000, kPod, 80);
  return {
      // Endpoint lookup: fail closed until the agent registered the pod.
      {"unknown endpoint, to_pod", std::nullopt, {}, Program::kToPod, tcp_to_pod_80,
       MS_REASON_DROP_UNKNOWN_ENDPOINT},
      {"unknown endpoint, from_pod", std::nullopt, {}, Program::kFromPod,
       tcp_packet(kPod, 40000, kPeer, 80), MS_REASON_DROP_UNKNOWN_ENDPOINT},
      {"unknown endpoint, even ARP", std::nullopt, {}, Program::kToPod, arp_request(kPeer, kPod),
       MS_REASON_DROP_UNKNOWN_ENDPOINT},

      // Isolation is per direction.
      {"not isolated at all", 0, {}, Program::kToPod, tcp_to_pod_80,
       MS_REASON_ALLOW_NOT_ISOLATED},
      {"only egress isolated, ingress packet", kEgressIsolated, {}, Program::kToPod,
       tcp_to_pod_80, MS_REASON_ALLOW_NOT_ISOLATED},
      {"only ingress isolated, egress packet", kIngressIsolated, {}, Program::kFromPod,
       tcp_packet(kPod, 40000, kPeer, 80), MS_REASON_ALLOW_NOT_ISOLATED},

      // Exact-match policy for a peer pod.
      {"isolated, no entry", kIngressIsolated, {}, Program::kToPod, tcp_to_pod_80,
       MS_REASON_DROP_POLICY},
      {"exact allow proto+port", kIngressIsolated, {exact(MS_DIR_INGRESS, kPeer, kProtoTcp, 80)},
       Program::kToPod, tcp_to_pod_80, MS_REASON_ALLOW_POLICY},
      {"exact allow other port", kIngressIsolated, {exact(MS_DIR_INGRESS, kPeer, kProtoTcp, 80)},
       Program::kToPod, tcp_packet(kPeer, 40000, kPod, 81), MS_REASON_DROP_POLICY},
      {"exact allow other proto", kIngressIsolated, {exact(MS_DIR_INGRESS, kPeer, kProtoTcp, 80)},
       Program::kToPod, udp_packet(kPeer, 40000, kPod, 80), MS_REASON_DROP_POLICY},
      {"exact allow other peer", kIngressIsolated, {exact(MS_DIR_INGRESS, kPeer, kProtoTcp, 80)},
       Program::kToPod, tcp_packet(kOtherPeer, 40000, kPod, 80), MS_REASON_DROP_POLICY},
      {"exact allow for the other direction", kBothIsolated,
       {exact(MS_DIR_EGRESS, kPeer, kProtoTcp, 80)}, Program::kToPod, tcp_to_pod_80,
       MS_REASON_DROP_POLICY},
      {"exact allow any port", kIngressIsolated, {exact(MS_DIR_INGRESS, kPeer, kProtoTcp, 0)},
       Program::kToPod, tcp_packet(kPeer, 40000, kPod, 8080), MS_REASON_ALLOW_POLICY},
      {"exact allow any proto", kIngressIsolated, {exact(MS_DIR_INGRESS, kPeer, 0, 0)},
       Program::kToPod, udp_packet(kPeer, 40000, kPod, 53), MS_REASON_ALLOW_POLICY},
      {"exact DENY entry does not allow", kIngressIsolated,
       {exact(MS_DIR_INGRESS, kPeer, kProtoTcp, 80, MS_ACTION_DENY)}, Program::kToPod,
       tcp_to_pod_80, MS_REASON_DROP_POLICY},
      {"egress exact allow", kEgressIsolated, {exact(MS_DIR_EGRESS, kPeer, kProtoTcp, 5432)},
       Program::kFromPod, tcp_packet(kPod, 40000, kPeer, 5432), MS_REASON_ALLOW_POLICY},
      {"egress matches the destination, not the source", kEgressIsolated,
       {exact(MS_DIR_EGRESS, kPod, kProtoTcp, 5432)}, Program::kFromPod,
       tcp_packet(kPod, 40000, kPeer, 5432), MS_REASON_DROP_POLICY},
      {"SCTP port", kIngressIsolated, {exact(MS_DIR_INGRESS, kPeer, kProtoSctp, 3868)},
       Program::kToPod,
       ipv4_frame({.src = kPeer, .dst = kPod, .proto = kProtoSctp},
                  sctp_common_header(5000, 3868)),
       MS_REASON_ALLOW_POLICY},
      {"ICMP non-echo needs a policy", kIngressIsolated, {}, Program::kToPod,
       icmp_packet(kPeer, kPod, kIcmpDestUnreachable, 0), MS_REASON_DROP_POLICY},
      {"ICMP echo id is not a port", kIngressIsolated,
       {exact(MS_DIR_INGRESS, kPeer, kProtoIcmp, 80), cidr(MS_DIR_INGRESS, kPeer, 32, kProtoIcmp, 80,
                                                           MS_ACTION_ALLOW)},
       Program::kToPod, icmp_packet(kPeer, kPod, kIcmpEchoRequest, 80), MS_REASON_DROP_POLICY},
      {"ICMP non-echo, proto allowed", kIngressIsolated,
       {exact(MS_DIR_INGRESS, kPeer, kProtoIcmp, 0)}, Program::kToPod,
       icmp_packet(kPeer, kPod, kIcmpDestUnreachable, 0), MS_REASON_ALLOW_POLICY},
      {"IPv4 options move L4", kIngressIsolated, {exact(MS_DIR_INGRESS, kPeer, kProtoTcp, 80)},
       Program::kToPod,
       ipv4_frame({.src = kPeer, .dst = kPod, .proto = kProtoTcp, .ihl = 6},
                  tcp_header(40000, 80)),
       MS_REASON_ALLOW_POLICY},

      // CIDR (ipBlock) policy in the LPM trie.
      {"LPM allow CIDR", kIngressIsolated,
       {cidr(MS_DIR_INGRESS, "10.244.3.0", 24, kProtoTcp, 443, MS_ACTION_ALLOW)},
       Program::kToPod, tcp_packet("10.244.3.7", 40000, kPod, 443), MS_REASON_ALLOW_POLICY},
      {"LPM outside CIDR", kIngressIsolated,
       {cidr(MS_DIR_INGRESS, "10.244.3.0", 24, kProtoTcp, 443, MS_ACTION_ALLOW)},
       Program::kToPod, tcp_packet("10.244.4.7", 40000, kPod, 443), MS_REASON_DROP_POLICY},
      {"LPM except inside CIDR", kIngressIsolated,
       {cidr(MS_DIR_INGRESS, "10.244.3.0", 24, kProtoTcp, 443, MS_ACTION_ALLOW),
        cidr(MS_DIR_INGRESS, "10.244.3.128", 25, kProtoTcp, 443, MS_ACTION_DENY)},
       Program::kToPod, tcp_packet("10.244.3.200", 40000, kPod, 443), MS_REASON_DROP_POLICY},
      {"LPM CIDR outside its except", kIngressIsolated,
       {cidr(MS_DIR_INGRESS, "10.244.3.0", 24, kProtoTcp, 443, MS_ACTION_ALLOW),
        cidr(MS_DIR_INGRESS, "10.244.3.128", 25, kProtoTcp, 443, MS_ACTION_DENY)},
       Program::kToPod, tcp_packet("10.244.3.100", 40000, kPod, 443), MS_REASON_ALLOW_POLICY},
      {"LPM any port", kIngressIsolated,
       {cidr(MS_DIR_INGRESS, "10.244.0.0", 16, kProtoUdp, 0, MS_ACTION_ALLOW)}, Program::kToPod,
       udp_packet("10.244.9.9", 40000, kPod, 5353), MS_REASON_ALLOW_POLICY},
      {"LPM most specific combo decides (DENY)", kIngressIsolated,
       {cidr(MS_DIR_INGRESS, "10.244.3.7", 32, kProtoTcp, 443, MS_ACTION_DENY),
        cidr(MS_DIR_INGRESS, "10.244.0.0", 16, 0, 0, MS_ACTION_ALLOW)},
       Program::kToPod, tcp_packet("10.244.3.7", 40000, kPod, 443), MS_REASON_DROP_POLICY},
      {"LPM falls through to any proto", kIngressIsolated,
       {cidr(MS_DIR_INGRESS, "10.244.3.7", 32, kProtoTcp, 443, MS_ACTION_DENY),
        cidr(MS_DIR_INGRESS, "10.244.0.0", 16, 0, 0, MS_ACTION_ALLOW)},
       Program::kToPod, tcp_packet("10.244.3.7", 40000, kPod, 22), MS_REASON_ALLOW_POLICY},
      {"exact allow beats LPM deny", kIngressIsolated,
       {exact(MS_DIR_INGRESS, kPeer, kProtoTcp, 80),
        cidr(MS_DIR_INGRESS, "10.244.2.0", 24, kProtoTcp, 80, MS_ACTION_DENY)},
       Program::kToPod, tcp_to_pod_80, MS_REASON_ALLOW_POLICY},

      // Final verdicts of the policy tiers (cluster Deny, Audit): the first
      // entry found decides, whatever its action.
      {"exact DENY decides before a less specific ALLOW", kIngressIsolated,
       {exact(MS_DIR_INGRESS, kPeer, kProtoTcp, 80, MS_ACTION_DENY),
        exact(MS_DIR_INGRESS, kPeer, kProtoTcp, 0)},
       Program::kToPod, tcp_to_pod_80, MS_REASON_DROP_POLICY},
      {"exact ALLOW_AUDIT allows, counted as audit", kIngressIsolated,
       {exact(MS_DIR_INGRESS, kPeer, kProtoTcp, 80, MS_ACTION_ALLOW_AUDIT)}, Program::kToPod,
       tcp_to_pod_80, MS_REASON_ALLOW_AUDIT},
      {"LPM ALLOW_AUDIT allows, counted as audit", kIngressIsolated,
       {cidr(MS_DIR_INGRESS, "10.244.2.0", 24, 0, 0, MS_ACTION_ALLOW_AUDIT)}, Program::kToPod,
       tcp_to_pod_80, MS_REASON_ALLOW_AUDIT},
      {"unknown action fails closed", kIngressIsolated,
       {exact(MS_DIR_INGRESS, kPeer, kProtoTcp, 80, static_cast<ms_action>(7))}, Program::kToPod,
       tcp_to_pod_80, MS_REASON_DROP_POLICY},
      {"not isolated, no lookup flag: entries are not consulted", 0,
       {exact(MS_DIR_INGRESS, kPeer, kProtoTcp, 80, MS_ACTION_DENY)}, Program::kToPod, tcp_to_pod_80,
       MS_REASON_ALLOW_NOT_ISOLATED},
      {"not isolated with the lookup flag: a DENY entry drops", MS_EP_F_INGRESS_LOOKUP,
       {exact(MS_DIR_INGRESS, kPeer, kProtoTcp, 80, MS_ACTION_DENY)}, Program::kToPod, tcp_to_pod_80,
       MS_REASON_DROP_POLICY},
      {"not isolated with the lookup flag: a miss allows", MS_EP_F_INGRESS_LOOKUP,
       {exact(MS_DIR_INGRESS, kPeer, kProtoTcp, 80, MS_ACTION_DENY)}, Program::kToPod,
       tcp_packet(kOtherPeer, 40000, kPod, 80), MS_REASON_ALLOW_NOT_ISOLATED},
      {"the other direction's lookup flag changes nothing", MS_EP_F_EGRESS_LOOKUP,
       {cidr(MS_DIR_INGRESS, "0.0.0.0", 0, 0, 0, MS_ACTION_DENY)}, Program::kToPod, tcp_to_pod_80,
       MS_REASON_ALLOW_NOT_ISOLATED},
      {"egress lookup flag: an LPM DENY drops", MS_EP_F_EGRESS_LOOKUP,
       {cidr(MS_DIR_EGRESS, "10.244.2.0", 24, kProtoTcp, 0, MS_ACTION_DENY)}, Program::kFromPod,
       tcp_packet(kPod, 40000, kPeer, 443), MS_REASON_DROP_POLICY},

      // Malformed input is dropped whatever the isolation. Frames whose
      // Ethernet, IPv4 or IPv6 header is cut short are refused by
      // BPF_PROG_TEST_RUN itself on recent kernels (EINVAL); the veth
      // injection test covers those.
      {"truncated TCP header", 0, {}, Program::kToPod,
       ipv4_frame({.src = kPeer, .dst = kPod, .proto = kProtoTcp},
                  truncated(tcp_header(40000, 80), 10)),
       MS_REASON_DROP_MALFORMED},
      {"TCP cut off but IPv4 length claims it", kIngressIsolated, {}, Program::kToPod,
       truncated(tcp_to_pod_80, 14 + 20 + 10), MS_REASON_DROP_MALFORMED},
      {"truncated UDP header", 0, {}, Program::kFromPod,
       ipv4_frame({.src = kPod, .dst = kPeer, .proto = kProtoUdp},
                  truncated(udp_datagram(40000, 53), 6)),
       MS_REASON_DROP_MALFORMED},
      {"truncated ICMP header", 0, {}, Program::kToPod,
       ipv4_frame({.src = kPeer, .dst = kPod, .proto = kProtoIcmp},
                  truncated(icmp_message(kIcmpEchoRequest, 1), 4)),
       MS_REASON_DROP_MALFORMED},
      {"ihl below 5", 0, {}, Program::kToPod,
       ipv4_frame({.src = kPeer, .dst = kPod, .proto = kProtoTcp, .ihl = 4},
                  tcp_header(40000, 80)),
       MS_REASON_DROP_MALFORMED},
      {"ihl says more header than the frame has", 0, {}, Program::kToPod,
       truncated(ipv4_frame({.src = kPeer, .dst = kPod, .proto = kProtoUdp, .ihl = 15}, {}),
                 14 + 24),
       MS_REASON_DROP_MALFORMED},
      {"IPv4 total length below header length", 0, {}, Program::kToPod,
       ipv4_frame({.src = kPeer, .dst = kPod, .proto = kProtoTcp, .total_length = 16},
                  tcp_header(40000, 80)),
       MS_REASON_DROP_MALFORMED},
      {"version 6 under IPv4 ethertype", 0, {}, Program::kToPod,
       ipv4_frame({.src = kPeer, .dst = kPod, .proto = kProtoTcp, .version = 6},
                  tcp_header(40000, 80)),
       MS_REASON_DROP_MALFORMED},

      // Other L3: never a bypass for an isolated pod.
      // IPv6 is enforced like IPv4 (ipv6_datapath_test.cc has the details).
      {"IPv6 isolated, no IPv6 entry", kIngressIsolated, {}, Program::kToPod, ipv6_udp(40000, 53),
       MS_REASON_DROP_POLICY},
      {"IPv6 not isolated", kEgressIsolated, {}, Program::kToPod, ipv6_udp(40000, 53),
       MS_REASON_ALLOW_NOT_ISOLATED},
      {"other ethertype isolated", kEgressIsolated, {}, Program::kFromPod,
       ethernet(kEthertypeLldp, Bytes(46, 0)), MS_REASON_DROP_UNSUPPORTED_L3},
      {"other ethertype not isolated", 0, {}, Program::kFromPod,
       ethernet(kEthertypeLldp, Bytes(46, 0)), MS_REASON_ALLOW_NOT_ISOLATED},
      // Cluster-tier Deny on a direction that is not isolated: what cannot
      // be judged is dropped as for an isolated one, or wrapping the
      // traffic in another L3 protocol would bypass the Deny.
      {"other ethertype, egress lookup flag", MS_EP_F_EGRESS_LOOKUP,
       {cidr(MS_DIR_EGRESS, "0.0.0.0", 0, 0, 0, MS_ACTION_DENY)}, Program::kFromPod,
       ethernet(kEthertypeLldp, Bytes(46, 0)), MS_REASON_DROP_UNSUPPORTED_L3},
      {"other ethertype, ingress lookup flag", MS_EP_F_INGRESS_LOOKUP,
       {cidr(MS_DIR_INGRESS, "0.0.0.0", 0, 0, 0, MS_ACTION_DENY)}, Program::kToPod,
       ethernet(kEthertypeLldp, Bytes(46, 0)), MS_REASON_DROP_UNSUPPORTED_L3},
      {"other ethertype, egress lookup flag, only Audit entries", MS_EP_F_EGRESS_LOOKUP,
       {cidr(MS_DIR_EGRESS, "0.0.0.0", 0, 0, 0, MS_ACTION_ALLOW_AUDIT)}, Program::kFromPod,
       ethernet(kEthertypeLldp, Bytes(46, 0)), MS_REASON_ALLOW_AUDIT},
      {"other ethertype, only the other direction's lookup flag", MS_EP_F_INGRESS_LOOKUP,
       {cidr(MS_DIR_INGRESS, "0.0.0.0", 0, 0, 0, MS_ACTION_DENY)}, Program::kFromPod,
       ethernet(kEthertypeLldp, Bytes(46, 0)), MS_REASON_ALLOW_NOT_ISOLATED},
      {"ARP isolated", kBothIsolated, {}, Program::kToPod, arp_request(kPeer, kPod),
       MS_REASON_ALLOW_NON_IP},
      {"ARP from the pod", kBothIsolated, {}, Program::kFromPod, arp_request(kPod, kPeer),
       MS_REASON_ALLOW_NON_IP},

      // Anti-spoofing: a pod may only send from its own address, whatever
      // its isolation and whatever policy or session would say.
      {"spoofed source, not isolated", 0, {}, Program::kFromPod,
       tcp_packet(kOtherPeer, 40000, kPeer, 80), MS_REASON_DROP_SPOOFED_SOURCE},
      {"spoofed source, egress allowed to anyone", kEgressIsolated,
       {cidr(MS_DIR_EGRESS, "0.0.0.0", 0, 0, 0, MS_ACTION_ALLOW)}, Program::kFromPod,
       tcp_packet(kOtherPeer, 40000, kPeer, 80), MS_REASON_DROP_SPOOFED_SOURCE},
      {"spoofed source as a non-first fragment", 0, {}, Program::kFromPod,
       ipv4_frame({.src = kOtherPeer, .dst = kPeer, .proto = kProtoUdp, .fragment_offset = 185},
                  Bytes(32, 0xCD)),
       MS_REASON_DROP_SPOOFED_SOURCE},
      {"own source, not isolated", 0, {}, Program::kFromPod, tcp_packet(kPod, 40000, kPeer, 80),
       MS_REASON_ALLOW_NOT_ISOLATED},
      {"any source towards the pod is fine", 0, {}, Program::kToPod,
       tcp_packet(kOtherPeer, 40000, kPod, 80), MS_REASON_ALLOW_NOT_ISOLATED},

      // Fragments: only the first one has ports.
      {"non-first fragment isolated", kIngressIsolated,
       {exact(MS_DIR_INGRESS, kPeer, 0, 0)}, Program::kToPod,
       ipv4_frame({.src = kPeer, .dst = kPod, .proto = kProtoUdp, .fragment_offset = 185},
                  Bytes(32, 0xCD)),
       MS_REASON_DROP_FRAGMENT},
      {"non-first fragment not isolated", 0, {}, Program::kToPod,
       ipv4_frame({.src = kPeer, .dst = kPod, .proto = kProtoUdp, .fragment_offset = 185},
                  Bytes(32, 0xCD)),
       MS_REASON_ALLOW_NOT_ISOLATED},
      // The first fragment of a datagram a cluster-tier Deny covers is
      // dropped by policy; its later fragments must not pass either.
      {"first fragment, lookup flag, denied", MS_EP_F_INGRESS_LOOKUP,
       {exact(MS_DIR_INGRESS, kPeer, kProtoUdp, 53, MS_ACTION_DENY)}, Program::kToPod,
       ipv4_frame({.src = kPeer, .dst = kPod, .proto = kProtoUdp, .more_fragments = true},
                  udp_datagram(40000, 53, 64)),
       MS_REASON_DROP_POLICY},
      {"non-first fragment, lookup flag", MS_EP_F_INGRESS_LOOKUP,
       {exact(MS_DIR_INGRESS, kPeer, kProtoUdp, 53, MS_ACTION_DENY)}, Program::kToPod,
       ipv4_frame({.src = kPeer, .dst = kPod, .proto = kProtoUdp, .fragment_offset = 185},
                  Bytes(32, 0xCD)),
       MS_REASON_DROP_FRAGMENT},
      {"non-first fragment, egress lookup flag", MS_EP_F_EGRESS_LOOKUP,
       {cidr(MS_DIR_EGRESS, "10.244.2.0", 24, 0, 0, MS_ACTION_DENY)}, Program::kFromPod,
       ipv4_frame({.src = kPod, .dst = kPeer, .proto = kProtoTcp, .fragment_offset = 3},
                  Bytes(32, 0xCD)),
       MS_REASON_DROP_FRAGMENT},
      // A direction whose entries only audit (an Audit policy) or allow
      // drops nothing: the fragment passes, counted as audit where an
      // enforced policy would have dropped it.
      {"non-first fragment, lookup flag, only Audit entries", MS_EP_F_INGRESS_LOOKUP,
       {cidr(MS_DIR_INGRESS, "0.0.0.0", 0, 0, 0, MS_ACTION_ALLOW_AUDIT),
        exact(MS_DIR_INGRESS, kPeer, kProtoUdp, 53, MS_ACTION_ALLOW)},
       Program::kToPod,
       ipv4_frame({.src = kPeer, .dst = kPod, .proto = kProtoUdp, .fragment_offset = 185},
                  Bytes(32, 0xCD)),
       MS_REASON_ALLOW_AUDIT},
      {"non-first fragment, lookup flag, only Allow entries", MS_EP_F_INGRESS_LOOKUP,
       {exact(MS_DIR_INGRESS, kPeer, kProtoUdp, 53, MS_ACTION_ALLOW)}, Program::kToPod,
       ipv4_frame({.src = kPeer, .dst = kPod, .proto = kProtoUdp, .fragment_offset = 185},
                  Bytes(32, 0xCD)),
       MS_REASON_ALLOW_NOT_ISOLATED},
      {"non-first fragment, lookup flag, Audit and Deny entries", MS_EP_F_INGRESS_LOOKUP,
       {cidr(MS_DIR_INGRESS, "0.0.0.0", 0, 0, 0, MS_ACTION_ALLOW_AUDIT),
        exact(MS_DIR_INGRESS, kOtherPeer, kProtoTcp, 22, MS_ACTION_DENY)},
       Program::kToPod,
       ipv4_frame({.src = kPeer, .dst = kPod, .proto = kProtoUdp, .fragment_offset = 185},
                  Bytes(32, 0xCD)),
       MS_REASON_DROP_FRAGMENT},
      {"non-first fragment, only the other direction's lookup flag", MS_EP_F_EGRESS_LOOKUP,
       {cidr(MS_DIR_EGRESS, "0.0.0.0", 0, 0, 0, MS_ACTION_DENY)}, Program::kToPod,
       ipv4_frame({.src = kPeer, .dst = kPod, .proto = kProtoUdp, .fragment_offset = 185},
                  Bytes(32, 0xCD)),
       MS_REASON_ALLOW_NOT_ISOLATED},
      {"first fragment judged by its ports", kIngressIsolated,
       {exact(MS_DIR_INGRESS, kPeer, kProtoUdp, 53)}, Program::kToPod,
       ipv4_frame({.src = kPeer, .dst = kPod, .proto = kProtoUdp, .more_fragments = true},
                  udp_datagram(40000, 53, 64)),
       MS_REASON_ALLOW_POLICY},
  };
}

TEST_CASE("each packet gets the expected verdict and counter", "[bpf][privileged]") {
  auto datapath = load_or_skip();
  if (!datapath) return;

  // Catch re-runs the test case from the top for each section, so every
  // case starts from a freshly loaded object with empty maps.
  const std::uint32_t endpoint_id = 101;
  for (const VerdictCase& verdict_case : single_packet_cases()) {
    SECTION(verdict_case.name) {
      if (verdict_case.endpoint_flags) {
        datapath->set_endpoint(endpoint_id, *verdict_case.endpoint_flags, kPod, kTestRunIfindex, 1,
                               lookup_actions_of(*verdict_case.endpoint_flags, verdict_case.policy));
      } else {
        datapath->remove_endpoint();
      }
      for (const PolicyEntry& entry : verdict_case.policy) {
        if (entry.map == PolicyEntry::Map::kExact) {
          datapath->put_exact(endpoint_id, entry.direction, entry.peer, entry.proto, entry.port,
                              entry.action);
        } else {
          datapath->put_lpm(endpoint_id, entry.direction, entry.peer, entry.prefix_length,
                            entry.proto, entry.port, entry.action);
        }
      }
      check_verdict(*datapath, verdict_case.program, verdict_case.frame, verdict_case.expected);
    }
  }
}

TEST_CASE("reply of an admitted TCP flow passes, a fresh flow does not", "[bpf][privileged]") {
  auto datapath = load_or_skip();
  if (!datapath) return;
  datapath->set_endpoint(1, kBothIsolated, kPod);
  datapath->put_exact(1, MS_DIR_INGRESS, kPeer, kProtoTcp, 80, MS_ACTION_ALLOW);

  // Before anything was admitted the server cannot talk to the client.
  check_verdict(*datapath, Program::kFromPod, tcp_packet(kPod, 80, kPeer, 40000),
                MS_REASON_DROP_POLICY);
  check_verdict(*datapath, Program::kToPod, tcp_packet(kPeer, 40000, kPod, 80),
                MS_REASON_ALLOW_POLICY);
  check_verdict(*datapath, Program::kFromPod, tcp_packet(kPod, 80, kPeer, 40000),
                MS_REASON_ALLOW_SESSION);
  check_verdict(*datapath, Program::kToPod, tcp_packet(kPeer, 40000, kPod, 80),
                MS_REASON_ALLOW_SESSION);
  // Same direction as the reply, but a flow nobody admitted.
  check_verdict(*datapath, Program::kFromPod, tcp_packet(kPod, 80, kPeer, 40001),
                MS_REASON_DROP_POLICY);
  check_verdict(*datapath, Program::kFromPod, tcp_packet(kPod, 80, kOtherPeer, 40000),
                MS_REASON_DROP_POLICY);

  SECTION("sessions belong to one endpoint") {
    datapath->set_endpoint(2, kBothIsolated, kPod);
    check_verdict(*datapath, Program::kFromPod, tcp_packet(kPod, 80, kPeer, 40000),
                  MS_REASON_DROP_POLICY);
  }
}

TEST_CASE("a flow out of a non-isolated direction lets its reply into an isolated one",
          "[bpf][privileged]") {
  auto datapath = load_or_skip();
  if (!datapath) return;
  datapath->set_endpoint(1, kIngressIsolated, kPod);

  check_verdict(*datapath, Program::kFromPod, udp_packet(kPod, 5000, kPeer, 53),
                MS_REASON_ALLOW_NOT_ISOLATED);
  check_verdict(*datapath, Program::kToPod, udp_packet(kPeer, 53, kPod, 5000),
                MS_REASON_ALLOW_SESSION);
  check_verdict(*datapath, Program::kToPod, udp_packet(kPeer, 53, kPod, 5001),
                MS_REASON_DROP_POLICY);
  check_verdict(*datapath, Program::kToPod, udp_packet(kPeer, 54, kPod, 5000),
                MS_REASON_DROP_POLICY);
}

TEST_CASE("ICMP echo reply follows its request, by echo id", "[bpf][privileged]") {
  auto datapath = load_or_skip();
  if (!datapath) return;
  datapath->set_endpoint(1, kBothIsolated, kPod);
  datapath->put_exact(1, MS_DIR_EGRESS, kPeer, kProtoIcmp, 0, MS_ACTION_ALLOW);

  // A reply nobody asked for opens nothing.
  check_verdict(*datapath, Program::kToPod, icmp_packet(kPeer, kPod, kIcmpEchoReply, 7),
                MS_REASON_DROP_POLICY);
  check_verdict(*datapath, Program::kFromPod, icmp_packet(kPod, kPeer, kIcmpEchoRequest, 7),
                MS_REASON_ALLOW_POLICY);
  check_verdict(*datapath, Program::kToPod, icmp_packet(kPeer, kPod, kIcmpEchoReply, 7),
                MS_REASON_ALLOW_SESSION);
  check_verdict(*datapath, Program::kFromPod, icmp_packet(kPod, kPeer, kIcmpEchoRequest, 7),
                MS_REASON_ALLOW_SESSION);
  check_verdict(*datapath, Program::kToPod, icmp_packet(kPeer, kPod, kIcmpEchoReply, 8),
                MS_REASON_DROP_POLICY);
  // The peer cannot start its own ping by reusing our echo id.
  check_verdict(*datapath, Program::kToPod, icmp_packet(kPeer, kPod, kIcmpEchoRequest, 7),
                MS_REASON_DROP_POLICY);
}

TEST_CASE("sessions expire after the configured per-protocol timeout", "[bpf][privileged]") {
  using namespace std::chrono_literals;
  constexpr auto kUdpTimeout = 1000ms;
  auto datapath = load_or_skip([&](microseg_bpf& skeleton) {
    skeleton.rodata->session_timeout_udp_ns =
        std::chrono::duration_cast<std::chrono::nanoseconds>(kUdpTimeout).count();
  });
  if (!datapath) return;
  datapath->set_endpoint(1, kIngressIsolated, kPod);

  const Bytes udp_out = udp_packet(kPod, 5000, kPeer, 53);
  const Bytes udp_reply = udp_packet(kPeer, 53, kPod, 5000);
  const Bytes tcp_out = tcp_packet(kPod, 40000, kPeer, 443);
  const Bytes tcp_reply = tcp_packet(kPeer, 443, kPod, 40000);
  check_verdict(*datapath, Program::kFromPod, udp_out, MS_REASON_ALLOW_NOT_ISOLATED);
  check_verdict(*datapath, Program::kFromPod, tcp_out, MS_REASON_ALLOW_NOT_ISOLATED);

  // Each packet refreshes the session: 1.2 s after it started it is still live.
  std::this_thread::sleep_for(600ms);
  check_verdict(*datapath, Program::kToPod, udp_reply, MS_REASON_ALLOW_SESSION);
  std::this_thread::sleep_for(600ms);
  check_verdict(*datapath, Program::kToPod, udp_reply, MS_REASON_ALLOW_SESSION);

  std::this_thread::sleep_for(kUdpTimeout + 500ms);
  check_verdict(*datapath, Program::kToPod, udp_reply, MS_REASON_DROP_POLICY);
  // TCP keeps its own (default, one hour) timeout.
  check_verdict(*datapath, Program::kToPod, tcp_reply, MS_REASON_ALLOW_SESSION);
  // A new packet out re-creates the expired UDP session.
  check_verdict(*datapath, Program::kFromPod, udp_out, MS_REASON_ALLOW_NOT_ISOLATED);
  check_verdict(*datapath, Program::kToPod, udp_reply, MS_REASON_ALLOW_SESSION);
}

}  // namespace
}  // namespace microseg::test
