#include "session_sweeper.h"

#include <bpf/bpf.h>
#include <netinet/in.h>
#include <time.h>

#include <cerrno>
#include <map>
#include <vector>

#include "absl/strings/str_cat.h"

namespace microseg {
namespace {

absl::Status Errno(int err, std::string_view what) { return absl::ErrnoToStatus(err, std::string(what)); }

// Entries read per batch syscall.
constexpr uint32_t kBatch = 4096;

// Expired entries of one session map (Key: ms_session_key or
// ms_session6_key) are deleted; live half-open ones are counted per endpoint.
template <typename Key>
absl::Status SweepMap(int fd, const char* name, const SessionTimeouts& timeouts, uint64_t now, SweepResult& result,
                      std::map<uint32_t, int64_t>& half_open) {
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
      if (SessionExpired(timeouts, keys[i], values[i], now)) {
        expired.push_back(keys[i]);
      } else if (values[i].flags & MS_SESSION_F_HALF_OPEN) {
        ++half_open[keys[i].endpoint_id];
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
    if (!SessionExpired(timeouts, key, current, now)) {
      if (current.flags & MS_SESSION_F_HALF_OPEN) {
        ++half_open[key.endpoint_id];
        ++result.half_open;
      }
      continue;
    }
    if (bpf_map_delete_elem(fd, &key) == 0) ++result.removed;
    else if (errno != ENOENT) return Errno(errno, "delete expired session");
  }
  return absl::OkStatus();
}

template <typename Key>
bool Expired(const SessionTimeouts& timeouts, const Key& key, const ms_session& session, uint64_t now_ns) {
  if (now_ns <= session.last_seen_ns) return false;
  const auto timeout =
      static_cast<uint64_t>(absl::ToInt64Nanoseconds(SessionTimeout(timeouts, key.proto, session.tcp_state)));
  return now_ns - session.last_seen_ns > timeout;
}

}  // namespace

absl::Duration SessionTimeout(const SessionTimeouts& t, uint8_t proto, uint8_t tcp_state) {
  switch (proto) {
    case IPPROTO_UDP:
      return t.udp;
    case IPPROTO_ICMP:
    case IPPROTO_ICMPV6:
      return t.icmp;
    case IPPROTO_TCP:
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

absl::StatusOr<SweepResult> SessionSweeper::Sweep(uint64_t now) {
  SweepResult result;
  std::map<uint32_t, int64_t> half_open;  // endpoint_id -> live half-open sessions, both families
  if (auto status = SweepMap<ms_session_key>(sessions_fd_, "ms_sessions", timeouts_, now, result, half_open);
      !status.ok()) {
    return status;
  }
  if (sessions6_fd_ >= 0) {
    const uint64_t removed4 = result.removed;
    if (auto status = SweepMap<ms_session6_key>(sessions6_fd_, "ms_sessions6", timeouts_, now, result, half_open);
        !status.ok()) {
      return status;
    }
    result.removed6 = result.removed - removed4;
  }

  // Rewrite the counters: endpoints without half-open sessions go to zero.
  uint32_t endpoint_id = 0, next_id = 0;
  const uint32_t* cursor = nullptr;
  std::vector<uint32_t> known;
  while (bpf_map_get_next_key(half_open_fd_, cursor, &next_id) == 0) {
    known.push_back(next_id);
    endpoint_id = next_id;
    cursor = &endpoint_id;
  }
  for (uint32_t id : known) half_open.try_emplace(id, 0);
  for (const auto& [id, count] : half_open) {
    const ms_half_open value{.count = count};
    if (bpf_map_update_elem(half_open_fd_, &id, &value, BPF_ANY) != 0) {
      return Errno(errno, absl::StrCat("write ms_half_open for endpoint ", id));
    }
  }

  sweeps_.fetch_add(1);
  removed_total_.fetch_add(result.removed);
  removed6_total_.fetch_add(result.removed6);
  last_half_open_.store(result.half_open);
  return result;
}

}  // namespace microseg
