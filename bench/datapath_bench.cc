// microseg-datapath-bench: per-packet cost of the TC data path (R1).
//
// Loads the real data path skeleton, fills its maps to a production-like
// size, and times packets through BPF_PROG_TEST_RUN. Every figure is printed
// next to a no-op TC program timed the same way in the same process, so the
// harness's own cost (test-run loop, program dispatch) can be subtracted.
//
// Before a scenario is timed, the counters in ms_stats prove which path the
// packet took (session hit, policy drop, ...); after it is timed, they prove
// every timed run took that same path. A bench that measured the wrong path
// would otherwise print plausible, meaningless numbers.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/pkt_cls.h>
#include <arpa/inet.h>
#include <sched.h>
#include <time.h>

#include <absl/status/status.h>
#include <absl/status/statusor.h>
#include <absl/strings/str_cat.h>
#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "microseg.skel.h"
#include "microseg/datapath.h"
#include "packet_builder.h"

namespace microseg::bench {
namespace {

using test::Bytes;

// BPF_PROG_TEST_RUN without a ctx runs the skb on loopback, so the endpoint
// under test is registered for ifindex 1 (as in the BPF tests).
constexpr std::uint32_t kTestRunIfindex = 1;
constexpr std::uint32_t kEndpointId = 1;
// Policy, LPM and session fill is spread over this many endpoints, as on a
// node running that many pods; the endpoint under test is one of them.
constexpr std::uint32_t kFillEndpoints = 100;

constexpr const char* kPod = "10.244.1.10";
constexpr const char* kEstablishedPeer = "10.244.2.20";  // has a session with the pod
constexpr const char* kDeniedPeer = "10.244.200.200";    // nothing allows it
// Has no exact entry at the endpoint under test at all (kDeniedPeer has fill
// entries for other ports there): the case a bloom pre-filter can answer.
constexpr const char* kNoEntryPeer = "10.244.200.201";
constexpr const char* kGrePeer = "10.244.3.30";          // policy allows proto 47
constexpr const char* kUdpPeer = "10.244.4.40";          // policy allows udp/5353
constexpr std::uint16_t kEstablishedSport = 40000;
constexpr std::uint16_t kEstablishedDport = 80;
constexpr std::uint16_t kDeniedDport = 9999;  // no fill entry uses this port
constexpr std::uint16_t kUdpDport = 5353;
constexpr std::uint8_t kProtoGre = 47;

struct Options {
  std::uint32_t repeat = 1'000'000;
  std::uint32_t runs = 5;
  std::uint32_t new_flows = 20'000;
  std::string noop_object = MICROSEG_NOOP_BPF_OBJ;
};

struct Fill {
  const char* name;
  std::uint32_t exact;
  std::uint32_t lpm;
  std::uint32_t sessions;
};

absl::Status errno_status(const std::string& what, int error) {
  return absl::InternalError(absl::StrCat(what, ": ", std::strerror(error)));
}

std::uint64_t monotonic_ns() {
  timespec now{};
  clock_gettime(CLOCK_MONOTONIC, &now);  // the clock bpf_ktime_get_ns() reads
  return static_cast<std::uint64_t>(now.tv_sec) * 1'000'000'000ull +
         static_cast<std::uint64_t>(now.tv_nsec);
}

// 10.244.0.0/16 host `index` (low 16 bits), network order.
std::uint32_t cluster_address(std::uint32_t index) {
  return htonl(0x0AF40000u | (index & 0xFFFFu));
}

struct TestRun {
  std::uint32_t retval = 0;
  std::uint32_t duration_ns = 0;  // kernel-measured, per run
};

absl::StatusOr<TestRun> test_run(int program_fd, const Bytes& frame, std::uint32_t repeat) {
  bpf_test_run_opts opts{};
  opts.sz = sizeof(opts);
  opts.data_in = frame.data();
  opts.data_size_in = static_cast<std::uint32_t>(frame.size());
  opts.repeat = repeat;
  if (bpf_prog_test_run_opts(program_fd, &opts) != 0) {
    return errno_status("BPF_PROG_TEST_RUN", errno);
  }
  return TestRun{opts.retval, opts.duration};
}

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  const std::size_t middle = values.size() / 2;
  return values.size() % 2 != 0 ? values[middle] : (values[middle - 1] + values[middle]) / 2;
}

double mean(const std::vector<double>& values) {
  return std::accumulate(values.begin(), values.end(), 0.0) / static_cast<double>(values.size());
}

// ---- the no-op baseline ----

class NoopProgram {
 public:
  static absl::StatusOr<std::unique_ptr<NoopProgram>> load(const std::string& path) {
    bpf_object* object = bpf_object__open_file(path.c_str(), nullptr);
    if (object == nullptr) return errno_status(absl::StrCat("open ", path), errno);
    std::unique_ptr<NoopProgram> noop(new NoopProgram(object));
    if (int error = bpf_object__load(object); error != 0) {
      return errno_status(absl::StrCat("load ", path), -error);
    }
    const bpf_program* program = bpf_object__find_program_by_name(object, "noop");
    if (program == nullptr) return absl::NotFoundError(absl::StrCat(path, " has no 'noop'"));
    noop->fd_ = bpf_program__fd(program);
    return noop;
  }
  ~NoopProgram() { bpf_object__close(object_); }
  NoopProgram(const NoopProgram&) = delete;
  NoopProgram& operator=(const NoopProgram&) = delete;
  int fd() const { return fd_; }

 private:
  explicit NoopProgram(bpf_object* object) : object_(object) {}
  bpf_object* object_;
  int fd_ = -1;
};

// ---- the data path, filled ----

using Stats = std::array<std::uint64_t, MS_STATS_ENTRIES>;  // packets, summed over CPUs

class FilledDatapath {
 public:
  // `session_headroom`: sessions the bench itself will create on top of the fill.
  // `udp_sessions_expire_at_once`: UDP session timeout 0, so a UDP session is
  // stale by its next packet, which then takes the full new-flow path again.
  // `bloom_hashes`: 0 leaves the bloom pre-filter (R6) off; otherwise it is on,
  // with that many hash functions, and filled alongside ms_policy.
  static absl::StatusOr<std::unique_ptr<FilledDatapath>> load(
      const Fill& fill, std::uint32_t session_headroom, bool udp_sessions_expire_at_once = false,
      std::uint32_t bloom_hashes = 0) {
    microseg_bpf* skeleton = microseg_bpf__open();
    if (skeleton == nullptr) return errno_status("open microseg_bpf skeleton", errno);
    if (udp_sessions_expire_at_once) skeleton->rodata->session_timeout_udp_ns = 0;
    std::unique_ptr<FilledDatapath> datapath(new FilledDatapath(skeleton));
    if (bloom_hashes != 0) {
      skeleton->rodata->policy_bloom_enabled = 1;
      datapath->bloom_ = true;
      if (int error = bpf_map__set_map_extra(skeleton->maps.ms_policy_bloom, bloom_hashes);
          error != 0) {
        return errno_status("set bloom hash count", -error);
      }
      if (int error = bpf_map__set_max_entries(skeleton->maps.ms_policy_bloom, fill.exact + 16);
          error != 0) {
        return errno_status("size ms_policy_bloom", -error);
      }
    }
    const int cpus = libbpf_num_possible_cpus();
    if (cpus <= 0) return errno_status("libbpf_num_possible_cpus", -cpus);
    // BPF_F_NO_COMMON_LRU splits max_entries evenly over the possible CPUs and
    // a CPU only takes free slots from its own share; one CPU (ours) may end up
    // holding every session, so each share must fit them all or the LRU would
    // evict the established session under test.
    const std::uint32_t sessions_per_cpu = fill.sessions + session_headroom + 1024;
    struct Sizing {
      bpf_map* map;
      std::uint32_t wanted;
    } sizings[] = {
        {skeleton->maps.ms_endpoints, kFillEndpoints + 16},
        {skeleton->maps.ms_policy, fill.exact + 16},
        {skeleton->maps.ms_policy_lpm, fill.lpm + 16},
        {skeleton->maps.ms_sessions, sessions_per_cpu * static_cast<std::uint32_t>(cpus)},
    };
    for (const Sizing& sizing : sizings) {
      if (bpf_map__max_entries(sizing.map) >= sizing.wanted) continue;
      if (int error = bpf_map__set_max_entries(sizing.map, sizing.wanted); error != 0) {
        return errno_status(absl::StrCat("resize ", bpf_map__name(sizing.map)), -error);
      }
    }
    if (int error = microseg_bpf__load(skeleton); error != 0) {
      return errno_status("load microseg_bpf (needs CAP_BPF, root)", -error);
    }
    if (absl::Status filled = datapath->fill(fill); !filled.ok()) return filled;
    return datapath;
  }
  ~FilledDatapath() { microseg_bpf__destroy(skeleton_); }
  FilledDatapath(const FilledDatapath&) = delete;
  FilledDatapath& operator=(const FilledDatapath&) = delete;

  int from_pod_fd() const { return bpf_program__fd(skeleton_->progs.from_pod); }
  int to_pod_fd() const { return bpf_program__fd(skeleton_->progs.to_pod); }

  absl::StatusOr<Stats> read_stats() const {
    const int cpus = libbpf_num_possible_cpus();
    if (cpus <= 0) return errno_status("libbpf_num_possible_cpus", -cpus);
    std::vector<ms_counter> per_cpu(static_cast<std::size_t>(cpus));
    Stats totals{};
    for (std::uint32_t index = 0; index < MS_STATS_ENTRIES; ++index) {
      if (bpf_map__lookup_elem(skeleton_->maps.ms_stats, &index, sizeof(index), per_cpu.data(),
                               per_cpu.size() * sizeof(ms_counter), 0) != 0) {
        return errno_status("lookup ms_stats", errno);
      }
      for (const ms_counter& counter : per_cpu) totals[index] += counter.packets;
    }
    return totals;
  }

 private:
  explicit FilledDatapath(microseg_bpf* skeleton) : skeleton_(skeleton) {}

  absl::Status update(bpf_map* map, const void* key, std::size_t key_size, const void* value,
                      std::size_t value_size) {
    if (bpf_map__update_elem(map, key, key_size, value, value_size, BPF_NOEXIST) != 0) {
      return errno_status(absl::StrCat("insert into ", bpf_map__name(map)), errno);
    }
    return absl::OkStatus();
  }

  absl::Status put_exact(std::uint32_t endpoint_id, std::uint32_t peer_net, std::uint8_t proto,
                         std::uint16_t port, ms_direction direction) {
    const ms_policy_key key{.endpoint_id = endpoint_id,
                            .peer_ipv4 = peer_net,
                            .port = port,
                            .proto = proto,
                            .direction = static_cast<std::uint8_t>(direction)};
    const ms_policy_value value{.action = MS_ACTION_ALLOW, .pad = {}, .rule_id = 1};
    if (bloom_) {
      // As a loader that enables the filter must: every exact entry's peer is in it.
      const ms_policy_bloom_element element{.endpoint_id = endpoint_id,
                                            .peer_ipv4 = peer_net,
                                            .direction = static_cast<std::uint8_t>(direction),
                                            .pad = {}};
      if (bpf_map__update_elem(skeleton_->maps.ms_policy_bloom, nullptr, 0, &element,
                               sizeof(element), BPF_ANY) != 0) {
        return errno_status("push into ms_policy_bloom", errno);
      }
    }
    return update(skeleton_->maps.ms_policy, &key, sizeof(key), &value, sizeof(value));
  }

  absl::Status put_session(std::uint32_t endpoint_id, std::uint32_t saddr, std::uint32_t daddr,
                           std::uint16_t sport, std::uint16_t dport, std::uint64_t now) {
    const ms_session_key key{.endpoint_id = endpoint_id,
                             .saddr = saddr,
                             .daddr = daddr,
                             .sport = htons(sport),
                             .dport = htons(dport),
                             .proto = test::kProtoTcp,
                             .pad = {}};
    const ms_session value{
        .last_seen_ns = now, .policy_rev = 1, .direction = MS_DIR_INGRESS, .pad = {}};
    return update(skeleton_->maps.ms_sessions, &key, sizeof(key), &value, sizeof(value));
  }

  // The fill is TCP to ports no scenario packet uses (1000+, 2000+, 10000+),
  // so it only makes the maps big; the scenario entries are added on top.
  absl::Status fill(const Fill& fill) {
    for (std::uint32_t id = 1; id <= kFillEndpoints; ++id) {
      const ms_endpoint_key key{.ifindex = id == kEndpointId ? kTestRunIfindex : 1000 + id};
      const ms_endpoint value{
          .endpoint_id = id,
          .ipv4 = id == kEndpointId ? test::ipv4_net(kPod) : cluster_address(0x8000 + id),
          .policy_rev = 1,
          .flags = MS_EP_F_INGRESS_ISOLATED | MS_EP_F_EGRESS_ISOLATED,
          .pad = {}};
      if (auto status = update(skeleton_->maps.ms_endpoints, &key, sizeof(key), &value,
                               sizeof(value));
          !status.ok()) {
        return status;
      }
    }
    for (std::uint32_t i = 0; i + 2 < fill.exact; ++i) {
      if (auto status = put_exact(1 + i % kFillEndpoints, cluster_address(i), test::kProtoTcp,
                                  static_cast<std::uint16_t>(1000 + (i >> 16)),
                                  static_cast<ms_direction>(i % 2));
          !status.ok()) {
        return status;
      }
    }
    // The two entries the new-flow scenarios hit.
    if (auto status = put_exact(kEndpointId, test::ipv4_net(kGrePeer), kProtoGre, 0,
                                MS_DIR_INGRESS);
        !status.ok()) {
      return status;
    }
    if (auto status = put_exact(kEndpointId, test::ipv4_net(kUdpPeer), test::kProtoUdp,
                                kUdpDport, MS_DIR_INGRESS);
        !status.ok()) {
      return status;
    }
    for (std::uint32_t i = 0; i < fill.lpm; ++i) {
      // Distinct /24s in 172.16.0.0/12: never covers a scenario peer.
      const ms_lpm_key key{.prefixlen = MS_LPM_FIXED_BITS + 24,
                           .endpoint_id = 1 + i % kFillEndpoints,
                           .direction = static_cast<std::uint8_t>(i % 2),
                           .proto = test::kProtoTcp,
                           .port = static_cast<std::uint16_t>(2000 + i % 50),
                           .peer_ipv4 = htonl(0xAC100000u + (i << 8))};
      const ms_policy_value value{.action = MS_ACTION_ALLOW, .pad = {}, .rule_id = 2};
      if (auto status =
              update(skeleton_->maps.ms_policy_lpm, &key, sizeof(key), &value, sizeof(value));
          !status.ok()) {
        return status;
      }
    }
    const std::uint64_t now = monotonic_ns();
    for (std::uint32_t i = 0; i + 1 < fill.sessions; ++i) {
      if (auto status = put_session(1 + i % kFillEndpoints, cluster_address(i),
                                    cluster_address(0xFF00 + i % kFillEndpoints),
                                    static_cast<std::uint16_t>(10000 + (i >> 16)), 8080, now);
          !status.ok()) {
        return status;
      }
    }
    // The session the established scenarios hit, inserted last so it is the
    // most recently used entry of the LRU, as a live flow's would be.
    return put_session(kEndpointId, test::ipv4_net(kEstablishedPeer), test::ipv4_net(kPod),
                       kEstablishedSport, kEstablishedDport, now);
  }

  microseg_bpf* skeleton_;
  bool bloom_ = false;
};

// ---- measuring ----

struct Scenario {
  std::string name;
  std::string path;  // what the data path does for this packet
  bool to_pod = true;
  Bytes frame;
  ms_reason expected;
};

ms_direction direction_of(const Scenario& scenario) {
  return scenario.to_pod ? MS_DIR_INGRESS : MS_DIR_EGRESS;
}

// Exactly `packets` packets, all counted under the scenario's reason.
absl::Status check_path(const Stats& before, const Stats& after, const Scenario& scenario,
                        std::uint64_t packets) {
  const std::uint32_t expected = ms_stats_index(direction_of(scenario), scenario.expected);
  for (std::uint32_t index = 0; index < MS_STATS_ENTRIES; ++index) {
    const std::uint64_t moved = after[index] - before[index];
    const std::uint64_t wanted = index == expected ? packets : 0;
    if (moved != wanted) {
      return absl::FailedPreconditionError(absl::StrCat(
          scenario.name, ": ms_stats index ", index, " moved by ", moved, ", expected ", wanted,
          " (reason ", static_cast<int>(scenario.expected), " only)"));
    }
  }
  return absl::OkStatus();
}

struct Row {
  std::string fill;
  std::string name;
  std::string path;
  double datapath_ns;
  double noop_ns;
};

// Median over `runs` of the kernel's per-run duration, data path and no-op
// interleaved so both see the same machine conditions.
absl::StatusOr<Row> measure(const FilledDatapath& datapath, const NoopProgram& noop,
                            const Fill& fill, const Scenario& scenario, const Options& options) {
  const int fd = scenario.to_pod ? datapath.to_pod_fd() : datapath.from_pod_fd();
  const std::uint32_t expected_action =
      ms_reason_is_drop(scenario.expected) ? TC_ACT_SHOT : TC_ACT_OK;

  auto before = datapath.read_stats();
  if (!before.ok()) return before.status();
  auto probe = test_run(fd, scenario.frame, 1);
  if (!probe.ok()) return probe.status();
  auto after_probe = datapath.read_stats();
  if (!after_probe.ok()) return after_probe.status();
  if (auto status = check_path(*before, *after_probe, scenario, 1); !status.ok()) return status;
  if (probe->retval != expected_action) {
    return absl::FailedPreconditionError(
        absl::StrCat(scenario.name, ": TC action ", probe->retval, ", expected ", expected_action));
  }

  std::vector<double> datapath_ns;
  std::vector<double> noop_ns;
  for (std::uint32_t run = 0; run < options.runs; ++run) {
    auto baseline = test_run(noop.fd(), scenario.frame, options.repeat);
    if (!baseline.ok()) return baseline.status();
    auto timed = test_run(fd, scenario.frame, options.repeat);
    if (!timed.ok()) return timed.status();
    noop_ns.push_back(baseline->duration_ns);
    datapath_ns.push_back(timed->duration_ns);
  }
  auto after = datapath.read_stats();
  if (!after.ok()) return after.status();
  if (auto status = check_path(*after_probe, *after, scenario,
                               static_cast<std::uint64_t>(options.repeat) * options.runs);
      !status.ok()) {
    return status;
  }
  return Row{fill.name, scenario.name, scenario.path, median(datapath_ns), median(noop_ns)};
}

struct SingleRunFigures {
  double noop_median, noop_mean;
  double established_median, established_mean;
  double denied_median, denied_mean;
  double new_flow_median, new_flow_mean;
};

// The insert cannot be timed with repeat > 1: the second run of the same
// packet is a session hit. So N distinct new UDP flows (distinct source
// ports) run once each (repeat=1), interleaved with a no-op run, an
// established-flow run and a denied run, which carry the same single-run
// overhead (cold caches after the syscall) and so are the fair comparison.
absl::StatusOr<SingleRunFigures> measure_new_flows(const FilledDatapath& datapath,
                                                   const NoopProgram& noop,
                                                   const Scenario& established,
                                                   const Scenario& denied,
                                                   const Options& options) {
  std::vector<Bytes> frames;
  frames.reserve(options.new_flows);
  for (std::uint32_t i = 0; i < options.new_flows; ++i) {
    frames.push_back(test::udp_packet(kUdpPeer, static_cast<std::uint16_t>(1024 + i % 64000),
                                      kPod, kUdpDport));
  }
  const Scenario new_flow{"new udp flow", "", true, frames.front(), MS_REASON_ALLOW_POLICY};

  auto before = datapath.read_stats();
  if (!before.ok()) return before.status();
  std::vector<double> noop_ns, established_ns, denied_ns, new_flow_ns;
  for (const Bytes& frame : frames) {
    auto baseline = test_run(noop.fd(), frame, 1);
    if (!baseline.ok()) return baseline.status();
    auto hit = test_run(datapath.to_pod_fd(), established.frame, 1);
    if (!hit.ok()) return hit.status();
    auto drop = test_run(datapath.to_pod_fd(), denied.frame, 1);
    if (!drop.ok()) return drop.status();
    auto fresh = test_run(datapath.to_pod_fd(), frame, 1);
    if (!fresh.ok()) return fresh.status();
    noop_ns.push_back(baseline->duration_ns);
    established_ns.push_back(hit->duration_ns);
    denied_ns.push_back(drop->duration_ns);
    new_flow_ns.push_back(fresh->duration_ns);
  }
  auto after = datapath.read_stats();
  if (!after.ok()) return after.status();
  // Every new-flow run was admitted by policy (so inserted), every
  // established run hit its session, every denied run was dropped.
  const std::uint32_t admitted = ms_stats_index(MS_DIR_INGRESS, MS_REASON_ALLOW_POLICY);
  const std::uint32_t hits = ms_stats_index(MS_DIR_INGRESS, MS_REASON_ALLOW_SESSION);
  const std::uint32_t drops = ms_stats_index(MS_DIR_INGRESS, MS_REASON_DROP_POLICY);
  if ((*after)[admitted] - (*before)[admitted] != options.new_flows ||
      (*after)[hits] - (*before)[hits] != options.new_flows ||
      (*after)[drops] - (*before)[drops] != options.new_flows) {
    return absl::FailedPreconditionError(
        "new-flow runs: not every run took the policy-admit or session-hit path (are the source "
        "ports distinct? --new-flows must be <= 64000)");
  }
  // And the insert happened: the first flow's next packet is a session hit.
  const Scenario replay{"new udp flow, second packet", "", true, frames.front(),
                        MS_REASON_ALLOW_SESSION};
  auto replay_before = datapath.read_stats();
  if (!replay_before.ok()) return replay_before.status();
  if (auto run = test_run(datapath.to_pod_fd(), frames.front(), 1); !run.ok()) {
    return run.status();
  }
  auto replay_after = datapath.read_stats();
  if (!replay_after.ok()) return replay_after.status();
  if (auto status = check_path(*replay_before, *replay_after, replay, 1); !status.ok()) {
    return status;
  }
  return SingleRunFigures{median(noop_ns),        mean(noop_ns),
                          median(established_ns), mean(established_ns),
                          median(denied_ns),      mean(denied_ns),
                          median(new_flow_ns),    mean(new_flow_ns)};
}

// ---- command line ----

absl::StatusOr<std::uint32_t> parse_count(const std::string& flag, const std::string& text,
                                          std::uint32_t min, std::uint32_t max) {
  std::uint32_t value = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || end != text.data() + text.size() || value < min || value > max) {
    return absl::InvalidArgumentError(absl::StrCat(flag, " wants a whole number in [", min, ", ",
                                                   max, "], got '", text, "'"));
  }
  return value;
}

constexpr const char* kUsage =
    "usage: microseg-datapath-bench [--repeat N] [--runs N] [--new-flows N] [--noop-object PATH]\n"
    "  --repeat N       BPF_PROG_TEST_RUN repeat count per timed run (default 1000000)\n"
    "  --runs N         timed runs per scenario; the median is reported (default 5)\n"
    "  --new-flows N    distinct new UDP flows timed one run each (default 20000, max 64000)\n"
    "  --noop-object P  the baseline no-op TC object (default: the one built with this binary)\n"
    "Needs root (CAP_BPF + CAP_NET_ADMIN). Prints a markdown table.\n";

absl::StatusOr<Options> parse_options(int argc, char** argv) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--help" || flag == "-h") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    }
    if (i + 1 >= argc) return absl::InvalidArgumentError(absl::StrCat(flag, " needs a value"));
    const std::string value = argv[++i];
    absl::StatusOr<std::uint32_t> count;
    if (flag == "--repeat") {
      count = parse_count(flag, value, 1, 100'000'000);
      if (count.ok()) options.repeat = *count;
    } else if (flag == "--runs") {
      count = parse_count(flag, value, 1, 1000);
      if (count.ok()) options.runs = *count;
    } else if (flag == "--new-flows") {
      count = parse_count(flag, value, 1, 64'000);
      if (count.ok()) options.new_flows = *count;
    } else if (flag == "--noop-object") {
      options.noop_object = value;
      continue;
    } else {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag '", flag, "'\n", kUsage));
    }
    if (!count.ok()) return count.status();
  }
  return options;
}

void print_row(const Row& row) {
  std::printf("| %s | %s | %s | %.0f | %.0f | %+.0f |\n", row.fill.c_str(), row.name.c_str(),
              row.path.c_str(), row.datapath_ns, row.noop_ns, row.datapath_ns - row.noop_ns);
}

absl::Status run(const Options& options) {
  auto noop = NoopProgram::load(options.noop_object);
  if (!noop.ok()) return noop.status();

  const Scenario established{"established tcp (session hit)",
                             "endpoint + 1 session lookup (forward key)", true,
                             test::tcp_packet(kEstablishedPeer, kEstablishedSport, kPod,
                                              kEstablishedDport),
                             MS_REASON_ALLOW_SESSION};
  const Scenario established_reply{
      "established tcp, reply direction", "endpoint + 2 session lookups (reverse key hits)", false,
      test::tcp_packet(kPod, kEstablishedDport, kEstablishedPeer, kEstablishedSport),
      MS_REASON_ALLOW_SESSION};
  const Scenario denied{"denied tcp (isolated, no entry)",
                        "endpoint + 2 session misses + 3 exact misses + 3 LPM misses", true,
                        test::tcp_packet(kDeniedPeer, 40001, kPod, kDeniedDport),
                        MS_REASON_DROP_POLICY};
  const Scenario denied_no_entry{
      "denied tcp, peer without any exact entry",
      "endpoint + 2 session misses + 3 exact misses (or 1 bloom miss) + 3 LPM misses", true,
      test::tcp_packet(kNoEntryPeer, 40002, kPod, kDeniedDport), MS_REASON_DROP_POLICY};
  const Scenario gre_allowed{
      "new flow, policy-allowed, not trackable (GRE)",
      "endpoint + 1 exact hit; no session lookup or insert", true,
      test::ethernet(test::kEthertypeIpv4,
                     test::ipv4({.src = kGrePeer, .dst = kPod, .proto = kProtoGre}, Bytes(8, 0))),
      MS_REASON_ALLOW_POLICY};

  const Fill large{"100k exact / 10k LPM / 100k sessions", 100'000, 10'000, 100'000};
  const Fill small{"1k exact / 100 LPM / 100k sessions", 1'000, 100, 100'000};

  std::printf("BPF_PROG_TEST_RUN repeat=%u, median of %u runs, kernel-reported ns per run\n\n",
              options.repeat, options.runs);
  std::printf("| fill | scenario | path | data path ns | no-op ns | difference ns |\n");
  std::printf("|---|---|---|---:|---:|---:|\n");
  std::fflush(stdout);

  std::unique_ptr<FilledDatapath> large_datapath;
  {
    auto loaded = FilledDatapath::load(large, options.new_flows);
    if (!loaded.ok()) return loaded.status();
    large_datapath = std::move(*loaded);
  }
  for (const Scenario* scenario :
       {&established, &established_reply, &denied, &denied_no_entry, &gre_allowed}) {
    auto row = measure(*large_datapath, **noop, large, *scenario, options);
    if (!row.ok()) return row.status();
    print_row(*row);
    std::fflush(stdout);
  }
  {
    // Same UDP packet every run: its session from the previous run is found
    // but already expired (timeout 0), reverse key misses, the exact policy
    // entry admits, and bpf_map_update_elem replaces the session - on an LRU
    // hash that is a full insert (pop a free node, link it, free the old one).
    const Scenario udp_new_flow{
        "new udp flow, session insert (udp timeout 0)",
        "endpoint + 1 stale session hit + 1 session miss + 1 exact hit + LRU insert", true,
        test::udp_packet(kUdpPeer, 33000, kPod, kUdpDport), MS_REASON_ALLOW_POLICY};
    auto expiring_datapath = FilledDatapath::load(large, 0, /*udp_sessions_expire_at_once=*/true);
    if (!expiring_datapath.ok()) return expiring_datapath.status();
    auto row = measure(**expiring_datapath, **noop, large, udp_new_flow, options);
    if (!row.ok()) return row.status();
    print_row(*row);
    std::fflush(stdout);
  }
  {
    auto small_datapath = FilledDatapath::load(small, 0);
    if (!small_datapath.ok()) return small_datapath.status();
    for (const Scenario* scenario : {&established, &denied}) {
      auto row = measure(**small_datapath, **noop, small, *scenario, options);
      if (!row.ok()) return row.status();
      print_row(*row);
      std::fflush(stdout);
    }
  }

  // R6: the bloom pre-filter in front of ms_policy, same fill, same packets.
  if (libbpf_probe_bpf_map_type(BPF_MAP_TYPE_BLOOM_FILTER, nullptr) != 1) {
    std::printf("\n(bloom pre-filter rows skipped: this kernel has no BPF_MAP_TYPE_BLOOM_FILTER)\n");
  } else {
    for (const std::uint32_t hashes : {1u, 3u, 5u}) {
      const std::string name = absl::StrCat(large.name, ", bloom pre-filter k=", hashes);
      const Fill bloom_fill{name.c_str(), large.exact, large.lpm, large.sessions};
      auto bloom_datapath = FilledDatapath::load(bloom_fill, 0, false, hashes);
      if (!bloom_datapath.ok()) return bloom_datapath.status();
      for (const Scenario* scenario : {&established, &denied, &denied_no_entry, &gre_allowed}) {
        auto row = measure(**bloom_datapath, **noop, bloom_fill, *scenario, options);
        if (!row.ok()) return row.status();
        print_row(*row);
        std::fflush(stdout);
      }
    }
  }

  auto single = measure_new_flows(*large_datapath, **noop, established, denied, options);
  if (!single.ok()) return single.status();
  std::printf(
      "\nNew flow with session insert: %u distinct UDP flows, each run once (repeat=1), fill "
      "%s;\neach interleaved with one no-op, one established-flow and one denied run (same "
      "single-run overhead)\n\n",
      options.new_flows, large.name);
  std::printf("| single run (repeat=1) | median ns | mean ns | median minus no-op ns |\n");
  std::printf("|---|---:|---:|---:|\n");
  std::printf("| no-op | %.0f | %.1f | 0 |\n", single->noop_median, single->noop_mean);
  std::printf("| established tcp (session hit) | %.0f | %.1f | %+.0f |\n",
              single->established_median, single->established_mean,
              single->established_median - single->noop_median);
  std::printf("| denied tcp (isolated, no entry) | %.0f | %.1f | %+.0f |\n", single->denied_median,
              single->denied_mean, single->denied_median - single->noop_median);
  std::printf(
      "| new udp flow: 2 session misses + exact hit + LRU insert | %.0f | %.1f | %+.0f |\n",
      single->new_flow_median, single->new_flow_mean,
      single->new_flow_median - single->noop_median);
  return absl::OkStatus();
}

}  // namespace
}  // namespace microseg::bench

int main(int argc, char** argv) {
  auto options = microseg::bench::parse_options(argc, argv);
  if (!options.ok()) {
    std::fprintf(stderr, "microseg-datapath-bench: %s\n",
                 std::string(options.status().message()).c_str());
    return 2;
  }
  if (auto status = microseg::bench::run(*options); !status.ok()) {
    std::fprintf(stderr, "microseg-datapath-bench: %s\n", std::string(status.message()).c_str());
    return 1;
  }
  return 0;
}
