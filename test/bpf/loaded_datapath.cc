#include "loaded_datapath.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "ipv6_packet_builder.h"
#include "microseg.skel.h"

namespace microseg::test {
namespace {

[[noreturn]] void throw_errno(const std::string& what, int error) {
  throw std::runtime_error(what + ": " + std::strerror(error));
}

void update_or_throw(const bpf_map* map, const void* key, std::size_t key_size,
                     const void* value, std::size_t value_size, const std::string& what) {
  if (bpf_map__update_elem(map, key, key_size, value, value_size, BPF_ANY) != 0) {
    throw_errno(what, errno);
  }
}

}  // namespace

ms_direction direction_of(Program program) {
  return program == Program::kFromPod ? MS_DIR_EGRESS : MS_DIR_INGRESS;
}

const char* name_of(Program program) {
  return program == Program::kFromPod ? "from_pod" : "to_pod";
}

const char* name_of_reason(std::uint32_t reason) {
  switch (reason) {
    case MS_REASON_ALLOW_POLICY: return "ALLOW_POLICY";
    case MS_REASON_ALLOW_NOT_ISOLATED: return "ALLOW_NOT_ISOLATED";
    case MS_REASON_ALLOW_SESSION: return "ALLOW_SESSION";
    case MS_REASON_ALLOW_NON_IP: return "ALLOW_NON_IP";
    case MS_REASON_DROP_POLICY: return "DROP_POLICY";
    case MS_REASON_DROP_UNKNOWN_ENDPOINT: return "DROP_UNKNOWN_ENDPOINT";
    case MS_REASON_DROP_MALFORMED: return "DROP_MALFORMED";
    case MS_REASON_DROP_UNSUPPORTED_L3: return "DROP_UNSUPPORTED_L3";
    case MS_REASON_DROP_FRAGMENT: return "DROP_FRAGMENT";
    case MS_REASON_DROP_SPOOFED_SOURCE: return "DROP_SPOOFED_SOURCE";
    case MS_REASON_ALLOW_AUDIT: return "ALLOW_AUDIT";
    case MS_REASON_DROP_INVALID_SEQ: return "DROP_INVALID_SEQ";
    case MS_REASON_DROP_INVALID_RST: return "DROP_INVALID_RST";
    case MS_REASON_DROP_INVALID_TCP_STATE: return "DROP_INVALID_TCP_STATE";
    case MS_REASON_DROP_SYN_FLOOD: return "DROP_SYN_FLOOD";
    case MS_REASON_DROP_MAP_FULL: return "DROP_MAP_FULL";
    case MS_REASON_DROP_MISSED_TAIL_CALL: return "DROP_MISSED_TAIL_CALL";
    case MS_REASON_DROP_POLICY_REVOKED: return "DROP_POLICY_REVOKED";
    case MS_REASON_ALLOW_RELATED: return "ALLOW_RELATED";
    default: return "UNKNOWN_REASON";
  }
}

std::unique_ptr<LoadedDatapath> LoadedDatapath::load(
    int* load_errno, const std::function<void(microseg_bpf&)>& before_load) {
  *load_errno = 0;
  microseg_bpf* skeleton = microseg_bpf__open();
  if (skeleton == nullptr) {
    *load_errno = errno;
    return nullptr;
  }
  if (before_load) before_load(*skeleton);
  if (int error = microseg_bpf__load(skeleton); error != 0) {
    *load_errno = error < 0 ? -error : error;
    microseg_bpf__destroy(skeleton);
    return nullptr;
  }
  return std::unique_ptr<LoadedDatapath>(new LoadedDatapath(skeleton));
}

LoadedDatapath::~LoadedDatapath() { microseg_bpf__destroy(skeleton_); }

void LoadedDatapath::set_endpoint(std::uint32_t endpoint_id, std::uint8_t flags,
                                  const std::string& pod_ip, std::uint32_t ifindex,
                                  std::uint32_t policy_rev, std::uint8_t lookup_actions) {
  const ms_endpoint_key key{.ifindex = ifindex};
  const ms_endpoint value{.endpoint_id = endpoint_id,
                          .ipv4 = ipv4_net(pod_ip),
                          .policy_rev = policy_rev,
                          .flags = flags,
                          .lpm_absent = 0,
                          .lpm6_absent = 0,
                          .lookup_actions = lookup_actions};
  update_or_throw(skeleton_->maps.ms_endpoints, &key, sizeof(key), &value, sizeof(value),
                  "update ms_endpoints");
}

void LoadedDatapath::set_lpm_absent(std::uint8_t lpm_absent, std::uint8_t lpm6_absent, std::uint32_t ifindex) {
  const ms_endpoint_key key{.ifindex = ifindex};
  ms_endpoint value{};
  if (bpf_map__lookup_elem(skeleton_->maps.ms_endpoints, &key, sizeof(key), &value, sizeof(value), 0) != 0) {
    throw std::runtime_error("set_lpm_absent: no endpoint (set_endpoint first)");
  }
  value.lpm_absent = lpm_absent;
  value.lpm6_absent = lpm6_absent;
  update_or_throw(skeleton_->maps.ms_endpoints, &key, sizeof(key), &value, sizeof(value),
                  "update ms_endpoints");
}

void LoadedDatapath::remove_endpoint(std::uint32_t ifindex) {
  const ms_endpoint_key key{.ifindex = ifindex};
  if (bpf_map__delete_elem(skeleton_->maps.ms_endpoints, &key, sizeof(key), 0) != 0 &&
      errno != ENOENT) {
    throw_errno("delete from ms_endpoints", errno);
  }
}

void LoadedDatapath::put_exact(std::uint32_t endpoint_id, ms_direction direction,
                               const std::string& peer, std::uint8_t proto, std::uint16_t port,
                               ms_action action, std::uint32_t rule_id) {
  const ms_policy_key key{.endpoint_id = endpoint_id,
                          .peer_ipv4 = ipv4_net(peer),
                          .port = port,
                          .proto = proto,
                          .direction = static_cast<std::uint8_t>(direction)};
  const ms_policy_value value{.action = static_cast<std::uint8_t>(action), .pad = {}, .rule_id = rule_id};
  update_or_throw(skeleton_->maps.ms_policy, &key, sizeof(key), &value, sizeof(value),
                  "update ms_policy");
}

void LoadedDatapath::put_lpm(std::uint32_t endpoint_id, ms_direction direction,
                             const std::string& peer, std::uint8_t prefix_length,
                             std::uint8_t proto, std::uint16_t port, ms_action action, std::uint32_t rule_id) {
  if (prefix_length > 32) throw std::invalid_argument("IPv4 prefix length over 32");
  const ms_lpm_key key{.prefixlen = static_cast<std::uint32_t>(MS_LPM_FIXED_BITS + prefix_length),
                       .endpoint_id = endpoint_id,
                       .direction = static_cast<std::uint8_t>(direction),
                       .proto = proto,
                       .port = port,
                       .peer_ipv4 = ipv4_net(peer)};
  const ms_policy_value value{.action = static_cast<std::uint8_t>(action), .pad = {}, .rule_id = rule_id};
  update_or_throw(skeleton_->maps.ms_policy_lpm, &key, sizeof(key), &value, sizeof(value),
                  "update ms_policy_lpm");
}

void LoadedDatapath::delete_exact(std::uint32_t endpoint_id, ms_direction direction,
                                  const std::string& peer, std::uint8_t proto,
                                  std::uint16_t port) {
  const ms_policy_key key{.endpoint_id = endpoint_id,
                          .peer_ipv4 = ipv4_net(peer),
                          .port = port,
                          .proto = proto,
                          .direction = static_cast<std::uint8_t>(direction)};
  if (bpf_map__delete_elem(skeleton_->maps.ms_policy, &key, sizeof(key), 0) != 0) {
    throw_errno("delete from ms_policy", errno);
  }
}

void LoadedDatapath::set_endpoint_ipv6(const std::string& pod_ipv6, std::uint32_t ifindex) {
  const ms_endpoint_key key{.ifindex = ifindex};
  ms_endpoint value{};
  if (bpf_map__lookup_elem(skeleton_->maps.ms_endpoints, &key, sizeof(key), &value, sizeof(value),
                           0) != 0) {
    throw_errno("lookup ms_endpoints (set_endpoint first)", errno);
  }
  const auto address = ipv6_net(pod_ipv6);
  std::memcpy(value.ipv6, address.data(), sizeof(value.ipv6));
  update_or_throw(skeleton_->maps.ms_endpoints, &key, sizeof(key), &value, sizeof(value),
                  "update ms_endpoints");
}

void LoadedDatapath::put_exact6(std::uint32_t endpoint_id, ms_direction direction,
                                const std::string& peer, std::uint8_t proto, std::uint16_t port,
                                ms_action action, std::uint32_t rule_id) {
  ms_policy6_key key{.endpoint_id = endpoint_id,
                     .peer_ipv6 = {},
                     .port = port,
                     .proto = proto,
                     .direction = static_cast<std::uint8_t>(direction)};
  const auto address = ipv6_net(peer);
  std::memcpy(key.peer_ipv6, address.data(), sizeof(key.peer_ipv6));
  const ms_policy_value value{.action = static_cast<std::uint8_t>(action), .pad = {}, .rule_id = rule_id};
  update_or_throw(skeleton_->maps.ms_policy6, &key, sizeof(key), &value, sizeof(value),
                  "update ms_policy6");
}

void LoadedDatapath::put_lpm6(std::uint32_t endpoint_id, ms_direction direction,
                              const std::string& peer, std::uint8_t prefix_length,
                              std::uint8_t proto, std::uint16_t port, ms_action action, std::uint32_t rule_id) {
  if (prefix_length > 128) throw std::invalid_argument("IPv6 prefix length over 128");
  ms_lpm6_key key{.prefixlen = static_cast<std::uint32_t>(MS_LPM_FIXED_BITS + prefix_length),
                  .endpoint_id = endpoint_id,
                  .direction = static_cast<std::uint8_t>(direction),
                  .proto = proto,
                  .port = port,
                  .peer_ipv6 = {}};
  const auto address = ipv6_net(peer);
  std::memcpy(key.peer_ipv6, address.data(), sizeof(key.peer_ipv6));
  const ms_policy_value value{.action = static_cast<std::uint8_t>(action), .pad = {}, .rule_id = rule_id};
  update_or_throw(skeleton_->maps.ms_policy6_lpm, &key, sizeof(key), &value, sizeof(value),
                  "update ms_policy6_lpm");
}

std::optional<ms_session> LoadedDatapath::session6(const ms_session6_key& key) const {
  ms_session value{};
  if (bpf_map__lookup_elem(skeleton_->maps.ms_sessions6, &key, sizeof(key), &value,
                           sizeof(value), 0) != 0) {
    if (errno == ENOENT) return std::nullopt;
    throw_errno("lookup ms_sessions6", errno);
  }
  return value;
}

std::size_t LoadedDatapath::session6_count() const {
  ms_session6_key key{}, next{};
  std::size_t count = 0;
  const void* previous = nullptr;
  while (bpf_map__get_next_key(skeleton_->maps.ms_sessions6, previous, &next, sizeof(next)) == 0) {
    ++count;
    key = next;
    previous = &key;
  }
  return count;
}

std::optional<ms_session> LoadedDatapath::session(const ms_session_key& key) const {
  ms_session value{};
  if (bpf_map__lookup_elem(skeleton_->maps.ms_sessions, &key, sizeof(key), &value,
                           sizeof(value), 0) != 0) {
    if (errno == ENOENT) return std::nullopt;
    throw_errno("lookup ms_sessions", errno);
  }
  return value;
}

std::size_t LoadedDatapath::session_count() const {
  ms_session_key key{}, next{};
  std::size_t count = 0;
  const void* previous = nullptr;
  while (bpf_map__get_next_key(skeleton_->maps.ms_sessions, previous, &next, sizeof(next)) == 0) {
    ++count;
    key = next;
    previous = &key;
  }
  return count;
}

std::int64_t LoadedDatapath::half_open(std::uint32_t endpoint_id) const {
  ms_half_open value{};
  if (bpf_map__lookup_elem(skeleton_->maps.ms_half_open, &endpoint_id, sizeof(endpoint_id),
                           &value, sizeof(value), 0) != 0) {
    if (errno == ENOENT) return 0;
    throw_errno("lookup ms_half_open", errno);
  }
  return static_cast<std::int64_t>(value.opened - value.closed) + value.base;
}

void LoadedDatapath::put_session(const ms_session_key& key, const ms_session& value) {
  update_or_throw(skeleton_->maps.ms_sessions, &key, sizeof(key), &value, sizeof(value),
                  "update ms_sessions");
}

void LoadedDatapath::put_half_open(std::uint32_t endpoint_id, std::int64_t count) {
  const ms_half_open value{.opened = 0, .closed = 0, .base = count};
  update_or_throw(skeleton_->maps.ms_half_open, &endpoint_id, sizeof(endpoint_id), &value,
                  sizeof(value), "update ms_half_open");
}

int LoadedDatapath::sessions_fd() const { return bpf_map__fd(skeleton_->maps.ms_sessions); }
int LoadedDatapath::half_open_fd() const { return bpf_map__fd(skeleton_->maps.ms_half_open); }
int LoadedDatapath::half_open_rebase_fd() const {
  return bpf_program__fd(skeleton_->progs.ms_half_open_rebase);
}

void LoadedDatapath::set_clock(std::uint64_t now_ns) { skeleton_->bss->test_clock_ns = now_ns; }

StatsSnapshot LoadedDatapath::read_stats() const {
  const int cpus = libbpf_num_possible_cpus();
  if (cpus <= 0) throw_errno("libbpf_num_possible_cpus", -cpus);
  std::vector<ms_counter> per_cpu(static_cast<std::size_t>(cpus));
  StatsSnapshot totals{};
  for (std::uint32_t index = 0; index < MS_STATS_ENTRIES; ++index) {
    if (bpf_map__lookup_elem(skeleton_->maps.ms_stats, &index, sizeof(index), per_cpu.data(),
                             per_cpu.size() * sizeof(ms_counter), 0) != 0) {
      throw_errno("lookup ms_stats", errno);
    }
    for (const ms_counter& counter : per_cpu) {
      totals[index].packets += counter.packets;
      totals[index].bytes += counter.bytes;
    }
  }
  return totals;
}

int LoadedDatapath::program_fd(Program program) const {
  return bpf_program__fd(program == Program::kFromPod ? skeleton_->progs.from_pod
                                                      : skeleton_->progs.to_pod);
}

int LoadedDatapath::map_fd(const char* name) const {
  return bpf_object__find_map_fd_by_name(skeleton_->obj, name);
}

RunResult LoadedDatapath::run(Program program, const Bytes& frame) {
  const StatsSnapshot before = read_stats();

  bpf_test_run_opts opts{};
  opts.sz = sizeof(opts);
  opts.data_in = frame.data();
  opts.data_size_in = static_cast<std::uint32_t>(frame.size());
  opts.repeat = 1;
  if (bpf_prog_test_run_opts(program_fd(program), &opts) != 0) {
    throw_errno(std::string("BPF_PROG_TEST_RUN ") + name_of(program), errno);
  }

  const StatsSnapshot after = read_stats();
  RunResult result;
  result.tc_action = opts.retval;
  for (std::size_t index = 0; index < MS_STATS_ENTRIES; ++index) {
    result.stats_delta[index].packets = after[index].packets - before[index].packets;
    result.stats_delta[index].bytes = after[index].bytes - before[index].bytes;
  }
  return result;
}

}  // namespace microseg::test
