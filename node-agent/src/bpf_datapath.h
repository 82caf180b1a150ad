// Loads the BPF object (through its skeleton) once per agent start, sizes and
// configures it, and pins programs and maps under the agent's bpffs
// directory. Pinned maps from an earlier run are reused, so policy and
// sessions survive agent restarts and the programs already attached to pod
// veths keep enforcing while the agent is down.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "map_state.h"
#include "microseg/datapath.h"
#include "session_sweeper.h"

struct microseg_bpf;

namespace microseg {

struct DatapathOptions {
  std::string bpffs_dir = "/sys/fs/bpf/microseg";
  uint32_t max_endpoints = MS_DEFAULT_MAX_ENDPOINTS;
  uint32_t max_policy_exact = MS_DEFAULT_MAX_POLICY_EXACT;
  uint32_t max_policy_lpm = MS_DEFAULT_MAX_POLICY_LPM;
  uint32_t max_sessions = MS_DEFAULT_MAX_SESSIONS;
  // IPv6 twins (docs/ipv6.md).
  uint32_t max_policy6_exact = MS_DEFAULT_MAX_POLICY6_EXACT;
  uint32_t max_policy6_lpm = MS_DEFAULT_MAX_POLICY6_LPM;
  uint32_t max_sessions6 = MS_DEFAULT_MAX_SESSIONS6;
  SessionTimeouts session_timeouts;
  uint32_t max_half_open_per_endpoint = MS_DEFAULT_MAX_HALF_OPEN;  // 0 = no cap
  // Audit events' rate limit per CPU (bpf/audit_events.h): reports per
  // second and the burst; 0 reports per second turns them off.
  uint32_t audit_events_per_sec = MS_DEFAULT_AUDIT_EVENTS_PER_SEC;
  uint32_t audit_event_burst = MS_DEFAULT_AUDIT_EVENT_BURST;
};

// Per (direction, reason) packet and byte counts summed over CPUs.
using DatapathCounters = std::array<ms_counter, MS_STATS_ENTRIES>;

// ms_audit_stats summed over CPUs (the bucket fields are left zero).
struct AuditCounters {
  uint64_t reported = 0;
  uint64_t rate_limited = 0;
  uint64_t ring_full = 0;
};

struct MapCapacity {
  std::string name;
  uint32_t max_entries = 0;
};

// What the kernel charges for one map (fdinfo "memlock"): preallocated hash
// maps their whole capacity up front, LPM tries per entry as they grow.
struct MapMemory {
  std::string name;
  uint64_t memlock_bytes = 0;
};

class BpfDatapath {
 public:
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<BpfDatapath>> LoadAndPin(const DatapathOptions& options);
  ~BpfDatapath();
  BpfDatapath(const BpfDatapath&) = delete;
  BpfDatapath& operator=(const BpfDatapath&) = delete;

  int endpoints_fd() const;
  int policy_fd() const;
  int policy_lpm_fd() const;
  int sessions_fd() const;
  int policy6_fd() const;
  int policy6_lpm_fd() const;
  int sessions6_fd() const;
  int session_allow6_fd() const;
  int stats_fd() const;
  // Map pressure (map_pressure_monitor.h, bpf/map_pressure.h).
  int pressure_counters_fd() const;
  int pressure_config_fd() const;
  int pressure_events_fd() const;
  int session_allow_fd() const;
  // Audit events (bpf/audit_events.h): the ring buffer and its counters.
  int audit_events_fd() const;
  [[nodiscard]] absl::StatusOr<AuditCounters> ReadAuditCounters() const;
  // Sessions this agent deleted (purges, sweeps) from ms_sessions
  // (MS_PMAP_SESSIONS) or ms_sessions6 (MS_PMAP_SESSIONS6): the monitor tells
  // them apart from LRU evictions. Whoever deletes sessions reports them here.
  void CountSessionDeletes(unsigned session_map, uint64_t n) const { session_deletes_[SessionSlot(session_map)] += n; }
  uint64_t session_deletes(unsigned session_map) const { return session_deletes_[SessionSlot(session_map)]; }
  int half_open_fd() const;
  int half_open_rebase_fd() const;  // the ms_half_open_rebase program (SessionSweeper)

  // Number of maps taken over from an earlier agent's pins.
  int reused_maps() const { return reused_maps_; }
  std::vector<MapCapacity> capacities() const;
  // Every map of the object, read at the call (the LPM tries grow).
  [[nodiscard]] absl::StatusOr<std::vector<MapMemory>> MapMemoryUsage() const;

  // What the endpoint and policy maps hold right now (after a restart this is
  // the previous agent's state, the starting point of the first diff).
  [[nodiscard]] absl::StatusOr<MapState> ReadPolicyMaps() const;
  [[nodiscard]] absl::StatusOr<DatapathCounters> ReadCounters() const;
  [[nodiscard]] absl::StatusOr<uint32_t> CountSessions() const;
  // Forgets every session admitted at `endpoint_id` (the endpoint is gone).
  [[nodiscard]] absl::Status DeleteSessionsOf(uint32_t endpoint_id) const;

  // Removes every pin this agent owns (programs, maps, their directories).
  [[nodiscard]] absl::Status Unpin() const;

  const std::string& bpffs_dir() const { return bpffs_dir_; }

 private:
  BpfDatapath(microseg_bpf* skel, std::string bpffs_dir, int reused_maps)
      : skel_(skel), bpffs_dir_(std::move(bpffs_dir)), reused_maps_(reused_maps) {}

  microseg_bpf* skel_;
  std::string bpffs_dir_;
  int reused_maps_;
  static size_t SessionSlot(unsigned session_map) { return session_map == MS_PMAP_SESSIONS6 ? 1 : 0; }
  mutable std::array<std::atomic<uint64_t>, 2> session_deletes_{};
};

}  // namespace microseg
