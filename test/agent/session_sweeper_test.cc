// The sweeper's expiry rule must match the data path's: per protocol and TCP
// state, idle strictly longer than the timeout, a future stamp is live.
#include <netinet/in.h>

#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "session_sweeper.h"

namespace microseg {
namespace {

constexpr uint64_t kSecond = 1'000'000'000ULL;

struct ExpiryCase {
  std::string name;
  uint8_t proto;
  uint8_t tcp_state;
  uint64_t idle_ns;
  bool expired;
  uint8_t session_flags = 0;
};

TEST_CASE("sessions expire after their protocol's and state's timeout", "[sweeper]") {
  const SessionTimeouts timeouts;  // defaults: the data path's defaults
  const std::vector<ExpiryCase> cases = {
      {"SYN_SENT at 30 s", IPPROTO_TCP, MS_TCP_SYN_SENT, 30 * kSecond, false},
      {"SYN_SENT past 30 s", IPPROTO_TCP, MS_TCP_SYN_SENT, 30 * kSecond + 1, true},
      {"SYN_RECV past 30 s", IPPROTO_TCP, MS_TCP_SYN_RECV, 30 * kSecond + 1, true},
      {"ESTABLISHED at 1 h", IPPROTO_TCP, MS_TCP_ESTABLISHED, 3600 * kSecond, false},
      {"ESTABLISHED past 1 h", IPPROTO_TCP, MS_TCP_ESTABLISHED, 3600 * kSecond + 1, true},
      {"FIN_WAIT1 past 120 s", IPPROTO_TCP, MS_TCP_FIN_WAIT1, 120 * kSecond + 1, true},
      {"FIN_WAIT2 at 120 s", IPPROTO_TCP, MS_TCP_FIN_WAIT2, 120 * kSecond, false},
      {"CLOSE_WAIT past 120 s", IPPROTO_TCP, MS_TCP_CLOSE_WAIT, 120 * kSecond + 1, true},
      {"LAST_ACK past 120 s", IPPROTO_TCP, MS_TCP_LAST_ACK, 120 * kSecond + 1, true},
      {"CLOSING past 120 s", IPPROTO_TCP, MS_TCP_CLOSING, 120 * kSecond + 1, true},
      {"TIME_WAIT past 120 s", IPPROTO_TCP, MS_TCP_TIME_WAIT, 120 * kSecond + 1, true},
      {"TIME_WAIT at 60 s", IPPROTO_TCP, MS_TCP_TIME_WAIT, 60 * kSecond, false},
      {"CLOSE past 10 s", IPPROTO_TCP, MS_TCP_CLOSE, 10 * kSecond + 1, true},
      {"CLOSE at 10 s", IPPROTO_TCP, MS_TCP_CLOSE, 10 * kSecond, false},
      {"UDP past 60 s", IPPROTO_UDP, MS_TCP_NONE, 60 * kSecond + 1, true},
      {"UDP at 60 s", IPPROTO_UDP, MS_TCP_NONE, 60 * kSecond, false},
      {"ICMP past 30 s", IPPROTO_ICMP, MS_TCP_NONE, 30 * kSecond + 1, true},
      {"SCTP lives like ESTABLISHED", IPPROTO_SCTP, MS_TCP_NONE, 120 * kSecond, false},
      {"unconfirmed pick-up (ESTABLISHED) past 30 s", IPPROTO_TCP, MS_TCP_ESTABLISHED,
       30 * kSecond + 1, true, MS_SESSION_F_PICKED_UP | MS_SESSION_F_AWAITING_RESPONDER},
      {"unconfirmed pick-up (FIN_WAIT1) past 30 s", IPPROTO_TCP, MS_TCP_FIN_WAIT1, 30 * kSecond + 1,
       true, MS_SESSION_F_PICKED_UP | MS_SESSION_F_AWAITING_INITIATOR},
      {"unconfirmed pick-up at 30 s", IPPROTO_TCP, MS_TCP_ESTABLISHED, 30 * kSecond, false,
       MS_SESSION_F_PICKED_UP | MS_SESSION_F_AWAITING_INITIATOR},
      {"confirmed pick-up lives like ESTABLISHED", IPPROTO_TCP, MS_TCP_ESTABLISHED, 600 * kSecond,
       false, MS_SESSION_F_PICKED_UP},
  };
  const uint64_t now = 10'000 * kSecond;
  for (const ExpiryCase& c : cases) {
    SECTION(c.name) {
      const ms_session_key key{.endpoint_id = 1, .pod_addr = 0, .peer_addr = 0, .pod_port = 0,
                               .peer_port = 0, .proto = c.proto, .pad = {}};
      ms_session session{};
      session.tcp_state = c.tcp_state;
      session.flags = c.session_flags;
      session.last_seen_ns = now - c.idle_ns;
      CHECK(SessionExpired(timeouts, key, session, now) == c.expired);
    }
  }
}

TEST_CASE("a session stamped after the sweeper's clock is live", "[sweeper]") {
  const ms_session_key key{.endpoint_id = 1, .pod_addr = 0, .peer_addr = 0, .pod_port = 0,
                           .peer_port = 0, .proto = IPPROTO_UDP, .pad = {}};
  ms_session session{};
  session.last_seen_ns = 5000 * kSecond;
  CHECK_FALSE(SessionExpired(SessionTimeouts{}, key, session, 4000 * kSecond));
}

TEST_CASE("configured timeouts are the ones applied", "[sweeper]") {
  SessionTimeouts timeouts;
  timeouts.tcp_established = absl::Seconds(5);
  timeouts.tcp_syn = absl::Seconds(7);
  CHECK(SessionTimeout(timeouts, IPPROTO_TCP, MS_TCP_ESTABLISHED, 0) == absl::Seconds(5));
  CHECK(SessionTimeout(timeouts, IPPROTO_TCP, MS_TCP_SYN_SENT, 0) == absl::Seconds(7));
  CHECK(SessionTimeout(timeouts, IPPROTO_TCP, MS_TCP_ESTABLISHED, MS_SESSION_F_AWAITING_RESPONDER) ==
        absl::Seconds(7));
}

}  // namespace
}  // namespace microseg
