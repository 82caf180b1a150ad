#include "bpf_datapath.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/bpf.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <filesystem>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "log.h"
#include "microseg.skel.h"
#include "unique_fd.h"

namespace microseg {
namespace {

constexpr long kBpfFsMagic = 0xcafe4a11;

absl::Status Errno(int err, std::string_view what) {
  return absl::ErrnoToStatus(err, std::string(what));
}

int LibbpfPrint(enum libbpf_print_level level, const char* format, va_list args) {
  if (level == LIBBPF_DEBUG) return 0;
  char line[1024];
  int n = std::vsnprintf(line, sizeof line, format, args);
  std::string_view text(line, n > 0 ? std::min<size_t>(n, sizeof line - 1) : 0);
  while (!text.empty() && text.back() == '\n') text.remove_suffix(1);
  LogLine(level == LIBBPF_WARN ? LogLevel::kWarning : LogLevel::kInfo, absl::StrCat("libbpf: ", std::string(text)));
  return n;
}

absl::Status EnsureBpffsDir(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return absl::FailedPreconditionError(absl::StrCat("cannot create ", dir, ": ", ec.message()));
  struct statfs fs {};
  if (statfs(dir.c_str(), &fs) != 0) return Errno(errno, absl::StrCat("statfs ", dir));
  if (static_cast<long>(fs.f_type) != kBpfFsMagic) {
    return absl::FailedPreconditionError(
        absl::StrCat(dir, " is not on a bpf filesystem (mount -t bpf bpf /sys/fs/bpf)"));
  }
  for (const char* sub : {"progs", MS_PIN_MAPS_DIR}) {
    std::filesystem::create_directories(std::filesystem::path(dir) / sub, ec);
    if (ec) return absl::FailedPreconditionError(absl::StrCat("cannot create ", dir, "/", sub, ": ", ec.message()));
  }
  return absl::OkStatus();
}

// Takes over a pinned map of an earlier run when its shape matches the
// object's; a map of another shape is a layout change that needs the pins
// removed first (the attached programs still use it), so it is an error.
absl::StatusOr<bool> ReusePinnedMap(bpf_map* map, const std::string& path) {
  if (access(path.c_str(), F_OK) != 0) return false;
  UniqueFd fd(bpf_obj_get(path.c_str()));
  if (!fd.valid()) return Errno(errno, absl::StrCat("open pinned map ", path));
  bpf_map_info info{};
  uint32_t info_len = sizeof info;
  if (bpf_obj_get_info_by_fd(fd.get(), &info, &info_len) != 0) {
    return Errno(errno, absl::StrCat("inspect pinned map ", path));
  }
  if (info.type != bpf_map__type(map) || info.key_size != bpf_map__key_size(map) ||
      info.value_size != bpf_map__value_size(map) || info.map_flags != bpf_map__map_flags(map)) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "pinned map %s has another layout (type %u key %u value %u flags %#x, this agent expects %u/%u/%u/%#x); "
        "remove the pins of the old version before starting this one",
        path, info.type, info.key_size, info.value_size, info.map_flags, bpf_map__type(map),
        bpf_map__key_size(map), bpf_map__value_size(map), bpf_map__map_flags(map)));
  }
  if (info.max_entries != bpf_map__max_entries(map)) {
    LogWarning("pinned map ", path, " keeps its size of ", info.max_entries, " entries (configured ",
               bpf_map__max_entries(map), "); the new size applies once the pins are removed");
    if (int err = bpf_map__set_max_entries(map, info.max_entries); err != 0) {
      return Errno(-err, "set max entries");
    }
  }
  if (int err = bpf_map__reuse_fd(map, fd.get()); err != 0) return Errno(-err, absl::StrCat("reuse ", path));
  return true;
}

// Replaces a program pin atomically: pin under a temporary name, then rename
// over the old pin, so a CNI ADD never finds the path missing. (bpffs refuses
// dots in names: the temporary suffix is "_new".)
absl::Status PinProgramAtomically(bpf_program* prog, const std::string& path) {
  const std::string temp = path + "_new";
  unlink(temp.c_str());
  if (int err = bpf_program__pin(prog, temp.c_str()); err != 0) return Errno(-err, absl::StrCat("pin ", temp));
  if (rename(temp.c_str(), path.c_str()) != 0) {
    int err = errno;
    unlink(temp.c_str());
    return Errno(err, absl::StrCat("rename pin to ", path));
  }
  return absl::OkStatus();
}

// The pipeline's tail-call slots (R4). libbpf fills them at load from the
// object's declaration; they are filled again here and read back, so no entry
// program is pinned (and then attached by the CNI plugin) while one of its
// stages is missing. A reused ms_stages (agent restart) gets this load's
// stages here, which the still attached older entry programs then call.
absl::Status FillStages(microseg_bpf* skel) {
  const int stages_fd = bpf_map__fd(skel->maps.ms_stages);
  const struct {
    uint32_t slot;
    bpf_program* program;
  } stages[] = {{MS_STAGE_TO_POD_TRACK, skel->progs.to_pod_track},
                {MS_STAGE_FROM_POD_TRACK, skel->progs.from_pod_track},
                {MS_STAGE_TO_POD_TRACK6, skel->progs.to_pod_track6},
                {MS_STAGE_FROM_POD_TRACK6, skel->progs.from_pod_track6}};
  static_assert(sizeof(stages) / sizeof(stages[0]) == MS_STAGE_MAX, "every stage has a program");
  for (const auto& stage : stages) {
    const int program_fd = bpf_program__fd(stage.program);
    if (bpf_map_update_elem(stages_fd, &stage.slot, &program_fd, BPF_ANY) != 0) {
      return Errno(errno, absl::StrCat("fill ms_stages slot ", stage.slot));
    }
    uint32_t installed_id = 0;  // user space reads a PROG_ARRAY slot as a program id
    if (bpf_map_lookup_elem(stages_fd, &stage.slot, &installed_id) != 0) {
      return Errno(errno, absl::StrCat("read ms_stages slot ", stage.slot));
    }
    bpf_prog_info info{};
    uint32_t info_len = sizeof info;
    if (bpf_obj_get_info_by_fd(program_fd, &info, &info_len) != 0) {
      return Errno(errno, absl::StrCat("inspect ", bpf_program__name(stage.program)));
    }
    if (installed_id != info.id) {
      return absl::InternalError(absl::StrFormat("ms_stages slot %u holds program id %u, expected %s (id %u)",
                                                 stage.slot, installed_id, bpf_program__name(stage.program),
                                                 info.id));
    }
  }
  return absl::OkStatus();
}

uint64_t ToNanos(absl::Duration d) { return static_cast<uint64_t>(absl::ToInt64Nanoseconds(d)); }

template <typename Key, typename Value, typename Fn>
absl::Status ForEachEntry(int fd, Fn&& fn) {
  Key key{}, next{};
  bool first = true;
  while (true) {
    int err = bpf_map_get_next_key(fd, first ? nullptr : &key, &next);
    if (err != 0) {
      if (errno == ENOENT) return absl::OkStatus();
      return Errno(errno, "iterate map");
    }
    first = false;
    Value value{};
    if (bpf_map_lookup_elem(fd, &next, &value) == 0) fn(next, value);
    else if (errno != ENOENT) return Errno(errno, "read map entry");
    key = next;
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<BpfDatapath>> BpfDatapath::LoadAndPin(const DatapathOptions& options) {
  libbpf_set_print(LibbpfPrint);
  if (auto status = EnsureBpffsDir(options.bpffs_dir); !status.ok()) return status;

  microseg_bpf* skel = microseg_bpf__open();
  if (skel == nullptr) return Errno(errno, "open BPF object");
  std::unique_ptr<microseg_bpf, void (*)(microseg_bpf*)> guard(skel, microseg_bpf__destroy);

  struct Sizing {
    bpf_map* map;
    uint32_t max_entries;
  };
  for (const Sizing& s : {Sizing{skel->maps.ms_endpoints, options.max_endpoints},
                          Sizing{skel->maps.ms_policy, options.max_policy_exact},
                          Sizing{skel->maps.ms_policy_lpm, options.max_policy_lpm},
                          Sizing{skel->maps.ms_sessions, options.max_sessions},
                          Sizing{skel->maps.ms_policy6, options.max_policy6_exact},
                          Sizing{skel->maps.ms_policy6_lpm, options.max_policy6_lpm},
                          Sizing{skel->maps.ms_sessions6, options.max_sessions6},
                          Sizing{skel->maps.ms_half_open, options.max_endpoints}}) {
    if (s.max_entries == 0) return absl::InvalidArgumentError(absl::StrCat(bpf_map__name(s.map), ": size 0"));
    if (int err = bpf_map__set_max_entries(s.map, s.max_entries); err != 0) return Errno(-err, "size map");
  }
  const SessionTimeouts& timeouts = options.session_timeouts;
  skel->rodata->session_timeout_syn_ns = ToNanos(timeouts.tcp_syn);
  skel->rodata->session_timeout_tcp_ns = ToNanos(timeouts.tcp_established);
  skel->rodata->session_timeout_tcp_fin_ns = ToNanos(timeouts.tcp_fin);
  skel->rodata->session_timeout_tcp_close_ns = ToNanos(timeouts.tcp_close);
  skel->rodata->session_timeout_udp_ns = ToNanos(timeouts.udp);
  skel->rodata->session_timeout_icmp_ns = ToNanos(timeouts.icmp);
  skel->rodata->max_half_open_per_endpoint = options.max_half_open_per_endpoint;
  if (options.audit_events_per_sec == 0) {
    skel->rodata->audit_event_cost_ns = 1000000000ULL;
    skel->rodata->audit_event_burst = 0;  // an empty bucket: every report is held back (and counted)
  } else {
    skel->rodata->audit_event_cost_ns = 1000000000ULL / options.audit_events_per_sec;
    skel->rodata->audit_event_burst = std::max<uint32_t>(options.audit_event_burst, 1);
  }

  // The bloom pre-filter (R6) stays off in the agent (policy_bloom_enabled is
  // never set), so its map is private to this load and never pinned; on a
  // kernel without bloom filters (< 5.16) it becomes a one-slot array, which
  // the verifier never reaches behind the constant-false flag.
  if (libbpf_probe_bpf_map_type(BPF_MAP_TYPE_BLOOM_FILTER, nullptr) != 1) {
    bpf_map* bloom = skel->maps.ms_policy_bloom;
    if (bpf_map__set_type(bloom, BPF_MAP_TYPE_ARRAY) != 0 || bpf_map__set_key_size(bloom, sizeof(uint32_t)) != 0 ||
        bpf_map__set_max_entries(bloom, 1) != 0) {
      return absl::InternalError("cannot turn ms_policy_bloom into a placeholder for this kernel");
    }
    LogInfo("kernel has no BPF bloom filter maps; the (unused) policy pre-filter map is a placeholder");
  }

  const std::string maps_dir = absl::StrCat(options.bpffs_dir, "/", MS_PIN_MAPS_DIR);
  int reused = 0;
  std::vector<bpf_map*> fresh;
  bpf_map* map;
  bpf_object__for_each_map(map, skel->obj) {
    if (bpf_map__is_internal(map)) continue;  // .rodata: per-load config, never shared
    if (map == skel->maps.ms_policy_bloom) continue;  // unused by the agent, see above
    auto reuse = ReusePinnedMap(map, absl::StrCat(maps_dir, "/", bpf_map__name(map)));
    if (!reuse.ok()) return reuse.status();
    if (*reuse) ++reused;
    else fresh.push_back(map);
  }

  if (int err = microseg_bpf__load(skel); err != 0) {
    return Errno(-err, "load BPF programs (is this kernel >= 5.10 with BTF, and do we have CAP_BPF?)");
  }
  if (auto status = FillStages(skel); !status.ok()) return status;
  for (bpf_map* m : fresh) {
    const std::string path = absl::StrCat(maps_dir, "/", bpf_map__name(m));
    if (int err = bpf_map__pin(m, path.c_str()); err != 0) return Errno(-err, absl::StrCat("pin ", path));
  }
  if (auto s = PinProgramAtomically(skel->progs.from_pod, absl::StrCat(options.bpffs_dir, "/", MS_PIN_PROG_FROM_POD));
      !s.ok()) {
    return s;
  }
  if (auto s = PinProgramAtomically(skel->progs.to_pod, absl::StrCat(options.bpffs_dir, "/", MS_PIN_PROG_TO_POD));
      !s.ok()) {
    return s;
  }
  LogInfo("BPF programs loaded and pinned under ", options.bpffs_dir, " (", reused, " maps reused, ",
          fresh.size(), " created)");
  return std::unique_ptr<BpfDatapath>(new BpfDatapath(guard.release(), options.bpffs_dir, reused));
}

BpfDatapath::~BpfDatapath() { microseg_bpf__destroy(skel_); }

int BpfDatapath::endpoints_fd() const { return bpf_map__fd(skel_->maps.ms_endpoints); }
int BpfDatapath::policy_fd() const { return bpf_map__fd(skel_->maps.ms_policy); }
int BpfDatapath::policy_lpm_fd() const { return bpf_map__fd(skel_->maps.ms_policy_lpm); }
int BpfDatapath::sessions_fd() const { return bpf_map__fd(skel_->maps.ms_sessions); }
int BpfDatapath::policy6_fd() const { return bpf_map__fd(skel_->maps.ms_policy6); }
int BpfDatapath::policy6_lpm_fd() const { return bpf_map__fd(skel_->maps.ms_policy6_lpm); }
int BpfDatapath::sessions6_fd() const { return bpf_map__fd(skel_->maps.ms_sessions6); }
int BpfDatapath::session_allow6_fd() const { return bpf_map__fd(skel_->maps.ms_sess_allow6); }
int BpfDatapath::stats_fd() const { return bpf_map__fd(skel_->maps.ms_stats); }
int BpfDatapath::pressure_counters_fd() const { return bpf_map__fd(skel_->maps.ms_pressure); }
int BpfDatapath::pressure_config_fd() const { return bpf_map__fd(skel_->maps.ms_pressure_cfg); }
int BpfDatapath::pressure_events_fd() const { return bpf_map__fd(skel_->maps.ms_pressure_ev); }
int BpfDatapath::session_allow_fd() const { return bpf_map__fd(skel_->maps.ms_sess_allow); }
int BpfDatapath::audit_events_fd() const { return bpf_map__fd(skel_->maps.ms_audit_ev); }

absl::StatusOr<AuditCounters> BpfDatapath::ReadAuditCounters() const {
  const int cpus = libbpf_num_possible_cpus();
  if (cpus <= 0) return Errno(-cpus, "count possible CPUs");
  std::vector<ms_audit_stats> per_cpu(static_cast<size_t>(cpus));
  const uint32_t zero = 0;
  if (bpf_map_lookup_elem(bpf_map__fd(skel_->maps.ms_audit_stats), &zero, per_cpu.data()) != 0) {
    return Errno(errno, "read ms_audit_stats");
  }
  AuditCounters sum;
  for (const ms_audit_stats& cpu : per_cpu) {
    sum.reported += cpu.reported;
    sum.rate_limited += cpu.rate_limited;
    sum.ring_full += cpu.ring_full;
  }
  return sum;
}
int BpfDatapath::half_open_fd() const { return bpf_map__fd(skel_->maps.ms_half_open); }
int BpfDatapath::half_open_rebase_fd() const { return bpf_program__fd(skel_->progs.ms_half_open_rebase); }

std::vector<MapCapacity> BpfDatapath::capacities() const {
  std::vector<MapCapacity> out;
  for (bpf_map* m : {skel_->maps.ms_endpoints, skel_->maps.ms_policy, skel_->maps.ms_policy_lpm,
                     skel_->maps.ms_sessions, skel_->maps.ms_policy6, skel_->maps.ms_policy6_lpm,
                     skel_->maps.ms_sessions6}) {
    out.push_back({bpf_map__name(m), bpf_map__max_entries(m)});
  }
  return out;
}

absl::StatusOr<std::vector<MapMemory>> BpfDatapath::MapMemoryUsage() const {
  std::vector<MapMemory> out;
  bpf_map* map = nullptr;
  bpf_object__for_each_map(map, skel_->obj) {
    const int fd = bpf_map__fd(map);
    if (fd < 0) continue;  // not created (a map this kernel has no use for)
    const std::string path = absl::StrCat("/proc/self/fdinfo/", fd);
    std::FILE* info = std::fopen(path.c_str(), "r");
    if (info == nullptr) return Errno(errno, absl::StrCat("open ", path));
    char line[256];
    unsigned long long memlock = 0;
    bool found = false;
    while (!found && std::fgets(line, sizeof line, info) != nullptr) {
      found = std::sscanf(line, "memlock: %llu", &memlock) == 1;
    }
    std::fclose(info);
    if (!found) return absl::InternalError(absl::StrCat(path, " has no memlock line (", bpf_map__name(map), ")"));
    out.push_back({bpf_map__name(map), memlock});
  }
  return out;
}

absl::StatusOr<MapState> BpfDatapath::ReadPolicyMaps() const {
  MapState state;
  auto status = ForEachEntry<ms_endpoint_key, ms_endpoint>(
      endpoints_fd(), [&](const ms_endpoint_key& k, const ms_endpoint& v) { state.endpoints[k.ifindex] = v; });
  if (!status.ok()) return status;
  status = ForEachEntry<ms_policy_key, ms_policy_value>(
      policy_fd(), [&](const ms_policy_key& k, const ms_policy_value& v) { state.exact[k] = v; });
  if (!status.ok()) return status;
  status = ForEachEntry<ms_lpm_key, ms_policy_value>(
      policy_lpm_fd(), [&](const ms_lpm_key& k, const ms_policy_value& v) { state.lpm[k] = v; });
  if (!status.ok()) return status;
  status = ForEachEntry<ms_policy6_key, ms_policy_value>(
      policy6_fd(), [&](const ms_policy6_key& k, const ms_policy_value& v) { state.exact6[k] = v; });
  if (!status.ok()) return status;
  status = ForEachEntry<ms_lpm6_key, ms_policy_value>(
      policy6_lpm_fd(), [&](const ms_lpm6_key& k, const ms_policy_value& v) { state.lpm6[k] = v; });
  if (!status.ok()) return status;
  return state;
}

absl::StatusOr<DatapathCounters> BpfDatapath::ReadCounters() const {
  const int cpus = libbpf_num_possible_cpus();
  if (cpus <= 0) return Errno(-cpus, "count possible CPUs");
  std::vector<ms_counter> per_cpu(static_cast<size_t>(cpus));
  DatapathCounters totals{};
  for (uint32_t index = 0; index < MS_STATS_ENTRIES; ++index) {
    if (bpf_map_lookup_elem(stats_fd(), &index, per_cpu.data()) != 0) return Errno(errno, "read ms_stats");
    for (const ms_counter& c : per_cpu) {
      totals[index].packets += c.packets;
      totals[index].bytes += c.bytes;
    }
  }
  return totals;
}

absl::StatusOr<uint32_t> BpfDatapath::CountSessions() const {
  uint32_t count = 0;
  auto status = ForEachEntry<ms_session_key, ms_session>(sessions_fd(),
                                                         [&](const ms_session_key&, const ms_session&) { ++count; });
  if (!status.ok()) return status;
  return count;
}

namespace {
// Deletes the endpoint's entries of one session map; returns how many went.
template <typename Key>
absl::StatusOr<uint64_t> DeleteSessionsIn(int fd, uint32_t endpoint_id) {
  std::vector<Key> doomed;
  auto status = ForEachEntry<Key, ms_session>(fd, [&](const Key& k, const ms_session&) {
    if (k.endpoint_id == endpoint_id) doomed.push_back(k);
  });
  if (!status.ok()) return status;
  uint64_t deleted = 0;
  for (const Key& k : doomed) {
    if (bpf_map_delete_elem(fd, &k) == 0) ++deleted;
    else if (errno != ENOENT) return Errno(errno, "delete session");
  }
  return deleted;
}
}  // namespace

absl::Status BpfDatapath::DeleteSessionsOf(uint32_t endpoint_id) const {
  auto deleted = DeleteSessionsIn<ms_session_key>(sessions_fd(), endpoint_id);
  if (!deleted.ok()) return deleted.status();
  CountSessionDeletes(MS_PMAP_SESSIONS, *deleted);
  auto deleted6 = DeleteSessionsIn<ms_session6_key>(sessions6_fd(), endpoint_id);
  if (!deleted6.ok()) return deleted6.status();
  CountSessionDeletes(MS_PMAP_SESSIONS6, *deleted6);
  if (bpf_map_delete_elem(half_open_fd(), &endpoint_id) != 0 && errno != ENOENT) {
    return Errno(errno, "delete half-open counter");
  }
  return absl::OkStatus();
}

absl::Status BpfDatapath::Unpin() const {
  std::error_code ec;
  for (const char* sub : {"progs", MS_PIN_MAPS_DIR}) {
    std::filesystem::remove_all(std::filesystem::path(bpffs_dir_) / sub, ec);
    if (ec) return absl::InternalError(absl::StrCat("unpin ", bpffs_dir_, "/", sub, ": ", ec.message()));
  }
  std::filesystem::remove(bpffs_dir_, ec);  // only if empty: the directory may be a mount point
  return absl::OkStatus();
}

}  // namespace microseg
