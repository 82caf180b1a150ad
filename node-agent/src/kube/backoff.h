// Reconnect delays: exponential, capped, with "equal jitter" (half fixed,
// half random) so that every agent of a cluster does not hit a recovering
// API server in the same instant, yet no delay is ever near zero.
#pragma once

#include <cstdint>
#include <optional>
#include <random>
#include <string>

#include "absl/time/time.h"

namespace microseg::kube {

struct BackoffPolicy {
  absl::Duration initial = absl::Milliseconds(200);
  absl::Duration max = absl::Seconds(30);
  double multiplier = 2.0;
};

class Backoff {
 public:
  explicit Backoff(BackoffPolicy policy, uint64_t seed = std::random_device{}());

  // The delay before the next attempt; grows until Reset(). A server's
  // Retry-After is a floor (never retry earlier than asked), the cap still
  // bounds it so one bad header cannot stall the agent for hours.
  absl::Duration Next(std::optional<absl::Duration> retry_after = std::nullopt);
  void Reset() { attempt_ = 0; }
  int attempt() const { return attempt_; }

 private:
  BackoffPolicy policy_;
  std::mt19937_64 rng_;
  int attempt_ = 0;
};

// Retry-After as delay-seconds (RFC 9110 also allows an HTTP date; the API
// server only sends seconds). nullopt when absent or unparsable.
std::optional<absl::Duration> ParseRetryAfter(const std::string& value);

}  // namespace microseg::kube
