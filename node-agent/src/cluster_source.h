// Where the agent's cluster state comes from: a directory of manifests
// (standalone mode) or the Kubernetes API (kube/). The agent's loop is the
// same for both: wait for the initial state, compile it, then apply each
// changed state; the compiler never knows the difference.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "manifest_directory.h"
#include "model.h"
#include "prometheus/collectable.h"

namespace microseg {

class ClusterSource {
 public:
  virtual ~ClusterSource() = default;
  // Blocks until the initial state is complete; nullopt when `keep_waiting`
  // (called about every 100 ms) says to give up (a shutdown signal).
  virtual std::optional<ClusterState> WaitForInitialState(const std::function<bool()>& keep_waiting) = 0;
  // The state when it changed since the last call.
  virtual std::optional<ClusterState> Poll() = 0;
  // Rejected inputs in force (file or "Kind ns/name", reason); thread-safe.
  virtual std::vector<ManifestError> errors() const = 0;
  virtual uint64_t rejected_versions() const = 0;
  virtual std::string description() const = 0;
  // The source's own metrics, if it has any (registered next to the agent's).
  virtual std::shared_ptr<prometheus::Collectable> metrics() { return nullptr; }
};

}  // namespace microseg
