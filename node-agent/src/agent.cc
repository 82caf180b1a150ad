#include "agent.h"

#include <chrono>

#include "absl/strings/str_cat.h"
#include "log.h"

namespace microseg {

Agent::Agent(std::string node_name, MapWriter& writer, EndpointRegistry& registry, MapState live,
             SessionPurger purge_sessions)
    : node_name_(std::move(node_name)),
      writer_(writer), registry_(registry), live_(std::move(live)), purge_sessions_(std::move(purge_sessions)) {
  lockdowns_ = LockedDownIn(live_);
}

absl::Status Agent::Start(ClusterState cluster) {
  std::lock_guard<std::mutex> lock(mu_);
  cluster_ = std::move(cluster);
  return ReconcileLocked();
}

absl::Status Agent::SetClusterState(ClusterState cluster) {
  std::lock_guard<std::mutex> lock(mu_);
  ClusterState previous = std::move(cluster_);
  cluster_ = std::move(cluster);
  absl::Status status = ReconcileLocked();
  if (!status.ok()) cluster_ = std::move(previous);  // what is in the maps is what we keep believing
  return status;
}

absl::Status Agent::ReconcileLocked() {
  const auto started = std::chrono::steady_clock::now();
  CompiledPolicy compiled = CompilePolicy(cluster_, registry_.LocalEndpoints());
  StampPolicyRevisions(live_, compiled.maps);
  const MapChanges changes = DiffMapState(live_, compiled.maps);
  const MapState before = live_;
  absl::Status status = ApplyMapChanges(writer_, changes, live_);
  if (!status.ok()) {
    const MapChanges undo = DiffMapState(live_, before);
    if (absl::Status rollback = ApplyMapChanges(writer_, undo, live_); !rollback.ok()) {
      LogError("rollback after a failed map update also failed, maps may be partial: ", rollback.ToString());
    }
    // A full map: every endpoint gets all of its policy or a lockdown.
    if (status.code() == absl::StatusCode::kResourceExhausted) {
      status = ApplyWithLockdownsLocked(compiled.maps);
      if (status.ok()) {
        LogWarning("a policy map is full: policy applied endpoint by endpoint, ", lockdowns_.size(),
                   " endpoint(s) locked down; ", live_.exact.size(), " exact and ", live_.lpm.size(),
                   " LPM entries in the maps");
        summaries_ = std::move(compiled.summaries);
        ++counters_.generation;
        return absl::OkStatus();
      }
    }
  } else {
    SetLockdownsLocked({});
  }
  if (!status.ok()) {
    ++counters_.reconcile_failures;
    return absl::Status(status.code(), absl::StrCat("policy not applied, previous policy kept: ", status.message()));
  }
  summaries_ = std::move(compiled.summaries);
  ++counters_.generation;
  counters_.last_reconcile_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  if (!changes.empty()) {
    LogInfo("maps updated: +", changes.exact_upserts.size(), "/-", changes.exact_deletes.size(), " exact, +",
            changes.lpm_upserts.size(), "/-", changes.lpm_deletes.size(), " lpm, ",
            changes.endpoint_upserts.size(), " endpoints set, ", changes.endpoint_deletes.size(),
            " removed (", counters_.last_reconcile_seconds * 1e3, " ms)");
  }
  return absl::OkStatus();
}

absl::Status Agent::ApplyWithLockdownsLocked(const MapState& desired) {
  auto locked = ApplyEndpointByEndpoint(writer_, desired, live_);
  if (!locked.ok()) return locked.status();
  SetLockdownsLocked(std::move(*locked));
  return absl::OkStatus();
}

void Agent::SetLockdownsLocked(Lockdowns now) {
  auto name_of = [this](uint32_t id) {
    for (const auto& [key, record] : registry_.records()) {
      if (record.endpoint_id == id) return absl::StrCat(record.pod_namespace, "/", record.pod_name, " (id ", id, ")");
    }
    return absl::StrCat("endpoint id ", id);
  };
  for (const auto& [id, why] : now) {
    if (lockdowns_.contains(id)) continue;
    ++counters_.lockdowns_total;
    LogError("endpoint ", name_of(id), " LOCKED DOWN: its policy does not fit the maps (", why,
             "); new flows in both directions are dropped (reason map_full), tracked sessions continue; "
             "retried every second");
  }
  for (const auto& [id, why] : lockdowns_) {
    if (!now.contains(id)) LogInfo("endpoint ", name_of(id), ": lockdown lifted, its whole policy is in the maps");
  }
  lockdowns_ = std::move(now);
}

absl::Status Agent::RetryLockdowns() {
  std::lock_guard<std::mutex> lock(mu_);
  if (lockdowns_.empty()) return absl::OkStatus();
  return ReconcileLocked();
}

void Agent::PurgeSessionsLocked(uint32_t endpoint_id) {
  if (!purge_sessions_) return;
  if (absl::Status s = purge_sessions_(endpoint_id); !s.ok()) {
    LogWarning("could not remove sessions of endpoint ", endpoint_id, ": ", s.ToString());
  }
}

absl::StatusOr<EndpointView> Agent::AddEndpoint(EndpointRecord record) {
  std::lock_guard<std::mutex> lock(mu_);
  const EndpointRegistry::Key key{record.container_id, record.ifname};
  std::optional<EndpointRecord> previous;
  if (const EndpointRecord* found = registry_.Find(key)) previous = *found;
  std::vector<EndpointRecord> evicted;
  auto registered = registry_.Register(std::move(record), &evicted);
  if (!registered.ok()) return registered.status();
  absl::Status status = ReconcileLocked();
  if (!status.ok()) {
    // Leave the registry as the maps are: without this endpoint (or with its
    // previous registration), so the CNI plugin's failure is the whole story.
    if (previous) (void)registry_.Register(*previous, nullptr);
    else (void)registry_.Remove(key);
    return status;
  }
  for (const EndpointRecord& gone : evicted) {
    LogInfo("endpoint ", gone.pod_namespace, "/", gone.pod_name, " replaced on ifindex ", gone.host_ifindex);
    PurgeSessionsLocked(gone.endpoint_id);
  }
  // A CNI call for a pod the cluster schedules elsewhere means a wrong
  // --node-name or a stale manifest: the pod's labels may not be its own.
  if (auto pod = cluster_.pods.find(registered->pod_namespace + "/" + registered->pod_name);
      pod != cluster_.pods.end() && !pod->second.node_name.empty() && pod->second.node_name != node_name_) {
    LogWarning("pod ", pod->first, " is scheduled on node '", pod->second.node_name, "' but was created on this node ('",
               node_name_, "')");
  }
  LogInfo("endpoint ", registered->pod_namespace, "/", registered->pod_name, " (id ", registered->endpoint_id,
          ", ", registered->host_ifname, ") is ",
          lockdowns_.contains(registered->endpoint_id) ? "LOCKED DOWN (its policy does not fit)" : "enforced");
  return ViewLocked(*registered);
}

absl::StatusOr<bool> Agent::DeleteEndpoint(const EndpointRegistry::Key& key) {
  std::lock_guard<std::mutex> lock(mu_);
  auto removed = registry_.Remove(key);
  if (!removed.ok()) return removed.status();
  if (!removed->has_value()) return false;
  if (absl::Status status = ReconcileLocked(); !status.ok()) return status;
  PurgeSessionsLocked((*removed)->endpoint_id);
  LogInfo("endpoint ", (*removed)->pod_namespace, "/", (*removed)->pod_name, " removed");
  return true;
}

void Agent::ForgetEndpointsWhere(const std::function<bool(const EndpointRecord&)>& gone) {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<EndpointRegistry::Key> doomed;
  for (const auto& [key, record] : registry_.records()) {
    if (gone(record)) doomed.push_back(key);
  }
  if (doomed.empty()) return;
  std::vector<uint32_t> ids;
  for (const auto& key : doomed) {
    auto removed = registry_.Remove(key);
    if (removed.ok() && removed->has_value()) {
      LogInfo("endpoint ", (*removed)->pod_namespace, "/", (*removed)->pod_name, ": veth ",
              (*removed)->host_ifname, " is gone, forgetting it");
      ids.push_back((*removed)->endpoint_id);
    }
  }
  if (absl::Status status = ReconcileLocked(); !status.ok()) {
    LogError("removing gone endpoints from the maps failed: ", status.ToString());
    return;
  }
  for (uint32_t id : ids) PurgeSessionsLocked(id);
}

EndpointView Agent::ViewLocked(const EndpointRecord& record) const {
  EndpointView view{record, {}, 0};
  if (auto it = summaries_.find(record.endpoint_id); it != summaries_.end()) view.policy = it->second;
  if (auto it = lockdowns_.find(record.endpoint_id); it != lockdowns_.end()) {
    view.locked_down = true;
    view.lockdown_reason = it->second;
  }
  if (auto it = live_.endpoints.find(record.host_ifindex); it != live_.endpoints.end()) {
    view.policy_revision = it->second.policy_rev;
  }
  return view;
}

absl::StatusOr<EndpointView> Agent::GetEndpoint(const EndpointRegistry::Key& key) const {
  std::lock_guard<std::mutex> lock(mu_);
  const EndpointRecord* record = registry_.Find(key);
  if (record == nullptr) {
    return absl::NotFoundError(absl::StrCat("no endpoint for container ", key.first, " interface ", key.second));
  }
  return ViewLocked(*record);
}

std::vector<EndpointView> Agent::ListEndpoints() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<EndpointView> out;
  for (const auto& [key, record] : registry_.records()) out.push_back(ViewLocked(record));
  return out;
}

AgentCounters Agent::counters() const {
  std::lock_guard<std::mutex> lock(mu_);
  AgentCounters c = counters_;
  c.endpoints = static_cast<uint32_t>(registry_.records().size());
  c.namespaces = static_cast<uint32_t>(cluster_.namespaces.size());
  c.pods = static_cast<uint32_t>(cluster_.pods.size());
  c.network_policies = static_cast<uint32_t>(cluster_.network_policies.size());
  c.endpoint_entries = live_.endpoints.size();
  c.exact_entries = live_.exact.size();
  c.lpm_entries = live_.lpm.size();
  c.locked_down_endpoints = static_cast<uint32_t>(lockdowns_.size());
  return c;
}

}  // namespace microseg
