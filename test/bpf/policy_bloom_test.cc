// The optional bloom pre-filter in front of the exact-match policy map (R6).
// Off by default (the agent never turns it on); when a loader turns it on,
// a peer the filter says is absent must skip the exact lookups and fall
// through to LPM and the default, and a present peer must be judged exactly
// as without the filter.
#include <bpf/libbpf.h>

#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "datapath_test_support.h"
#include "loaded_datapath.h"
#include "microseg.skel.h"
#include "packet_builder.h"

namespace microseg::test {
namespace {

constexpr const char* kPod = "10.244.1.10";
constexpr const char* kInFilter = "10.244.2.20";
constexpr const char* kNotInFilter = "10.244.2.21";
constexpr std::uint32_t kEndpointId = 7;

void push_bloom(microseg_bpf& skeleton, const char* peer, ms_direction direction) {
  const ms_policy_bloom_element element{.endpoint_id = kEndpointId,
                                        .peer_ipv4 = ipv4_net(peer),
                                        .direction = static_cast<std::uint8_t>(direction),
                                        .pad = {}};
  REQUIRE(bpf_map__update_elem(skeleton.maps.ms_policy_bloom, nullptr, 0, &element,
                               sizeof(element), BPF_ANY) == 0);
}

void expect_verdict(LoadedDatapath& datapath, const Bytes& frame, ms_reason expected) {
  check_verdict(datapath, Program::kToPod, frame, expected);
}

struct BloomCase {
  std::string name;
  bool filter_enabled;
  const char* peer;  // has an exact ALLOW entry for tcp/80 in every case
  bool peer_in_filter;
  bool lpm_allows_peer;
  ms_reason expected;
};

TEST_CASE("bloom pre-filter: absent peers skip the exact map, present ones are judged as before",
          "[bpf][privileged][bloom]") {
  if (libbpf_probe_bpf_map_type(BPF_MAP_TYPE_BLOOM_FILTER, nullptr) != 1) {
    WARN("SKIPPED: this kernel has no BPF_MAP_TYPE_BLOOM_FILTER (needs >= 5.16)");
    return;
  }
  const std::vector<BloomCase> cases = {
      {"off: the exact entry decides", false, kNotInFilter, false, false, MS_REASON_ALLOW_POLICY},
      {"on, peer in filter: the exact entry decides", true, kInFilter, true, false,
       MS_REASON_ALLOW_POLICY},
      // A loader that breaks the superset rule is how this test sees the
      // filter at work: the exact ALLOW is never looked up.
      {"on, peer not in filter: exact map skipped, default deny", true, kNotInFilter, false, false,
       MS_REASON_DROP_POLICY},
      {"on, peer not in filter: LPM still consulted", true, kNotInFilter, false, true,
       MS_REASON_ALLOW_POLICY},
  };
  for (const BloomCase& c : cases) {
    SECTION(c.name) {
      microseg_bpf* skeleton = nullptr;
      auto datapath = load_or_skip([&](microseg_bpf& s) {
        skeleton = &s;
        s.rodata->policy_bloom_enabled = c.filter_enabled ? 1 : 0;
        REQUIRE(bpf_map__set_max_entries(s.maps.ms_policy_bloom, 64) == 0);
      });
      if (!datapath) return;
      datapath->set_endpoint(kEndpointId, MS_EP_F_INGRESS_ISOLATED, kPod);
      datapath->put_exact(kEndpointId, MS_DIR_INGRESS, c.peer, kProtoTcp, 80, MS_ACTION_ALLOW);
      // Another peer's element: the filter is never empty.
      push_bloom(*skeleton, std::string(c.peer) == kInFilter ? kNotInFilter : kInFilter,
                 MS_DIR_EGRESS);
      if (c.peer_in_filter) push_bloom(*skeleton, c.peer, MS_DIR_INGRESS);
      if (c.lpm_allows_peer) {
        datapath->put_lpm(kEndpointId, MS_DIR_INGRESS, "10.244.2.0", 24, kProtoTcp, 80,
                          MS_ACTION_ALLOW);
      }
      expect_verdict(*datapath, tcp_packet(c.peer, 40000, kPod, 80), c.expected);
    }
  }
}

}  // namespace
}  // namespace microseg::test
