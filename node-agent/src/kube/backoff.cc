#include "kube/backoff.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/numbers.h"
#include "absl/strings/strip.h"

namespace microseg::kube {

Backoff::Backoff(BackoffPolicy policy, uint64_t seed) : policy_(policy), rng_(seed) {}

absl::Duration Backoff::Next(std::optional<absl::Duration> retry_after) {
  const double scale = std::pow(policy_.multiplier, std::min(attempt_, 62));
  ++attempt_;
  const absl::Duration ceiling = std::min(policy_.initial * scale, policy_.max);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  absl::Duration delay = ceiling / 2 + (ceiling / 2) * unit(rng_);
  if (retry_after) delay = std::max(delay, std::min(*retry_after, policy_.max));
  return delay;
}

std::optional<absl::Duration> ParseRetryAfter(const std::string& value) {
  int64_t seconds = 0;
  if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(value), &seconds) || seconds < 0) return std::nullopt;
  return absl::Seconds(seconds);
}

}  // namespace microseg::kube
