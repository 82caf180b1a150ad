// Frames from the wire through the real programs (BPF_PROG_TEST_RUN): the
// packet parser (Ethernet, IPv4 options, fragments, the IPv6 extension-header
// walk, L4 headers, ICMP/ICMPv6 quotes) and everything behind it.
//
// Input: one selector byte, then the frame. Bit 0 picks the program
// (from_pod / to_pod), bits 1-2 the endpoint's configuration:
//   0: both directions isolated, no policy entries, no sessions: fail
//      closed, so no frame may pass except ARP and NDP/MLD (non_ip);
//   1: nothing isolated, no entries: a pod that is not selected by any policy;
//   2: both isolated, everything allowed by catch-all LPM entries of both
//      families (sessions get created and walked);
//   3: like 2 with a cluster-tier Deny catch-all on a direction that is not
//      isolated (the *_LOOKUP flags): nothing may pass but non_ip.
// Every run, whatever the configuration: the verdict is TC_ACT_OK or
// TC_ACT_SHOT; exactly one (direction, reason) counter moved, by one packet
// of the frame's size, in the program's direction (the one-exit rule); the
// verdict is the one that reason stands for.
//
// Needs CAP_BPF (root): without it every input is skipped with a message,
// like the other privileged suites.
#include <linux/pkt_cls.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <stdexcept>

#include "fuzz_check.h"
#include "loaded_datapath.h"

namespace {

using microseg::test::Bytes;
using microseg::test::LoadedDatapath;
using microseg::test::Program;

constexpr const char* kPod = "10.244.1.10";
constexpr const char* kPod6 = "fd00:10:244:1::a";
constexpr uint32_t kEndpointIdBase = 100;
constexpr size_t kMaxFrame = 1514;  // BPF_PROG_TEST_RUN wants the frame in one page

enum Config : uint8_t { kFailClosed = 0, kNotSelected = 1, kAllowAll = 2, kClusterDeny = 3 };

struct Setup {
  std::unique_ptr<LoadedDatapath> datapath;
  bool skipped = false;
};

Setup& LoadOnce() {
  static Setup setup = [] {
    Setup s;
    int load_errno = 0;
    s.datapath = LoadedDatapath::load(&load_errno);
    if (!s.datapath && (load_errno == EPERM || load_errno == EACCES)) {
      std::fprintf(stderr, "SKIPPED: needs CAP_BPF + CAP_NET_ADMIN (root) to load the BPF object: %s\n",
                   std::strerror(load_errno));
      s.skipped = true;
      return s;
    }
    FUZZ_CHECK(s.datapath != nullptr, "loading microseg.bpf.o failed: %s", std::strerror(load_errno));
    LoadedDatapath& dp = *s.datapath;
    for (ms_direction dir : {MS_DIR_INGRESS, MS_DIR_EGRESS}) {
      dp.put_lpm(kEndpointIdBase + kAllowAll, dir, "0.0.0.0", 0, 0, 0, MS_ACTION_ALLOW);
      dp.put_lpm6(kEndpointIdBase + kAllowAll, dir, "::", 0, 0, 0, MS_ACTION_ALLOW);
      dp.put_lpm(kEndpointIdBase + kClusterDeny, dir, "0.0.0.0", 0, 0, 0, MS_ACTION_DENY);
      dp.put_lpm6(kEndpointIdBase + kClusterDeny, dir, "::", 0, 0, 0, MS_ACTION_DENY);
    }
    return s;
  }();
  return setup;
}

uint8_t FlagsOf(Config config) {
  switch (config) {
    case kFailClosed:
    case kAllowAll:
      return MS_EP_F_INGRESS_ISOLATED | MS_EP_F_EGRESS_ISOLATED;
    case kNotSelected:
      return 0;
    case kClusterDeny:
      return MS_EP_F_INGRESS_LOOKUP | MS_EP_F_EGRESS_LOOKUP;
  }
  return 0;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1 + 14 || size - 1 > kMaxFrame) return 0;  // the kernel refuses a run without an Ethernet header
  Setup& setup = LoadOnce();
  if (setup.skipped) return 0;
  LoadedDatapath& dp = *setup.datapath;

  const Program program = (data[0] & 1) ? Program::kToPod : Program::kFromPod;
  const auto config = static_cast<Config>((data[0] >> 1) & 3);
  const Bytes frame(data + 1, data + size);

  // Each configuration is its own endpoint id: its entries and sessions are its own.
  const uint8_t lookup_actions =
      config == kClusterDeny ? MS_EP_LOOKUP_DENIES(MS_DIR_INGRESS) | MS_EP_LOOKUP_DENIES(MS_DIR_EGRESS) : 0;
  dp.set_endpoint(kEndpointIdBase + config, FlagsOf(config), kPod, microseg::test::kTestRunIfindex, 1,
                  lookup_actions);
  dp.set_endpoint_ipv6(kPod6);

  microseg::test::RunResult result;
  try {
    result = dp.run(program, frame);
  } catch (const std::runtime_error& e) {
    // The kernel's test runner refuses an IPv4/IPv6 ethertype without a
    // whole fixed header (EINVAL) before any program runs: such a frame
    // never reaches TC either (the stack drops it first). Anything else is
    // a failure.
    const uint16_t ethertype = static_cast<uint16_t>(frame[12] << 8 | frame[13]);
    const size_t l3_bytes = frame.size() - 14;
    const bool short_l3 = (ethertype == 0x0800 && l3_bytes < 20) || (ethertype == 0x86DD && l3_bytes < 40);
    FUZZ_CHECK(short_l3 && std::strstr(e.what(), "Invalid argument") != nullptr,
               "BPF_PROG_TEST_RUN failed on a %zu-byte frame (ethertype 0x%04x): %s", frame.size(), ethertype,
               e.what());
    return 0;
  }

  const ms_direction direction = microseg::test::direction_of(program);
  uint32_t moved = 0;
  uint32_t reason = MS_REASON_MAX;
  for (uint32_t d = 0; d < MS_DIR_MAX; ++d) {
    for (uint32_t r = 0; r < MS_REASON_MAX; ++r) {
      const ms_counter& counter = result.stats_delta[ms_stats_index(d, r)];
      if (counter.packets == 0 && counter.bytes == 0) continue;
      ++moved;
      FUZZ_CHECK(d == direction, "%s counted in the other direction (reason %s)", microseg::test::name_of(program),
                 microseg::test::name_of_reason(r));
      FUZZ_CHECK(counter.packets == 1 && counter.bytes == frame.size(),
                 "reason %s moved by %llu packets, %llu bytes for one %zu-byte frame",
                 microseg::test::name_of_reason(r), static_cast<unsigned long long>(counter.packets),
                 static_cast<unsigned long long>(counter.bytes), frame.size());
      reason = r;
    }
  }
  FUZZ_CHECK(moved == 1, "%u counters moved for one packet", moved);
  FUZZ_CHECK(result.tc_action == TC_ACT_OK || result.tc_action == TC_ACT_SHOT, "verdict %u",
             result.tc_action);
  FUZZ_CHECK(result.tc_action == (ms_reason_is_drop(reason) ? static_cast<uint32_t>(TC_ACT_SHOT)
                                                           : static_cast<uint32_t>(TC_ACT_OK)),
             "verdict %u does not match reason %s", result.tc_action, microseg::test::name_of_reason(reason));
  if (config == kFailClosed || config == kClusterDeny) {
    FUZZ_CHECK(reason == MS_REASON_ALLOW_NON_IP || ms_reason_is_drop(reason),
               "config %u let a frame through as %s (only ARP/NDP/MLD may pass)", static_cast<unsigned>(config),
               microseg::test::name_of_reason(reason));
  }
  return 0;
}
