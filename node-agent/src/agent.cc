#include "agent.h"

#include <chrono>
#include <set>

#include "absl/strings/str_cat.h"
#include "log.h"
#include "policy_commit.h"

namespace microseg {

Agent::Agent(std::string node_name, MapWriter& writer, EndpointRegistry& registry, MapState live,
             SessionPurger purge_sessions)
    : node_name_(std::move(node_name)),
      writer_(writer), registry_(registry), purge_sessions_(std::move(purge_sessions)), updater_(writer_) {
  updater_.Adopt(live);
  lockdowns_ = LockedDownIn(live);
}

absl::Status Agent::Start(ClusterState cluster) {
  std::lock_guard<std::mutex> lock(mu_);
  engine_.SetClusterState(cluster);
  SyncEndpointsLocked();
  engine_.MarkAllDirty();  // a restart re-derives everything once
  return CommitLocked([] {});
}

absl::Status Agent::SetClusterState(ClusterState cluster) {
  std::lock_guard<std::mutex> lock(mu_);
  ClusterState previous = engine_.cluster();
  engine_.SetClusterState(cluster);
  // What is in the maps is what we keep believing.
  return CommitLocked([&] { engine_.SetClusterState(previous); });
}

absl::Status Agent::UpsertNamespace(const Namespace& ns) {
  std::lock_guard<std::mutex> lock(mu_);
  std::optional<Namespace> previous;
  if (auto found = engine_.cluster().namespaces.find(ns.name); found != engine_.cluster().namespaces.end()) {
    previous = found->second;
  }
  engine_.UpsertNamespace(ns);
  return CommitLocked([&] { previous ? engine_.UpsertNamespace(*previous) : engine_.DeleteNamespace(ns.name); });
}

absl::Status Agent::DeleteNamespace(const std::string& name) {
  std::lock_guard<std::mutex> lock(mu_);
  auto found = engine_.cluster().namespaces.find(name);
  if (found == engine_.cluster().namespaces.end()) return absl::OkStatus();
  const Namespace previous = found->second;
  engine_.DeleteNamespace(name);
  return CommitLocked([&] { engine_.UpsertNamespace(previous); });
}

absl::Status Agent::UpsertPod(const Pod& pod) {
  std::lock_guard<std::mutex> lock(mu_);
  const std::string key = absl::StrCat(pod.namespace_name, "/", pod.name);
  std::optional<Pod> previous;
  if (auto found = engine_.cluster().pods.find(key); found != engine_.cluster().pods.end()) previous = found->second;
  engine_.UpsertPod(pod);
  return CommitLocked([&] { previous ? engine_.UpsertPod(*previous) : engine_.DeletePod(key); });
}

absl::Status Agent::DeletePod(const std::string& namespace_name, const std::string& name) {
  std::lock_guard<std::mutex> lock(mu_);
  const std::string key = absl::StrCat(namespace_name, "/", name);
  auto found = engine_.cluster().pods.find(key);
  if (found == engine_.cluster().pods.end()) return absl::OkStatus();
  const Pod previous = found->second;
  engine_.DeletePod(key);
  return CommitLocked([&] { engine_.UpsertPod(previous); });
}

absl::Status Agent::UpsertNetworkPolicy(const NetworkPolicy& policy) {
  std::lock_guard<std::mutex> lock(mu_);
  const std::string key = absl::StrCat(policy.namespace_name, "/", policy.name);
  std::optional<NetworkPolicy> previous;
  if (auto found = engine_.cluster().network_policies.find(key); found != engine_.cluster().network_policies.end()) {
    previous = found->second;
  }
  engine_.UpsertNetworkPolicy(policy);
  return CommitLocked(
      [&] { previous ? engine_.UpsertNetworkPolicy(*previous) : engine_.DeleteNetworkPolicy(key); });
}

absl::Status Agent::DeleteNetworkPolicy(const std::string& namespace_name, const std::string& name) {
  std::lock_guard<std::mutex> lock(mu_);
  const std::string key = absl::StrCat(namespace_name, "/", name);
  auto found = engine_.cluster().network_policies.find(key);
  if (found == engine_.cluster().network_policies.end()) return absl::OkStatus();
  const NetworkPolicy previous = found->second;
  engine_.DeleteNetworkPolicy(key);
  return CommitLocked([&] { engine_.UpsertNetworkPolicy(previous); });
}

absl::Status Agent::UpsertSegmentPolicy(const SegmentPolicy& policy) {
  std::lock_guard<std::mutex> lock(mu_);
  const std::string key = absl::StrCat(policy.policy.namespace_name, "/", policy.policy.name);
  std::optional<SegmentPolicy> previous;
  if (auto found = engine_.cluster().segment_policies.find(key); found != engine_.cluster().segment_policies.end()) {
    previous = found->second;
  }
  engine_.UpsertSegmentPolicy(policy);
  return CommitLocked(
      [&] { previous ? engine_.UpsertSegmentPolicy(*previous) : engine_.DeleteSegmentPolicy(key); });
}

absl::Status Agent::DeleteSegmentPolicy(const std::string& namespace_name, const std::string& name) {
  std::lock_guard<std::mutex> lock(mu_);
  const std::string key = absl::StrCat(namespace_name, "/", name);
  auto found = engine_.cluster().segment_policies.find(key);
  if (found == engine_.cluster().segment_policies.end()) return absl::OkStatus();
  const SegmentPolicy previous = found->second;
  engine_.DeleteSegmentPolicy(key);
  return CommitLocked([&] { engine_.UpsertSegmentPolicy(previous); });
}

absl::Status Agent::UpsertClusterSegmentPolicy(const ClusterSegmentPolicy& policy) {
  std::lock_guard<std::mutex> lock(mu_);
  std::optional<ClusterSegmentPolicy> previous;
  if (auto found = engine_.cluster().cluster_segment_policies.find(policy.name);
      found != engine_.cluster().cluster_segment_policies.end()) {
    previous = found->second;
  }
  engine_.UpsertClusterSegmentPolicy(policy);
  return CommitLocked([&] {
    previous ? engine_.UpsertClusterSegmentPolicy(*previous) : engine_.DeleteClusterSegmentPolicy(policy.name);
  });
}

absl::Status Agent::DeleteClusterSegmentPolicy(const std::string& name) {
  std::lock_guard<std::mutex> lock(mu_);
  auto found = engine_.cluster().cluster_segment_policies.find(name);
  if (found == engine_.cluster().cluster_segment_policies.end()) return absl::OkStatus();
  const ClusterSegmentPolicy previous = found->second;
  engine_.DeleteClusterSegmentPolicy(name);
  return CommitLocked([&] { engine_.UpsertClusterSegmentPolicy(previous); });
}

// Makes the engine's endpoints those of the registry.
void Agent::SyncEndpointsLocked() {
  std::map<uint32_t, LocalEndpoint> wanted;
  for (const LocalEndpoint& endpoint : registry_.LocalEndpoints()) wanted[endpoint.endpoint_id] = endpoint;
  std::vector<uint32_t> gone;
  for (const auto& [id, endpoint] : engine_.endpoints()) {
    if (!wanted.contains(id)) gone.push_back(id);
  }
  for (uint32_t id : gone) engine_.DeleteEndpoint(id);
  for (const auto& [id, endpoint] : wanted) engine_.UpsertEndpoint(endpoint);
}

absl::Status Agent::CommitLocked(const std::function<void()>& undo) {
  const auto started = std::chrono::steady_clock::now();
  // Endpoints in the maps the engine does not know (left while we were down).
  std::set<uint32_t> gone;
  for (const auto& [id, installed] : updater_.installed()) {
    if (!engine_.endpoints().contains(id)) gone.insert(id);
  }
  std::vector<EndpointUpdate> updates = PlanEndpointUpdates(engine_, updater_, gone);
  const size_t endpoints_touched = updates.size();
  std::set<uint32_t> batch;
  for (const EndpointUpdate& update : updates) batch.insert(update.endpoint_id);
  absl::Status status = updater_.Apply(std::move(updates));
  if (status.code() == absl::StatusCode::kResourceExhausted) {
    // The updater rolled the batch back: every endpoint gets all of its
    // policy or a lockdown, and the event stays applied.
    status = ApplyWithLockdownsLocked(batch, undo);
    if (!status.ok()) {
      ++counters_.reconcile_failures;
      return status;
    }
  } else if (!status.ok()) {
    ++counters_.reconcile_failures;
    undo();
    (void)engine_.TakeDirty();  // the maps still hold what the restored inputs compile to
    return status;
  } else {
    Lockdowns still = lockdowns_;
    for (uint32_t id : batch) still.erase(id);
    SetLockdownsLocked(std::move(still));
  }
  ++counters_.generation;
  counters_.last_reconcile_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  if (endpoints_touched > 0) {
    LogInfo("policy of ", endpoints_touched, " endpoint(s) recomputed (", counters_.last_reconcile_seconds * 1e3,
            " ms)");
  }
  return absl::OkStatus();
}

absl::Status Agent::ApplyWithLockdownsLocked(const std::set<uint32_t>& ids, const std::function<void()>& undo) {
  // Whole policies (a lockdown needs them, a patch is not enough).
  std::vector<EndpointUpdate> updates;
  for (uint32_t id : ids) {
    EndpointUpdate update{id, std::nullopt, std::nullopt};
    if (engine_.endpoints().contains(id)) update.desired = engine_.Compile(id);
    updates.push_back(std::move(update));
  }
  auto locked = ApplyEndpointByEndpoint(updater_, std::move(updates));
  if (!locked.ok()) {
    // Some endpoints may already have their new policy: restore the inputs
    // and let the next commit bring those back in line with them.
    undo();
    (void)engine_.TakeDirty();
    for (uint32_t id : ids) engine_.MarkDirty(id);
    return absl::Status(locked.status().code(),
                        absl::StrCat("policy not applied, previous policy kept: ", locked.status().message()));
  }
  Lockdowns now = lockdowns_;
  for (uint32_t id : ids) now.erase(id);
  now.merge(*locked);
  LogWarning("a policy map is full: policy applied endpoint by endpoint, ", locked->size(),
             " endpoint(s) of this change locked down; ", updater_.exact_entries(), " exact and ",
             updater_.lpm_entries(), " LPM entries in the IPv4 maps, ", updater_.exact6_entries(), " and ",
             updater_.lpm6_entries(), " in the IPv6 maps");
  SetLockdownsLocked(std::move(now));
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
    if (!now.contains(id) && updater_.Find(id) != nullptr) {
      LogInfo("endpoint ", name_of(id), ": lockdown lifted, its whole policy is in the maps");
    }
  }
  lockdowns_ = std::move(now);
}

absl::Status Agent::RetryLockdowns() {
  std::lock_guard<std::mutex> lock(mu_);
  if (lockdowns_.empty()) return absl::OkStatus();
  for (const auto& [id, why] : lockdowns_) engine_.MarkDirty(id);
  return CommitLocked([] {});
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
  SyncEndpointsLocked();
  absl::Status status = CommitLocked([&] {
    // Leave the registry as the maps are: without this endpoint (or with its
    // previous registration), so the CNI plugin's failure is the whole story.
    if (previous) (void)registry_.Register(*previous, nullptr);
    else (void)registry_.Remove(key);
    SyncEndpointsLocked();
  });
  if (!status.ok()) return status;
  for (const EndpointRecord& gone : evicted) {
    LogInfo("endpoint ", gone.pod_namespace, "/", gone.pod_name, " replaced on ifindex ", gone.host_ifindex);
    PurgeSessionsLocked(gone.endpoint_id);
  }
  // A CNI call for a pod the cluster schedules elsewhere means a wrong
  // --node-name or a stale manifest: the pod's labels may not be its own.
  if (auto pod = engine_.cluster().pods.find(registered->pod_namespace + "/" + registered->pod_name);
      pod != engine_.cluster().pods.end() && !pod->second.node_name.empty() && pod->second.node_name != node_name_) {
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
  SyncEndpointsLocked();
  if (absl::Status status = CommitLocked([&] {
        (void)registry_.Register(**removed, nullptr);
        SyncEndpointsLocked();
      });
      !status.ok()) {
    return status;
  }
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
  SyncEndpointsLocked();
  if (absl::Status status = CommitLocked([] {}); !status.ok()) {
    // The registry no longer has them; the next commit retries the removal.
    LogError("removing gone endpoints from the maps failed: ", status.ToString());
    return;
  }
  for (uint32_t id : ids) PurgeSessionsLocked(id);
}

EndpointView Agent::ViewLocked(const EndpointRecord& record) const {
  EndpointView view{record, {}, 0};
  if (const InstalledEndpoint* installed = updater_.Find(record.endpoint_id)) {
    view.policy = installed->policy.summary;
    view.policy_revision = installed->policy.endpoint.policy_rev;
  }
  if (auto it = lockdowns_.find(record.endpoint_id); it != lockdowns_.end()) {
    view.locked_down = true;
    view.lockdown_reason = it->second;
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

std::vector<RuleOrigin> Agent::ResolveRuleId(uint32_t rule_id) const {
  std::lock_guard<std::mutex> lock(mu_);
  if (rule_index_generation_ != counters_.generation) {
    rule_index_ = RuleIdIndex::Build(engine_.cluster());
    rule_index_generation_ = counters_.generation;
  }
  return rule_index_.Find(rule_id);
}

std::string Agent::EndpointName(uint32_t endpoint_id) const {
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [key, record] : registry_.records()) {
    if (record.endpoint_id == endpoint_id) return record.pod_namespace + "/" + record.pod_name;
  }
  return "";
}

AgentCounters Agent::counters() const {
  std::lock_guard<std::mutex> lock(mu_);
  AgentCounters c = counters_;
  c.endpoints = static_cast<uint32_t>(registry_.records().size());
  c.namespaces = static_cast<uint32_t>(engine_.cluster().namespaces.size());
  c.pods = static_cast<uint32_t>(engine_.cluster().pods.size());
  c.network_policies = static_cast<uint32_t>(engine_.cluster().network_policies.size());
  c.segment_policies = static_cast<uint32_t>(engine_.cluster().segment_policies.size());
  c.cluster_segment_policies = static_cast<uint32_t>(engine_.cluster().cluster_segment_policies.size());
  c.endpoint_entries = updater_.installed().size();
  c.exact_entries = updater_.exact_entries();
  c.lpm_entries = updater_.lpm_entries();
  c.exact6_entries = updater_.exact6_entries();
  c.lpm6_entries = updater_.lpm6_entries();
  c.locked_down_endpoints = static_cast<uint32_t>(lockdowns_.size());
  c.compiled_endpoints = engine_.compiled_endpoints();
  c.updater = updater_.counters();
  return c;
}

}  // namespace microseg
