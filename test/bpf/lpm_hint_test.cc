// LPM key-shape hints (ms_endpoint.lpm_absent / lpm6_absent, datapath.h):
// the data path skips the LPM lookups of the standard key shapes a hint
// names, and nothing else: not the other shapes, not the other direction or
// family, never the port-interval rung, and the hints of the generation the
// flags name. Each case checks the TC action and that exactly its
// (direction, reason) counter moved. The compiler's side (the hints it
// writes) is checked by policy_compiler_test, the policy property test and
// the policy hammer (hints flipped with the generation under live traffic).
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

namespace microseg::test {
namespace {

constexpr const char* kPod = "10.244.1.10";
constexpr const char* kPeer = "10.244.3.7";
constexpr const char* kPod6 = "fd00:10:244:1::a";
constexpr const char* kPeer6 = "fd00:10:244:3::7";
constexpr std::uint32_t kEndpointId = 101;

constexpr std::uint8_t kPortIn = MS_EP_LPM_ABSENT_PORT(MS_DIR_INGRESS);
constexpr std::uint8_t kProtoIn = MS_EP_LPM_ABSENT_PROTO(MS_DIR_INGRESS);
constexpr std::uint8_t kAnyIn = MS_EP_LPM_ABSENT_ANY(MS_DIR_INGRESS);
constexpr std::uint8_t kEgressAll = MS_EP_LPM_ABSENT_PORT(MS_DIR_EGRESS) | MS_EP_LPM_ABSENT_PROTO(MS_DIR_EGRESS) |
                                    MS_EP_LPM_ABSENT_ANY(MS_DIR_EGRESS);

// One ingress ALLOW for the peer's /24 (or /64) of the given shape.
struct Shape {
  std::uint8_t proto;
  std::uint16_t port;
};
constexpr Shape kTcp443{kProtoTcp, 443};
constexpr Shape kTcpAny{kProtoTcp, 0};
constexpr Shape kAnything{0, 0};

struct HintCase {
  std::string name;
  std::uint8_t lpm_absent;   // IPv4 hints
  std::uint8_t lpm6_absent;  // IPv6 hints
  Shape entry;
  bool v6;
  ms_reason expected;
};

Bytes GreFrame(const std::string& src, const std::string& dst) {
  return ethernet(kEthertypeIpv4, ipv4({.src = src, .dst = dst, .proto = 47}, Bytes(8, 0)));
}

TEST_CASE("LPM shape hints: a marked shape is skipped, every other lookup is done", "[bpf][privileged]") {
  const std::vector<HintCase> cases = {
      {"no hint: found", 0, 0, kTcp443, false, MS_REASON_ALLOW_POLICY},
      {"(proto, port) marked absent: skipped", kPortIn, 0, kTcp443, false, MS_REASON_DROP_POLICY},
      {"the other shapes marked: (proto, port) found", kProtoIn | kAnyIn, 0, kTcp443, false, MS_REASON_ALLOW_POLICY},
      {"(proto, any port) marked absent: skipped", kProtoIn, 0, kTcpAny, false, MS_REASON_DROP_POLICY},
      {"(proto, any port) found past a marked (proto, port)", kPortIn | kAnyIn, 0, kTcpAny, false,
       MS_REASON_ALLOW_POLICY},
      {"(any, any) marked absent: skipped", kAnyIn, 0, kAnything, false, MS_REASON_DROP_POLICY},
      {"(any, any) found past the two marked shapes", kPortIn | kProtoIn, 0, kAnything, false,
       MS_REASON_ALLOW_POLICY},
      {"the other direction's bits change nothing", kEgressAll, 0, kTcp443, false, MS_REASON_ALLOW_POLICY},
      {"IPv4 hints never skip an IPv6 lookup", MS_EP_LPM_ABSENT_ALL, 0, kTcp443, true, MS_REASON_ALLOW_POLICY},
      {"IPv6 hints skip IPv6 lookups", 0, kPortIn, kTcp443, true, MS_REASON_DROP_POLICY},
      {"IPv6 (any, any) found past the marked shapes", 0, kPortIn | kProtoIn, kAnything, true,
       MS_REASON_ALLOW_POLICY},
      {"IPv6 hints never skip an IPv4 lookup", 0, MS_EP_LPM_ABSENT_ALL, kTcp443, false, MS_REASON_ALLOW_POLICY},
  };
  auto datapath = load_or_skip();
  if (!datapath) return;
  std::uint16_t source_port = 40000;
  for (const HintCase& c : cases) {
    SECTION(c.name) {
      datapath->set_endpoint(kEndpointId, MS_EP_F_INGRESS_ISOLATED, kPod);
      datapath->set_endpoint_ipv6(kPod6);
      datapath->set_lpm_absent(c.lpm_absent, c.lpm6_absent);
      if (c.v6) {
        datapath->put_lpm6(kEndpointId, MS_DIR_INGRESS, "fd00:10:244:3::", 64, c.entry.proto, c.entry.port,
                           MS_ACTION_ALLOW);
        check_verdict(*datapath, Program::kToPod,
                      tcp6_frame(kPeer6, kPod6, {.sport = source_port, .dport = 443, .seq = 1}), c.expected);
      } else {
        datapath->put_lpm(kEndpointId, MS_DIR_INGRESS, "10.244.3.0", 24, c.entry.proto, c.entry.port,
                          MS_ACTION_ALLOW);
        check_verdict(*datapath, Program::kToPod, tcp_packet(kPeer, source_port, kPod, 443), c.expected);
      }
    }
    ++source_port;
  }
}

TEST_CASE("LPM shape hints: a port-less protocol's key is the (proto, any port) shape", "[bpf][privileged]") {
  auto datapath = load_or_skip();
  if (!datapath) return;
  datapath->set_endpoint(kEndpointId, MS_EP_F_INGRESS_ISOLATED, kPod);
  datapath->put_lpm(kEndpointId, MS_DIR_INGRESS, "10.244.3.0", 24, 47, 0, MS_ACTION_ALLOW);
  SECTION("(proto, port) marked: GRE still found") {
    datapath->set_lpm_absent(kPortIn);
    check_verdict(*datapath, Program::kToPod, GreFrame(kPeer, kPod), MS_REASON_ALLOW_POLICY);
  }
  SECTION("(proto, any port) marked: skipped") {
    datapath->set_lpm_absent(kProtoIn);
    check_verdict(*datapath, Program::kToPod, GreFrame(kPeer, kPod), MS_REASON_DROP_POLICY);
  }
}

// Interval keys have no shape: hints that mark every shape leave the port
// -> interval lookup and the (proto, interval) rung of ms_policy_lpm alone.
TEST_CASE("LPM shape hints never skip the port-interval rung", "[bpf][privileged][port-ranges]") {
  auto datapath = load_or_skip();
  if (!datapath) return;
  // Ports 4096-8191: one interval (a /4 port prefix), allowed from the peer's /24.
  ms_lpm_key lookup{};
  lookup.prefixlen = MS_PORT_LOOKUP_FIXED_BITS + 4;
  lookup.endpoint_id = kEndpointId;
  lookup.direction = MS_DIR_INGRESS | MS_DIR_F_PORT_LOOKUP;
  lookup.proto = kProtoTcp;
  lookup.port = htons(4096);
  ms_policy_value interval{};
  interval.action = MS_ACTION_PORT_INTERVAL;
  interval.rule_id = 4096;
  REQUIRE(bpf_map_update_elem(datapath->map_fd("ms_policy_lpm"), &lookup, &interval, BPF_ANY) == 0);
  datapath->put_lpm(kEndpointId, static_cast<ms_direction>(MS_DIR_INGRESS | MS_DIR_F_PORT_INTERVAL), "10.244.3.0",
                    24, kProtoTcp, 4096, MS_ACTION_ALLOW);
  datapath->set_endpoint(kEndpointId, MS_EP_F_INGRESS_ISOLATED | MS_EP_F_PORT_RANGES, kPod);
  datapath->set_lpm_absent(MS_EP_LPM_ABSENT_ALL);
  check_verdict(*datapath, Program::kToPod, tcp_packet(kPeer, 40001, kPod, 5000), MS_REASON_ALLOW_POLICY);
  check_verdict(*datapath, Program::kToPod, tcp_packet(kPeer, 40002, kPod, 8192), MS_REASON_DROP_POLICY);
}

// The hints share the load of the flags: the generation bit and the hints
// describing that generation's entries are always read together.
TEST_CASE("LPM shape hints are the generation's: a flip switches entries and hints in one update",
          "[bpf][privileged]") {
  auto datapath = load_or_skip();
  if (!datapath) return;
  // Generation 0: (TCP, 443) from the /24. Generation 1: (any, any) from it.
  datapath->put_lpm(kEndpointId, MS_DIR_INGRESS, "10.244.3.0", 24, kProtoTcp, 443, MS_ACTION_ALLOW);
  datapath->put_lpm(kEndpointId | MS_POLICY_GEN_BIT, MS_DIR_INGRESS, "10.244.3.0", 24, 0, 0, MS_ACTION_ALLOW);
  const std::uint8_t gen0_hints = kProtoIn | kAnyIn | kEgressAll;
  const std::uint8_t gen1_hints = kPortIn | kProtoIn | kEgressAll;

  datapath->set_endpoint(kEndpointId, MS_EP_F_INGRESS_ISOLATED, kPod);
  datapath->set_lpm_absent(gen0_hints);
  check_verdict(*datapath, Program::kToPod, tcp_packet(kPeer, 40011, kPod, 443), MS_REASON_ALLOW_POLICY);
  check_verdict(*datapath, Program::kToPod, tcp_packet(kPeer, 40012, kPod, 444), MS_REASON_DROP_POLICY);

  datapath->set_endpoint(kEndpointId, MS_EP_F_INGRESS_ISOLATED | MS_EP_F_POLICY_GEN, kPod);
  datapath->set_lpm_absent(gen1_hints);
  check_verdict(*datapath, Program::kToPod, tcp_packet(kPeer, 40013, kPod, 444), MS_REASON_ALLOW_POLICY);
  check_verdict(*datapath, Program::kToPod, udp_packet(kPeer, 40014, kPod, 53), MS_REASON_ALLOW_POLICY);
}

}  // namespace
}  // namespace microseg::test
