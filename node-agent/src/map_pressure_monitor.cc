#include "map_pressure_monitor.h"

#include <bpf/bpf.h>
#include <netinet/in.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <set>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/strings/ascii.h"
#include "ipv4_cidr.h"
#include "ipv6_address.h"
#include "log.h"
#include "map_state.h"

namespace microseg {
namespace {

constexpr uint32_t kCountBatch = 4096;
constexpr int kNotSupported = 524;  // ENOTSUPP, kernel-internal, what old kernels return for batch ops

absl::Status Errno(int err, absl::string_view what) { return absl::ErrnoToStatus(err, std::string(what)); }

absl::StatusOr<ms_pressure_counters> ReadSessionCounters(const BpfDatapath& datapath, uint32_t slot) {
  ms_pressure_counters counters{};
  if (bpf_map_lookup_elem(datapath.pressure_counters_fd(), &slot, &counters) != 0) {
    return Errno(errno, "read ms_pressure");
  }
  return counters;
}

uint64_t Estimate(uint64_t inserts, uint64_t removed) {
  const auto estimate = static_cast<int64_t>(inserts - removed);  // modulo 2^64, like the data path
  return estimate > 0 ? static_cast<uint64_t>(estimate) : 0;
}

absl::StatusOr<uint64_t> CountByWalking(int fd, uint32_t key_size) {
  std::vector<uint8_t> key(key_size), next(key_size);
  uint64_t count = 0;
  for (const void* previous = nullptr; bpf_map_get_next_key(fd, previous, next.data()) == 0; previous = key.data()) {
    key.swap(next);
    ++count;
  }
  if (errno != ENOENT) return Errno(errno, "walk map keys");
  return count;
}

}  // namespace

absl::StatusOr<uint64_t> CountMapEntries(int fd, uint32_t key_size, uint32_t value_size) {
  std::vector<uint8_t> keys(static_cast<size_t>(key_size) * kCountBatch);
  std::vector<uint8_t> values(static_cast<size_t>(value_size) * kCountBatch);
  std::vector<uint8_t> in_token(key_size), out_token(key_size);
  uint64_t total = 0;
  bool first = true;
  while (true) {
    uint32_t count = kCountBatch;
    LIBBPF_OPTS(bpf_map_batch_opts, opts);
    const int err = bpf_map_lookup_batch(fd, first ? nullptr : in_token.data(), out_token.data(), keys.data(),
                                         values.data(), &count, &opts);
    const int error = err == 0 ? 0 : errno;
    if (err != 0 && first && (error == EINVAL || error == kNotSupported || error == EOPNOTSUPP)) {
      return CountByWalking(fd, key_size);
    }
    if (err != 0 && error != ENOENT) return Errno(error, "count map entries (batched lookup)");
    total += count;
    if (err != 0) return total;  // ENOENT: that was the last batch
    in_token.swap(out_token);
    first = false;
  }
}

absl::StatusOr<SessionAllowList> ParseSessionAllowList(absl::string_view text) {
  SessionAllowList out;
  for (absl::string_view item : absl::StrSplit(text, ',', absl::SkipWhitespace())) {
    item = absl::StripAsciiWhitespace(item);
    auto bad = [&](absl::string_view why) {
      return absl::InvalidArgumentError(
          absl::StrCat("session allow-list entry '", item, "': ", why, " (want CIDR:tcp|udp|sctp[:port])"));
    };
    // An IPv6 CIDR has ':' of its own: the fields start after the prefix length.
    const size_t slash = item.find('/');
    if (slash == absl::string_view::npos) return bad("the CIDR needs a /prefix-length");
    const size_t fields_start = item.find(':', slash);
    if (fields_start == absl::string_view::npos) return bad("wrong number of ':' fields");
    const absl::string_view cidr_text = item.substr(0, fields_start);
    std::vector<absl::string_view> parts = absl::StrSplit(item.substr(fields_start + 1), ':');
    parts.insert(parts.begin(), cidr_text);
    if (parts.size() < 2 || parts.size() > 3) return bad("wrong number of ':' fields");
    const bool ipv6 = cidr_text.find(':') != absl::string_view::npos;
    absl::StatusOr<Ipv4Cidr> cidr = ipv6 ? Ipv4Cidr{} : ParseIpv4Cidr(cidr_text);
    absl::StatusOr<Ipv6Cidr> cidr6 = ipv6 ? ParseIpv6Cidr(cidr_text) : Ipv6Cidr{};
    if (!cidr.ok()) return bad(cidr.status().message());
    if (!cidr6.ok()) return bad(cidr6.status().message());
    uint8_t proto = 0;
    if (parts[1] == "tcp") proto = IPPROTO_TCP;
    else if (parts[1] == "udp") proto = IPPROTO_UDP;
    else if (parts[1] == "sctp") proto = IPPROTO_SCTP;
    else return bad(absl::StrCat("unknown protocol '", parts[1], "'"));
    uint32_t port = 0;
    if (parts.size() == 3 && (!absl::SimpleAtoi(parts[2], &port) || port > 65535)) {
      return bad(absl::StrCat("bad port '", parts[2], "'"));
    }
    if (ipv6) {
      ms_allow6_key key{};
      key.prefixlen = MS_ALLOW_FIXED_BITS + cidr6->prefix_len;
      key.proto = proto;
      key.port = static_cast<uint16_t>(port);
      std::memcpy(key.peer_ipv6, cidr6->addr.data(), sizeof key.peer_ipv6);
      out.ipv6.push_back(key);
      continue;
    }
    ms_allow_key key{};
    key.prefixlen = MS_ALLOW_FIXED_BITS + cidr->prefix_len;
    key.proto = proto;
    key.port = static_cast<uint16_t>(port);
    key.peer_ipv4 = htonl(cidr->addr);
    out.ipv4.push_back(key);
  }
  return out;
}

namespace {

// Replaces an allow-list map's contents as a whole: what an earlier run had
// and this one does not want goes.
template <typename Key>
absl::Status ReplaceAllowList(int fd, const std::vector<Key>& allow_list, const char* name, size_t& written) {
  std::set<Key, BytewiseLess<Key>> wanted(allow_list.begin(), allow_list.end());
  std::vector<Key> stale;
  Key key{}, next{};
  for (const void* previous = nullptr; bpf_map_get_next_key(fd, previous, &next) == 0; previous = &key) {
    key = next;
    if (!wanted.contains(key)) stale.push_back(key);
  }
  for (const Key& k : stale) (void)bpf_map_delete_elem(fd, &k);
  const uint8_t present = 1;
  for (const Key& k : wanted) {
    if (bpf_map_update_elem(fd, &k, &present, BPF_ANY) != 0) {
      return Errno(errno, absl::StrCat("write the session allow-list (", name, ")"));
    }
  }
  written = wanted.size();
  return absl::OkStatus();
}

}  // namespace

MapPressureMonitor::MapPressureMonitor(const BpfDatapath& datapath, MapPressureOptions options, AgentEntries entries,
                                       AgentFailures failures)
    : datapath_(datapath),
      options_(options),
      agent_entries_(std::move(entries)),
      agent_failures_(std::move(failures)) {
  static constexpr std::array<const char*, MS_PMAP_MAX> kNames = {
      "ms_endpoints", "ms_policy", "ms_policy_lpm", "ms_sessions", "ms_policy6", "ms_policy6_lpm", "ms_sessions6"};
  static_assert(kNames.back() != nullptr, "every pressure slot has a map name");
  for (unsigned map = 0; map < MS_PMAP_MAX; ++map) maps_[map].map = kNames[map];
  session_maps_[0].slot = MS_PMAP_SESSIONS;
  session_maps_[1].slot = MS_PMAP_SESSIONS6;
  for (const MapCapacity& capacity : datapath_.capacities()) {
    for (MapPressure& m : maps_) {
      if (m.map == capacity.name) m.capacity = capacity.max_entries;
    }
  }
}

absl::Status MapPressureMonitor::Configure(const SessionAllowList& allow_list) {
  std::lock_guard<std::mutex> lock(mu_);
  for (SessionMapCount& sessions : session_maps_) {
    const uint64_t capacity = maps_[sessions.slot].capacity;
    const auto reserve =
        static_cast<uint64_t>(std::ceil(static_cast<double>(capacity) * options_.session_reserve_ratio));
    sessions.config.full_entries = static_cast<uint32_t>(capacity > reserve ? capacity - reserve : 1);
    sessions.config.alert_entries =
        static_cast<uint32_t>(std::max<double>(1, std::ceil(static_cast<double>(capacity) * options_.alert_ratio)));
    if (absl::Status status = CountSessionsLocked(sessions, absl::Now()); !status.ok()) return status;
  }

  size_t ranges = 0;
  size_t ranges6 = 0;
  if (absl::Status status = ReplaceAllowList(datapath_.session_allow_fd(), allow_list.ipv4, "ms_sess_allow", ranges);
      !status.ok()) {
    return status;
  }
  if (absl::Status status =
          ReplaceAllowList(datapath_.session_allow6_fd(), allow_list.ipv6, "ms_sess_allow6", ranges6);
      !status.ok()) {
    return status;
  }
  const SessionMapCount& v4 = session_maps_[0];
  const SessionMapCount& v6 = session_maps_[1];
  LogInfo("session map: new sessions refused beyond ", v4.config.full_entries, " of ", maps_[v4.slot].capacity,
          " entries (ms_sessions6: ", v6.config.full_entries, " of ", maps_[v6.slot].capacity, ") except for ", ranges,
          " IPv4 and ", ranges6, " IPv6 allow-listed peer ranges; alert at ", v4.config.alert_entries, " (",
          v6.config.alert_entries, ")");
  return absl::OkStatus();
}

MapPressureMonitor::SessionMapCount& MapPressureMonitor::SessionMapLocked(unsigned slot) {
  return slot == MS_PMAP_SESSIONS6 ? session_maps_[1] : session_maps_[0];
}

absl::Status MapPressureMonitor::CountSessionsLocked(SessionMapCount& sessions, absl::Time now) {
  auto counters = ReadSessionCounters(datapath_, sessions.slot);
  if (!counters.ok()) return counters.status();
  const uint64_t known_deletes = datapath_.session_deletes(sessions.slot) + counters->deletes;
  const bool ipv6 = sessions.slot == MS_PMAP_SESSIONS6;
  auto count = ipv6 ? CountMapEntries(datapath_.sessions6_fd(), sizeof(ms_session6_key), sizeof(ms_session))
                    : CountMapEntries(datapath_.sessions_fd(), sizeof(ms_session_key), sizeof(ms_session));
  if (!count.ok()) return count.status();
  if (sessions.counted) {
    // Signed: sessions created during the count may already be in it.
    const auto expected = static_cast<int64_t>(sessions.counted_entries +
                                               (counters->inserts - sessions.counted_inserts) -
                                               (known_deletes - sessions.counted_known_deletes));
    if (expected > static_cast<int64_t>(*count)) {
      maps_[sessions.slot].evictions += static_cast<uint64_t>(expected - static_cast<int64_t>(*count));
    }
  }
  sessions.counted = true;
  sessions.last_count = now;
  sessions.counted_entries = *count;
  sessions.counted_inserts = counters->inserts;
  sessions.counted_known_deletes = known_deletes;
  sessions.config.removed = counters->inserts - *count;  // modulo 2^64: see ms_pressure_config
  if (bpf_map_update_elem(datapath_.pressure_config_fd(), &sessions.slot, &sessions.config, BPF_ANY) != 0) {
    return Errno(errno, absl::StrCat("write ms_pressure_cfg (", maps_[sessions.slot].map, ")"));
  }
  return absl::OkStatus();
}

absl::Status MapPressureMonitor::CheckSessionsLocked(SessionMapCount& sessions, absl::Time now) {
  auto counters = ReadSessionCounters(datapath_, sessions.slot);
  if (!counters.ok()) return counters.status();
  MapPressure& m = maps_[sessions.slot];
  const bool near_full = Estimate(counters->inserts, sessions.config.removed) >= sessions.config.alert_entries;
  if (near_full || now - sessions.last_count >= options_.session_count_interval) {
    if (absl::Status status = CountSessionsLocked(sessions, now); !status.ok()) return status;
  }
  m.entries = std::min(Estimate(counters->inserts, sessions.config.removed), m.capacity);
  if (sessions.counted && sessions.last_count == now) m.entries = sessions.counted_entries;
  m.insert_failures = counters->insert_failures;
  m.refused = counters->refused;
  m.last_check = now;
  return absl::OkStatus();
}

void MapPressureMonitor::AgentAlertLocked(unsigned map, absl::Time now) {
  if (now - last_agent_alert_[map] < options_.agent_alert_interval) return;
  last_agent_alert_[map] = now;
  ++maps_[map].alerts;
  const MapPressure& m = maps_[map];
  LogWarning("map pressure: ", m.map, " holds ", m.entries, " of ", m.capacity, " entries (",
             static_cast<int>(m.pressure() * 100), "%); when full, endpoints whose policy does not fit are locked "
             "down (raise its size flag)");
}

absl::Status MapPressureMonitor::Check(absl::Time now) {
  const std::array<uint64_t, MS_PMAP_MAX> entries = agent_entries_();
  std::lock_guard<std::mutex> lock(mu_);
  for (unsigned map : {MS_PMAP_ENDPOINTS, MS_PMAP_POLICY, MS_PMAP_POLICY_LPM, MS_PMAP_POLICY6, MS_PMAP_POLICY6_LPM}) {
    MapPressure& m = maps_[map];
    m.entries = entries[map];
    m.insert_failures = agent_failures_ ? agent_failures_(map) : 0;
    m.last_check = now;
    if (m.capacity != 0 && static_cast<double>(m.entries) >= options_.alert_ratio * static_cast<double>(m.capacity)) {
      AgentAlertLocked(map, now);
    }
  }

  for (SessionMapCount& sessions : session_maps_) {
    if (absl::Status status = CheckSessionsLocked(sessions, now); !status.ok()) return status;
  }
  return absl::OkStatus();
}

void MapPressureMonitor::OnDataPathAlert(const ms_pressure_alert& alert) {
  std::lock_guard<std::mutex> lock(mu_);
  if (alert.map >= MS_PMAP_MAX) {
    LogWarning("map pressure alert for unknown map slot ", alert.map);
    return;
  }
  MapPressure& m = maps_[alert.map];
  ++m.alerts;
  LogWarning("map pressure: ", m.map, " at about ", alert.entries, " of ", m.capacity, " entries (alert threshold ",
             alert.threshold, "); beyond ", SessionMapLocked(alert.map).config.full_entries,
             " new sessions are refused (reason map_full) except allow-listed ones");
}

std::vector<MapPressure> MapPressureMonitor::Snapshot() const {
  std::lock_guard<std::mutex> lock(mu_);
  return {maps_.begin(), maps_.end()};
}

}  // namespace microseg
