// The agent's core: holds the cluster state and this node's endpoints, and
// keeps the BPF maps equal to what the compiler derives from them. Every
// change goes compile -> diff -> apply under one lock; a failed apply is
// rolled back so the maps hold the last good policy, never half of a new one.
#pragma once

#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "endpoint_lockdown.h"
#include "endpoint_registry.h"
#include "map_state.h"
#include "model.h"
#include "policy_compiler.h"

namespace microseg {

struct EndpointView {
  EndpointRecord record;
  EndpointPolicySummary policy;
  uint32_t policy_revision = 0;
  // Its policy did not fit a policy map: new flows are refused (endpoint_lockdown.h).
  bool locked_down = false;
  std::string lockdown_reason;
};

struct AgentCounters {
  uint64_t generation = 0;  // successful reconciles that changed the maps or the inputs
  uint64_t reconcile_failures = 0;
  uint32_t endpoints = 0;
  uint32_t namespaces = 0;
  uint32_t pods = 0;
  uint32_t network_policies = 0;
  size_t endpoint_entries = 0;  // ms_endpoints entries the agent keeps
  size_t exact_entries = 0;
  size_t lpm_entries = 0;
  double last_reconcile_seconds = 0;
  uint32_t locked_down_endpoints = 0;
  uint64_t lockdowns_total = 0;  // endpoints that went into lockdown since start
};

class Agent {
 public:
  // Called with an endpoint id whose sessions must go (the endpoint left).
  using SessionPurger = std::function<absl::Status(uint32_t endpoint_id)>;

  // `live` is what the maps hold now (empty on first start, the previous
  // agent's entries after a restart).
  // `node_name` is this node's name as pods' spec.nodeName gives it.
  Agent(std::string node_name, MapWriter& writer, EndpointRegistry& registry, MapState live,
        SessionPurger purge_sessions);

  // Compiles the initial state into the maps.
  [[nodiscard]] absl::Status Start(ClusterState cluster);
  [[nodiscard]] absl::Status SetClusterState(ClusterState cluster);

  // Returns once the endpoint's policy is in the maps.
  [[nodiscard]] absl::StatusOr<EndpointView> AddEndpoint(EndpointRecord record);
  // Returns whether the endpoint existed.
  [[nodiscard]] absl::StatusOr<bool> DeleteEndpoint(const EndpointRegistry::Key& key);
  [[nodiscard]] absl::StatusOr<EndpointView> GetEndpoint(const EndpointRegistry::Key& key) const;
  std::vector<EndpointView> ListEndpoints() const;

  // Drops endpoints whose veth is gone (a DEL that never reached us).
  void ForgetEndpointsWhere(const std::function<bool(const EndpointRecord&)>& gone);

  AgentCounters counters() const;

  // Tries again to apply the whole policy of locked-down endpoints (space
  // may have come back). A no-op without lockdowns.
  [[nodiscard]] absl::Status RetryLockdowns();

 private:
  [[nodiscard]] absl::Status ReconcileLocked();
  EndpointView ViewLocked(const EndpointRecord& record) const;
  void PurgeSessionsLocked(uint32_t endpoint_id);
  [[nodiscard]] absl::Status ApplyWithLockdownsLocked(const MapState& desired);
  void SetLockdownsLocked(Lockdowns now);

  mutable std::mutex mu_;
  const std::string node_name_;
  MapWriter& writer_;
  EndpointRegistry& registry_;
  MapState live_;
  SessionPurger purge_sessions_;
  ClusterState cluster_;
  std::map<uint32_t, EndpointPolicySummary> summaries_;
  AgentCounters counters_;
  Lockdowns lockdowns_;
};

}  // namespace microseg
