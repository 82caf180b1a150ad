// The agent's session sweeper on a real session map: expired entries go,
// live ones stay, and the half-open counters are corrected from what is left
// without losing the SYNs the data path counts while the sweep runs.
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <netinet/in.h>

#include <catch2/catch.hpp>
#include <cstring>

#include "datapath_test_support.h"
#include "loaded_datapath.h"
#include "microseg.skel.h"
#include "ipv6_packet_builder.h"
#include "packet_builder.h"
#include "session_sweeper.h"

namespace microseg::test {
namespace {

ms_session_key key_of(std::uint32_t endpoint_id, std::uint8_t proto, std::uint16_t pod_port) {
  return {.endpoint_id = endpoint_id,
          .pod_addr = ipv4_net("10.244.1.10"),
          .peer_addr = ipv4_net("10.244.2.20"),
          .pod_port = htons(pod_port),
          .peer_port = htons(80),
          .proto = proto,
          .pad = {}};
}

ms_session session_of(std::uint64_t last_seen_ns, std::uint8_t tcp_state, std::uint8_t flags) {
  ms_session session{};
  session.last_seen_ns = last_seen_ns;
  session.policy_rev = 1;
  session.tcp_state = tcp_state;
  session.flags = flags;
  return session;
}

TEST_CASE("the sweeper removes expired sessions and recounts half-open ones",
          "[bpf][privileged][sweeper]") {
  auto datapath = load_or_skip();
  if (!datapath) return;
  constexpr std::uint64_t kSecond = 1'000'000'000ULL;
  const std::uint64_t now = 100'000 * kSecond;  // the sweep's clock, not the machine's

  const auto udp_expired = key_of(7, IPPROTO_UDP, 1000);
  const auto udp_live = key_of(7, IPPROTO_UDP, 1001);
  const auto syn_live = key_of(7, IPPROTO_TCP, 1002);
  const auto syn_expired = key_of(7, IPPROTO_TCP, 1003);
  const auto established_old = key_of(8, IPPROTO_TCP, 1004);  // 40 min idle: live
  const auto time_wait_expired = key_of(8, IPPROTO_TCP, 1005);
  datapath->put_session(udp_expired, session_of(now - 61 * kSecond, MS_TCP_NONE, 0));
  datapath->put_session(udp_live, session_of(now - 30 * kSecond, MS_TCP_NONE, 0));
  datapath->put_session(syn_live, session_of(now, MS_TCP_SYN_SENT, MS_SESSION_F_HALF_OPEN));
  datapath->put_session(syn_expired,
                        session_of(now - 31 * kSecond, MS_TCP_SYN_SENT, MS_SESSION_F_HALF_OPEN));
  datapath->put_session(established_old, session_of(now - 2400 * kSecond, MS_TCP_ESTABLISHED, 0));
  datapath->put_session(time_wait_expired, session_of(now - 121 * kSecond, MS_TCP_TIME_WAIT, 0));
  // Counters that drifted (evictions, races): the sweep rewrites them.
  datapath->put_half_open(7, 50);
  datapath->put_half_open(8, -3);

  SessionSweeper sweeper(datapath->sessions_fd(), datapath->half_open_fd(), datapath->half_open_rebase_fd(),
                         SessionTimeouts{});
  auto result = sweeper.Sweep(now);
  REQUIRE(result.ok());
  CHECK(result->scanned == 6);
  CHECK(result->removed == 3);
  CHECK(result->half_open == 1);
  CHECK(sweeper.removed_total() == 3);
  CHECK(datapath->session_count() == 3);
  CHECK_FALSE(datapath->session(udp_expired).has_value());
  CHECK_FALSE(datapath->session(syn_expired).has_value());
  CHECK_FALSE(datapath->session(time_wait_expired).has_value());
  CHECK(datapath->session(udp_live).has_value());
  CHECK(datapath->session(syn_live).has_value());
  CHECK(datapath->session(established_old).has_value());
  CHECK(datapath->half_open(7) == 1);
  CHECK(datapath->half_open(8) == 0);

  // Nothing left to remove: a second pass changes nothing.
  result = sweeper.Sweep(now);
  REQUIRE(result.ok());
  CHECK(result->removed == 0);
  CHECK(sweeper.sweeps() == 2);
}

TEST_CASE("the sweeper sweeps ms_sessions6 too and counts both families' half-open sessions",
          "[bpf][privileged][sweeper][ipv6]") {
  auto datapath = load_or_skip();
  if (!datapath) return;
  constexpr std::uint64_t kSecond = 1'000'000'000ULL;
  const std::uint64_t now = 100'000 * kSecond;
  auto key6_of = [](std::uint8_t proto, std::uint16_t pod_port) {
    return session6_key_of(7, "fd00:10:244:1::a", pod_port, "fd00:10:244:2::14", 80, proto);
  };
  const int sessions6_fd = datapath->map_fd("ms_sessions6");
  REQUIRE(sessions6_fd >= 0);
  auto put6 = [&](const ms_session6_key& key, const ms_session& value) {
    REQUIRE(bpf_map_update_elem(sessions6_fd, &key, &value, BPF_ANY) == 0);
  };
  const auto echo_expired = key6_of(58, 77);  // ICMPv6 echo: the ICMP timeout (30 s)
  const auto syn_live = key6_of(IPPROTO_TCP, 1002);
  put6(echo_expired, session_of(now - 31 * kSecond, MS_TCP_NONE, 0));
  put6(syn_live, session_of(now, MS_TCP_SYN_SENT, MS_SESSION_F_HALF_OPEN));
  datapath->put_session(key_of(7, IPPROTO_TCP, 2000), session_of(now, MS_TCP_SYN_SENT, MS_SESSION_F_HALF_OPEN));
  datapath->put_half_open(7, 50);

  SessionSweeper sweeper(datapath->sessions_fd(), datapath->half_open_fd(), datapath->half_open_rebase_fd(),
                         SessionTimeouts{}, sessions6_fd);
  auto result = sweeper.Sweep(now);
  REQUIRE(result.ok());
  CHECK(result->scanned == 3);
  CHECK(result->removed == 1);
  CHECK(datapath->session6_count() == 1);
  CHECK_FALSE(datapath->session6(echo_expired).has_value());
  CHECK(datapath->session6(syn_live).has_value());
  CHECK(datapath->half_open(7) == 2);  // one IPv4 + one IPv6 half-open session
}

// The e2e_sessions flake: a sweep that overwrote the counter with what its
// scan saw lost the SYNs admitted between the scan and the write, and the
// flood then got that many sessions past the cap.
TEST_CASE("SYNs the data path admits while a sweep runs stay counted: the cap holds",
          "[bpf][privileged][sweeper]") {
  constexpr std::uint32_t kCap = 3;
  constexpr std::uint32_t kEndpoint = 7;
  constexpr std::uint64_t kNow = 5000ULL * 1'000'000'000ULL;
  auto datapath = load_or_skip([](microseg_bpf& skeleton) {
    skeleton.rodata->use_test_clock = 1;
    skeleton.rodata->max_half_open_per_endpoint = kCap;
  });
  if (!datapath) return;
  datapath->set_clock(kNow);
  datapath->set_endpoint(kEndpoint, 0, "10.244.1.10");  // not isolated: every SYN opens a session
  auto syn = [](std::uint16_t sport) {
    return tcp_frame("10.244.1.10", "10.244.2.20", {.sport = sport, .dport = 80, .seq = 1});
  };
  check_verdict(*datapath, Program::kFromPod, syn(40000), MS_REASON_ALLOW_NOT_ISOLATED);
  check_verdict(*datapath, Program::kFromPod, syn(40001), MS_REASON_ALLOW_NOT_ISOLATED);
  REQUIRE(datapath->half_open(kEndpoint) == 2);

  SessionSweeper sweeper(datapath->sessions_fd(), datapath->half_open_fd(), datapath->half_open_rebase_fd(),
                         SessionTimeouts{});
  auto result = sweeper.Sweep(kNow, [&] {
    check_verdict(*datapath, Program::kFromPod, syn(40002), MS_REASON_ALLOW_NOT_ISOLATED);
  });
  REQUIRE(result.ok());
  CHECK(result->half_open == 2);  // what the scan saw
  CHECK(datapath->half_open(kEndpoint) == 3);
  check_verdict(*datapath, Program::kFromPod, syn(40003), MS_REASON_DROP_SYN_FLOOD);
  CHECK(datapath->session_count() == kCap);

  // A quiet sweep agrees with the data path's count.
  result = sweeper.Sweep(kNow);
  REQUIRE(result.ok());
  CHECK(result->half_open == kCap);
  CHECK(datapath->half_open(kEndpoint) == 3);
  check_verdict(*datapath, Program::kFromPod, syn(40004), MS_REASON_DROP_SYN_FLOOD);
}

// A session that leaves the SYN states while the sweep runs was seen by the
// scan: the counter errs high (never low) until the next sweep.
TEST_CASE("a half-open session settling during a sweep is corrected by the next one",
          "[bpf][privileged][sweeper]") {
  constexpr std::uint32_t kEndpoint = 7;
  constexpr std::uint64_t kNow = 5000ULL * 1'000'000'000ULL;
  auto datapath = load_or_skip([](microseg_bpf& skeleton) { skeleton.rodata->use_test_clock = 1; });
  if (!datapath) return;
  datapath->set_clock(kNow);
  datapath->set_endpoint(kEndpoint, 0, "10.244.1.10");
  check_verdict(*datapath, Program::kFromPod,
                tcp_frame("10.244.1.10", "10.244.2.20", {.sport = 40000, .dport = 80, .seq = 1}),
                MS_REASON_ALLOW_NOT_ISOLATED);
  check_verdict(*datapath, Program::kFromPod,
                tcp_frame("10.244.1.10", "10.244.2.20", {.sport = 40001, .dport = 80, .seq = 1}),
                MS_REASON_ALLOW_NOT_ISOLATED);
  REQUIRE(datapath->half_open(kEndpoint) == 2);

  SessionSweeper sweeper(datapath->sessions_fd(), datapath->half_open_fd(), datapath->half_open_rebase_fd(),
                         SessionTimeouts{});
  auto result = sweeper.Sweep(kNow, [&] {
    // The peer answers 40000: SYN_RECV still counts; the pod's ACK settles it.
    check_verdict(*datapath, Program::kToPod,
                  tcp_frame("10.244.2.20", "10.244.1.10",
                            {.sport = 80, .dport = 40000, .seq = 900, .ack = 2, .flags = kTcpSyn | kTcpAck}),
                  MS_REASON_ALLOW_SESSION);
    check_verdict(*datapath, Program::kFromPod,
                  tcp_frame("10.244.1.10", "10.244.2.20", {.sport = 40000, .dport = 80, .seq = 2, .ack = 901,
                                                           .flags = kTcpAck}),
                  MS_REASON_ALLOW_SESSION);
  });
  REQUIRE(result.ok());
  CHECK(datapath->half_open(kEndpoint) == 2);  // high by the settled one
  result = sweeper.Sweep(kNow);
  REQUIRE(result.ok());
  CHECK(datapath->half_open(kEndpoint) == 1);
}

}  // namespace
}  // namespace microseg::test
