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
//
// New flows: BPF_PROG_TEST_RUN repeats one frame, and from its second run on
// the data path would find the first run's session. So new-flow scenarios run
// through bench/flow_walker.bpf.c, which rewrites the frame's source port and
// address before every repetition and tail-calls the data path (or, for the
// baseline, the no-op): every repetition is a flow never seen before. The
// sessions a timed run created are deleted before the next run, so every run
// starts from the same fill.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/pkt_cls.h>
#include <arpa/inet.h>
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
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "microseg.skel.h"
#include "microseg/datapath.h"
#include "packet_builder.h"
#include "policy_compiler.h"
#include "port_intervals.h"

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
constexpr const char* kGrePeer = "10.244.3.30";  // policy allows proto 47
constexpr std::uint16_t kEstablishedSport = 40000;
constexpr std::uint16_t kEstablishedDport = 80;
constexpr std::uint16_t kDeniedDport = 9999;  // no fill entry uses this port
constexpr std::uint8_t kProtoGre = 47;
// New flows: peers 10.244.64.0, .1, ... (one per 65536 flows), each allowed
// in by an exact entry for these ports.
constexpr std::uint32_t kNewFlowFirstPeer = 0x0AF44000u;  // host order
constexpr std::uint16_t kNewFlowTcpPort = 443;
constexpr std::uint16_t kNewFlowUdpPort = 5353;
// Port-range fills (docs/policy-compiler.md, "Port ranges"): the endpoint
// under test has UDP intervals 10000-29999 (allowed for every new-flow peer)
// and 40000-49999 (no entry for them), looked up by their port prefixes;
// kDeniedDport and kNewFlowUdpPort lie in neither.
constexpr std::uint16_t kRangeAllowedFirst = 10000;
constexpr std::uint16_t kRangeAllowedLast = 29999;
constexpr std::uint16_t kRangeOtherFirst = 40000;
constexpr std::uint16_t kRangeOtherLast = 49999;
constexpr std::uint16_t kRangeAllowedPort = 20000;
constexpr std::uint16_t kRangeDeniedPort = 45000;

// The established connection: both SYNs seen (window scale 7 each way), the
// peer (initiator) at sequence kPeerSeq, the pod at kPodSeq.
constexpr std::uint32_t kPeerSeq = 1'000'001;
constexpr std::uint32_t kPodSeq = 5'000'001;
constexpr std::uint16_t kWindow = 502;  // x 128 = 64256 bytes
constexpr std::uint8_t kWindowScale = 7;
constexpr std::size_t kSegmentBytes = 100;

struct Options {
  std::uint32_t repeat = 1'000'000;
  std::uint32_t runs = 5;
  std::string only;   // run only scenarios whose name contains this
  bool bloom = false; // also the R6 bloom pre-filter rows
  std::string noop_object = MICROSEG_NOOP_BPF_OBJ;
  std::string walker_object = MICROSEG_FLOW_WALKER_BPF_OBJ;
  std::string floor_object = MICROSEG_SESSION_FLOOR_BPF_OBJ;
};

struct Fill {
  std::string name;
  std::uint32_t exact;
  std::uint32_t lpm;
  std::uint32_t sessions;
  bool ranges = false;  // the endpoint under test has the port-range intervals above
  // Write ms_endpoint.lpm_absent/lpm6_absent as the agent's compiler would
  // for this fill (the LPM key shapes an endpoint has no entry of); false
  // leaves them 0, every LPM lookup done: the worst case, for comparison.
  bool lpm_hints = true;
};

absl::Status errno_status(const std::string& what, int error) {
  return absl::InternalError(absl::StrCat(what, ": ", std::strerror(error)));
}

std::uint64_t monotonic_ns() {
  timespec now{};
  clock_gettime(CLOCK_MONOTONIC, &now);  // the data path's coarse clock trails it by a tick at most
  return static_cast<std::uint64_t>(now.tv_sec) * 1'000'000'000ull +
         static_cast<std::uint64_t>(now.tv_nsec);
}

// 10.244.0.0/16 host `index` (low 16 bits), network order.
std::uint32_t cluster_address(std::uint32_t index) {
  return htonl(0x0AF40000u | (index & 0xFFFFu));
}

std::uint32_t new_flow_peer(std::uint32_t flow) { return htonl(kNewFlowFirstPeer + (flow >> 16)); }

// Peers the walker uses for `flows` flows (plus the probe run's).
std::uint32_t new_flow_peers(std::uint32_t flows) { return flows / 65536 + 2; }

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

// ---- frames ----

// A SYN as Linux sends it: MSS, SACK permitted, timestamps, NOP, window
// scale (20 option bytes), so the tracker's option walk does its real work.
Bytes linux_syn(const std::string& src, std::uint16_t sport, const std::string& dst,
                std::uint16_t dport) {
  Bytes segment = test::tcp_segment({.sport = sport, .dport = dport, .seq = 12345, .ack = 0,
                                     .flags = test::kTcpSyn, .window = 64240});
  const Bytes options = {2, 4, 0x05, 0xB4,              // MSS 1460
                         4, 2,                          // SACK permitted
                         8, 10, 0, 0, 0, 1, 0, 0, 0, 0, // timestamps
                         1,                             // NOP
                         3, 3, kWindowScale};           // window scale
  segment.insert(segment.begin() + 20, options.begin(), options.end());
  segment[12] = static_cast<std::uint8_t>(((20 + options.size()) / 4) << 4);
  return test::ethernet(test::kEthertypeIpv4,
                        test::ipv4({.src = src, .dst = dst, .proto = test::kProtoTcp}, segment));
}

// A data segment of the established connection, in window.
Bytes established_segment(bool from_peer) {
  const test::TcpFields fields{
      .sport = from_peer ? kEstablishedSport : kEstablishedDport,
      .dport = from_peer ? kEstablishedDport : kEstablishedSport,
      .seq = from_peer ? kPeerSeq : kPodSeq,
      .ack = from_peer ? kPodSeq : kPeerSeq + static_cast<std::uint32_t>(kSegmentBytes),
      .flags = test::kTcpAck | test::kTcpPsh,
      .window = kWindow,
      .window_scale = std::nullopt,
      .payload_bytes = kSegmentBytes};
  return from_peer ? test::tcp_frame(kEstablishedPeer, kPod, fields)
                   : test::tcp_frame(kPod, kEstablishedPeer, fields);
}

// ---- helper programs: the no-op baseline and the new-flow walker ----

class BpfObject {
 public:
  // `before_load` may size maps or set constants of the opened object.
  static absl::StatusOr<std::unique_ptr<BpfObject>> load(
      const std::string& path, const std::function<absl::Status(bpf_object*)>& before_load = {}) {
    bpf_object* object = bpf_object__open_file(path.c_str(), nullptr);
    if (object == nullptr) return errno_status(absl::StrCat("open ", path), errno);
    std::unique_ptr<BpfObject> loaded(new BpfObject(object));
    if (before_load) {
      if (absl::Status status = before_load(object); !status.ok()) return status;
    }
    if (int error = bpf_object__load(object); error != 0) {
      return errno_status(absl::StrCat("load ", path), -error);
    }
    return loaded;
  }
  ~BpfObject() { bpf_object__close(object_); }
  BpfObject(const BpfObject&) = delete;
  BpfObject& operator=(const BpfObject&) = delete;

  int program_fd(const char* name) const {
    const bpf_program* program = bpf_object__find_program_by_name(object_, name);
    return program == nullptr ? -1 : bpf_program__fd(program);
  }
  int map_fd(const char* name) const {
    const bpf_map* map = bpf_object__find_map_by_name(object_, name);
    return map == nullptr ? -1 : bpf_map__fd(map);
  }

 private:
  explicit BpfObject(bpf_object* object) : object_(object) {}
  bpf_object* object_;
};

// Mirrors struct walker_state of bench/flow_walker.bpf.c.
struct WalkerState {
  std::uint32_t next_flow;
  std::uint32_t first_peer;  // host order
};

struct Helpers {
  std::unique_ptr<BpfObject> noop;
  std::unique_ptr<BpfObject> walker;
  int noop_fd() const { return noop->program_fd("noop"); }
  int walker_fd() const { return walker->program_fd("walk_flows"); }

  // Points the walker at `target_fd` and makes its next run flow 0.
  absl::Status aim_walker(int target_fd) const {
    const std::uint32_t zero = 0;
    if (bpf_map_update_elem(walker->map_fd("walker_next"), &zero, &target_fd, BPF_ANY) != 0) {
      return errno_status("walker_next[0]", errno);
    }
    return rewind_walker(0);
  }
  absl::Status rewind_walker(std::uint32_t next_flow) const {
    const std::uint32_t zero = 0;
    const WalkerState state{.next_flow = next_flow, .first_peer = kNewFlowFirstPeer};
    if (bpf_map_update_elem(walker->map_fd("walker_state"), &zero, &state, BPF_ANY) != 0) {
      return errno_status("walker_state", errno);
    }
    return absl::OkStatus();
  }
};

absl::StatusOr<Helpers> load_helpers(const Options& options) {
  Helpers helpers;
  auto noop = BpfObject::load(options.noop_object);
  if (!noop.ok()) return noop.status();
  helpers.noop = std::move(*noop);
  auto walker = BpfObject::load(options.walker_object);
  if (!walker.ok()) return walker.status();
  helpers.walker = std::move(*walker);
  if (helpers.noop_fd() < 0 || helpers.walker_fd() < 0 || helpers.walker->map_fd("walker_next") < 0 ||
      helpers.walker->map_fd("walker_state") < 0) {
    return absl::NotFoundError("helper objects lack noop / walk_flows / walker_next / walker_state");
  }
  return helpers;
}

// ---- the data path, filled ----

using Stats = std::array<std::uint64_t, MS_STATS_ENTRIES>;  // packets, summed over CPUs

ms_session_key session_key(std::uint32_t endpoint_id, std::uint32_t pod_net, std::uint32_t peer_net,
                           std::uint16_t pod_port, std::uint16_t peer_port, std::uint8_t proto) {
  return ms_session_key{.endpoint_id = endpoint_id,
                        .pod_addr = pod_net,
                        .peer_addr = peer_net,
                        .pod_port = htons(pod_port),
                        .peer_port = htons(peer_port),
                        .proto = proto,
                        .pad = {}};
}

// A TCP connection the peer opened to the pod, after its handshake.
ms_session established_session(std::uint64_t now) {
  constexpr std::uint8_t kSideFlags = MS_TCP_SIDE_F_SEQ_KNOWN | MS_TCP_SIDE_F_MAX_END_KNOWN |
                                      MS_TCP_SIDE_F_SYN | MS_TCP_SIDE_F_WSCALE;
  constexpr std::uint32_t kScaledWindow = std::uint32_t{kWindow} << kWindowScale;
  return ms_session{
      .last_seen_ns = now,
      .policy_rev = 1,
      .direction = MS_DIR_INGRESS,
      .tcp_state = MS_TCP_ESTABLISHED,
      .flags = 0,
      .pad = 0,
      .tcp = {{.end = kPeerSeq, .max_end = kPodSeq + kScaledWindow, .max_win = kScaledWindow,
               .wscale = kWindowScale, .flags = kSideFlags, .pad = {}},
              {.end = kPodSeq, .max_end = kPeerSeq + kScaledWindow, .max_win = kScaledWindow,
               .wscale = kWindowScale, .flags = kSideFlags, .pad = {}}}};
}

// Removes the sessions walker flows [first, first + count) of `proto` to
// `pod_port` made in the session map `fd` (the data path's or the floor's).
absl::Status delete_new_flow_sessions(int fd, std::uint32_t first, std::uint32_t count,
                                      std::uint8_t proto, std::uint16_t pod_port) {
  std::vector<ms_session_key> keys;
  keys.reserve(count);
  for (std::uint32_t flow = first; flow < first + count; ++flow) {
    keys.push_back(session_key(kEndpointId, test::ipv4_net(kPod), new_flow_peer(flow), pod_port,
                               static_cast<std::uint16_t>(flow & 0xFFFF), proto));
  }
  std::uint32_t deleted = static_cast<std::uint32_t>(keys.size());
  if (bpf_map_delete_batch(fd, keys.data(), &deleted, nullptr) != 0 || deleted != keys.size()) {
    return errno_status(absl::StrCat("delete new-flow sessions (", deleted, " of ", keys.size(), ")"),
                        errno);
  }
  return absl::OkStatus();
}

// The fill's sessions (all but the established scenario's): session i.
ms_session_key fill_session_key(std::uint32_t i) {
  const std::uint32_t endpoint_id = 1 + i % kFillEndpoints;
  const std::uint32_t pod_net = cluster_address(0xFF00 + i % kFillEndpoints);
  return session_key(endpoint_id, pod_net, cluster_address(i), 8080,
                     static_cast<std::uint16_t>(10000 + (i >> 16)), test::kProtoTcp);
}

// BPF_F_NO_COMMON_LRU splits max_entries evenly over the possible CPUs and
// a CPU only takes free slots from its own share; one CPU (ours) may end up
// holding every session, so each share must fit them all or the LRU would
// evict (and a new-flow run would time evictions).
absl::StatusOr<std::uint32_t> session_map_entries(const Fill& fill, std::uint32_t session_headroom) {
  const int cpus = libbpf_num_possible_cpus();
  if (cpus <= 0) return errno_status("libbpf_num_possible_cpus", -cpus);
  return (fill.sessions + session_headroom + 1024) * static_cast<std::uint32_t>(cpus);
}

class FilledDatapath {
 public:
  // `session_headroom`: sessions the bench itself will create on top of the fill.
  // `bloom_hashes`: 0 leaves the bloom pre-filter (R6) off; otherwise it is on,
  // with that many hash functions, and filled alongside ms_policy.
  static absl::StatusOr<std::unique_ptr<FilledDatapath>> load(const Fill& fill,
                                                              std::uint32_t session_headroom,
                                                              std::uint32_t bloom_hashes = 0) {
    microseg_bpf* skeleton = microseg_bpf__open();
    if (skeleton == nullptr) return errno_status("open microseg_bpf skeleton", errno);
    std::unique_ptr<FilledDatapath> datapath(new FilledDatapath(skeleton));
    // Every new-flow SYN stays half-open: the per-endpoint cap must not turn
    // them into SYN_FLOOD drops (it is still checked, as in production).
    skeleton->rodata->max_half_open_per_endpoint = 0xFFFFFFFFu;
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
    auto session_entries = session_map_entries(fill, session_headroom);
    if (!session_entries.ok()) return session_entries.status();
    struct Sizing {
      bpf_map* map;
      std::uint32_t wanted;
    } sizings[] = {
        {skeleton->maps.ms_endpoints, kFillEndpoints + 16},
        {skeleton->maps.ms_policy, fill.exact + 1024},
        {skeleton->maps.ms_policy_lpm, fill.lpm + 64},  // + port-range lookup prefixes
        {skeleton->maps.ms_sessions, *session_entries},
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
    if (absl::Status filled = datapath->fill(fill, session_headroom); !filled.ok()) return filled;
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

  absl::StatusOr<ms_pressure_counters> session_pressure() const {
    const std::uint32_t slot = MS_PMAP_SESSIONS;
    ms_pressure_counters counters{};
    if (bpf_map__lookup_elem(skeleton_->maps.ms_pressure, &slot, sizeof(slot), &counters,
                             sizeof(counters), 0) != 0) {
      return errno_status("lookup ms_pressure", errno);
    }
    return counters;
  }

  // Removes the sessions walker flows [first, first + count) of `proto` to
  // `pod_port` created, and the endpoint's half-open count, so the next run
  // starts from the fill again.
  absl::Status forget_new_flows(std::uint32_t first, std::uint32_t count, std::uint8_t proto,
                                std::uint16_t pod_port) {
    if (auto status = delete_new_flow_sessions(bpf_map__fd(skeleton_->maps.ms_sessions), first,
                                               count, proto, pod_port);
        !status.ok()) {
      return status;
    }
    const std::uint32_t endpoint = kEndpointId;
    bpf_map__delete_elem(skeleton_->maps.ms_half_open, &endpoint, sizeof(endpoint), 0);
    return absl::OkStatus();
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

  // The endpoint under test's UDP ingress intervals (lookup prefixes in
  // ms_policy_lpm) and an Allow of the first one for every new-flow peer.
  absl::Status put_port_ranges(std::uint32_t new_flows, std::uint32_t& scenario_entries) {
    for (auto [first, last] : {std::pair{kRangeAllowedFirst, kRangeAllowedLast},
                               std::pair{kRangeOtherFirst, kRangeOtherLast}}) {
      for (const PortPrefix& prefix : PortPrefixes(first, last)) {
        const ms_lpm_key key{.prefixlen = static_cast<std::uint32_t>(MS_PORT_LOOKUP_FIXED_BITS + prefix.bits),
                             .endpoint_id = kEndpointId,
                             .direction = MS_DIR_INGRESS | MS_DIR_F_PORT_LOOKUP,
                             .proto = test::kProtoUdp,
                             .port = htons(prefix.port),
                             .peer_ipv4 = 0};
        const ms_policy_value value = PortIntervalValue(first);
        if (auto status =
                update(skeleton_->maps.ms_policy_lpm, &key, sizeof(key), &value, sizeof(value));
            !status.ok()) {
          return status;
        }
      }
    }
    for (std::uint32_t peer = 0; peer < new_flow_peers(std::max<std::uint32_t>(new_flows, 1)); ++peer) {
      if (auto status = put_exact(kEndpointId, new_flow_peer(peer << 16), test::kProtoUdp, kRangeAllowedFirst,
                                  static_cast<ms_direction>(MS_DIR_INGRESS | MS_DIR_F_PORT_INTERVAL));
          !status.ok()) {
        return status;
      }
      ++scenario_entries;
    }
    return absl::OkStatus();
  }

  absl::Status put_session(const ms_session_key& key, const ms_session& value) {
    return update(skeleton_->maps.ms_sessions, &key, sizeof(key), &value, sizeof(value));
  }

  // The fill is TCP to ports no scenario packet uses (1000+, 2000+, 8080), so
  // it only makes the maps big; the scenario entries are part of the count.
  absl::Status fill(const Fill& fill, std::uint32_t new_flows) {
    for (std::uint32_t id = 1; id <= kFillEndpoints; ++id) {
      const ms_endpoint_key key{.ifindex = id == kEndpointId ? kTestRunIfindex : 1000 + id};
      const ms_endpoint value{
          .endpoint_id = id,
          .ipv4 = id == kEndpointId ? test::ipv4_net(kPod) : cluster_address(0x8000 + id),
          .policy_rev = 1,
          .flags = static_cast<std::uint8_t>(
              MS_EP_F_INGRESS_ISOLATED | MS_EP_F_EGRESS_ISOLATED |
              (fill.ranges && id == kEndpointId ? MS_EP_F_PORT_RANGES : 0)),
          .lpm_absent = 0,
          .lpm6_absent = 0,
          .lookup_actions = 0,
          .ipv6 = {}};
      if (auto status = update(skeleton_->maps.ms_endpoints, &key, sizeof(key), &value,
                               sizeof(value));
          !status.ok()) {
        return status;
      }
    }
    // The entries the scenarios hit: GRE from its peer, and TCP/443 and
    // UDP/5353 from every peer the new-flow walker uses.
    std::uint32_t scenario_entries = 1;
    if (auto status = put_exact(kEndpointId, test::ipv4_net(kGrePeer), kProtoGre, 0,
                                MS_DIR_INGRESS);
        !status.ok()) {
      return status;
    }
    if (new_flows != 0) {
      for (std::uint32_t peer = 0; peer < new_flow_peers(new_flows); ++peer) {
        const std::uint32_t peer_net = new_flow_peer(peer << 16);
        for (auto [proto, port] : {std::pair{test::kProtoTcp, kNewFlowTcpPort},
                                   std::pair{test::kProtoUdp, kNewFlowUdpPort}}) {
          if (auto status = put_exact(kEndpointId, peer_net, proto, port, MS_DIR_INGRESS);
              !status.ok()) {
            return status;
          }
          ++scenario_entries;
        }
      }
    }
    if (fill.ranges) {
      if (auto status = put_port_ranges(new_flows, scenario_entries); !status.ok()) return status;
    }
    for (std::uint32_t i = 0; i + scenario_entries < fill.exact; ++i) {
      if (auto status = put_exact(1 + i % kFillEndpoints, cluster_address(i), test::kProtoTcp,
                                  static_cast<std::uint16_t>(1000 + (i >> 16)),
                                  static_cast<ms_direction>(i % 2));
          !status.ok()) {
        return status;
      }
    }
    // Per endpoint, the MS_EP_LPM_ABSENT_* bits of the shapes its LPM entries have.
    std::vector<std::uint8_t> lpm_present(kFillEndpoints + 1, 0);
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
      lpm_present[key.endpoint_id] |= ms_lpm_shape_bit(key.direction, key.proto, key.port);
    }
    if (fill.lpm_hints) {
      for (std::uint32_t id = 1; id <= kFillEndpoints; ++id) {
        const ms_endpoint_key key{.ifindex = id == kEndpointId ? kTestRunIfindex : 1000 + id};
        ms_endpoint value{};
        if (bpf_map__lookup_elem(skeleton_->maps.ms_endpoints, &key, sizeof(key), &value,
                                 sizeof(value), 0) != 0) {
          return errno_status("lookup ms_endpoints", errno);
        }
        value.lpm_absent = static_cast<std::uint8_t>(MS_EP_LPM_ABSENT_ALL & ~lpm_present[id]);
        value.lpm6_absent = MS_EP_LPM_ABSENT_ALL;  // the fill has no IPv6 LPM entry
        if (bpf_map__update_elem(skeleton_->maps.ms_endpoints, &key, sizeof(key), &value,
                                 sizeof(value), BPF_EXIST) != 0) {
          return errno_status("update ms_endpoints", errno);
        }
      }
    }
    const std::uint64_t now = monotonic_ns();
    const ms_session session = established_session(now);
    for (std::uint32_t i = 0; i + 1 < fill.sessions; ++i) {
      if (auto status = put_session(fill_session_key(i), session); !status.ok()) return status;
    }
    // The session the established scenarios hit, inserted last so it is the
    // most recently used entry of the LRU, as a live flow's would be.
    return put_session(session_key(kEndpointId, test::ipv4_net(kPod), test::ipv4_net(kEstablishedPeer),
                                   kEstablishedDport, kEstablishedSport, test::kProtoTcp),
                       session);
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
  // New-flow scenarios: every repetition is a new flow (through the walker)
  // of this protocol to this pod port.
  bool walk = false;
  std::uint8_t walk_proto = 0;
  std::uint16_t walk_port = 0;
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

// A new-flow scenario: runs [first, first + packets) of the walker inserted
// exactly `packets` sessions (no failure), and are then removed again.
// (A denied scenario inserted none.)
absl::Status check_and_forget_inserts(FilledDatapath& datapath, const Scenario& scenario,
                                      const ms_pressure_counters& before, std::uint32_t first,
                                      std::uint32_t packets) {
  auto after = datapath.session_pressure();
  if (!after.ok()) return after.status();
  const std::uint64_t expected = ms_reason_is_drop(scenario.expected) ? 0 : packets;
  if (after->inserts - before.inserts != expected ||
      after->insert_failures != before.insert_failures) {
    return absl::FailedPreconditionError(absl::StrCat(
        scenario.name, ": ", after->inserts - before.inserts, " sessions inserted and ",
        after->insert_failures - before.insert_failures, " failures, expected ", expected,
        " and 0"));
  }
  if (expected == 0) return absl::OkStatus();
  return datapath.forget_new_flows(first, packets, scenario.walk_proto, scenario.walk_port);
}

// Median over `runs` of the kernel's per-run duration, data path and no-op
// interleaved so both see the same machine conditions.
absl::StatusOr<Row> measure(FilledDatapath& datapath, const Helpers& helpers, const Fill& fill,
                            const Scenario& scenario, const Options& options) {
  const int datapath_fd = scenario.to_pod ? datapath.to_pod_fd() : datapath.from_pod_fd();
  // A walked scenario runs the walker, which tail-calls the program in its slot.
  const int timed_fd = scenario.walk ? helpers.walker_fd() : datapath_fd;
  const int baseline_fd = scenario.walk ? helpers.walker_fd() : helpers.noop_fd();
  const std::uint32_t expected_action =
      ms_reason_is_drop(scenario.expected) ? TC_ACT_SHOT : TC_ACT_OK;

  auto aim = [&](int target_fd) -> absl::Status {
    return scenario.walk ? helpers.aim_walker(target_fd) : absl::OkStatus();
  };

  // The probe: one run, the expected path, and (walked) one insert.
  auto pressure_before = datapath.session_pressure();
  if (!pressure_before.ok()) return pressure_before.status();
  auto before = datapath.read_stats();
  if (!before.ok()) return before.status();
  if (auto status = aim(datapath_fd); !status.ok()) return status;
  auto probe = test_run(timed_fd, scenario.frame, 1);
  if (!probe.ok()) return probe.status();
  auto after_probe = datapath.read_stats();
  if (!after_probe.ok()) return after_probe.status();
  if (auto status = check_path(*before, *after_probe, scenario, 1); !status.ok()) return status;
  if (probe->retval != expected_action) {
    return absl::FailedPreconditionError(
        absl::StrCat(scenario.name, ": TC action ", probe->retval, ", expected ", expected_action));
  }
  if (scenario.walk) {
    if (auto status = check_and_forget_inserts(datapath, scenario, *pressure_before, 0, 1);
        !status.ok()) {
      return status;
    }
  }

  std::vector<double> datapath_ns;
  std::vector<double> noop_ns;
  Stats stats_before = *after_probe;
  // Run 0 is a warm-up pair, not recorded: the first timed run after a fill
  // or a map change otherwise reads high.
  for (std::uint32_t run = 0; run <= options.runs; ++run) {
    if (auto status = aim(helpers.noop_fd()); !status.ok()) return status;
    auto baseline = test_run(baseline_fd, scenario.frame, options.repeat);
    if (!baseline.ok()) return baseline.status();
    if (baseline->retval != TC_ACT_OK) {
      return absl::FailedPreconditionError(absl::StrCat(scenario.name, ": baseline returned ",
                                                        baseline->retval));
    }
    auto run_pressure = datapath.session_pressure();
    if (!run_pressure.ok()) return run_pressure.status();
    if (auto status = aim(datapath_fd); !status.ok()) return status;
    auto timed = test_run(timed_fd, scenario.frame, options.repeat);
    if (!timed.ok()) return timed.status();
    if (run != 0) {
      noop_ns.push_back(baseline->duration_ns);
      datapath_ns.push_back(timed->duration_ns);
    }
    auto after = datapath.read_stats();
    if (!after.ok()) return after.status();
    if (auto status = check_path(stats_before, *after, scenario, options.repeat); !status.ok()) {
      return status;
    }
    stats_before = *after;
    if (scenario.walk) {
      if (auto status =
              check_and_forget_inserts(datapath, scenario, *run_pressure, 0, options.repeat);
          !status.ok()) {
        return status;
      }
    }
  }
  return Row{fill.name, scenario.name, scenario.path, median(datapath_ns), median(noop_ns)};
}

// ---- the kernel's floor under a new flow ----

// Mirrors struct floor_counts of bench/session_floor.bpf.c.
struct FloorCounts {
  std::uint64_t inserts;
  std::uint64_t hits;
  std::uint64_t failures;
};

// bench/session_floor.bpf.c with its session map sized and filled like the
// data path's for `fill`, with room for `headroom` new flows.
class SessionFloor {
 public:
  static absl::StatusOr<std::unique_ptr<SessionFloor>> load(const std::string& path, const Fill& fill,
                                                            std::uint32_t headroom) {
    auto entries = session_map_entries(fill, headroom);
    if (!entries.ok()) return entries.status();
    auto object = BpfObject::load(path, [&](bpf_object* opened) -> absl::Status {
      bpf_map* sessions = bpf_object__find_map_by_name(opened, "floor_sessions");
      if (sessions == nullptr) return absl::NotFoundError(absl::StrCat(path, " has no floor_sessions"));
      if (int error = bpf_map__set_max_entries(sessions, *entries); error != 0) {
        return errno_status("size floor_sessions", -error);
      }
      return absl::OkStatus();
    });
    if (!object.ok()) return object.status();
    std::unique_ptr<SessionFloor> floor(new SessionFloor(std::move(*object)));
    floor->sessions_fd_ = floor->object_->map_fd("floor_sessions");
    const ms_session session = established_session(monotonic_ns());
    for (std::uint32_t i = 0; i < fill.sessions; ++i) {
      const ms_session_key key = fill_session_key(i);
      if (bpf_map_update_elem(floor->sessions_fd_, &key, &session, BPF_NOEXIST) != 0) {
        return errno_status("fill floor_sessions", errno);
      }
    }
    return floor;
  }
  int program_fd() const { return object_->program_fd("session_floor"); }
  int sessions_fd() const { return sessions_fd_; }

  absl::StatusOr<FloorCounts> counts() const {
    const int cpus = libbpf_num_possible_cpus();
    if (cpus <= 0) return errno_status("libbpf_num_possible_cpus", -cpus);
    std::vector<FloorCounts> per_cpu(static_cast<std::size_t>(cpus));
    const std::uint32_t zero = 0;
    const int fd = object_->map_fd("floor_counts");
    if (bpf_map_lookup_elem(fd, &zero, per_cpu.data()) != 0) return errno_status("floor_counts", errno);
    FloorCounts total{};
    for (const FloorCounts& counts : per_cpu) {
      total.inserts += counts.inserts;
      total.hits += counts.hits;
      total.failures += counts.failures;
    }
    return total;
  }

 private:
  explicit SessionFloor(std::unique_ptr<BpfObject> object) : object_(std::move(object)) {}
  std::unique_ptr<BpfObject> object_;
  int sessions_fd_ = -1;
};

// The floor row: `scenario` (a walked new-flow scenario) through the floor
// program instead of the data path. Every repetition must be exactly one
// miss and one insert; the inserted sessions are removed after each run.
absl::StatusOr<Row> measure_session_floor(const Helpers& helpers, const Fill& fill,
                                          const Scenario& scenario, const Options& options) {
  auto floor = SessionFloor::load(options.floor_object, fill, options.repeat);
  if (!floor.ok()) return floor.status();
  const int floor_fd = (*floor)->program_fd();
  if (floor_fd < 0) return absl::NotFoundError("the floor object has no session_floor program");
  auto run_floor = [&](std::uint32_t repeat) -> absl::StatusOr<TestRun> {
    auto before = (*floor)->counts();
    if (!before.ok()) return before.status();
    if (auto status = helpers.aim_walker(floor_fd); !status.ok()) return status;
    auto timed = test_run(helpers.walker_fd(), scenario.frame, repeat);
    if (!timed.ok()) return timed.status();
    auto after = (*floor)->counts();
    if (!after.ok()) return after.status();
    if (timed->retval != TC_ACT_OK || after->inserts - before->inserts != repeat ||
        after->hits != before->hits || after->failures != before->failures) {
      return absl::FailedPreconditionError(absl::StrCat(
          "session floor: ", after->inserts - before->inserts, " inserts, ", after->hits - before->hits,
          " hits, ", after->failures - before->failures, " failures for ", repeat,
          " new flows (TC action ", timed->retval, ")"));
    }
    if (auto status = delete_new_flow_sessions((*floor)->sessions_fd(), 0, repeat, scenario.walk_proto,
                                               scenario.walk_port);
        !status.ok()) {
      return status;
    }
    return timed;
  };
  if (auto probe = run_floor(1); !probe.ok()) return probe.status();
  std::vector<double> floor_ns;
  std::vector<double> noop_ns;
  for (std::uint32_t run = 0; run <= options.runs; ++run) {  // run 0: warm-up pair
    if (auto status = helpers.aim_walker(helpers.noop_fd()); !status.ok()) return status;
    auto baseline = test_run(helpers.walker_fd(), scenario.frame, options.repeat);
    if (!baseline.ok()) return baseline.status();
    auto timed = run_floor(options.repeat);
    if (!timed.ok()) return timed.status();
    if (run != 0) {
      noop_ns.push_back(baseline->duration_ns);
      floor_ns.push_back(timed->duration_ns);
    }
  }
  return Row{fill.name, absl::StrCat("floor: ", scenario.name),
             "session-map miss + insert only (same map type, flags, size, key, value and fill); no "
             "data path",
             median(floor_ns), median(noop_ns)};
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
    "usage: microseg-datapath-bench [--repeat N] [--runs N] [--only TEXT] [--bloom]\n"
    "                               [--noop-object PATH] [--walker-object PATH] [--floor-object PATH]\n"
    "  --repeat N         BPF_PROG_TEST_RUN repeat count per timed run (default 1000000)\n"
    "  --runs N           timed runs per scenario; the median is reported (default 5)\n"
    "  --only TEXT        only scenarios whose name contains TEXT (e.g. for perf)\n"
    "  --bloom            also the rows with the R6 bloom pre-filter on (k = 1, 3, 5)\n"
    "  --noop-object P    the baseline no-op TC object (default: built with this binary)\n"
    "  --walker-object P  the new-flow walker TC object (default: built with this binary)\n"
    "  --floor-object P   the session-map floor TC object (default: built with this binary)\n"
    "Needs root (CAP_BPF + CAP_NET_ADMIN). Prints a markdown table.\n";

absl::StatusOr<Options> parse_options(int argc, char** argv) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--help" || flag == "-h") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    }
    if (flag == "--bloom") {
      options.bloom = true;
      continue;
    }
    if (i + 1 >= argc) return absl::InvalidArgumentError(absl::StrCat(flag, " needs a value"));
    const std::string value = argv[++i];
    absl::StatusOr<std::uint32_t> count;
    if (flag == "--repeat") {
      count = parse_count(flag, value, 1, 16'000'000);
      if (count.ok()) options.repeat = *count;
    } else if (flag == "--runs") {
      count = parse_count(flag, value, 1, 1000);
      if (count.ok()) options.runs = *count;
    } else if (flag == "--only") {
      options.only = value;
      continue;
    } else if (flag == "--noop-object") {
      options.noop_object = value;
      continue;
    } else if (flag == "--walker-object") {
      options.walker_object = value;
      continue;
    } else if (flag == "--floor-object") {
      options.floor_object = value;
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
  std::fflush(stdout);
}

absl::Status run_block(const Fill& fill, std::uint32_t bloom_hashes,
                       const std::vector<const Scenario*>& scenarios, const Helpers& helpers,
                       const Options& options) {
  std::vector<const Scenario*> selected;
  bool walks = false;
  for (const Scenario* scenario : scenarios) {
    if (scenario->name.find(options.only) == std::string::npos) continue;
    selected.push_back(scenario);
    walks = walks || scenario->walk;
  }
  if (selected.empty()) return absl::OkStatus();
  auto datapath = FilledDatapath::load(fill, walks ? options.repeat : 0, bloom_hashes);
  if (!datapath.ok()) return datapath.status();
  for (const Scenario* scenario : selected) {
    auto row = measure(**datapath, helpers, fill, *scenario, options);
    if (!row.ok()) return row.status();
    print_row(*row);
  }
  return absl::OkStatus();
}

absl::Status run(const Options& options) {
  auto helpers = load_helpers(options);
  if (!helpers.ok()) return helpers.status();

  const Scenario established{"established tcp (session hit)",
                             "endpoint + parse + tail call + 1 session lookup + TCP window checks",
                             true, established_segment(/*from_peer=*/true),
                             MS_REASON_ALLOW_SESSION};
  const Scenario established_reply{
      "established tcp, reply direction",
      "endpoint + parse + tail call + 1 session lookup + TCP window checks", false,
      established_segment(/*from_peer=*/false), MS_REASON_ALLOW_SESSION};
  const Scenario new_tcp{
      "new allowed tcp flow (SYN), every repetition a new flow",
      "session miss + 1 exact hit + half-open check + SYN option walk + insert + half-open count",
      true, linux_syn("10.244.64.0", 1, kPod, kNewFlowTcpPort), MS_REASON_ALLOW_POLICY, true,
      test::kProtoTcp, kNewFlowTcpPort};
  const Scenario new_udp{"new allowed udp flow, every repetition a new flow",
                         "session miss + 1 exact hit + insert", true,
                         test::udp_packet("10.244.64.0", 1, kPod, kNewFlowUdpPort),
                         MS_REASON_ALLOW_POLICY, true, test::kProtoUdp, kNewFlowUdpPort};
  const Scenario denied_new_flows{
      "denied udp, every repetition a new flow",
      "session miss (cold bucket) + 3 exact misses + LPM misses (3; 1 with the shape hints); no insert", true,
      test::udp_packet("10.244.64.0", 1, kPod, kDeniedDport), MS_REASON_DROP_POLICY, true,
      test::kProtoUdp, kDeniedDport};
  const Scenario denied_syn{"denied tcp SYN (isolated, no entry)",
                            "session miss + 3 exact misses + LPM misses (3; 1 with the shape hints)",
                            true, linux_syn(kDeniedPeer, 40001, kPod, kDeniedDport),
                            MS_REASON_DROP_POLICY};
  const Scenario denied_midstream{
      "denied tcp mid-stream segment (isolated, no session)",
      "session miss + both orientations: 6 exact misses + LPM misses (6; 1 with the shape hints)", true,
      test::tcp_frame(kDeniedPeer, kPod,
                      {.sport = 40001, .dport = kDeniedDport, .seq = 1, .ack = 1,
                       .flags = test::kTcpAck, .window = kWindow, .window_scale = std::nullopt,
                       .payload_bytes = kSegmentBytes}),
      MS_REASON_DROP_POLICY};
  const Scenario denied_no_entry{
      "denied tcp SYN, peer without any exact entry",
      "session miss + 3 exact misses (or 1 bloom miss) + LPM misses (3; 1 with the shape hints)", true,
      linux_syn(kNoEntryPeer, 40002, kPod, kDeniedDport), MS_REASON_DROP_POLICY};
  const Scenario gre_allowed{
      "allowed, not trackable (GRE)", "endpoint + parse + tail call + 1 exact hit; no session",
      true,
      test::ethernet(test::kEthertypeIpv4,
                     test::ipv4({.src = kGrePeer, .dst = kPod, .proto = kProtoGre}, Bytes(8, 0))),
      MS_REASON_ALLOW_POLICY};

  // With port ranges (MS_EP_F_PORT_RANGES): the rows above against the same
  // fill plus the endpoint's intervals, and the interval rung's own paths.
  const Scenario new_udp_in_range{
      "new allowed udp flow, port in a range, every repetition a new flow",
      "session miss + exact (proto,port) miss + 1 port-interval LPM lookup + 1 exact interval hit + insert",
      true, test::udp_packet("10.244.64.0", 1, kPod, kRangeAllowedPort), MS_REASON_ALLOW_POLICY, true,
      test::kProtoUdp, kRangeAllowedPort};
  const Scenario denied_in_range{
      "denied udp, port in a range, every repetition a new flow",
      "session miss + port-interval lookup + 4 exact misses + 4 LPM misses; no insert", true,
      test::udp_packet("10.244.64.0", 1, kPod, kRangeDeniedPort), MS_REASON_DROP_POLICY, true,
      test::kProtoUdp, kRangeDeniedPort};

  // The same denials without the walker (one packet repeated, nothing
  // inserted): steadier than the walked rows, so the rung's own cost shows.
  const Scenario denied_udp_same{
      "denied udp, same packet repeated",
      "session miss + 3 exact misses + LPM misses (3; 1 with the shape hints) (endpoint with ranges: + 1 port-interval lookup miss)", true,
      test::udp_packet(kDeniedPeer, 40003, kPod, kDeniedDport), MS_REASON_DROP_POLICY};
  const Scenario denied_udp_in_range_same{
      "denied udp to a port in a range, same packet repeated",
      "session miss + 3 exact misses + LPM misses (3; 1 with the shape hints) (endpoint with ranges: + 1 port-interval lookup hit, "
      "+ 1 exact and 1 LPM interval miss)",
      true, test::udp_packet(kDeniedPeer, 40004, kPod, kRangeDeniedPort), MS_REASON_DROP_POLICY};

  const Fill large{"100k exact / 10k LPM / 100k sessions", 100'000, 10'000, 100'000};
  const Fill large_ranges{"100k exact / 10k LPM / 100k sessions, endpoint with port ranges", 100'000, 10'000,
                          100'000, true};
  const Fill small{"1k exact / 100 LPM / 100k sessions", 1'000, 100, 100'000};

  std::printf("BPF_PROG_TEST_RUN repeat=%u, median of %u runs, kernel-reported ns per run\n\n",
              options.repeat, options.runs);
  std::printf("| fill | scenario | path | data path ns | no-op ns | difference ns |\n");
  std::printf("|---|---|---|---:|---:|---:|\n");
  std::fflush(stdout);

  if (auto status = run_block(large, 0,
                              {&established, &established_reply, &new_tcp, &new_udp, &denied_syn,
                               &denied_midstream, &denied_new_flows, &gre_allowed, &denied_udp_same,
                               &denied_udp_in_range_same},
                              *helpers, options);
      !status.ok()) {
    return status;
  }
  // The kernel's floor under the new-flow rows: the same walk through a
  // program that only misses and inserts in a session map like ours.
  if (absl::StrCat("floor: ", new_udp.name).find(options.only) != std::string::npos) {
    auto floor = measure_session_floor(*helpers, large, new_udp, options);
    if (!floor.ok()) return floor.status();
    print_row(*floor);
  }
  if (auto status = run_block(small, 0, {&established, &denied_syn}, *helpers, options);
      !status.ok()) {
    return status;
  }
  if (auto status = run_block(large_ranges, 0,
                              {&established, &new_udp, &new_udp_in_range, &denied_new_flows,
                               &denied_in_range, &denied_syn, &denied_udp_same, &denied_udp_in_range_same},
                              *helpers, options);
      !status.ok()) {
    return status;
  }
  // The same large fill with every LPM lookup done (hints 0), as for an
  // endpoint whose LPM entries use every key shape in both directions.
  Fill large_unhinted = large;
  large_unhinted.name = absl::StrCat(large.name, ", no LPM shape hints");
  large_unhinted.lpm_hints = false;
  if (auto status = run_block(large_unhinted, 0, {&new_tcp, &denied_syn, &denied_midstream, &denied_new_flows},
                              *helpers, options);
      !status.ok()) {
    return status;
  }
  if (!options.bloom) return absl::OkStatus();
  // R6: the bloom pre-filter in front of ms_policy, same fill, same packets.
  if (libbpf_probe_bpf_map_type(BPF_MAP_TYPE_BLOOM_FILTER, nullptr) != 1) {
    std::printf("\n(bloom pre-filter rows skipped: this kernel has no BPF_MAP_TYPE_BLOOM_FILTER)\n");
    return absl::OkStatus();
  }
  for (const std::uint32_t hashes : {0u, 1u, 3u, 5u}) {
    const std::string name = hashes == 0 ? absl::StrCat(large.name, ", no filter")
                                         : absl::StrCat(large.name, ", bloom k=", hashes);
    const Fill bloom_fill{name, large.exact, large.lpm, large.sessions};
    if (auto status = run_block(bloom_fill, hashes,
                                {&established, &denied_syn, &denied_no_entry, &gre_allowed},
                                *helpers, options);
        !status.ok()) {
      return status;
    }
  }
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
