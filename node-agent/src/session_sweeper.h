// Removes expired entries from the session map and corrects the per-endpoint
// half-open counters from what is really there.
//
// The data path already treats an expired session as absent (it checks the
// per-state timeout on every lookup); the sweeper frees the slots so an idle
// flow does not sit in the LRU until pressure evicts it, and it corrects the
// ms_half_open counters, which LRU evictions and expiries let drift high.
//
// The correction is a base written in place (datapath.h, ms_half_open), never
// the whole counter: SYNs admitted while the sweep runs stay counted, so the
// SYN cap holds during a flood. It errs high while SYNs race the scan (until
// the next sweep). It errs low, by one each, only where the data path itself
// loses a count: two CPUs closing the same half-open session at once, or a
// packet of an expired half-open session arriving as the sweep deletes it.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "microseg/datapath.h"

namespace microseg {

// Per-state idle timeouts; the same values are loaded into the BPF object.
struct SessionTimeouts {
  absl::Duration tcp_syn = absl::Seconds(30);          // SYN_SENT, SYN_RECV
  absl::Duration tcp_established = absl::Hours(1);     // ESTABLISHED (and SCTP)
  absl::Duration tcp_fin = absl::Seconds(120);         // FIN_WAIT1/2, CLOSE_WAIT, LAST_ACK, CLOSING, TIME_WAIT
  absl::Duration tcp_close = absl::Seconds(10);        // CLOSE (reset)
  absl::Duration udp = absl::Seconds(60);
  absl::Duration icmp = absl::Seconds(30);
};

// The timeout the data path applies to a session of `proto` in `tcp_state`
// with `session_flags` (MS_SESSION_F_*: an unconfirmed pick-up has the SYN
// timeout whatever its state).
absl::Duration SessionTimeout(const SessionTimeouts& timeouts, uint8_t proto, uint8_t tcp_state,
                              uint8_t session_flags);

// Mirrors the data path's test: idle for longer than the timeout. A session
// stamped later than `now_ns` (another CPU, a racing packet) is live.
bool SessionExpired(const SessionTimeouts& timeouts, const ms_session_key& key, const ms_session& session,
                    uint64_t now_ns);
bool SessionExpired(const SessionTimeouts& timeouts, const ms_session6_key& key, const ms_session& session,
                    uint64_t now_ns);

struct SweepResult {
  uint64_t scanned = 0;
  uint64_t removed = 0;   // both maps
  uint64_t removed6 = 0;  // of `removed`, from ms_sessions6
  uint64_t half_open = 0;  // live half-open sessions, all endpoints
};

class SessionSweeper {
 public:
  // `sessions6_fd`: ms_sessions6 (docs/ipv6.md), -1 to sweep IPv4 only.
  // `half_open_rebase_fd`: the ms_half_open_rebase program.
  SessionSweeper(int sessions_fd, int half_open_fd, int half_open_rebase_fd, SessionTimeouts timeouts,
                 int sessions6_fd = -1)
      : sessions_fd_(sessions_fd),
        sessions6_fd_(sessions6_fd),
        half_open_fd_(half_open_fd),
        half_open_rebase_fd_(half_open_rebase_fd),
        timeouts_(timeouts) {}

  // One pass over the session maps at `now_ns` on the data path's clock
  // (MonotonicNowNs(); tests pass their own). The half-open counters count
  // both families' sessions, as the data path's SYN cap does.
  // `before_rebase` runs between the scan and the counters' correction
  // (tests interleave data-path packets there).
  [[nodiscard]] absl::StatusOr<SweepResult> Sweep(uint64_t now_ns, const std::function<void()>& before_rebase = {});

  uint64_t sweeps() const { return sweeps_.load(); }
  uint64_t removed_total() const { return removed_total_.load(); }  // both maps
  uint64_t removed6_total() const { return removed6_total_.load(); }
  uint64_t last_half_open() const { return last_half_open_.load(); }

 private:
  int sessions_fd_;
  int sessions6_fd_;
  int half_open_fd_;
  int half_open_rebase_fd_;
  SessionTimeouts timeouts_;
  std::atomic<uint64_t> sweeps_{0};
  std::atomic<uint64_t> removed_total_{0};
  std::atomic<uint64_t> removed6_total_{0};
  std::atomic<uint64_t> last_half_open_{0};
};

// CLOCK_MONOTONIC: the data path stamps CLOCK_MONOTONIC_COARSE (bpf_ktime_get_coarse_ns), which
// trails it by at most a tick, so a session looks at most a tick older here.
uint64_t MonotonicNowNs();

}  // namespace microseg
