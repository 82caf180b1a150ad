// The pipeline's tail calls (R4): the entry programs (from_pod, to_pod)
// hand every parsed IP packet to their tracking stage through the ms_stages
// PROG_ARRAY. A missing stage must fail closed with DROP_MISSED_TAIL_CALL,
// counted once through the entry program's exit, never let the packet pass.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "datapath_test_support.h"
#include "loaded_datapath.h"
#include "microseg.skel.h"
#include "ipv6_packet_builder.h"
#include "packet_builder.h"

namespace microseg::test {
namespace {

constexpr const char* kPod = "10.244.1.10";
constexpr const char* kPeer = "10.244.2.20";
constexpr std::uint32_t kEndpointId = 3;

struct StageCase {
  std::string name;
  Program program;
  std::uint32_t slot;        // the stage this program tail-calls
  std::uint32_t other_slot;  // the other direction's stage
  Bytes frame;
};

TEST_CASE("a missing pipeline stage fails closed with DROP_MISSED_TAIL_CALL",
          "[bpf][privileged][tailcall]") {
  const std::vector<StageCase> cases = {
      {"to_pod", Program::kToPod, MS_STAGE_TO_POD_TRACK, MS_STAGE_FROM_POD_TRACK,
       tcp_packet(kPeer, 40000, kPod, 80)},
      {"from_pod", Program::kFromPod, MS_STAGE_FROM_POD_TRACK, MS_STAGE_TO_POD_TRACK,
       tcp_packet(kPod, 40000, kPeer, 80)},
      {"to_pod IPv6", Program::kToPod, MS_STAGE_TO_POD_TRACK6, MS_STAGE_TO_POD_TRACK,
       tcp6_frame("fd00:10:244:2::14", "fd00:10:244:1::a", {.sport = 40000, .dport = 80})},
      {"from_pod IPv6", Program::kFromPod, MS_STAGE_FROM_POD_TRACK6, MS_STAGE_FROM_POD_TRACK,
       tcp6_frame("fd00:10:244:1::a", "fd00:10:244:2::14", {.sport = 40000, .dport = 80})},
  };
  for (const StageCase& c : cases) {
    SECTION(c.name) {
      microseg_bpf* skeleton = nullptr;
      auto datapath = load_or_skip([&](microseg_bpf& s) { skeleton = &s; });
      if (!datapath) return;
      // Not isolated: with its stage in place the packet is allowed.
      datapath->set_endpoint(kEndpointId, 0, kPod);
      datapath->set_endpoint_ipv6("fd00:10:244:1::a");
      check_verdict(*datapath, c.program, c.frame, MS_REASON_ALLOW_NOT_ISOLATED);

      REQUIRE(bpf_map__delete_elem(skeleton->maps.ms_stages, &c.slot, sizeof(c.slot), 0) == 0);
      check_verdict(*datapath, c.program, c.frame, MS_REASON_DROP_MISSED_TAIL_CALL);
      // Every time, not just once.
      check_verdict(*datapath, c.program, c.frame, MS_REASON_DROP_MISSED_TAIL_CALL);

      // Decided before the hand-over, so no stage is needed: unknown
      // endpoint and ARP keep their own reasons.
      check_verdict(*datapath, c.program, arp_request(kPeer, kPod),
                    MS_REASON_ALLOW_NON_IP);

      // The other direction's stage is untouched.
      std::uint32_t other_id = 0;
      REQUIRE(bpf_map__lookup_elem(skeleton->maps.ms_stages, &c.other_slot,
                                   sizeof(c.other_slot), &other_id, sizeof(other_id), 0) == 0);
      CHECK(other_id != 0);
    }
  }
}

TEST_CASE("a stage run without its entry program drops", "[bpf][privileged][tailcall]") {
  microseg_bpf* skeleton = nullptr;
  auto datapath = load_or_skip([&](microseg_bpf& s) { skeleton = &s; });
  if (!datapath) return;
  datapath->set_endpoint(kEndpointId, 0, kPod);
  // Nothing handed over on this CPU yet: the scratch state is not this packet's.
  const Bytes frame = tcp_packet(kPeer, 40000, kPod, 80);
  const StatsSnapshot before = datapath->read_stats();
  bpf_test_run_opts opts{};
  opts.sz = sizeof(opts);
  opts.data_in = frame.data();
  opts.data_size_in = static_cast<std::uint32_t>(frame.size());
  opts.repeat = 1;
  REQUIRE(bpf_prog_test_run_opts(bpf_program__fd(skeleton->progs.to_pod_track), &opts) == 0);
  const StatsSnapshot after = datapath->read_stats();
  StatsSnapshot delta{};
  for (std::size_t i = 0; i < delta.size(); ++i) {
    delta[i].packets = after[i].packets - before[i].packets;
    delta[i].bytes = after[i].bytes - before[i].bytes;
  }
  CHECK(opts.retval == tc_action_for(MS_REASON_DROP_MISSED_TAIL_CALL));
  check_only_counter_moved(delta, MS_DIR_INGRESS, MS_REASON_DROP_MISSED_TAIL_CALL, frame.size());
}

}  // namespace
}  // namespace microseg::test
