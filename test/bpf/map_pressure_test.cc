// Map pressure in the data path (bpf/map_pressure.h): a session map that is
// "full" refuses new flows with DROP_MAP_FULL except allow-listed ones while
// tracked flows go on; the ring-buffer alert is rate limited; a locked-down
// endpoint refuses every new flow. Tiny limits are set before load.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/pkt_cls.h>

#include <pthread.h>
#include <sched.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <cerrno>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "datapath_test_support.h"
#include "loaded_datapath.h"
#include "microseg.skel.h"
#include "packet_builder.h"

namespace microseg::test {
namespace {

constexpr const char* kPod = "10.244.1.10";
constexpr const char* kPeer = "10.244.2.20";
constexpr const char* kDns = "10.244.0.10";  // stands in for the cluster DNS service

void set_session_limits(LoadedDatapath& datapath, std::uint32_t full_entries, std::uint32_t alert_entries,
                        std::uint64_t removed = 0) {
  const std::uint32_t slot = MS_PMAP_SESSIONS;
  const ms_pressure_config config{.removed = removed, .full_entries = full_entries, .alert_entries = alert_entries};
  REQUIRE(bpf_map__update_elem(datapath.skeleton().maps.ms_pressure_cfg, &slot, sizeof slot, &config, sizeof config,
                               BPF_ANY) == 0);
}

ms_pressure_counters session_counters(LoadedDatapath& datapath) {
  const std::uint32_t slot = MS_PMAP_SESSIONS;
  ms_pressure_counters counters{};
  REQUIRE(bpf_map__lookup_elem(datapath.skeleton().maps.ms_pressure, &slot, sizeof slot, &counters, sizeof counters,
                               0) == 0);
  return counters;
}

void allow_list(LoadedDatapath& datapath, const std::string& peer, std::uint8_t prefix_length, std::uint8_t proto,
                std::uint16_t port) {
  const ms_allow_key key{.prefixlen = static_cast<std::uint32_t>(MS_ALLOW_FIXED_BITS + prefix_length),
                         .proto = proto,
                         .pad = 0,
                         .port = port,
                         .peer_ipv4 = ipv4_net(peer)};
  const std::uint8_t present = 1;
  REQUIRE(bpf_map__update_elem(datapath.skeleton().maps.ms_sess_allow, &key, sizeof key, &present, sizeof present,
                               BPF_ANY) == 0);
}

std::size_t live_sessions(LoadedDatapath& datapath) {
  const int fd = bpf_map__fd(datapath.skeleton().maps.ms_sessions);
  ms_session_key key{}, next{};
  std::size_t count = 0;
  for (const void* previous = nullptr; bpf_map_get_next_key(fd, previous, &next) == 0; previous = &key) {
    key = next;
    ++count;
  }
  return count;
}

std::vector<ms_pressure_alert> drain_alerts(LoadedDatapath& datapath) {
  std::vector<ms_pressure_alert> alerts;
  auto on_event = [](void* ctx, void* data, size_t size) -> int {
    auto* out = static_cast<std::vector<ms_pressure_alert>*>(ctx);
    ms_pressure_alert alert{};
    std::memcpy(&alert, data, std::min(size, sizeof alert));
    out->push_back(alert);
    return 0;
  };
  ring_buffer* ring =
      ring_buffer__new(bpf_map__fd(datapath.skeleton().maps.ms_pressure_ev), on_event, &alerts, nullptr);
  REQUIRE(ring != nullptr);
  const int consumed = ring_buffer__consume(ring);
  ring_buffer__free(ring);
  REQUIRE(consumed >= 0);
  return alerts;
}

struct Step {
  std::string what;
  Program program;
  Bytes frame;
  ms_reason expected;
};

TEST_CASE("a full session map refuses new flows, keeps tracked ones and lets allow-listed ones in",
          "[bpf][privileged][map_pressure]") {
  auto datapath = load_or_skip([](microseg_bpf& skeleton) {
    REQUIRE(bpf_map__set_max_entries(skeleton.maps.ms_sessions, 64) == 0);
  });
  if (!datapath) return;
  datapath->set_endpoint(1, MS_EP_F_INGRESS_ISOLATED, kPod);
  datapath->put_exact(1, MS_DIR_INGRESS, kPeer, kProtoUdp, 80, MS_ACTION_ALLOW);
  set_session_limits(*datapath, /*full_entries=*/4, /*alert_entries=*/0);
  allow_list(*datapath, kDns, 32, kProtoUdp, 53);
  allow_list(*datapath, "10.244.0.0", 24, kProtoTcp, 0);  // any TCP port of that range

  const std::vector<Step> steps = {
      {"flow 1 (pod out)", Program::kFromPod, udp_packet(kPod, 5001, kPeer, 7000), MS_REASON_ALLOW_NOT_ISOLATED},
      {"flow 2 (pod out)", Program::kFromPod, udp_packet(kPod, 5002, kPeer, 7000), MS_REASON_ALLOW_NOT_ISOLATED},
      {"flow 3 (pod out)", Program::kFromPod, udp_packet(kPod, 5003, kPeer, 7000), MS_REASON_ALLOW_NOT_ISOLATED},
      {"flow 4 (into the pod, by policy)", Program::kToPod, udp_packet(kPeer, 40000, kPod, 80),
       MS_REASON_ALLOW_POLICY},
      // Four entries: the map is full.
      {"new flow out refused", Program::kFromPod, udp_packet(kPod, 5005, kPeer, 7000), MS_REASON_DROP_MAP_FULL},
      {"new flow in refused although policy allows it", Program::kToPod, udp_packet(kPeer, 40001, kPod, 80),
       MS_REASON_DROP_MAP_FULL},
      {"policy still decides first", Program::kToPod, udp_packet(kPeer, 40001, kPod, 81), MS_REASON_DROP_POLICY},
      {"tracked flow goes on", Program::kFromPod, udp_packet(kPod, 5001, kPeer, 7000), MS_REASON_ALLOW_SESSION},
      {"its reply too", Program::kToPod, udp_packet(kPeer, 7000, kPod, 5001), MS_REASON_ALLOW_SESSION},
      {"tracked inbound flow goes on", Program::kToPod, udp_packet(kPeer, 40000, kPod, 80),
       MS_REASON_ALLOW_SESSION},
      {"allow-listed DNS (exact port)", Program::kFromPod, udp_packet(kPod, 5006, kDns, 53),
       MS_REASON_ALLOW_NOT_ISOLATED},
      {"its reply has a session", Program::kToPod, udp_packet(kDns, 53, kPod, 5006), MS_REASON_ALLOW_SESSION},
      {"allow-listed peer, other port", Program::kFromPod, udp_packet(kPod, 5007, kDns, 54),
       MS_REASON_DROP_MAP_FULL},
      {"allow-listed range, any TCP port", Program::kFromPod, tcp_packet(kPod, 40002, "10.244.0.77", 8443),
       MS_REASON_ALLOW_NOT_ISOLATED},
      {"outside the allow-listed range", Program::kFromPod, tcp_packet(kPod, 40003, "10.244.1.77", 8443),
       MS_REASON_DROP_MAP_FULL},
  };
  for (const Step& step : steps) {
    INFO("step: " << step.what);
    check_verdict(*datapath, step.program, step.frame, step.expected);
  }
  const ms_pressure_counters counters = session_counters(*datapath);
  CHECK(counters.inserts == 6);  // 4 flows + 2 allow-listed
  CHECK(counters.refused == 4);
  CHECK(counters.insert_failures == 0);
  CHECK(live_sessions(*datapath) == 6);

  SECTION("room again once the agent has counted removals") {
    set_session_limits(*datapath, 4, 0, /*removed=*/3);
    check_verdict(*datapath, Program::kFromPod, udp_packet(kPod, 5005, kPeer, 7000), MS_REASON_ALLOW_NOT_ISOLATED);
    check_verdict(*datapath, Program::kToPod, udp_packet(kPeer, 7000, kPod, 5005), MS_REASON_ALLOW_SESSION);
    check_verdict(*datapath, Program::kFromPod, udp_packet(kPod, 5008, kPeer, 7000), MS_REASON_DROP_MAP_FULL);
  }
  SECTION("no limit configured: never refused") {
    set_session_limits(*datapath, 0, 0);
    check_verdict(*datapath, Program::kFromPod, udp_packet(kPod, 5005, kPeer, 7000), MS_REASON_ALLOW_NOT_ISOLATED);
  }
}

TEST_CASE("the pressure alert goes to the ring buffer once per rate-limit window", "[bpf][privileged][map_pressure]") {
  struct AlertCase {
    std::string name;
    std::uint64_t interval_ns;
    std::size_t expected_alerts;  // after flows 1..5 with the threshold at 3 entries
  };
  const std::vector<AlertCase> cases = {
      {"one window spans the whole test: one alert", 3600ULL * 1000000000ULL, 1},
      {"a zero window: every crossing alerts", 0, 3},
  };
  for (const AlertCase& alert_case : cases) {
    SECTION(alert_case.name) {
      auto datapath = load_or_skip([&](microseg_bpf& skeleton) {
        skeleton.rodata->pressure_alert_interval_ns = alert_case.interval_ns;
      });
      if (!datapath) return;
      datapath->set_endpoint(1, 0, kPod);
      set_session_limits(*datapath, /*full_entries=*/0, /*alert_entries=*/3);
      for (std::uint16_t port = 1; port <= 2; ++port) {
        check_verdict(*datapath, Program::kFromPod, udp_packet(kPod, port, kPeer, 9), MS_REASON_ALLOW_NOT_ISOLATED);
      }
      CHECK(drain_alerts(*datapath).empty());
      for (std::uint16_t port = 3; port <= 5; ++port) {
        check_verdict(*datapath, Program::kFromPod, udp_packet(kPod, port, kPeer, 9), MS_REASON_ALLOW_NOT_ISOLATED);
      }
      // A packet of a tracked flow is no insert and never alerts.
      check_verdict(*datapath, Program::kFromPod, udp_packet(kPod, 5, kPeer, 9), MS_REASON_ALLOW_SESSION);
      const std::vector<ms_pressure_alert> alerts = drain_alerts(*datapath);
      REQUIRE(alerts.size() == alert_case.expected_alerts);
      CHECK(alerts.front().map == MS_PMAP_SESSIONS);
      CHECK(alerts.front().threshold == 3);
      CHECK(alerts.front().entries == 3);
      CHECK(alerts.back().entries == 2 + alert_case.expected_alerts);
      CHECK(session_counters(*datapath).alerts == alert_case.expected_alerts);
    }
  }
}

// Two threads that meet here before going on (spinning: a sleep would spread
// their wake-ups far wider than the race they are meant to provoke).
class SpinBarrier {
 public:
  void wait() {
    const int generation = generation_.load(std::memory_order_acquire);
    if (arrived_.fetch_add(1, std::memory_order_acq_rel) + 1 == 2) {
      arrived_.store(0, std::memory_order_relaxed);
      generation_.fetch_add(1, std::memory_order_acq_rel);
      return;
    }
    while (generation_.load(std::memory_order_acquire) == generation) {
    }
  }

 private:
  std::atomic<int> arrived_{0};
  std::atomic<int> generation_{0};
};

// Two CPUs refusing flows in the same instant must not both alert: the window
// is claimed with a compare-and-swap. Each round re-arms the alert, then two
// threads pinned to different CPUs, released together, run refused packets;
// every round must leave exactly one ring-buffer record. A non-atomic
// check-then-stamp lets both through whenever their first packets overlap,
// which thousands of rounds provoke (a stress test: it cannot catch the race
// in every run, but it never fails when the window is claimed atomically).
TEST_CASE("the pressure alert is rate limited across CPUs", "[bpf][privileged][map_pressure]") {
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  REQUIRE(sched_getaffinity(0, sizeof allowed, &allowed) == 0);
  std::vector<int> cpus;
  for (int cpu = 0; cpu < CPU_SETSIZE && cpus.size() < 2; ++cpu) {
    if (CPU_ISSET(cpu, &allowed)) cpus.push_back(cpu);
  }
  if (cpus.size() < 2) {
    WARN("SKIPPED: needs two CPUs this process may run on");
    return;
  }
  auto datapath = load_or_skip([](microseg_bpf& skeleton) {
    skeleton.rodata->pressure_alert_interval_ns = 3600ULL * 1000000000ULL;
  });
  if (!datapath) return;
  datapath->set_endpoint(1, 0, kPod);
  // Full at one entry, alert at one entry: with one counted entry every packet is refused and alerts
  // unless the window is taken.
  set_session_limits(*datapath, /*full_entries=*/1, /*alert_entries=*/1);
  const int program_fd = datapath->program_fd(Program::kFromPod);
  const int counters_fd = bpf_map__fd(datapath->skeleton().maps.ms_pressure);
  const Bytes refused = udp_packet(kPod, 5001, kPeer, 7000);
  constexpr int kRounds = 10000;

  std::size_t records = 0;
  auto count_record = [](void* ctx, void*, size_t) -> int {
    ++*static_cast<std::size_t*>(ctx);
    return 0;
  };
  std::unique_ptr<ring_buffer, void (*)(ring_buffer*)> ring(
      ring_buffer__new(bpf_map__fd(datapath->skeleton().maps.ms_pressure_ev), count_record, &records, nullptr),
      ring_buffer__free);
  REQUIRE(ring != nullptr);

  SpinBarrier barrier;
  std::atomic<int> errors{0};
  std::vector<std::size_t> alerts_per_round;
  auto refuse_packets = [&](int cpu, bool coordinator) {
    cpu_set_t mine;
    CPU_ZERO(&mine);
    CPU_SET(cpu, &mine);
    if (pthread_setaffinity_np(pthread_self(), sizeof mine, &mine) != 0) errors++;
    for (int round = 0; round < kRounds; ++round) {
      if (coordinator) {  // a fresh window: never alerted
        const std::uint32_t slot = MS_PMAP_SESSIONS;
        const ms_pressure_counters armed{.inserts = 1};
        if (bpf_map_update_elem(counters_fd, &slot, &armed, BPF_ANY) != 0) errors++;
      }
      barrier.wait();
      bpf_test_run_opts opts{};
      opts.sz = sizeof opts;
      opts.data_in = refused.data();
      opts.data_size_in = static_cast<std::uint32_t>(refused.size());
      opts.repeat = 8;
      if (bpf_prog_test_run_opts(program_fd, &opts) != 0 || opts.retval != TC_ACT_SHOT) errors++;
      barrier.wait();
      if (coordinator) {
        records = 0;
        if (ring_buffer__consume(ring.get()) < 0) errors++;
        alerts_per_round.push_back(records);
      }
    }
  };
  {
    std::thread other(refuse_packets, cpus[1], false);
    refuse_packets(cpus[0], true);
    other.join();
  }
  REQUIRE(sched_setaffinity(0, sizeof allowed, &allowed) == 0);  // this thread runs the other tests too
  REQUIRE(errors.load() == 0);
  std::size_t rounds_with_one = 0;
  for (std::size_t alerts : alerts_per_round) rounds_with_one += alerts == 1 ? 1 : 0;
  std::size_t rounds_with_none = 0;
  for (std::size_t alerts : alerts_per_round) rounds_with_none += alerts == 0 ? 1 : 0;
  INFO("rounds with exactly one alert: " << rounds_with_one << " of " << kRounds << ", with none: " << rounds_with_none);
  CHECK(rounds_with_one == static_cast<std::size_t>(kRounds));
}

TEST_CASE("a locked-down endpoint refuses new flows both ways, tracked ones go on",
          "[bpf][privileged][map_pressure]") {
  auto datapath = load_or_skip();
  if (!datapath) return;
  constexpr std::uint8_t kIsolated = MS_EP_F_INGRESS_ISOLATED | MS_EP_F_EGRESS_ISOLATED;
  datapath->set_endpoint(1, kIsolated, kPod);
  datapath->put_exact(1, MS_DIR_INGRESS, kPeer, kProtoUdp, 80, MS_ACTION_ALLOW);
  datapath->put_exact(1, MS_DIR_EGRESS, kPeer, kProtoUdp, 53, MS_ACTION_ALLOW);
  check_verdict(*datapath, Program::kToPod, udp_packet(kPeer, 40000, kPod, 80), MS_REASON_ALLOW_POLICY);
  check_verdict(*datapath, Program::kFromPod, udp_packet(kPod, 5000, kPeer, 53), MS_REASON_ALLOW_POLICY);

  // What the agent writes when the endpoint's policy does not fit: lockdown
  // on top of both isolation bits (so nothing unparsed slips through either).
  datapath->set_endpoint(1, kIsolated | MS_EP_F_LOCKDOWN, kPod);
  const std::vector<Step> steps = {
      {"tracked inbound flow", Program::kToPod, udp_packet(kPeer, 40000, kPod, 80), MS_REASON_ALLOW_SESSION},
      {"its reply", Program::kFromPod, udp_packet(kPod, 80, kPeer, 40000), MS_REASON_ALLOW_SESSION},
      {"tracked outbound flow", Program::kFromPod, udp_packet(kPod, 5000, kPeer, 53), MS_REASON_ALLOW_SESSION},
      {"new inbound flow the policy entry would allow", Program::kToPod, udp_packet(kPeer, 40001, kPod, 80),
       MS_REASON_DROP_MAP_FULL},
      {"new outbound flow the policy entry would allow", Program::kFromPod, udp_packet(kPod, 5001, kPeer, 53),
       MS_REASON_DROP_MAP_FULL},
      {"new IPv6 flow refused too", Program::kToPod, ipv6_udp(40000, 53), MS_REASON_DROP_MAP_FULL},
      {"ARP still works", Program::kToPod, arp_request(kPeer, kPod), MS_REASON_ALLOW_NON_IP},
      {"spoofing is still spoofing", Program::kFromPod, udp_packet(kPeer, 5000, kPod, 53),
       MS_REASON_DROP_SPOOFED_SOURCE},
  };
  for (const Step& step : steps) {
    INFO("step: " << step.what);
    check_verdict(*datapath, step.program, step.frame, step.expected);
  }

  // Lifted: the policy decides again.
  datapath->set_endpoint(1, kIsolated, kPod);
  check_verdict(*datapath, Program::kToPod, udp_packet(kPeer, 40001, kPod, 80), MS_REASON_ALLOW_POLICY);
}

}  // namespace
}  // namespace microseg::test
