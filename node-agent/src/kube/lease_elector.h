// Simple leader choice through a coordination.k8s.io/v1 Lease: the holder
// renews it; another agent takes it over once it has seen no renewal for
// the lease duration (measured on its own clock from when it last saw the
// record change, like client-go, so clock skew between nodes does not
// matter). Writes are optimistic (resourceVersion), so two agents racing for
// an expired lease cannot both win.
#pragma once

#include <chrono>
#include <string>

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
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
  bool leading() const;
  const LeaseOptions& options() const { return options_; }

 private:
  absl::Status Create();
  absl::Status Update(nlohmann::json lease, bool take_over);

  ApiTransport& transport_;
  const LeaseOptions options_;
  // The last record seen (holder + renewTime + resourceVersion) and when.
  std::string observed_record_;
  Clock::time_point observed_at_{};
  Clock::time_point renewed_at_{};  // our last successful write as holder
  bool holding_ = false;
};

// RFC 3339 with microseconds in UTC, as metav1.MicroTime serializes.
std::string MicroTimeNow();
// RFC 3339 with seconds, as metav1.Time serializes.
std::string TimeNow();

}  // namespace microseg::kube
