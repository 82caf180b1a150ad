// Shared by the BPF suites: loading (or skipping without privilege) and the
// one check every verdict gets.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>

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

}  // namespace microseg::test
