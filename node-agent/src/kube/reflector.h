// LIST then WATCH of one resource type, for as long as the agent runs:
// paginated lists (limit/continue), watches resumed from the last
// resourceVersion seen (bookmarks included), a relist turned into a minimal
// diff on 410 Gone, capped jittered backoff on failures with Retry-After
// honoured. Every change reaches the sink exactly once, in order.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "kube/api_transport.h"
#include "kube/backoff.h"
#include "kube/resource_cache.h"
#include "kube/resource_type.h"
#include "kube/stop_signal.h"

namespace microseg::kube {

struct ReflectorOptions {
  int64_t page_size = 500;
  // Server-side watch duration (timeoutSeconds); each watch picks a random
  // value in [watch_timeout, 2*watch_timeout) so agents do not reconnect in step.
  absl::Duration watch_timeout = absl::Minutes(5);
  // No byte (event or bookmark) for this long: the watch is stalled, reconnect.
  absl::Duration idle_timeout = absl::Seconds(90);
  BackoffPolicy backoff;
};

struct ReflectorStats {
  uint64_t lists = 0;             // complete lists (initial + relists)
  uint64_t relists_after_gone = 0;
  uint64_t watches = 0;           // watch requests started
  uint64_t events = 0;            // watch events received (bookmarks included)
  uint64_t failures = 0;          // failed requests / broken or stalled streams
  uint64_t changes = 0;           // changes handed to the sink
};

class Reflector {
 public:
  // Called on the reflector's thread. `initial` is true for the changes of
  // the first complete list (possibly empty).
  using Sink = std::function<void(const ResourceType& type, std::vector<ObjectChange> changes, bool initial)>;

  Reflector(ResourceType type, ApiTransport& transport, Sink sink, ReflectorOptions options, uint64_t seed);

  // Runs until `stop`. Never returns early on errors: it retries.
  void Run(StopSignal& stop);

  const ResourceType& type() const { return type_; }
  ReflectorStats stats() const;
  bool synced() const { return synced_.load(); }

 private:
  enum class WatchEnd { kClosed, kExpired, kFailed, kStopped };
  struct Failure {
    absl::Status status;
    std::optional<absl::Duration> retry_after;
  };

  // A complete paginated list; on failure `failure` is set.
  // `not_served`: the API server does not know the resource (a CRD not
  // installed yet): an empty initial list, retried later.
  bool List(StopSignal& stop, Failure& failure, bool& expired, bool& not_served);
  WatchEnd Watch(StopSignal& stop, Failure& failure);
  void Deliver(std::vector<ObjectChange> changes, bool initial);

  const ResourceType type_;
  ApiTransport& transport_;
  Sink sink_;
  const ReflectorOptions options_;
  Backoff backoff_;
  std::mt19937_64 rng_;
  ResourceCache cache_;
  std::atomic<bool> synced_{false};
  bool reported_not_served_ = false;
  mutable std::mutex stats_mu_;
  ReflectorStats stats_;
};

}  // namespace microseg::kube
