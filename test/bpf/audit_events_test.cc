// Audit events (bpf/audit_events.h): a new flow that only an Audit policy
// lets through is reported once through ms_audit_ev with the rule that would
// have dropped it; Enforce verdicts and packets of tracked sessions report
// nothing; the per-CPU token bucket holds reports back and counts them, and
// so does a full ring. Every packet is also checked for its TC action and
// its one (direction, reason) counter.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <sched.h>

#include <catch2/catch.hpp>
#include <array>
#include <cstring>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "datapath_test_support.h"
#include "ipv6_packet_builder.h"
#include "loaded_datapath.h"
#include "microseg.skel.h"
#include "packet_builder.h"

namespace microseg::test {
namespace {

constexpr std::uint32_t kEndpointId = 42;
constexpr std::uint32_t kPolicyRev = 9;
constexpr const char* kPod = "10.244.1.10";
constexpr const char* kPod6 = "fd00:10:244:1::10";
constexpr std::uint64_t kSecond = 1000000000ULL;
// The test clock starts here: a zero stamp would mean "no time has passed".
constexpr std::uint64_t kClockStart = 1000 * kSecond;

// Rule ids no other entry uses, so an event naming one names that entry.
constexpr std::uint32_t kExactRule = 0xA0D10001;
constexpr std::uint32_t kLpmRule = 0xA0D10002;
constexpr std::uint32_t kExact6Rule = 0xA0D10003;
constexpr std::uint32_t kLpm6Rule = 0xA0D10004;

std::vector<ms_audit_event> drain_events(LoadedDatapath& dp) {
  std::vector<ms_audit_event> events;
  auto on_event = [](void* ctx, void* data, size_t size) -> int {
    auto* out = static_cast<std::vector<ms_audit_event>*>(ctx);
    ms_audit_event event{};
    std::memcpy(&event, data, std::min(size, sizeof event));
    out->push_back(event);
    return 0;
  };
  ring_buffer* ring = ring_buffer__new(bpf_map__fd(dp.skeleton().maps.ms_audit_ev), on_event, &events, nullptr);
  REQUIRE(ring != nullptr);
  const int consumed = ring_buffer__consume(ring);
  ring_buffer__free(ring);
  REQUIRE(consumed >= 0);
  return events;
}

// ms_audit_stats summed over CPUs (bucket fields left out).
ms_audit_stats read_audit_stats(LoadedDatapath& dp) {
  const int cpus = libbpf_num_possible_cpus();
  REQUIRE(cpus > 0);
  std::vector<ms_audit_stats> per_cpu(static_cast<std::size_t>(cpus));
  const std::uint32_t zero = 0;
  REQUIRE(bpf_map_lookup_elem(bpf_map__fd(dp.skeleton().maps.ms_audit_stats), &zero, per_cpu.data()) == 0);
  ms_audit_stats sum{};
  for (const ms_audit_stats& cpu : per_cpu) {
    sum.reported += cpu.reported;
    sum.rate_limited += cpu.rate_limited;
    sum.ring_full += cpu.ring_full;
  }
  return sum;
}

// The token bucket is per CPU: pinned, every test run takes from one bucket.
class PinnedToOneCpu {
 public:
  PinnedToOneCpu() {
    REQUIRE(sched_getaffinity(0, sizeof saved_, &saved_) == 0);
    const int cpu = sched_getcpu();
    REQUIRE(cpu >= 0);
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    REQUIRE(sched_setaffinity(0, sizeof one, &one) == 0);
  }
  ~PinnedToOneCpu() { sched_setaffinity(0, sizeof saved_, &saved_); }
  PinnedToOneCpu(const PinnedToOneCpu&) = delete;
  PinnedToOneCpu& operator=(const PinnedToOneCpu&) = delete;

 private:
  cpu_set_t saved_{};
};

struct ExpectedEvent {
  ms_direction direction;
  std::uint8_t family;
  std::string peer;
  std::uint8_t proto;
  std::uint16_t port;
  std::uint32_t rule_id;
  std::uint8_t policy_gen = 0;
};

std::array<std::uint32_t, 4> peer_words(std::uint8_t family, const std::string& peer) {
  if (family == MS_FAMILY_IPV6) return ipv6_net(peer);
  return {ipv4_net(peer), 0, 0, 0};
}

void check_event(const ms_audit_event& event, const ExpectedEvent& expected, std::uint64_t now) {
  CHECK(event.ktime_ns == now);
  CHECK(event.endpoint_id == kEndpointId);  // never the generation bit
  CHECK(event.policy_rev == kPolicyRev);
  CHECK(event.direction == expected.direction);
  CHECK(event.family == expected.family);
  const auto words = peer_words(expected.family, expected.peer);
  CHECK(std::memcmp(event.peer_addr, words.data(), sizeof event.peer_addr) == 0);
  CHECK(static_cast<unsigned>(event.proto) == expected.proto);
  CHECK(event.port == expected.port);
  CHECK(event.rule_id == expected.rule_id);
  CHECK(static_cast<unsigned>(event.policy_gen) == expected.policy_gen);
}

struct AuditCase {
  std::string name;
  std::uint8_t endpoint_flags;
  std::function<void(LoadedDatapath&, std::uint32_t policy_id)> policy;
  // Packets in order; each is checked for verdict and counter.
  std::vector<std::pair<Program, Bytes>> packets;
  std::vector<ms_reason> expected;
  std::optional<ExpectedEvent> event;  // nullopt: the case reports nothing
  std::uint8_t lookup_actions = 0;     // ms_endpoint.lookup_actions, as the compiler writes it
};

TcpFields syn(std::uint16_t sport, std::uint16_t dport) { return {.sport = sport, .dport = dport, .seq = 1000}; }

std::vector<AuditCase> audit_cases() {
  const std::uint8_t in_isolated = MS_EP_F_INGRESS_ISOLATED;
  const std::uint8_t eg_isolated = MS_EP_F_EGRESS_ISOLATED;
  // What the compiler writes for an Audit-only direction: not isolated, looked up, a catch-all.
  const std::uint8_t in_lookup = MS_EP_F_INGRESS_LOOKUP;
  const std::uint8_t gen = MS_EP_F_POLICY_GEN;
  const std::uint8_t audits_ingress = MS_EP_LOOKUP_AUDITS(MS_DIR_INGRESS);
  return {
      {"IPv4 ingress TCP SYN, exact ALLOW_AUDIT", in_isolated,
       [](LoadedDatapath& dp, std::uint32_t id) {
         dp.put_exact(id, MS_DIR_INGRESS, "10.244.2.20", kProtoTcp, 80, MS_ACTION_ALLOW_AUDIT, kExactRule);
       },
       {{Program::kToPod, tcp_frame("10.244.2.20", kPod, syn(40000, 80))}},
       {MS_REASON_ALLOW_AUDIT},
       ExpectedEvent{MS_DIR_INGRESS, MS_FAMILY_IPV4, "10.244.2.20", kProtoTcp, 80, kExactRule}},
      {"IPv4 egress UDP, LPM ALLOW_AUDIT; its second datagram is the session's", eg_isolated,
       [](LoadedDatapath& dp, std::uint32_t id) {
         dp.put_lpm(id, MS_DIR_EGRESS, "10.244.3.0", 24, kProtoUdp, 53, MS_ACTION_ALLOW_AUDIT, kLpmRule);
       },
       {{Program::kFromPod, udp_packet(kPod, 41000, "10.244.3.7", 53)},
        {Program::kFromPod, udp_packet(kPod, 41000, "10.244.3.7", 53)},
        {Program::kToPod, udp_packet("10.244.3.7", 53, kPod, 41000)}},
       {MS_REASON_ALLOW_AUDIT, MS_REASON_ALLOW_SESSION, MS_REASON_ALLOW_SESSION},
       ExpectedEvent{MS_DIR_EGRESS, MS_FAMILY_IPV4, "10.244.3.7", kProtoUdp, 53, kLpmRule}},
      {"Audit-only direction: catch-all under the other generation, ICMP error has no session",
       static_cast<std::uint8_t>(in_lookup | gen),
       [](LoadedDatapath& dp, std::uint32_t id) {
         dp.put_lpm(id, MS_DIR_INGRESS, "0.0.0.0", 0, 0, 0, MS_ACTION_ALLOW_AUDIT, kLpmRule);
       },
       {{Program::kToPod, icmp_packet("10.244.4.4", kPod, kIcmpDestUnreachable, 0)}},
       {MS_REASON_ALLOW_AUDIT},
       ExpectedEvent{MS_DIR_INGRESS, MS_FAMILY_IPV4, "10.244.4.4", kProtoIcmp, 0, kLpmRule, 1},
       audits_ingress},
      // Counted as audit from lookup_actions, before any entry is looked
      // up: there is no rule id, so no event (an event would have to
      // invent one).
      {"Audit-only direction: a later IPv4 fragment is counted as audit, not reported", in_lookup,
       [](LoadedDatapath& dp, std::uint32_t id) {
         dp.put_lpm(id, MS_DIR_INGRESS, "0.0.0.0", 0, 0, 0, MS_ACTION_ALLOW_AUDIT, kLpmRule);
       },
       {{Program::kToPod,
         ethernet(kEthertypeIpv4, ipv4({.src = "10.244.4.4", .dst = kPod, .proto = kProtoUdp, .fragment_offset = 185},
                                       Bytes(32, 0xCD)))}},
       {MS_REASON_ALLOW_AUDIT},
       std::nullopt,
       audits_ingress},
      {"Audit-only direction: a later IPv6 fragment is counted as audit, not reported", in_lookup,
       [](LoadedDatapath& dp, std::uint32_t id) {
         dp.put_lpm6(id, MS_DIR_INGRESS, "::", 0, 0, 0, MS_ACTION_ALLOW_AUDIT, kLpm6Rule);
       },
       {{Program::kToPod, ipv6_frame({.src = "fd00:10:244:4::4", .dst = kPod6, .extensions = {fragment_header(185, true)}},
                                     kProtoUdp, Bytes(32, 0xCD))}},
       {MS_REASON_ALLOW_AUDIT},
       std::nullopt,
       audits_ingress},
      {"IPv6 ingress TCP SYN, exact ALLOW_AUDIT", in_isolated,
       [](LoadedDatapath& dp, std::uint32_t id) {
         dp.put_exact6(id, MS_DIR_INGRESS, "fd00:10:244:2::20", kProtoTcp, 8443, MS_ACTION_ALLOW_AUDIT,
                    kExact6Rule);
       },
       {{Program::kToPod, tcp6_frame("fd00:10:244:2::20", kPod6, syn(40001, 8443))}},
       {MS_REASON_ALLOW_AUDIT},
       ExpectedEvent{MS_DIR_INGRESS, MS_FAMILY_IPV6, "fd00:10:244:2::20", kProtoTcp, 8443, kExact6Rule}},
      {"IPv6 egress UDP, LPM ALLOW_AUDIT", eg_isolated,
       [](LoadedDatapath& dp, std::uint32_t id) {
         dp.put_lpm6(id, MS_DIR_EGRESS, "fd00:10:244:3::", 64, kProtoUdp, 0, MS_ACTION_ALLOW_AUDIT, kLpm6Rule);
       },
       {{Program::kFromPod, udp6_frame(kPod6, 41001, "fd00:10:244:3::9", 5353)},
        {Program::kFromPod, udp6_frame(kPod6, 41001, "fd00:10:244:3::9", 5353)}},
       {MS_REASON_ALLOW_AUDIT, MS_REASON_ALLOW_SESSION},
       ExpectedEvent{MS_DIR_EGRESS, MS_FAMILY_IPV6, "fd00:10:244:3::9", kProtoUdp, 5353, kLpm6Rule}},
      {"TCP picked up mid-stream: judged as opened by the pod, reported with the pod's port",
       static_cast<std::uint8_t>(in_isolated | eg_isolated),
       [](LoadedDatapath& dp, std::uint32_t id) {
         dp.put_exact(id, MS_DIR_EGRESS, "10.244.2.30", kProtoTcp, 5432, MS_ACTION_ALLOW_AUDIT, kExactRule);
       },
       {{Program::kToPod,
         tcp_frame("10.244.2.30", kPod, {.sport = 5432, .dport = 42000, .seq = 7, .ack = 9, .flags = kTcpAck})}},
       {MS_REASON_ALLOW_AUDIT},
       ExpectedEvent{MS_DIR_EGRESS, MS_FAMILY_IPV4, "10.244.2.30", kProtoTcp, 5432, kExactRule}},
      // Enforce verdicts report nothing.
      {"Enforce ALLOW reports nothing", in_isolated,
       [](LoadedDatapath& dp, std::uint32_t id) {
         dp.put_exact(id, MS_DIR_INGRESS, "10.244.2.20", kProtoTcp, 80, MS_ACTION_ALLOW, kExactRule);
         dp.put_exact6(id, MS_DIR_INGRESS, "fd00:10:244:2::20", kProtoUdp, 0, MS_ACTION_ALLOW, kExact6Rule);
       },
       {{Program::kToPod, tcp_frame("10.244.2.20", kPod, syn(40002, 80))},
        {Program::kToPod, udp6_frame("fd00:10:244:2::20", 40002, kPod6, 53)}},
       {MS_REASON_ALLOW_POLICY, MS_REASON_ALLOW_POLICY},
       std::nullopt},
      {"Enforce DENY and the isolation default report nothing", in_isolated,
       [](LoadedDatapath& dp, std::uint32_t id) {
         dp.put_exact(id, MS_DIR_INGRESS, "10.244.2.20", kProtoTcp, 80, MS_ACTION_DENY, kExactRule);
         dp.put_lpm6(id, MS_DIR_INGRESS, "::", 0, 0, 0, MS_ACTION_DENY, kLpm6Rule);
       },
       {{Program::kToPod, tcp_frame("10.244.2.20", kPod, syn(40003, 80))},
        {Program::kToPod, tcp_frame("10.244.2.21", kPod, syn(40003, 80))},
        {Program::kToPod, tcp6_frame("fd00:10:244:2::20", kPod6, syn(40003, 80))}},
       {MS_REASON_DROP_POLICY, MS_REASON_DROP_POLICY, MS_REASON_DROP_POLICY},
       std::nullopt},
      {"not isolated, nothing to look up: reports nothing", 0, [](LoadedDatapath&, std::uint32_t) {},
       {{Program::kToPod, tcp_frame("10.244.2.20", kPod, syn(40004, 80))}},
       {MS_REASON_ALLOW_NOT_ISOLATED},
       std::nullopt},
  };
}

std::unique_ptr<LoadedDatapath> load_with_test_clock(std::uint64_t cost_ns, std::uint32_t burst) {
  return load_or_skip([&](microseg_bpf& skeleton) {
    skeleton.rodata->use_test_clock = 1;
    skeleton.rodata->audit_event_cost_ns = cost_ns;
    skeleton.rodata->audit_event_burst = burst;
  });
}

TEST_CASE("a new flow that only an Audit policy allows is reported once, with its rule",
          "[bpf][privileged][audit]") {
  for (const AuditCase& audit_case : audit_cases()) {
    SECTION(audit_case.name) {
      // A fresh object per case: no session or entry of another case is left.
      auto datapath = load_with_test_clock(kSecond, 100);
      if (!datapath) return;
      datapath->set_clock(kClockStart);
      datapath->set_endpoint(kEndpointId, audit_case.endpoint_flags, kPod, kTestRunIfindex, kPolicyRev,
                             audit_case.lookup_actions);
      datapath->set_endpoint_ipv6(kPod6);
      audit_case.policy(*datapath, ms_policy_id(kEndpointId, audit_case.endpoint_flags));

      REQUIRE(audit_case.packets.size() == audit_case.expected.size());
      for (std::size_t i = 0; i < audit_case.packets.size(); ++i) {
        INFO("packet " << i);
        const auto& [program, frame] = audit_case.packets[i];
        check_verdict(*datapath, program, frame, audit_case.expected[i]);
      }

      const std::vector<ms_audit_event> events = drain_events(*datapath);
      const ms_audit_stats stats = read_audit_stats(*datapath);
      CHECK(stats.rate_limited == 0);
      CHECK(stats.ring_full == 0);
      if (!audit_case.event) {
        CHECK(events.empty());
        CHECK(stats.reported == 0);
      } else {
        REQUIRE(events.size() == 1);
        CHECK(stats.reported == 1);
        check_event(events[0], *audit_case.event, kClockStart);
      }
    }
  }
}

TEST_CASE("the per-CPU token bucket holds audit reports back and counts them; verdicts stay",
          "[bpf][privileged][audit]") {
  constexpr std::uint32_t kBurst = 2;
  auto datapath = load_with_test_clock(kSecond, kBurst);  // one report per second, two at once
  if (!datapath) return;
  PinnedToOneCpu pinned;
  datapath->set_clock(kClockStart);
  datapath->set_endpoint(kEndpointId, MS_EP_F_INGRESS_ISOLATED, kPod, kTestRunIfindex, kPolicyRev);
  datapath->put_lpm(kEndpointId, MS_DIR_INGRESS, "10.244.0.0", 16, 0, 0, MS_ACTION_ALLOW_AUDIT, kLpmRule);

  std::uint16_t next_port = 30000;
  const auto new_flows = [&](int count) {
    for (int i = 0; i < count; ++i) {
      check_verdict(*datapath, Program::kToPod, udp_packet("10.244.9.9", next_port++, kPod, 80),
                    MS_REASON_ALLOW_AUDIT);
    }
  };

  new_flows(5);
  CHECK(drain_events(*datapath).size() == kBurst);
  ms_audit_stats stats = read_audit_stats(*datapath);
  CHECK(stats.reported == kBurst);
  CHECK(stats.rate_limited == 3);

  // Half a second refills half a token: still nothing.
  datapath->set_clock(kClockStart + kSecond / 2);
  new_flows(1);
  CHECK(drain_events(*datapath).empty());
  CHECK(read_audit_stats(*datapath).rate_limited == 4);

  // One second after the burst: one token, one report.
  datapath->set_clock(kClockStart + kSecond);
  new_flows(2);
  const std::vector<ms_audit_event> events = drain_events(*datapath);
  REQUIRE(events.size() == 1);
  CHECK(events[0].ktime_ns == kClockStart + kSecond);
  CHECK(events[0].port == 80);
  stats = read_audit_stats(*datapath);
  CHECK(stats.reported == kBurst + 1);
  CHECK(stats.rate_limited == 5);

  // A long quiet spell refills the bucket to the burst, no further.
  datapath->set_clock(kClockStart + 3600 * kSecond);
  new_flows(4);
  CHECK(drain_events(*datapath).size() == kBurst);
  CHECK(read_audit_stats(*datapath).rate_limited == 7);
}

TEST_CASE("audit reports that find the ring buffer full are counted", "[bpf][privileged][audit]") {
  auto datapath = load_with_test_clock(0, 0);  // cost 0: no rate limit
  if (!datapath) return;
  datapath->set_clock(kClockStart);
  datapath->set_endpoint(kEndpointId, MS_EP_F_INGRESS_ISOLATED, kPod, kTestRunIfindex, kPolicyRev);
  datapath->put_lpm(kEndpointId, MS_DIR_INGRESS, "10.244.0.0", 16, 0, 0, MS_ACTION_ALLOW_AUDIT, kLpmRule);

  // More records than the ring holds (64 pages of 48-byte events plus headers), none read.
  const std::uint32_t ring_bytes = bpf_map__max_entries(datapath->skeleton().maps.ms_audit_ev);
  const int flows = static_cast<int>(ring_bytes / sizeof(ms_audit_event)) + 100;
  for (int i = 0; i < flows; ++i) {
    const std::string peer = "10.244." + std::to_string(10 + i / 250) + "." + std::to_string(1 + i % 250);
    const RunResult result = datapath->run(Program::kToPod, udp_packet(peer, 20000, kPod, 53));
    REQUIRE(result.tc_action == tc_action_for(MS_REASON_ALLOW_AUDIT));
  }
  const ms_audit_stats stats = read_audit_stats(*datapath);
  CHECK(stats.rate_limited == 0);
  CHECK(stats.ring_full > 0);
  CHECK(stats.reported + stats.ring_full == static_cast<std::uint64_t>(flows));
  CHECK(drain_events(*datapath).size() == stats.reported);
}

}  // namespace
}  // namespace microseg::test
