// The microseg BPF object loaded for BPF_PROG_TEST_RUN: maps filled by the
// test, packets run through from_pod/to_pod, verdict counters read back.
// Nothing is pinned or attached; everything goes away with the object.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "microseg/datapath.h"
#include "packet_builder.h"

struct microseg_bpf;

namespace microseg::test {

// BPF_PROG_TEST_RUN without a ctx runs the skb on the loopback device, so
// the endpoint under test is registered for ifindex 1.
inline constexpr std::uint32_t kTestRunIfindex = 1;

enum class Program { kFromPod, kToPod };

// The direction a program judges, seen from the pod.
ms_direction direction_of(Program program);
const char* name_of(Program program);
const char* name_of_reason(std::uint32_t reason);

using StatsSnapshot = std::array<ms_counter, MS_STATS_ENTRIES>;

struct RunResult {
  std::uint32_t tc_action = 0;
  StatsSnapshot stats_delta{};  // counters added by this one run, summed over CPUs
};

class LoadedDatapath {
 public:
  // Opens and loads the skeleton; `before_load` may set .rodata. Returns
  // nullptr and sets *load_errno (positive errno) when the kernel refuses.
  static std::unique_ptr<LoadedDatapath> load(
      int* load_errno, const std::function<void(microseg_bpf&)>& before_load = {});
  ~LoadedDatapath();
  LoadedDatapath(const LoadedDatapath&) = delete;
  LoadedDatapath& operator=(const LoadedDatapath&) = delete;

  // Map writers throw std::runtime_error with the errno text on failure.
  void set_endpoint(std::uint32_t endpoint_id, std::uint8_t flags, const std::string& pod_ip,
                    std::uint32_t ifindex = kTestRunIfindex);
  void remove_endpoint(std::uint32_t ifindex = kTestRunIfindex);
  void put_exact(std::uint32_t endpoint_id, ms_direction direction, const std::string& peer,
                 std::uint8_t proto, std::uint16_t port, ms_action action);
  void put_lpm(std::uint32_t endpoint_id, ms_direction direction, const std::string& peer,
               std::uint8_t prefix_length, std::uint8_t proto, std::uint16_t port,
               ms_action action);

  RunResult run(Program program, const Bytes& frame);

  // Verdict counters summed over CPUs.
  StatsSnapshot read_stats() const;
  int program_fd(Program program) const;
  // fd of one of the object's maps by its name ("ms_policy"), -1 if none.
  int map_fd(const char* name) const;

 private:
  explicit LoadedDatapath(microseg_bpf* skeleton) : skeleton_(skeleton) {}

  microseg_bpf* skeleton_;
};

}  // namespace microseg::test
