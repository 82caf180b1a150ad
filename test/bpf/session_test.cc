// Session tracking through BPF_PROG_TEST_RUN: TCP states from both sides,
// retransmission and reordering, window and RST checks, timeouts (on the
// data path's test clock), UDP/ICMP pseudo-sessions, related ICMP errors,
// the half-open cap and policy-revision revocation. Every packet checks the
// TC action and that exactly its (direction, reason) counter moved; TCP
// steps also check the session's state afterwards.
#include <arpa/inet.h>

#include <catch2/catch.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "datapath_test_support.h"
#include "loaded_datapath.h"
#include "microseg.skel.h"
#include "packet_builder.h"

namespace microseg::test {
namespace {

constexpr const char* kPod = "10.244.1.10";
constexpr const char* kPeer = "10.244.2.20";
constexpr const char* kRouter = "10.244.0.1";
constexpr std::uint16_t kPodPort = 5000;
constexpr std::uint16_t kPeerPort = 6000;
constexpr std::uint32_t kEndpointId = 7;
constexpr std::uint8_t kBothIsolated = MS_EP_F_INGRESS_ISOLATED | MS_EP_F_EGRESS_ISOLATED;

constexpr std::uint64_t kSecond = 1'000'000'000ULL;
constexpr std::uint64_t kClockStart = 1000 * kSecond;

// Initial sequence numbers; the peer's sits just below the wrap on purpose.
constexpr std::uint32_t kPodIsn = 1000;
constexpr std::uint32_t kPeerIsn = 0xFFFFFF00u;

std::unique_ptr<LoadedDatapath> load_with_test_clock(
    const std::function<void(microseg_bpf&)>& more = {}) {
  auto datapath = load_or_skip([&](microseg_bpf& skeleton) {
    skeleton.rodata->use_test_clock = 1;
    if (more) more(skeleton);
  });
  if (datapath) datapath->set_clock(kClockStart);
  return datapath;
}

// The endpoint isolated both ways, at most `cap` half-open sessions.
std::unique_ptr<LoadedDatapath> load_isolated_with_half_open_cap(std::uint32_t cap) {
  auto datapath = load_with_test_clock(
      [cap](microseg_bpf& skeleton) { skeleton.rodata->max_half_open_per_endpoint = cap; });
  if (datapath) datapath->set_endpoint(kEndpointId, kBothIsolated, kPod);
  return datapath;
}

ms_session_key tcp_key(std::uint16_t pod_port = kPodPort, std::uint16_t peer_port = kPeerPort) {
  return {.endpoint_id = kEndpointId,
          .pod_addr = ipv4_net(kPod),
          .peer_addr = ipv4_net(kPeer),
          .pod_port = htons(pod_port),
          .peer_port = htons(peer_port),
          .proto = kProtoTcp,
          .pad = {}};
}

enum class From { kPod, kPeer };

// One segment of the conversation: offsets are relative to the sender's and
// the receiver's ISN (so "ack 1" acknowledges the other side's SYN).
struct Step {
  From from;
  std::uint8_t flags;
  std::uint32_t seq = 0;
  std::uint32_t ack = 0;
  std::size_t payload = 0;
  ms_reason expected = MS_REASON_ALLOW_SESSION;
  std::optional<ms_tcp_state> state;  // nullopt: no session afterwards
  std::uint64_t advance_ns = 0;       // test clock moves before the packet
  std::uint16_t window = 64240;
  std::optional<std::uint8_t> window_scale;
};

Bytes segment_of(const Step& step) {
  const bool from_pod = step.from == From::kPod;
  const std::uint32_t own_isn = from_pod ? kPodIsn : kPeerIsn;
  const std::uint32_t other_isn = from_pod ? kPeerIsn : kPodIsn;
  TcpFields fields{.sport = from_pod ? kPodPort : kPeerPort,
                   .dport = from_pod ? kPeerPort : kPodPort,
                   .seq = own_isn + step.seq,
                   .ack = (step.flags & kTcpAck) ? other_isn + step.ack : 0,
                   .flags = step.flags,
                   .window = step.window,
                   .window_scale = step.window_scale,
                   .payload_bytes = step.payload};
  return from_pod ? tcp_frame(kPod, kPeer, fields) : tcp_frame(kPeer, kPod, fields);
}

struct Conversation {
  std::string name;
  std::vector<Step> steps;
};

constexpr std::uint8_t SYN = kTcpSyn;
constexpr std::uint8_t SYNACK = kTcpSyn | kTcpAck;
constexpr std::uint8_t ACK = kTcpAck;
constexpr std::uint8_t PSHACK = kTcpPsh | kTcpAck;
constexpr std::uint8_t FINACK = kTcpFin | kTcpAck;
constexpr std::uint8_t RST = kTcpRst;
constexpr std::uint8_t RSTACK = kTcpRst | kTcpAck;

constexpr From POD = From::kPod;
constexpr From PEER = From::kPeer;

// The pod opens: SYN, SYN-ACK, ACK. Sequence offsets continue from 1.
std::vector<Step> pod_opens() {
  return {{POD, SYN, 0, 0, 0, MS_REASON_ALLOW_POLICY, MS_TCP_SYN_SENT},
          {PEER, SYNACK, 0, 1, 0, MS_REASON_ALLOW_SESSION, MS_TCP_SYN_RECV},
          {POD, ACK, 1, 1, 0, MS_REASON_ALLOW_SESSION, MS_TCP_ESTABLISHED}};
}

std::vector<Step> peer_opens() {
  return {{PEER, SYN, 0, 0, 0, MS_REASON_ALLOW_POLICY, MS_TCP_SYN_SENT},
          {POD, SYNACK, 0, 1, 0, MS_REASON_ALLOW_SESSION, MS_TCP_SYN_RECV},
          {PEER, ACK, 1, 1, 0, MS_REASON_ALLOW_SESSION, MS_TCP_ESTABLISHED}};
}

std::vector<Step> then(std::vector<Step> first, const std::vector<Step>& more) {
  first.insert(first.end(), more.begin(), more.end());
  return first;
}

constexpr auto S = MS_REASON_ALLOW_SESSION;
constexpr auto EST = MS_TCP_ESTABLISHED;

std::vector<Conversation> conversations() {
  return {
      {"handshake, data both ways, active close by the initiator",
       then(pod_opens(),
            {{POD, PSHACK, 1, 1, 100, S, EST},
             {PEER, PSHACK, 1, 101, 200, S, EST},
             {POD, ACK, 101, 201, 0, S, EST},
             {POD, FINACK, 101, 201, 0, S, MS_TCP_FIN_WAIT1},
             {PEER, ACK, 201, 102, 0, S, MS_TCP_FIN_WAIT2},
             // Half-close: the responder keeps sending, the initiator acks.
             {PEER, PSHACK, 201, 102, 50, S, MS_TCP_FIN_WAIT2},
             {POD, ACK, 102, 251, 0, S, MS_TCP_FIN_WAIT2},
             {PEER, FINACK, 251, 102, 0, S, MS_TCP_TIME_WAIT},
             {POD, ACK, 102, 252, 0, S, MS_TCP_TIME_WAIT}})},
      {"passive close: the responder closes first",
       then(peer_opens(),
            {{PEER, PSHACK, 1, 1, 10, S, EST},
             {POD, FINACK, 1, 11, 0, S, MS_TCP_CLOSE_WAIT},
             {PEER, ACK, 11, 2, 0, S, MS_TCP_CLOSE_WAIT},
             {PEER, PSHACK, 11, 2, 10, S, MS_TCP_CLOSE_WAIT},
             {POD, ACK, 2, 21, 0, S, MS_TCP_CLOSE_WAIT},
             {PEER, FINACK, 21, 2, 0, S, MS_TCP_LAST_ACK},
             {POD, ACK, 2, 22, 0, S, MS_TCP_TIME_WAIT}})},
      {"initiator's FIN acknowledged together with the responder's FIN",
       then(pod_opens(), {{POD, FINACK, 1, 1, 0, S, MS_TCP_FIN_WAIT1},
                          {PEER, FINACK, 1, 2, 0, S, MS_TCP_TIME_WAIT},
                          {POD, ACK, 2, 2, 0, S, MS_TCP_TIME_WAIT}})},
      {"simultaneous open",
       {{POD, SYN, 0, 0, 0, MS_REASON_ALLOW_POLICY, MS_TCP_SYN_SENT},
        {PEER, SYN, 0, 0, 0, S, MS_TCP_SYN_RECV},
        {POD, SYNACK, 0, 1, 0, S, MS_TCP_SYN_RECV},
        {PEER, SYNACK, 0, 1, 0, S, MS_TCP_SYN_RECV},
        {PEER, ACK, 1, 1, 0, S, EST},
        {POD, ACK, 1, 1, 0, S, EST}}},
      {"simultaneous close",
       then(pod_opens(), {{POD, FINACK, 1, 1, 0, S, MS_TCP_FIN_WAIT1},
                          {PEER, FINACK, 1, 1, 0, S, MS_TCP_CLOSING},
                          {POD, ACK, 2, 2, 0, S, MS_TCP_CLOSING},
                          {PEER, ACK, 2, 2, 0, S, MS_TCP_TIME_WAIT}})},
      {"retransmitted SYN, SYN-ACK and FIN",
       {{POD, SYN, 0, 0, 0, MS_REASON_ALLOW_POLICY, MS_TCP_SYN_SENT},
        {POD, SYN, 0, 0, 0, S, MS_TCP_SYN_SENT},
        {PEER, SYNACK, 0, 1, 0, S, MS_TCP_SYN_RECV},
        {POD, SYN, 0, 0, 0, S, MS_TCP_SYN_RECV},
        {PEER, SYNACK, 0, 1, 0, S, MS_TCP_SYN_RECV},
        {POD, ACK, 1, 1, 0, S, EST},
        {PEER, SYNACK, 0, 1, 0, S, EST},
        {POD, FINACK, 1, 1, 0, S, MS_TCP_FIN_WAIT1},
        {POD, FINACK, 1, 1, 0, S, MS_TCP_FIN_WAIT1},
        {PEER, ACK, 1, 2, 0, S, MS_TCP_FIN_WAIT2},
        {POD, FINACK, 1, 1, 0, S, MS_TCP_FIN_WAIT2}}},
      {"reordered data and acknowledgements, retransmitted data",
       then(pod_opens(), {{POD, PSHACK, 1001, 1, 1000, S, EST},
                          {POD, PSHACK, 1, 1, 1000, S, EST},
                          {PEER, ACK, 1, 2001, 0, S, EST},
                          {PEER, ACK, 1, 1001, 0, S, EST},
                          {POD, PSHACK, 1, 1, 1000, S, EST},
                          {PEER, PSHACK, 1, 1001, 500, S, EST},
                          {POD, ACK, 2001, 501, 0, S, EST},
                          {POD, ACK, 2001, 1, 0, S, EST}})},
      {"RST in window closes; stragglers pass; a new SYN reopens through policy",
       then(pod_opens(), {{PEER, RSTACK, 1, 1, 0, S, MS_TCP_CLOSE},
                          {POD, ACK, 1, 1, 0, S, MS_TCP_CLOSE},
                          {PEER, RST, 1, 0, 0, S, MS_TCP_CLOSE},
                          {POD, SYN, 5000, 0, 0, MS_REASON_ALLOW_POLICY, MS_TCP_SYN_SENT}})},
      {"RST near the sender's position is honoured (a window away)",
       then(pod_opens(), {{POD, RST, 1 + 60000, 0, 0, S, MS_TCP_CLOSE}})},
      {"RST out of window is dropped and changes nothing",
       then(pod_opens(), {{PEER, RSTACK, 1 + 0x10000000u, 1, 0, MS_REASON_DROP_INVALID_RST, EST},
                          {POD, RST, 1u - 0x20000000u, 0, 0, MS_REASON_DROP_INVALID_RST, EST},
                          {POD, PSHACK, 1, 1, 10, S, EST}})},
      {"RST answering a SYN must acknowledge it",
       {{POD, SYN, 0, 0, 0, MS_REASON_ALLOW_POLICY, MS_TCP_SYN_SENT},
        {PEER, RST, 0, 0, 0, MS_REASON_DROP_INVALID_RST, MS_TCP_SYN_SENT},
        {PEER, RSTACK, 0, 7, 0, MS_REASON_DROP_INVALID_RST, MS_TCP_SYN_SENT},
        {PEER, RSTACK, 0, 1, 0, S, MS_TCP_CLOSE}}},
      {"nothing but SYN or RST before the SYN-ACK",
       {{POD, SYN, 0, 0, 0, MS_REASON_ALLOW_POLICY, MS_TCP_SYN_SENT},
        {POD, ACK, 1, 1, 0, MS_REASON_DROP_INVALID_TCP_STATE, MS_TCP_SYN_SENT},
        {PEER, PSHACK, 1, 1, 10, MS_REASON_DROP_INVALID_TCP_STATE, MS_TCP_SYN_SENT},
        {PEER, FINACK, 1, 1, 0, MS_REASON_DROP_INVALID_TCP_STATE, MS_TCP_SYN_SENT},
        {POD, SYNACK, 0, 1, 0, MS_REASON_DROP_INVALID_TCP_STATE, MS_TCP_SYN_SENT},
        {PEER, SYNACK, 0, 1, 0, S, MS_TCP_SYN_RECV}}},
      {"SYN-ACK that acknowledges another SYN",
       {{POD, SYN, 0, 0, 0, MS_REASON_ALLOW_POLICY, MS_TCP_SYN_SENT},
        {PEER, SYNACK, 0, 100000, 0, MS_REASON_DROP_INVALID_SEQ, MS_TCP_SYN_SENT},
        {PEER, SYNACK, 0, 1, 0, S, MS_TCP_SYN_RECV}}},
      {"flag combinations no stack sends, in any state",
       then(pod_opens(),
            {{POD, kTcpSyn | kTcpFin, 1, 0, 0, MS_REASON_DROP_INVALID_TCP_STATE, EST},
             {PEER, kTcpSyn | kTcpRst, 1, 0, 0, MS_REASON_DROP_INVALID_TCP_STATE, EST},
             {PEER, 0, 1, 0, 0, MS_REASON_DROP_INVALID_TCP_STATE, EST},
             {PEER, kTcpFin, 1, 0, 0, MS_REASON_DROP_INVALID_TCP_STATE, EST},
             {POD, kTcpFin | kTcpPsh | kTcpUrg, 1, 0, 0, MS_REASON_DROP_INVALID_TCP_STATE,
              EST},
             {POD, PSHACK, 1, 1, 10, S, EST}})},
      {"port reuse: the pod's new SYN after TIME_WAIT opens a new connection through policy",
       then(pod_opens(), {{POD, FINACK, 1, 1, 0, S, MS_TCP_FIN_WAIT1},
                          {PEER, FINACK, 1, 2, 0, S, MS_TCP_TIME_WAIT},
                          {POD, ACK, 2, 2, 0, S, MS_TCP_TIME_WAIT},
                          {POD, SYN, 5000, 0, 0, MS_REASON_ALLOW_POLICY, MS_TCP_SYN_SENT},
                          {PEER, SYNACK, 9000, 5001, 0, S, MS_TCP_SYN_RECV}})},
      {"port reuse: the peer's new SYN after TIME_WAIT opens a new connection through policy",
       then(pod_opens(), {{POD, FINACK, 1, 1, 0, S, MS_TCP_FIN_WAIT1},
                          {PEER, FINACK, 1, 2, 0, S, MS_TCP_TIME_WAIT},
                          {POD, ACK, 2, 2, 0, S, MS_TCP_TIME_WAIT},
                          {PEER, SYN, 7000, 0, 0, MS_REASON_ALLOW_POLICY, MS_TCP_SYN_SENT},
                          {POD, SYNACK, 3000, 7001, 0, S, MS_TCP_SYN_RECV}})},
      {"a SYN inside an established connection changes nothing (the receiver sends a challenge ACK)",
       then(pod_opens(), {{PEER, SYN, 77, 0, 0, S, EST}, {POD, PSHACK, 1, 1, 10, S, EST}})},
      {"simultaneous open started by the peer",
       {{PEER, SYN, 0, 0, 0, MS_REASON_ALLOW_POLICY, MS_TCP_SYN_SENT},
        {POD, SYN, 0, 0, 0, S, MS_TCP_SYN_RECV},
        {PEER, SYNACK, 0, 1, 0, S, MS_TCP_SYN_RECV},
        {POD, SYNACK, 0, 1, 0, S, MS_TCP_SYN_RECV},
        {POD, ACK, 1, 1, 0, S, EST},
        {PEER, ACK, 1, 1, 0, S, EST}}},
      // A RST (in window) ends the connection from every state.
      {"RST from the responder in SYN_RECV",
       {{POD, SYN, 0, 0, 0, MS_REASON_ALLOW_POLICY, MS_TCP_SYN_SENT},
        {PEER, SYNACK, 0, 1, 0, S, MS_TCP_SYN_RECV},
        {PEER, RSTACK, 1, 1, 0, S, MS_TCP_CLOSE}}},
      {"RST from the initiator in SYN_RECV",
       {{POD, SYN, 0, 0, 0, MS_REASON_ALLOW_POLICY, MS_TCP_SYN_SENT},
        {PEER, SYNACK, 0, 1, 0, S, MS_TCP_SYN_RECV},
        {POD, RST, 1, 0, 0, S, MS_TCP_CLOSE}}},
      {"RST in FIN_WAIT1", then(pod_opens(), {{POD, FINACK, 1, 1, 0, S, MS_TCP_FIN_WAIT1},
                                             {PEER, RSTACK, 1, 2, 0, S, MS_TCP_CLOSE}})},
      {"RST in FIN_WAIT2, an out-of-window one first",
       then(pod_opens(), {{POD, FINACK, 1, 1, 0, S, MS_TCP_FIN_WAIT1},
                          {PEER, ACK, 1, 2, 0, S, MS_TCP_FIN_WAIT2},
                          {PEER, RST, 1 + 0x10000000u, 0, 0, MS_REASON_DROP_INVALID_RST, MS_TCP_FIN_WAIT2},
                          {PEER, RST, 1, 0, 0, S, MS_TCP_CLOSE}})},
      {"RST in CLOSE_WAIT", then(peer_opens(), {{POD, FINACK, 1, 1, 0, S, MS_TCP_CLOSE_WAIT},
                                               {PEER, ACK, 1, 2, 0, S, MS_TCP_CLOSE_WAIT},
                                               {POD, RST, 2, 0, 0, S, MS_TCP_CLOSE}})},
      {"RST in LAST_ACK", then(peer_opens(), {{POD, FINACK, 1, 1, 0, S, MS_TCP_CLOSE_WAIT},
                                             {PEER, FINACK, 1, 2, 0, S, MS_TCP_LAST_ACK},
                                             {PEER, RSTACK, 2, 2, 0, S, MS_TCP_CLOSE}})},
      {"RST in CLOSING", then(pod_opens(), {{POD, FINACK, 1, 1, 0, S, MS_TCP_FIN_WAIT1},
                                           {PEER, FINACK, 1, 1, 0, S, MS_TCP_CLOSING},
                                           {PEER, RST, 2, 0, 0, S, MS_TCP_CLOSE}})},
      {"flag combinations no stack sends, in the closing states",
       then(pod_opens(),
            {{POD, FINACK, 1, 1, 0, S, MS_TCP_FIN_WAIT1},
             {PEER, kTcpSyn | kTcpFin, 1, 0, 0, MS_REASON_DROP_INVALID_TCP_STATE, MS_TCP_FIN_WAIT1},
             {POD, kTcpFin, 2, 0, 0, MS_REASON_DROP_INVALID_TCP_STATE, MS_TCP_FIN_WAIT1},
             {PEER, ACK, 1, 2, 0, S, MS_TCP_FIN_WAIT2},
             {PEER, kTcpSyn | kTcpRst, 1, 0, 0, MS_REASON_DROP_INVALID_TCP_STATE, MS_TCP_FIN_WAIT2},
             {PEER, FINACK, 1, 2, 0, S, MS_TCP_TIME_WAIT},
             {POD, 0, 2, 0, 0, MS_REASON_DROP_INVALID_TCP_STATE, MS_TCP_TIME_WAIT},
             {POD, ACK, 2, 2, 0, S, MS_TCP_TIME_WAIT}})},
      {"data and acknowledgements far outside the window",
       then(pod_opens(),
            {{POD, PSHACK, 1 + 40000, 1, 1000, S, EST},
             {POD, PSHACK, 1 + 300000, 1, 1000, MS_REASON_DROP_INVALID_SEQ, EST},
             {POD, PSHACK, 1u - 300000, 1, 1000, MS_REASON_DROP_INVALID_SEQ, EST},
             {PEER, ACK, 1, 1 + 300000, 0, MS_REASON_DROP_INVALID_SEQ, EST},
             {PEER, ACK, 1, 1u - 300000, 0, MS_REASON_DROP_INVALID_SEQ, EST},
             {PEER, ACK, 1, 41001, 0, S, EST}})},
  };
}

TEST_CASE("TCP conversations: verdict, counter and state after every segment",
          "[bpf][privileged][session]") {
  auto datapath = load_with_test_clock();
  if (!datapath) return;
  for (const Conversation& conversation : conversations()) {
    SECTION(conversation.name) {
      datapath->set_endpoint(kEndpointId, kBothIsolated, kPod);
      datapath->put_exact(kEndpointId, MS_DIR_INGRESS, kPeer, kProtoTcp, kPodPort,
                          MS_ACTION_ALLOW);
      datapath->put_exact(kEndpointId, MS_DIR_EGRESS, kPeer, kProtoTcp, kPeerPort,
                          MS_ACTION_ALLOW);
      int index = 0;
      for (const Step& step : conversation.steps) {
        INFO("step " << index++);
        check_verdict(*datapath, step.from == From::kPod ? Program::kFromPod : Program::kToPod,
                      segment_of(step), step.expected);
        const auto session = datapath->session(tcp_key());
        REQUIRE(session.has_value() == step.state.has_value());
        if (step.state) CHECK(static_cast<int>(session->tcp_state) == *step.state);
      }
    }
  }
}

TEST_CASE("window scale from the SYNs widens the window", "[bpf][privileged][session]") {
  auto datapath = load_with_test_clock();
  if (!datapath) return;
  datapath->set_endpoint(kEndpointId, 0, kPod);
  // Window field 1000: 128000 bytes with scale 7, 1000 (floored to 64 KiB) without.
  const std::uint32_t beyond_unscaled = 1 + 200000;
  SECTION("both SYNs offer a scale") {
    for (const Step& step : std::vector<Step>{
             {POD, SYN, 0, 0, 0, MS_REASON_ALLOW_NOT_ISOLATED, MS_TCP_SYN_SENT, 0, 1000, 7},
             {PEER, SYNACK, 0, 1, 0, S, MS_TCP_SYN_RECV, 0, 1000, 7},
             {POD, ACK, 1, 1, 0, S, EST, 0, 1000},
             {PEER, ACK, 1, 1, 0, S, EST, 0, 1000},
             {POD, PSHACK, beyond_unscaled, 1, 100, S, EST, 0, 1000}}) {
      check_verdict(*datapath, step.from == POD ? Program::kFromPod : Program::kToPod,
                    segment_of(step), step.expected);
    }
  }
  SECTION("only one SYN offers a scale: windows are not scaled") {
    for (const Step& step : std::vector<Step>{
             {POD, SYN, 0, 0, 0, MS_REASON_ALLOW_NOT_ISOLATED, MS_TCP_SYN_SENT, 0, 1000, 7},
             {PEER, SYNACK, 0, 1, 0, S, MS_TCP_SYN_RECV, 0, 1000},
             {POD, ACK, 1, 1, 0, S, EST, 0, 1000},
             {PEER, ACK, 1, 1, 0, S, EST, 0, 1000},
             {POD, PSHACK, beyond_unscaled, 1, 100, MS_REASON_DROP_INVALID_SEQ, EST, 0,
              1000}}) {
      check_verdict(*datapath, step.from == POD ? Program::kFromPod : Program::kToPod,
                    segment_of(step), step.expected);
    }
  }
}

TEST_CASE("a mid-stream segment without a session is re-checked against policy",
          "[bpf][privileged][session]") {
  auto datapath = load_with_test_clock();
  if (!datapath) return;
  datapath->set_endpoint(kEndpointId, kBothIsolated, kPod);
  // Only the pod may open connections to the peer's port.
  datapath->put_exact(kEndpointId, MS_DIR_EGRESS, kPeer, kProtoTcp, kPeerPort, MS_ACTION_ALLOW);

  SECTION("the peer's segment of a flow the pod may open is picked up") {
    check_verdict(*datapath, Program::kToPod, segment_of({PEER, PSHACK, 1, 1, 10}),
                  MS_REASON_ALLOW_POLICY);
    const auto session = datapath->session(tcp_key());
    REQUIRE(session);
    CHECK(session->tcp_state == MS_TCP_ESTABLISHED);
    CHECK(session->direction == MS_DIR_EGRESS);
    CHECK((session->flags & MS_SESSION_F_PICKED_UP) != 0);
    check_verdict(*datapath, Program::kFromPod, segment_of({POD, ACK, 1, 11}),
                  MS_REASON_ALLOW_SESSION);
    check_verdict(*datapath, Program::kFromPod, segment_of({POD, FINACK, 1, 11}),
                  MS_REASON_ALLOW_SESSION);
    CHECK(datapath->session(tcp_key())->tcp_state == MS_TCP_FIN_WAIT1);
  }
  SECTION("a SYN-ACK without its SYN's session is picked up as half-open") {
    check_verdict(*datapath, Program::kToPod, segment_of({PEER, SYNACK, 0, 1}),
                  MS_REASON_ALLOW_POLICY);
    CHECK(datapath->session(tcp_key())->tcp_state == MS_TCP_SYN_RECV);
    check_verdict(*datapath, Program::kFromPod, segment_of({POD, ACK, 1, 1}),
                  MS_REASON_ALLOW_SESSION);
    CHECK(datapath->session(tcp_key())->tcp_state == MS_TCP_ESTABLISHED);
  }
  SECTION("a segment of a flow nobody may open is dropped, nothing is created") {
    const Bytes other = tcp_frame(kPeer, kPod,
                                  {.sport = 7000, .dport = kPodPort, .seq = 5, .ack = 5,
                                   .flags = ACK});
    check_verdict(*datapath, Program::kToPod, other, MS_REASON_DROP_POLICY);
    CHECK(datapath->session_count() == 0);
  }
  SECTION("a RST without a session opens nothing") {
    check_verdict(*datapath, Program::kToPod, segment_of({PEER, RSTACK, 1, 1}),
                  MS_REASON_DROP_POLICY);
    check_verdict(*datapath, Program::kFromPod, segment_of({POD, RST, 1, 0}),
                  MS_REASON_ALLOW_POLICY);
    CHECK(datapath->session_count() == 0);
  }
  SECTION("invalid flags are dropped before policy") {
    check_verdict(*datapath, Program::kFromPod, segment_of({POD, kTcpSyn | kTcpFin, 0, 0}),
                  MS_REASON_DROP_INVALID_TCP_STATE);
    CHECK(datapath->session_count() == 0);
  }
}

struct TimeoutCase {
  std::string name;
  std::vector<Step> setup;  // ends in the state under test
  Step probe;               // a segment that keeps that state
  std::uint64_t timeout_ns;
};

TEST_CASE("each TCP state expires after its own timeout", "[bpf][privileged][session]") {
  auto datapath = load_with_test_clock();
  if (!datapath) return;
  const std::vector<TimeoutCase> cases = {
      {"SYN_SENT 30 s", {{POD, SYN, 0, 0, 0, MS_REASON_ALLOW_POLICY, MS_TCP_SYN_SENT}},
       {POD, SYN, 0, 0}, 30 * kSecond},
      {"SYN_RECV 30 s",
       {{POD, SYN, 0, 0, 0, MS_REASON_ALLOW_POLICY, MS_TCP_SYN_SENT},
        {PEER, SYNACK, 0, 1, 0, S, MS_TCP_SYN_RECV}},
       {PEER, SYNACK, 0, 1}, 30 * kSecond},
      {"ESTABLISHED 3600 s", pod_opens(), {POD, ACK, 1, 1}, 3600 * kSecond},
      {"FIN_WAIT1 120 s", then(pod_opens(), {{POD, FINACK, 1, 1, 0, S, MS_TCP_FIN_WAIT1}}),
       {POD, FINACK, 1, 1}, 120 * kSecond},
      {"FIN_WAIT2 120 s",
       then(pod_opens(), {{POD, FINACK, 1, 1, 0, S, MS_TCP_FIN_WAIT1},
                          {PEER, ACK, 1, 2, 0, S, MS_TCP_FIN_WAIT2}}),
       {PEER, PSHACK, 1, 2, 10}, 120 * kSecond},
      {"CLOSE_WAIT 120 s", then(pod_opens(), {{PEER, FINACK, 1, 1, 0, S, MS_TCP_CLOSE_WAIT}}),
       {POD, ACK, 1, 2}, 120 * kSecond},
      {"LAST_ACK 120 s",
       then(pod_opens(), {{PEER, FINACK, 1, 1, 0, S, MS_TCP_CLOSE_WAIT},
                          {POD, FINACK, 1, 2, 0, S, MS_TCP_LAST_ACK}}),
       {POD, FINACK, 1, 2}, 120 * kSecond},
      {"CLOSING 120 s",
       then(pod_opens(), {{POD, FINACK, 1, 1, 0, S, MS_TCP_FIN_WAIT1},
                          {PEER, FINACK, 1, 1, 0, S, MS_TCP_CLOSING}}),
       {PEER, FINACK, 1, 1}, 120 * kSecond},
      {"TIME_WAIT 120 s",
       then(pod_opens(), {{POD, FINACK, 1, 1, 0, S, MS_TCP_FIN_WAIT1},
                          {PEER, FINACK, 1, 2, 0, S, MS_TCP_TIME_WAIT},
                          {POD, ACK, 2, 2, 0, S, MS_TCP_TIME_WAIT}}),
       {PEER, ACK, 2, 2}, 120 * kSecond},
      {"CLOSE 10 s", then(pod_opens(), {{PEER, RSTACK, 1, 1, 0, S, MS_TCP_CLOSE}}),
       {PEER, ACK, 1, 1}, 10 * kSecond},
  };
  for (const TimeoutCase& timeout_case : cases) {
    SECTION(timeout_case.name) {
      datapath->set_endpoint(kEndpointId, kBothIsolated, kPod);
      datapath->put_exact(kEndpointId, MS_DIR_EGRESS, kPeer, kProtoTcp, kPeerPort,
                          MS_ACTION_ALLOW);
      for (const Step& step : timeout_case.setup) {
        check_verdict(*datapath, step.from == POD ? Program::kFromPod : Program::kToPod,
                      segment_of(step), step.expected);
      }
      const ms_tcp_state state = *timeout_case.setup.back().state;
      REQUIRE(datapath->session(tcp_key())->tcp_state == state);
      // At the timeout exactly the session is live and the probe refreshes it ...
      datapath->set_clock(kClockStart + timeout_case.timeout_ns);
      const Step& probe = timeout_case.probe;
      check_verdict(*datapath, probe.from == POD ? Program::kFromPod : Program::kToPod,
                    segment_of(probe), MS_REASON_ALLOW_SESSION);
      CHECK(datapath->session(tcp_key())->tcp_state == state);
      // ... one nanosecond past the next timeout the entry counts as absent:
      // the peer's segment must be re-admitted by policy (picked up).
      datapath->set_clock(kClockStart + 2 * timeout_case.timeout_ns + 1);
      check_verdict(*datapath, Program::kToPod, segment_of({PEER, ACK, 1, 1}),
                    MS_REASON_ALLOW_POLICY);
      const auto after = datapath->session(tcp_key());
      REQUIRE(after);
      CHECK((after->flags & MS_SESSION_F_PICKED_UP) != 0);
      CHECK(after->tcp_state == MS_TCP_ESTABLISHED);
    }
  }
}

TEST_CASE("timeouts are configurable before load", "[bpf][privileged][session]") {
  auto datapath = load_with_test_clock([](microseg_bpf& skeleton) {
    skeleton.rodata->session_timeout_tcp_ns = 5 * kSecond;
    skeleton.rodata->session_timeout_udp_ns = 2 * kSecond;
  });
  if (!datapath) return;
  datapath->set_endpoint(kEndpointId, MS_EP_F_INGRESS_ISOLATED, kPod);
  for (const Step& step : pod_opens()) {
    check_verdict(*datapath, step.from == POD ? Program::kFromPod : Program::kToPod,
                  segment_of(step), step.expected == MS_REASON_ALLOW_POLICY
                                         ? MS_REASON_ALLOW_NOT_ISOLATED
                                         : step.expected);
  }
  check_verdict(*datapath, Program::kFromPod, udp_packet(kPod, 5353, kPeer, 53),
                MS_REASON_ALLOW_NOT_ISOLATED);
  datapath->set_clock(kClockStart + 3 * kSecond);
  check_verdict(*datapath, Program::kToPod, udp_packet(kPeer, 53, kPod, 5353),
                MS_REASON_DROP_POLICY);
  check_verdict(*datapath, Program::kToPod, segment_of({PEER, ACK, 1, 1}),
                MS_REASON_ALLOW_SESSION);
  datapath->set_clock(kClockStart + 9 * kSecond);
  // Expired: the reply direction is isolated and only the pod may open it, so
  // the pick-up is admitted through the pod's (non-isolated) egress.
  check_verdict(*datapath, Program::kToPod, segment_of({PEER, ACK, 1, 1}),
                MS_REASON_ALLOW_NOT_ISOLATED);
  CHECK((datapath->session(tcp_key())->flags & MS_SESSION_F_PICKED_UP) != 0);
}

TEST_CASE("UDP and ICMP echo pseudo-sessions and their timeouts", "[bpf][privileged][session]") {
  auto datapath = load_with_test_clock();
  if (!datapath) return;
  datapath->set_endpoint(kEndpointId, kBothIsolated, kPod);
  datapath->put_exact(kEndpointId, MS_DIR_EGRESS, kPeer, kProtoUdp, 53, MS_ACTION_ALLOW);
  datapath->put_exact(kEndpointId, MS_DIR_EGRESS, kPeer, kProtoIcmp, 0, MS_ACTION_ALLOW);

  check_verdict(*datapath, Program::kFromPod, udp_packet(kPod, 5353, kPeer, 53),
                MS_REASON_ALLOW_POLICY);
  check_verdict(*datapath, Program::kFromPod, icmp_packet(kPod, kPeer, kIcmpEchoRequest, 9),
                MS_REASON_ALLOW_POLICY);
  datapath->set_clock(kClockStart + 30 * kSecond);
  check_verdict(*datapath, Program::kToPod, udp_packet(kPeer, 53, kPod, 5353),
                MS_REASON_ALLOW_SESSION);
  check_verdict(*datapath, Program::kToPod, icmp_packet(kPeer, kPod, kIcmpEchoReply, 9),
                MS_REASON_ALLOW_SESSION);
  // ICMP: 30 s after its last packet; UDP: 60 s after its last packet.
  datapath->set_clock(kClockStart + 60 * kSecond + 1);
  check_verdict(*datapath, Program::kToPod, icmp_packet(kPeer, kPod, kIcmpEchoReply, 9),
                MS_REASON_DROP_POLICY);
  check_verdict(*datapath, Program::kToPod, udp_packet(kPeer, 53, kPod, 5353),
                MS_REASON_ALLOW_SESSION);
  datapath->set_clock(kClockStart + 120 * kSecond + 2);
  check_verdict(*datapath, Program::kToPod, udp_packet(kPeer, 53, kPod, 5353),
                MS_REASON_DROP_POLICY);
  CHECK(datapath->session_count() == 0);
}

TEST_CASE("SCTP pseudo-sessions: replies pass, the session lives the established timeout",
          "[bpf][privileged][session]") {
  auto datapath = load_with_test_clock();
  if (!datapath) return;
  datapath->set_endpoint(kEndpointId, kBothIsolated, kPod);
  datapath->put_exact(kEndpointId, MS_DIR_EGRESS, kPeer, kProtoSctp, 3868, MS_ACTION_ALLOW);
  auto sctp = [](const char* src, std::uint16_t sport, const char* dst, std::uint16_t dport) {
    return ethernet(kEthertypeIpv4,
                    ipv4({.src = src, .dst = dst, .proto = kProtoSctp}, sctp_common_header(sport, dport)));
  };
  const Bytes to_peer = sctp(kPod, 5000, kPeer, 3868);
  const Bytes reply = sctp(kPeer, 3868, kPod, 5000);
  const Bytes unsolicited = sctp(kPeer, 3868, kPod, 5001);

  // The peer may not open an association towards the pod; the pod may.
  check_verdict(*datapath, Program::kToPod, reply, MS_REASON_DROP_POLICY);
  check_verdict(*datapath, Program::kFromPod, to_peer, MS_REASON_ALLOW_POLICY);
  CHECK(datapath->session_count() == 1);
  check_verdict(*datapath, Program::kToPod, reply, MS_REASON_ALLOW_SESSION);
  check_verdict(*datapath, Program::kToPod, unsolicited, MS_REASON_DROP_POLICY);
  // SCTP has no state machine here: its session lives like an established TCP one (1 h idle).
  datapath->set_clock(kClockStart + 3600 * kSecond);
  check_verdict(*datapath, Program::kToPod, reply, MS_REASON_ALLOW_SESSION);
  datapath->set_clock(kClockStart + 2 * 3600 * kSecond + 1);
  check_verdict(*datapath, Program::kToPod, reply, MS_REASON_DROP_POLICY);
  CHECK(datapath->session_count() == 0);
}

// The IPv4 packet inside a frame (what an ICMP error quotes).
Bytes ip_packet_of(const Bytes& frame) { return Bytes(frame.begin() + 14, frame.end()); }

TEST_CASE("ICMP errors about a tracked session are related, others need policy",
          "[bpf][privileged][session]") {
  auto datapath = load_with_test_clock();
  if (!datapath) return;
  datapath->set_endpoint(kEndpointId, kBothIsolated, kPod);
  datapath->put_exact(kEndpointId, MS_DIR_EGRESS, kPeer, kProtoTcp, kPeerPort, MS_ACTION_ALLOW);
  datapath->put_exact(kEndpointId, MS_DIR_INGRESS, kPeer, kProtoUdp, 53, MS_ACTION_ALLOW);
  datapath->put_exact(kEndpointId, MS_DIR_EGRESS, kPeer, kProtoIcmp, 0, MS_ACTION_ALLOW);

  const Bytes pod_syn = segment_of({POD, SYN, 0, 0});
  const Bytes peer_query = udp_packet(kPeer, 4444, kPod, 53);
  const Bytes pod_ping = icmp_packet(kPod, kPeer, kIcmpEchoRequest, 77);
  check_verdict(*datapath, Program::kFromPod, pod_syn, MS_REASON_ALLOW_POLICY);
  check_verdict(*datapath, Program::kToPod, peer_query, MS_REASON_ALLOW_POLICY);
  check_verdict(*datapath, Program::kFromPod, pod_ping, MS_REASON_ALLOW_POLICY);

  SECTION("fragmentation needed from a router, about the pod's TCP flow") {
    check_verdict(*datapath, Program::kToPod,
                  icmp_error_packet(kRouter, kPod, kIcmpDestUnreachable,
                                     kIcmpCodeFragmentationNeeded, ip_packet_of(pod_syn)),
                  MS_REASON_ALLOW_RELATED);
  }
  SECTION("time exceeded about the pod's ping") {
    check_verdict(*datapath, Program::kToPod,
                  icmp_error_packet(kRouter, kPod, kIcmpTimeExceeded, 0, ip_packet_of(pod_ping)),
                  MS_REASON_ALLOW_RELATED);
  }
  SECTION("port unreachable sent by the pod about the peer's UDP query") {
    check_verdict(*datapath, Program::kFromPod,
                  icmp_error_packet(kPod, kPeer, kIcmpDestUnreachable, 3,
                                     ip_packet_of(peer_query)),
                  MS_REASON_ALLOW_RELATED);
  }
  SECTION("an error about a flow nobody tracks is dropped for an isolated pod") {
    const Bytes unknown = tcp_frame(kPod, kPeer, {.sport = 1234, .dport = kPeerPort});
    check_verdict(*datapath, Program::kToPod,
                  icmp_error_packet(kRouter, kPod, kIcmpDestUnreachable,
                                     kIcmpCodeFragmentationNeeded, ip_packet_of(unknown)),
                  MS_REASON_DROP_POLICY);
  }
  SECTION("an error quoting the session the wrong way round is not related") {
    // Claims the peer sent the SYN: the quoted flow is reversed.
    const Bytes reversed = segment_of({PEER, SYN, 0, 0});
    check_verdict(*datapath, Program::kToPod,
                  icmp_error_packet(kRouter, kPod, kIcmpDestUnreachable, 1,
                                     ip_packet_of(reversed)),
                  MS_REASON_DROP_POLICY);
  }
  SECTION("an error about an expired session is not related") {
    datapath->set_clock(kClockStart + 31 * kSecond);
    check_verdict(*datapath, Program::kToPod,
                  icmp_error_packet(kRouter, kPod, kIcmpDestUnreachable,
                                     kIcmpCodeFragmentationNeeded, ip_packet_of(pod_syn)),
                  MS_REASON_DROP_POLICY);
  }
}

TEST_CASE("the half-open cap drops SYNs beyond it, established flows go on",
          "[bpf][privileged][session]") {
  constexpr std::uint32_t kCap = 3;
  auto datapath = load_isolated_with_half_open_cap(kCap);
  if (!datapath) return;
  datapath->put_exact(kEndpointId, MS_DIR_INGRESS, kPeer, kProtoTcp, kPodPort, MS_ACTION_ALLOW);

  for (const Step& step : peer_opens()) {
    check_verdict(*datapath, step.from == POD ? Program::kFromPod : Program::kToPod,
                  segment_of(step), step.expected);
  }
  CHECK(datapath->half_open(kEndpointId) == 0);

  auto flood_syn = [](std::uint16_t sport) {
    return tcp_frame(kPeer, kPod, {.sport = sport, .dport = kPodPort, .seq = 42});
  };
  for (std::uint16_t i = 0; i < kCap; ++i) {
    check_verdict(*datapath, Program::kToPod, flood_syn(20000 + i), MS_REASON_ALLOW_POLICY);
  }
  CHECK(datapath->half_open(kEndpointId) == kCap);
  check_verdict(*datapath, Program::kToPod, flood_syn(20000 + kCap), MS_REASON_DROP_SYN_FLOOD);
  check_verdict(*datapath, Program::kToPod, flood_syn(20000 + kCap + 1),
                MS_REASON_DROP_SYN_FLOOD);
  CHECK(datapath->session_count() == 1 + kCap);
  // A retransmission of a counted SYN is no new session.
  check_verdict(*datapath, Program::kToPod, flood_syn(20000), MS_REASON_ALLOW_SESSION);
  // The established connection is untouched.
  check_verdict(*datapath, Program::kToPod, segment_of({PEER, PSHACK, 1, 1, 100}),
                MS_REASON_ALLOW_SESSION);
  check_verdict(*datapath, Program::kFromPod, segment_of({POD, ACK, 1, 101}),
                MS_REASON_ALLOW_SESSION);

  // One handshake completes, one half-open session expires: room for two.
  const std::uint16_t completing_port = 20000;
  check_verdict(*datapath, Program::kFromPod,
                tcp_frame(kPod, kPeer, {.sport = kPodPort, .dport = completing_port, .seq = 7,
                                         .ack = 43, .flags = SYNACK}),
                MS_REASON_ALLOW_SESSION);
  CHECK(datapath->half_open(kEndpointId) == kCap);
  check_verdict(*datapath, Program::kToPod,
                tcp_frame(kPeer, kPod, {.sport = completing_port, .dport = kPodPort, .seq = 43,
                                         .ack = 8, .flags = ACK}),
                MS_REASON_ALLOW_SESSION);
  CHECK(datapath->half_open(kEndpointId) == kCap - 1);
  check_verdict(*datapath, Program::kToPod, flood_syn(30000), MS_REASON_ALLOW_POLICY);
  check_verdict(*datapath, Program::kToPod, flood_syn(30001), MS_REASON_DROP_SYN_FLOOD);
  // An expired half-open session stops counting when it is found expired.
  datapath->set_clock(kClockStart + 31 * kSecond);
  check_verdict(*datapath, Program::kToPod, flood_syn(20001), MS_REASON_ALLOW_POLICY);
  CHECK(datapath->half_open(kEndpointId) == kCap);
}

TEST_CASE("a picked-up session is half-open until the other side answers",
          "[bpf][privileged][session]") {
  // Without this, bare ACKs the pod's egress allows would each make an
  // ESTABLISHED session for an hour, outside the SYN cap.
  constexpr std::uint32_t kCap = 3;
  auto datapath = load_isolated_with_half_open_cap(kCap);
  if (!datapath) return;
  datapath->put_exact(kEndpointId, MS_DIR_EGRESS, kPeer, kProtoTcp, kPeerPort, MS_ACTION_ALLOW);

  auto pod_ack = [](std::uint16_t pod_port) {
    return tcp_frame(kPod, kPeer, {.sport = pod_port, .dport = kPeerPort, .seq = 100, .ack = 500,
                                   .flags = ACK});
  };
  auto peer_ack = [](std::uint16_t pod_port) {
    return tcp_frame(kPeer, kPod, {.sport = kPeerPort, .dport = pod_port, .seq = 500, .ack = 100,
                                   .flags = ACK});
  };
  for (std::uint16_t i = 0; i < kCap; ++i) {
    check_verdict(*datapath, Program::kFromPod, pod_ack(40000 + i), MS_REASON_ALLOW_POLICY);
  }
  CHECK(datapath->half_open(kEndpointId) == kCap);
  const auto unconfirmed = datapath->session(tcp_key(40000));
  REQUIRE(unconfirmed);
  CHECK(unconfirmed->tcp_state == MS_TCP_ESTABLISHED);
  CHECK(unconfirmed->flags == (MS_SESSION_F_PICKED_UP | MS_SESSION_F_HALF_OPEN |
                               MS_SESSION_F_AWAITING_RESPONDER));
  // The ACK flood stops at the cap; nothing is created beyond it.
  check_verdict(*datapath, Program::kFromPod, pod_ack(40000 + kCap), MS_REASON_DROP_SYN_FLOOD);
  CHECK(datapath->session_count() == kCap);
  // More of the same side's segments confirm nothing.
  check_verdict(*datapath, Program::kFromPod, pod_ack(40001), MS_REASON_ALLOW_SESSION);
  CHECK(datapath->half_open(kEndpointId) == kCap);

  // The peer answers one: it is a connection, it stops counting.
  check_verdict(*datapath, Program::kToPod, peer_ack(40000), MS_REASON_ALLOW_SESSION);
  const auto confirmed = datapath->session(tcp_key(40000));
  REQUIRE(confirmed);
  CHECK(confirmed->flags == MS_SESSION_F_PICKED_UP);
  CHECK(datapath->half_open(kEndpointId) == kCap - 1);
  check_verdict(*datapath, Program::kFromPod, pod_ack(40000 + kCap), MS_REASON_ALLOW_POLICY);
  CHECK(datapath->half_open(kEndpointId) == kCap);

  // An answer the state machine refuses (far outside the window) confirms nothing.
  check_verdict(*datapath, Program::kToPod,
                tcp_frame(kPeer, kPod, {.sport = kPeerPort, .dport = 40001, .seq = 500,
                                        .ack = 100 + (1U << 31), .flags = ACK}),
                MS_REASON_DROP_INVALID_SEQ);
  CHECK(datapath->session(tcp_key(40001))->flags ==
        (MS_SESSION_F_PICKED_UP | MS_SESSION_F_HALF_OPEN | MS_SESSION_F_AWAITING_RESPONDER));

  // Unanswered pick-ups take the SYN timeout, not ESTABLISHED's hour; the
  // answered one lives on.
  datapath->set_clock(kClockStart + 31 * kSecond);
  check_verdict(*datapath, Program::kFromPod, pod_ack(40000), MS_REASON_ALLOW_SESSION);
  check_verdict(*datapath, Program::kFromPod, pod_ack(40001), MS_REASON_ALLOW_POLICY);
  // 40001 counted again; 40002 and 40003 count until found expired or swept,
  // like unanswered SYNs.
  CHECK(datapath->half_open(kEndpointId) == kCap);
  CHECK(datapath->session(tcp_key(40001))->last_seen_ns == kClockStart + 31 * kSecond);
}

TEST_CASE("a picked-up SYN-ACK and a picked-up peer segment count until the pod answers",
          "[bpf][privileged][session]") {
  constexpr std::uint32_t kCap = 1;
  auto datapath = load_isolated_with_half_open_cap(kCap);
  if (!datapath) return;
  datapath->put_exact(kEndpointId, MS_DIR_EGRESS, kPeer, kProtoTcp, kPeerPort, MS_ACTION_ALLOW);

  SECTION("SYN-ACK") {
    check_verdict(*datapath, Program::kToPod, segment_of({PEER, SYNACK, 0, 1}),
                  MS_REASON_ALLOW_POLICY);
    CHECK(datapath->session(tcp_key())->flags ==
          (MS_SESSION_F_PICKED_UP | MS_SESSION_F_HALF_OPEN | MS_SESSION_F_AWAITING_INITIATOR));
    CHECK(datapath->half_open(kEndpointId) == 1);
    check_verdict(*datapath, Program::kToPod,
                  tcp_frame(kPeer, kPod, {.sport = kPeerPort, .dport = 7001, .seq = 0, .ack = 1,
                                          .flags = SYNACK}),
                  MS_REASON_DROP_SYN_FLOOD);
    check_verdict(*datapath, Program::kFromPod, segment_of({POD, ACK, 1, 1}),
                  MS_REASON_ALLOW_SESSION);
    CHECK(datapath->session(tcp_key())->tcp_state == MS_TCP_ESTABLISHED);
    CHECK(datapath->session(tcp_key())->flags == MS_SESSION_F_PICKED_UP);
    CHECK(datapath->half_open(kEndpointId) == 0);
  }
  SECTION("the peer's data segment") {
    check_verdict(*datapath, Program::kToPod, segment_of({PEER, PSHACK, 1, 1, 10}),
                  MS_REASON_ALLOW_POLICY);
    CHECK(datapath->session(tcp_key())->flags ==
          (MS_SESSION_F_PICKED_UP | MS_SESSION_F_HALF_OPEN | MS_SESSION_F_AWAITING_INITIATOR));
    CHECK(datapath->half_open(kEndpointId) == 1);
    check_verdict(*datapath, Program::kFromPod, segment_of({POD, ACK, 1, 11}),
                  MS_REASON_ALLOW_SESSION);
    CHECK(datapath->half_open(kEndpointId) == 0);
    CHECK(datapath->session(tcp_key())->flags == MS_SESSION_F_PICKED_UP);
  }
}

TEST_CASE("a policy change re-checks live sessions on their next packet",
          "[bpf][privileged][session]") {
  auto datapath = load_with_test_clock();
  if (!datapath) return;
  datapath->set_endpoint(kEndpointId, kBothIsolated, kPod, kTestRunIfindex, 1);
  datapath->put_exact(kEndpointId, MS_DIR_INGRESS, kPeer, kProtoTcp, kPodPort, MS_ACTION_ALLOW);
  datapath->put_exact(kEndpointId, MS_DIR_EGRESS, kPeer, kProtoUdp, 53, MS_ACTION_ALLOW);
  for (const Step& step : peer_opens()) {
    check_verdict(*datapath, step.from == POD ? Program::kFromPod : Program::kToPod,
                  segment_of(step), step.expected);
  }
  check_verdict(*datapath, Program::kFromPod, udp_packet(kPod, 5353, kPeer, 53),
                MS_REASON_ALLOW_POLICY);

  SECTION("a revision that still allows the flow only moves the session's revision") {
    datapath->set_endpoint(kEndpointId, kBothIsolated, kPod, kTestRunIfindex, 2);
    check_verdict(*datapath, Program::kFromPod, segment_of({POD, ACK, 1, 1}),
                  MS_REASON_ALLOW_SESSION);
    CHECK(datapath->session(tcp_key())->policy_rev == 2);
    check_verdict(*datapath, Program::kToPod, udp_packet(kPeer, 53, kPod, 5353),
                  MS_REASON_ALLOW_SESSION);
  }
  SECTION("a revision that denies the flow stops it, in either direction") {
    datapath->delete_exact(kEndpointId, MS_DIR_INGRESS, kPeer, kProtoTcp, kPodPort);
    datapath->delete_exact(kEndpointId, MS_DIR_EGRESS, kPeer, kProtoUdp, 53);
    // Entries gone but the revision not bumped yet: sessions still hold.
    check_verdict(*datapath, Program::kToPod, segment_of({PEER, ACK, 1, 1}),
                  MS_REASON_ALLOW_SESSION);
    datapath->set_endpoint(kEndpointId, kBothIsolated, kPod, kTestRunIfindex, 2);
    // The pod's own segment (the reply direction) is the first to notice.
    check_verdict(*datapath, Program::kFromPod, segment_of({POD, ACK, 1, 1}),
                  MS_REASON_DROP_POLICY_REVOKED);
    REQUIRE(datapath->session(tcp_key()).has_value());
    CHECK((datapath->session(tcp_key())->flags & MS_SESSION_F_REVOKED) != 0);
    // The tombstone keeps dropping the flow either way, and no pick-up
    // (through the reverse orientation) can bring it back.
    check_verdict(*datapath, Program::kToPod, segment_of({PEER, ACK, 1, 1}),
                  MS_REASON_DROP_POLICY_REVOKED);
    check_verdict(*datapath, Program::kFromPod, segment_of({POD, PSHACK, 1, 1, 10}),
                  MS_REASON_DROP_POLICY_REVOKED);
    check_verdict(*datapath, Program::kToPod, udp_packet(kPeer, 53, kPod, 5353),
                  MS_REASON_DROP_POLICY_REVOKED);
    CHECK(datapath->session_count() == 2);
    // ICMP errors about a revoked flow are not related.
    check_verdict(*datapath, Program::kToPod,
                  icmp_error_packet("10.244.0.1", kPod, kIcmpDestUnreachable, 3,
                                     ip_packet_of(udp_packet(kPod, 5353, kPeer, 53))),
                  MS_REASON_DROP_POLICY);
  }
  SECTION("a revoked flow comes back when a later revision allows it again") {
    datapath->delete_exact(kEndpointId, MS_DIR_INGRESS, kPeer, kProtoTcp, kPodPort);
    datapath->set_endpoint(kEndpointId, kBothIsolated, kPod, kTestRunIfindex, 2);
    check_verdict(*datapath, Program::kToPod, segment_of({PEER, ACK, 1, 1}),
                  MS_REASON_DROP_POLICY_REVOKED);
    datapath->put_exact(kEndpointId, MS_DIR_INGRESS, kPeer, kProtoTcp, kPodPort, MS_ACTION_ALLOW);
    datapath->set_endpoint(kEndpointId, kBothIsolated, kPod, kTestRunIfindex, 3);
    check_verdict(*datapath, Program::kToPod, segment_of({PEER, ACK, 1, 1}),
                  MS_REASON_ALLOW_SESSION);
    CHECK((datapath->session(tcp_key())->flags & MS_SESSION_F_REVOKED) == 0);
  }
  SECTION("a revoked half-open session stops counting against the SYN cap") {
    const Bytes syn = tcp_frame(kPeer, kPod, {.sport = 41000, .dport = kPodPort, .seq = 9});
    check_verdict(*datapath, Program::kToPod, syn, MS_REASON_ALLOW_POLICY);
    CHECK(datapath->half_open(kEndpointId) == 1);
    datapath->delete_exact(kEndpointId, MS_DIR_INGRESS, kPeer, kProtoTcp, kPodPort);
    datapath->set_endpoint(kEndpointId, kBothIsolated, kPod, kTestRunIfindex, 2);
    check_verdict(*datapath, Program::kToPod, syn, MS_REASON_DROP_POLICY_REVOKED);
    CHECK(datapath->half_open(kEndpointId) == 0);
  }
  SECTION("a flow admitted while not isolated is revoked by isolation") {
    datapath->set_endpoint(kEndpointId, 0, kPod, kTestRunIfindex, 2);
    const Bytes out = udp_packet(kPod, 7777, kPeer, 9999);
    check_verdict(*datapath, Program::kFromPod, out, MS_REASON_ALLOW_NOT_ISOLATED);
    datapath->set_endpoint(kEndpointId, kBothIsolated, kPod, kTestRunIfindex, 3);
    check_verdict(*datapath, Program::kFromPod, out, MS_REASON_DROP_POLICY_REVOKED);
  }
}

}  // namespace
}  // namespace microseg::test
