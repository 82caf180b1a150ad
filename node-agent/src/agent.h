// The agent's core: holds the cluster state and this node's endpoints, and
// keeps the BPF maps equal to what the compiler derives from them. Every
// change is an event (or a whole state diffed into events) that the
// PolicyEngine turns into the few endpoints it touches; those are compiled
// and handed to the PolicyMapUpdater, which moves each atomically from the
// old to the new policy, all under one lock. A failed update is rolled back
// and the event undone, so the maps hold the last good policy, never half of
// a new one. When a policy map is full, the update goes endpoint by
// endpoint and an endpoint whose policy does not fit is locked down
// (endpoint_lockdown.h) instead of failing the whole event.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "endpoint_lockdown.h"
#include "endpoint_registry.h"
#include "map_state.h"
#include "model.h"
#include "policy_compiler.h"
#include "policy_engine.h"
#include "policy_map_updater.h"
#include "rule_id_index.h"

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
  uint32_t segment_policies = 0;
  uint32_t cluster_segment_policies = 0;
  size_t endpoint_entries = 0;  // ms_endpoints entries the agent keeps
  size_t exact_entries = 0;   // ms_policy
  size_t lpm_entries = 0;     // ms_policy_lpm
  size_t exact6_entries = 0;  // ms_policy6
  size_t lpm6_entries = 0;    // ms_policy6_lpm
  double last_reconcile_seconds = 0;
  uint32_t locked_down_endpoints = 0;
  uint64_t lockdowns_total = 0;  // endpoints that went into lockdown since start
  uint64_t compiled_endpoints = 0;  // endpoint compilations since start (incrementality)
  UpdaterCounters updater;

  // The entries the agent keeps in each map it owns, indexed by enum
  // ms_pressure_map (what the map-pressure monitor counts them against).
  std::array<uint64_t, MS_PMAP_MAX> owned_map_entries() const {
    std::array<uint64_t, MS_PMAP_MAX> entries{};
    entries[MS_PMAP_ENDPOINTS] = endpoint_entries;
    entries[MS_PMAP_POLICY] = exact_entries;
    entries[MS_PMAP_POLICY_LPM] = lpm_entries;
    entries[MS_PMAP_POLICY6] = exact6_entries;
    entries[MS_PMAP_POLICY6_LPM] = lpm6_entries;
    return entries;
  }
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
  // Standalone mode: a whole new state, diffed into events.
  [[nodiscard]] absl::Status SetClusterState(ClusterState cluster);

  // One object at a time (the Kubernetes watch). Each returns once the maps
  // reflect the event; on error the event is not applied at all.
  [[nodiscard]] absl::Status UpsertNamespace(const Namespace& ns);
  [[nodiscard]] absl::Status DeleteNamespace(const std::string& name);
  [[nodiscard]] absl::Status UpsertPod(const Pod& pod);
  [[nodiscard]] absl::Status DeletePod(const std::string& namespace_name, const std::string& name);
  [[nodiscard]] absl::Status UpsertNetworkPolicy(const NetworkPolicy& policy);
  [[nodiscard]] absl::Status DeleteNetworkPolicy(const std::string& namespace_name, const std::string& name);
  [[nodiscard]] absl::Status UpsertSegmentPolicy(const SegmentPolicy& policy);
  [[nodiscard]] absl::Status DeleteSegmentPolicy(const std::string& namespace_name, const std::string& name);
  [[nodiscard]] absl::Status UpsertClusterSegmentPolicy(const ClusterSegmentPolicy& policy);
  [[nodiscard]] absl::Status DeleteClusterSegmentPolicy(const std::string& name);

  // Returns once the endpoint's policy is in the maps.
  [[nodiscard]] absl::StatusOr<EndpointView> AddEndpoint(EndpointRecord record);
  // Returns whether the endpoint existed.
  [[nodiscard]] absl::StatusOr<bool> DeleteEndpoint(const EndpointRegistry::Key& key);
  [[nodiscard]] absl::StatusOr<EndpointView> GetEndpoint(const EndpointRegistry::Key& key) const;
  std::vector<EndpointView> ListEndpoints() const;

  // Drops endpoints whose veth is gone (a DEL that never reached us).
  void ForgetEndpointsWhere(const std::function<bool(const EndpointRecord&)>& gone);

  AgentCounters counters() const;

  // The policy rules behind a map entry's rule id (audit events): empty
  // when no current policy has it, several on a hash collision. The index
  // behind it is rebuilt on the first lookup after a policy change.
  std::vector<RuleOrigin> ResolveRuleId(uint32_t rule_id) const;
  // "namespace/pod" of the local endpoint with this id; empty when none.
  std::string EndpointName(uint32_t endpoint_id) const;

  // Tries again to apply the whole policy of locked-down endpoints (space
  // may have come back). A no-op without lockdowns.
  [[nodiscard]] absl::Status RetryLockdowns();

 private:
  // Compiles the engine's dirty endpoints and applies them; on failure runs
  // `undo` (which must restore the engine's previous inputs) and drops the
  // dirt it leaves, since the maps kept the previous policy.
  [[nodiscard]] absl::Status CommitLocked(const std::function<void()>& undo);
  // A policy map is full: the batch endpoint by endpoint, with lockdowns.
  // `ids`: the endpoints of the batch that did not fit, compiled whole again.
  [[nodiscard]] absl::Status ApplyWithLockdownsLocked(const std::set<uint32_t>& ids,
                                                      const std::function<void()>& undo);
  void SetLockdownsLocked(Lockdowns now);
  void SyncEndpointsLocked();
  EndpointView ViewLocked(const EndpointRecord& record) const;
  void PurgeSessionsLocked(uint32_t endpoint_id);

  mutable std::mutex mu_;
  const std::string node_name_;
  MapWriter& writer_;
  EndpointRegistry& registry_;
  SessionPurger purge_sessions_;
  PolicyEngine engine_;
  PolicyMapUpdater updater_;
  AgentCounters counters_;
  Lockdowns lockdowns_;
  mutable RuleIdIndex rule_index_;
  mutable std::optional<uint64_t> rule_index_generation_;  // counters_.generation it was built at
};

}  // namespace microseg
