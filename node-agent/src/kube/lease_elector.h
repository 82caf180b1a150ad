// Simple leader choice through a coordination.k8s.io/v1 Lease: the holder
// renews it; another agent takes it over once it has seen no renewal for
// the lease duration (measured on its own clock from when it last saw the
// record change, like client-go, so clock skew between nodes does not
// matter), or at once when the holder released it on shutdown. Writes are
// optimistic (resourceVersion), so two agents racing for an expired lease
// cannot both win.
//
// No two writers at once: the holder counts its term from when it *sent*
// the renewal (never later than the server stored it, so never later than a
// follower saw it) and writes only during the first two thirds of it; every
// request it makes is cut off after a third (request_timeout()). So each
// write it starts has ended before any follower can count the lease as
// expired.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <string>

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "kube/api_transport.h"

namespace microseg::kube {

struct LeaseOptions {
  std::string namespace_name = "default";
  std::string name = "microseg-status-writer";
  std::string identity;  // this agent: the node name
  absl::Duration lease_duration = absl::Seconds(15);
};

class LeaseElector {
 public:
  using Clock = std::chrono::steady_clock;

  LeaseElector(ApiTransport& transport, LeaseOptions options) : transport_(transport), options_(std::move(options)) {}

  // One round: create, renew or take over the lease when that is due.
  // Call every lease_duration/3 or so. Returns whether we lead now.
  bool Tick();
  // Whether this agent may write now (see above: two thirds of its term).
  bool leading() const;
  // Clean shutdown: hands the lease back (empty holder, like client-go's
  // ReleaseOnCancel) when we hold it, so a follower takes over at its next
  // Tick instead of after the lease duration. Leading ends here either way.
  absl::Status Release();
  // Cap for every request of the holder (lease and status writes).
  absl::Duration request_timeout() const { return term() / 3; }
  // The lease duration as written to the Lease (whole seconds, at least
  // one), which is what followers wait for: the holder's term is never longer.
  absl::Duration term() const {
    return absl::Seconds(std::max<int64_t>(1, absl::ToInt64Seconds(options_.lease_duration)));
  }
  const LeaseOptions& options() const { return options_; }

 private:
  absl::Status Create();
  absl::Status Update(nlohmann::json lease, bool take_over);
  absl::Status Put(const nlohmann::json& lease);
  absl::StatusOr<nlohmann::json> Get();

  ApiTransport& transport_;
  const LeaseOptions options_;
  // The last record seen (holder + renewTime + resourceVersion) and when.
  std::string observed_record_;
  Clock::time_point observed_at_{};
  // Written by the status writer's thread, read by metrics scrapes too.
  std::atomic<Clock::time_point> renewed_at_{};  // when we sent our last successful write as holder
  std::atomic<bool> holding_{false};
};

// RFC 3339 with microseconds in UTC, as metav1.MicroTime serializes.
std::string MicroTimeNow();
// RFC 3339 with seconds, as metav1.Time serializes.
std::string TimeNow();

}  // namespace microseg::kube
