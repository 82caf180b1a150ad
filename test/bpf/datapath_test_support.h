// Shared by the BPF suites: loading (or skipping without privilege) and the
// one check every verdict gets.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>

#include "loaded_datapath.h"

namespace microseg::test {

// Loads the data path. Returns nullptr after a "SKIPPED: needs CAP_BPF"
// warning when the kernel refuses for lack of privilege; any other load
// failure (verifier rejection, bad object) fails the test.
std::unique_ptr<LoadedDatapath> load_or_skip(
    const std::function<void(microseg_bpf&)>& before_load = {});

// Human-readable list of the counters that moved.
std::string describe(const StatsSnapshot& delta);

// Exactly one counter, (direction, reason), moved: by one packet of
// `frame_bytes` bytes. Everything else stayed put.
void check_only_counter_moved(const StatsSnapshot& delta, ms_direction direction,
                              ms_reason reason, std::size_t frame_bytes);

// TC action the data path must return for `reason`.
std::uint32_t tc_action_for(ms_reason reason);

// Runs `frame` through `program` once: the TC action is the one of
// `expected`, and only that counter (the program's direction) moved.
void check_verdict(LoadedDatapath& datapath, Program program, const Bytes& frame, ms_reason expected);

// ms_endpoint.lookup_actions as the compiler writes it for these entries: per
// direction with its *_LOOKUP flag in `flags`, the bits of its entries
// (ms_lookup_action_bit). Entries: anything with `direction` and `action`.
template <typename Entries>
std::uint8_t lookup_actions_of(std::uint8_t flags, const Entries& entries) {
  std::uint8_t actions = 0;
  for (const auto& entry : entries) {
    const std::uint8_t lookup = entry.direction == MS_DIR_INGRESS ? MS_EP_F_INGRESS_LOOKUP : MS_EP_F_EGRESS_LOOKUP;
    if ((flags & lookup) != 0) actions |= ms_lookup_action_bit(entry.direction, entry.action);
  }
  return actions;
}

// An ms_sessions6 key; ports in host order here, network order in the key.
ms_session6_key session6_key_of(std::uint32_t endpoint_id, const std::string& pod,
                                std::uint16_t pod_port, const std::string& peer,
                                std::uint16_t peer_port, std::uint8_t proto);

}  // namespace microseg::test
