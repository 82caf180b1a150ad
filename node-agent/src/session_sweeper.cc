#include "session_sweeper.h"

#include <bpf/bpf.h>
#include <netinet/in.h>
#include <time.h>

#include <cerrno>
#include <functional>
#include <map>
#include <vector>

#include "absl/strings/str_cat.h"

namespace microseg {
namespace {

absl::Status Errno(int err, std::string_view what) { return absl::ErrnoToStatus(err, std::string(what)); }

// Entries read per batch syscall.
constexpr uint32_t kBatch = 4096;

// One pass over a session map (Key: ms_session_key or ms_session6_key):
// expired entries are deleted; `seen` counts, per endpoint, the half-open
// sessions that the scan saw and that are still in the map after it
// (expired ones the sweep deleted are taken off again).
template <typename Key>
absl::Status SweepMap(int fd, const char* name, const SessionTimeouts& timeouts, uint64_t now, SweepResult& result,
                      std::map<uint32_t, int64_t>& seen) {
  std::vector<Key> expired;
  std::vector<Key> keys(kBatch);
  std::vector<ms_session> values(kBatch);
  Key out_batch{};
  bool first = true;
  bool done = false;
  DECLARE_LIBBPF_OPTS(bpf_map_batch_opts, opts);
  while (!done) {
    uint32_t count = kBatch;
    // in_batch/out_batch are opaque cursors of the kernel's hash iteration.
    Key in_batch = out_batch;
    int err = bpf_map_lookup_batch(fd, first ? nullptr : &in_batch, &out_batch, keys.data(), values.data(), &count,
                                   &opts);
    if (err != 0) {
      if (errno != ENOENT) return Errno(errno, absl::StrCat("read ", name, " (batch)"));
      done = true;  // ENOENT: this was the last batch (count holds its entries)
    }
    first = false;
    for (uint32_t i = 0; i < count; ++i) {
      ++result.scanned;
      const bool half_open = values[i].flags & MS_SESSION_F_HALF_OPEN;
      if (half_open) ++seen[keys[i].endpoint_id];
      if (SessionExpired(timeouts, keys[i], values[i], now)) {
        expired.push_back(keys[i]);
      } else if (half_open) {
        ++result.half_open;
      }
    }
  }

  // A packet may have refreshed an entry since it was read: look again
  // right before deleting (a narrow window remains; such a flow is then
  // re-admitted by policy like any flow without a session).
  for (const Key& key : expired) {
    ms_session current{};
    if (bpf_map_lookup_elem(fd, &key, &current) != 0) continue;
    const bool half_open = current.flags & MS_SESSION_F_HALF_OPEN;
    if (!SessionExpired(timeouts, key, current, now)) {
      if (half_open) ++result.half_open;
      continue;
    }
    if (bpf_map_delete_elem(fd, &key) == 0) {
      ++result.removed;
      if (half_open) --seen[key.endpoint_id];
    } else if (errno != ENOENT) {
      return Errno(errno, "delete expired session");
    }
  }
  return absl::OkStatus();
}

// endpoint_id -> its ms_half_open counter, as it is now.
absl::StatusOr<std::map<uint32_t, ms_half_open>> ReadCounters(int fd) {
  std::map<uint32_t, ms_half_open> counters;
  uint32_t endpoint_id = 0, next_id = 0;
  const uint32_t* cursor = nullptr;
  while (bpf_map_get_next_key(fd, cursor, &next_id) == 0) {
    ms_half_open value{};
    if (bpf_map_lookup_elem(fd, &next_id, &value) == 0) counters[next_id] = value;
    else if (errno != ENOENT) return Errno(errno, "read ms_half_open");
    endpoint_id = next_id;
    cursor = &endpoint_id;
  }
  return counters;
}

template <typename Key>
bool Expired(const SessionTimeouts& timeouts, const Key& key, const ms_session& session, uint64_t now_ns) {
  if (now_ns <= session.last_seen_ns) return false;
  const auto timeout =
      static_cast<uint64_t>(absl::ToInt64Nanoseconds(SessionTimeout(timeouts, key.proto, session.tcp_state, session.flags)));
  return now_ns - session.last_seen_ns > timeout;
}

}  // namespace

absl::Duration SessionTimeout(const SessionTimeouts& t, uint8_t proto, uint8_t tcp_state,
                              uint8_t session_flags) {
  switch (proto) {
    case IPPROTO_UDP:
      return t.udp;
    case IPPROTO_ICMP:
    case IPPROTO_ICMPV6:
      return t.icmp;
    case IPPROTO_TCP:
      if (session_flags & MS_SESSION_F_UNCONFIRMED) return t.tcp_syn;
      switch (tcp_state) {
        case MS_TCP_SYN_SENT:
        case MS_TCP_SYN_RECV:
          return t.tcp_syn;
        case MS_TCP_ESTABLISHED:
          return t.tcp_established;
        case MS_TCP_CLOSE:
          return t.tcp_close;
        default:
          return t.tcp_fin;
      }
    default:
      return t.tcp_established;
  }
}

bool SessionExpired(const SessionTimeouts& timeouts, const ms_session_key& key, const ms_session& session,
                    uint64_t now_ns) {
  return Expired(timeouts, key, session, now_ns);
}

bool SessionExpired(const SessionTimeouts& timeouts, const ms_session6_key& key, const ms_session& session,
                    uint64_t now_ns) {
  return Expired(timeouts, key, session, now_ns);
}

uint64_t MonotonicNowNs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ULL + static_cast<uint64_t>(ts.tv_nsec);
}

absl::StatusOr<SweepResult> SessionSweeper::Sweep(uint64_t now, const std::function<void()>& before_rebase) {
  SweepResult result;
  // Why `opened` before the scan and `closed` after it: datapath.h, ms_half_open.
  auto before = ReadCounters(half_open_fd_);
  if (!before.ok()) return before.status();
  std::map<uint32_t, int64_t> seen;  // endpoint_id -> half-open sessions, both families
  if (auto status = SweepMap<ms_session_key>(sessions_fd_, "ms_sessions", timeouts_, now, result, seen);
      !status.ok()) {
    return status;
  }
  if (sessions6_fd_ >= 0) {
    const uint64_t removed4 = result.removed;
    if (auto status = SweepMap<ms_session6_key>(sessions6_fd_, "ms_sessions6", timeouts_, now, result, seen);
        !status.ok()) {
      return status;
    }
    result.removed6 = result.removed - removed4;
  }
  if (before_rebase) before_rebase();
  auto after = ReadCounters(half_open_fd_);
  if (!after.ok()) return after.status();

  // Endpoints without a counter have had no counted SYN: nothing to correct.
  for (const auto& [id, counter] : *after) {
    const auto earlier = before->find(id);
    const uint64_t opened_before = earlier == before->end() ? 0 : earlier->second.opened;
    const auto it = seen.find(id);
    ms_half_open_rebase_args args{.endpoint_id = id,
                                  .base = (it == seen.end() ? 0 : it->second) - static_cast<int64_t>(opened_before) +
                                          static_cast<int64_t>(counter.closed)};
    DECLARE_LIBBPF_OPTS(bpf_test_run_opts, run, .ctx_in = &args, .ctx_size_in = sizeof(args));
    if (bpf_prog_test_run_opts(half_open_rebase_fd_, &run) != 0) {
      return Errno(errno, absl::StrCat("rebase ms_half_open for endpoint ", id));
    }
    // run.retval 1: the endpoint went away meanwhile.
  }

  sweeps_.fetch_add(1);
  removed_total_.fetch_add(result.removed);
  removed6_total_.fetch_add(result.removed6);
  last_half_open_.store(result.half_open);
  return result;
}

}  // namespace microseg
