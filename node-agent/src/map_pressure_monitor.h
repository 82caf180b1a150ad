// How full every BPF map that can fill is (docs/map-pressure.md): entries,
// capacity, failed inserts, evictions, refused entries and the time of the
// last check, for the metrics; and the session map's limits the data path
// enforces (when it counts as full, when it alerts) plus its allow-list.
//
// Entry counts: the maps the agent writes (endpoints, policy, LPM) hold
// exactly what the agent's own bookkeeping says; nobody else writes them.
// The session map is written by the data path, which counts its inserts
// (bpf/map_pressure.h); the monitor counts the map exactly (batched
// lookups) every `session_count_interval`, or every check once the estimate
// reaches the alert threshold, and re-bases the data path's estimate on it.
// An LRU map evicts silently: whatever disappeared between two counts that
// neither the agent nor the data path deleted is counted as evicted.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "bpf_datapath.h"
#include "microseg/datapath.h"

namespace microseg {

struct MapPressure {
  std::string map;  // pinned map name, e.g. "ms_sessions"
  uint64_t entries = 0;
  uint64_t capacity = 0;
  uint64_t insert_failures = 0;
  uint64_t evictions = 0;  // LRU only; an estimate (see above)
  uint64_t refused = 0;    // new entries the data path refused because the map is full
  uint64_t alerts = 0;     // alerts logged for this map (ring buffer or the agent's own check)
  absl::Time last_check = absl::InfinitePast();
  double pressure() const { return capacity == 0 ? 0.0 : static_cast<double>(entries) / static_cast<double>(capacity); }
};

struct MapPressureOptions {
  double alert_ratio = 0.9;            // alert at this share of capacity
  double session_reserve_ratio = 0.02; // session map "full" this far below capacity; the rest is for the allow-list
  absl::Duration session_count_interval = absl::Seconds(10);
  absl::Duration agent_alert_interval = absl::Minutes(1);  // log rate limit for the agent-written maps
};

// The peers new sessions may still open when the session map is full:
// ms_sess_allow (IPv4) and ms_sess_allow6 (IPv6).
struct SessionAllowList {
  std::vector<ms_allow_key> ipv4;
  std::vector<ms_allow6_key> ipv6;
};

// "CIDR:proto[:port]" entries of either family, comma separated (e.g.
// "10.96.0.10/32:udp:53,fd00:96::a/128:udp:53"); port 0 or none = any port.
// The CIDR ends at the first ':' after its '/'.
[[nodiscard]] absl::StatusOr<SessionAllowList> ParseSessionAllowList(absl::string_view text);

class MapPressureMonitor {
 public:
  // Entries of the agent-written maps, from the agent's bookkeeping.
  using AgentEntries = std::function<std::array<uint64_t, MS_PMAP_MAX>()>;
  // Failed upserts of the agent-written maps.
  using AgentFailures = std::function<uint64_t(unsigned map)>;

  MapPressureMonitor(const BpfDatapath& datapath, MapPressureOptions options, AgentEntries entries,
                     AgentFailures failures);

  // Writes the session map's limits and the allow-list (replacing what a
  // previous run left). Call once before traffic matters.
  [[nodiscard]] absl::Status Configure(const SessionAllowList& allow_list);
  // One round: samples every map, counts the session map when due, alerts.
  [[nodiscard]] absl::Status Check(absl::Time now);
  // An alert the data path sent through the ring buffer.
  void OnDataPathAlert(const ms_pressure_alert& alert);

  std::vector<MapPressure> Snapshot() const;

 private:
  // One session map (ms_sessions or ms_sessions6): the limits the data path
  // enforces and the last exact count, which re-bases the data path's
  // estimate and tells LRU evictions from deletes.
  struct SessionMapCount {
    unsigned slot = MS_PMAP_SESSIONS;  // MS_PMAP_SESSIONS or MS_PMAP_SESSIONS6
    ms_pressure_config config{};
    bool counted = false;
    absl::Time last_count = absl::InfinitePast();
    uint64_t counted_entries = 0;
    uint64_t counted_inserts = 0;
    uint64_t counted_known_deletes = 0;
  };
  [[nodiscard]] absl::Status CountSessionsLocked(SessionMapCount& sessions, absl::Time now);
  [[nodiscard]] absl::Status CheckSessionsLocked(SessionMapCount& sessions, absl::Time now);
  SessionMapCount& SessionMapLocked(unsigned slot);
  void AgentAlertLocked(unsigned map, absl::Time now);

  const BpfDatapath& datapath_;
  const MapPressureOptions options_;
  AgentEntries agent_entries_;
  AgentFailures agent_failures_;

  mutable std::mutex mu_;
  std::array<MapPressure, MS_PMAP_MAX> maps_;
  std::array<absl::Time, MS_PMAP_MAX> last_agent_alert_{};
  std::array<SessionMapCount, 2> session_maps_{};  // ms_sessions, ms_sessions6
};

// Counts a hash map's entries with batched lookups (falls back to walking
// the keys where the kernel has no batch operations for the map).
[[nodiscard]] absl::StatusOr<uint64_t> CountMapEntries(int fd, uint32_t key_size, uint32_t value_size);

}  // namespace microseg
