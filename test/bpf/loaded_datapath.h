// The microseg BPF object loaded for BPF_PROG_TEST_RUN: maps filled by the
// test, packets run through from_pod/to_pod, verdict counters read back.
// Nothing is pinned or attached; everything goes away with the object.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
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
  // `lookup_actions`: ms_endpoint.lookup_actions (MS_EP_LOOKUP_*), what the
  // compiler writes next to *_LOOKUP flags.
  void set_endpoint(std::uint32_t endpoint_id, std::uint8_t flags, const std::string& pod_ip,
                    std::uint32_t ifindex = kTestRunIfindex, std::uint32_t policy_rev = 1,
                    std::uint8_t lookup_actions = 0);
  void remove_endpoint(std::uint32_t ifindex = kTestRunIfindex);
  // The endpoint's LPM shape hints (MS_EP_LPM_ABSENT_*; set_endpoint first).
  void set_lpm_absent(std::uint8_t lpm_absent, std::uint8_t lpm6_absent = 0,
                      std::uint32_t ifindex = kTestRunIfindex);
  // Policy entries; `rule_id` is what audit events report (the compiler's
  // RuleIdIndex); tests that do not read it keep the defaults.
  void put_exact(std::uint32_t endpoint_id, ms_direction direction, const std::string& peer,
                 std::uint8_t proto, std::uint16_t port, ms_action action, std::uint32_t rule_id = 7);
  void put_lpm(std::uint32_t endpoint_id, ms_direction direction, const std::string& peer,
               std::uint8_t prefix_length, std::uint8_t proto, std::uint16_t port,
               ms_action action, std::uint32_t rule_id = 9);

  void delete_exact(std::uint32_t endpoint_id, ms_direction direction, const std::string& peer,
                    std::uint8_t proto, std::uint16_t port);

  // IPv6 (docs/ipv6.md): the endpoint's IPv6 address (set_endpoint first)
  // and the *6 policy maps.
  void set_endpoint_ipv6(const std::string& pod_ipv6, std::uint32_t ifindex = kTestRunIfindex);
  void put_exact6(std::uint32_t endpoint_id, ms_direction direction, const std::string& peer,
                  std::uint8_t proto, std::uint16_t port, ms_action action, std::uint32_t rule_id = 7);
  void put_lpm6(std::uint32_t endpoint_id, ms_direction direction, const std::string& peer,
                std::uint8_t prefix_length, std::uint8_t proto, std::uint16_t port,
                ms_action action, std::uint32_t rule_id = 9);
  std::optional<ms_session> session6(const ms_session6_key& key) const;
  std::size_t session6_count() const;

  // Session state: the entry under `key`, if any.
  std::optional<ms_session> session(const ms_session_key& key) const;
  std::size_t session_count() const;
  // ms_half_open's count for the endpoint, as the SYN cap sees it (0 without an entry).
  std::int64_t half_open(std::uint32_t endpoint_id) const;
  void put_session(const ms_session_key& key, const ms_session& value);
  // A counter that reads `count` (as one the sweeper corrected would).
  void put_half_open(std::uint32_t endpoint_id, std::int64_t count);
  int sessions_fd() const;
  int half_open_fd() const;
  int half_open_rebase_fd() const;
  // The data path's clock when loaded with rodata->use_test_clock = 1.
  void set_clock(std::uint64_t now_ns);

  RunResult run(Program program, const Bytes& frame);

  // Verdict counters summed over CPUs.
  StatsSnapshot read_stats() const;
  int program_fd(Program program) const;
  // The loaded object's maps, for suites with maps of their own to fill.
  microseg_bpf& skeleton() { return *skeleton_; }
  // fd of one of the object's maps by its name ("ms_policy"), -1 if none.
  int map_fd(const char* name) const;

 private:
  explicit LoadedDatapath(microseg_bpf* skeleton) : skeleton_(skeleton) {}

  microseg_bpf* skeleton_;
};

}  // namespace microseg::test
