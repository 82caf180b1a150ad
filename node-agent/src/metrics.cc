#include "metrics.h"

#include <string>

#include "log.h"
#include "metric_family.h"
#include "reason_names.h"

namespace microseg {
using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

std::vector<MetricFamily> AgentMetrics::Collect() const {
  std::vector<MetricFamily> out;

  auto counters = datapath_.ReadCounters();
  if (counters.ok()) {
    auto packets = Family("microseg_packets_total", "Packets seen by the TC programs, by direction (from the pod's "
                          "point of view), verdict and reason.", MetricType::Counter);
    auto bytes = Family("microseg_bytes_total", "Bytes seen by the TC programs, by direction, verdict and reason.",
                        MetricType::Counter);
    for (unsigned dir = 0; dir < MS_DIR_MAX; ++dir) {
      for (unsigned reason = 0; reason < MS_REASON_MAX; ++reason) {
        const ms_counter& c = (*counters)[ms_stats_index(dir, reason)];
        std::vector<ClientMetric::Label> labels = {{"direction", std::string(DirectionName(dir))},
                                                   {"reason", std::string(ReasonName(reason))},
                                                   {"verdict", ReasonIsDrop(reason) ? "drop" : "allow"}};
        AddCounter(packets, static_cast<double>(c.packets), labels);
        AddCounter(bytes, static_cast<double>(c.bytes), labels);
      }
    }
    out.push_back(std::move(packets));
    out.push_back(std::move(bytes));
  } else {
    LogWarning("metrics: cannot read ms_stats: ", counters.status().ToString());
  }

  const AgentCounters c = agent_.counters();
  auto endpoints = Family("microseg_endpoints", "Pod endpoints registered on this node.", MetricType::Gauge);
  AddGauge(endpoints, c.endpoints);
  out.push_back(std::move(endpoints));

  auto objects = Family("microseg_cluster_objects", "Cluster objects the agent knows, by kind.", MetricType::Gauge);
  AddGauge(objects, c.namespaces, {{"kind", "Namespace"}});
  AddGauge(objects, c.pods, {{"kind", "Pod"}});
  AddGauge(objects, c.network_policies, {{"kind", "NetworkPolicy"}});
  AddGauge(objects, c.segment_policies, {{"kind", "SegmentPolicy"}});
  AddGauge(objects, c.cluster_segment_policies, {{"kind", "ClusterSegmentPolicy"}});
  out.push_back(std::move(objects));

  auto generation = Family("microseg_policy_generation", "Successful policy compilations into the maps.",
                           MetricType::Gauge);
  AddGauge(generation, static_cast<double>(c.generation));
  out.push_back(std::move(generation));

  auto failures = Family("microseg_policy_apply_failures_total",
                         "Policy updates that could not be written to the maps and were rolled back.",
                         MetricType::Counter);
  AddCounter(failures, static_cast<double>(c.reconcile_failures));
  out.push_back(std::move(failures));

  auto duration = Family("microseg_policy_last_apply_seconds", "Duration of the last compile-diff-apply.",
                         MetricType::Gauge);
  AddGauge(duration, c.last_reconcile_seconds);
  out.push_back(std::move(duration));

  for (MetricFamily& family : PolicyUpdateFamilies(c)) out.push_back(std::move(family));
  CollectMapPressure(out, c);
  CollectAudit(out);

  if (auto memory = datapath_.MapMemoryUsage(); memory.ok()) {
    auto bytes = Family("microseg_bpf_map_memory_bytes",
                        "Kernel memory charged for each BPF map (fdinfo memlock): hash maps preallocate their "
                        "capacity, LPM tries grow per entry.", MetricType::Gauge);
    for (const MapMemory& m : *memory) AddGauge(bytes, static_cast<double>(m.memlock_bytes), {{"map", m.name}});
    out.push_back(std::move(bytes));
  } else {
    LogWarning("metrics: cannot read BPF map memory: ", memory.status().ToString());
  }

  if (sweeper_ != nullptr) {
    auto swept = Family("microseg_sessions_swept_total",
                        "Expired sessions the agent's sweeper removed from the session map.", MetricType::Counter);
    AddCounter(swept, static_cast<double>(sweeper_->removed_total()));
    out.push_back(std::move(swept));
    auto sweeps = Family("microseg_session_sweeps_total", "Completed passes of the session sweeper.",
                         MetricType::Counter);
    AddCounter(sweeps, static_cast<double>(sweeper_->sweeps()));
    out.push_back(std::move(sweeps));
    auto half_open = Family("microseg_sessions_half_open",
                            "Half-open TCP sessions (SYN_SENT/SYN_RECV) on this node at the last sweep.",
                            MetricType::Gauge);
    AddGauge(half_open, static_cast<double>(sweeper_->last_half_open()));
    out.push_back(std::move(half_open));
  }

  if (rejected_manifests_) {
    auto rejected = Family("microseg_manifest_errors_total",
                           "Manifest file versions rejected (parse or validation errors); the last good version "
                           "stays in force.", MetricType::Counter);
    AddCounter(rejected, static_cast<double>(rejected_manifests_()));
    out.push_back(std::move(rejected));
  }
  if (invalid_manifest_files_) {
    auto invalid = Family("microseg_manifest_invalid_files", "Manifest files whose current version is rejected.",
                          MetricType::Gauge);
    AddGauge(invalid, static_cast<double>(invalid_manifest_files_()));
    out.push_back(std::move(invalid));
  }
  return out;
}

std::vector<MetricFamily> PolicyUpdateFamilies(const AgentCounters& c) {
  std::vector<MetricFamily> out;
  auto updates = Family("microseg_policy_endpoint_updates_total",
                        "Endpoint policies rewritten in the maps, by how: generation_flip (a second copy staged, "
                        "then the endpoint flipped to it), in_place (entries changed in lookup order), peer_patch "
                        "(only the entries of a few peer addresses spliced in).",
                        MetricType::Counter);
  AddCounter(updates, static_cast<double>(c.updater.generation_flips), {{"kind", "generation_flip"}});
  AddCounter(updates, static_cast<double>(c.updater.in_place_updates), {{"kind", "in_place"}});
  AddCounter(updates, static_cast<double>(c.updater.peer_patches), {{"kind", "peer_patch"}});
  out.push_back(std::move(updates));

  auto recuts = Family("microseg_policy_port_recuts_total",
                       "In-place updates and peer patches that moved an endpoint to a new port cutting (endPort "
                       "ranges) through the union of both cuttings.",
                       MetricType::Counter);
  AddCounter(recuts, static_cast<double>(c.updater.port_recuts));
  out.push_back(std::move(recuts));

  auto compilations = Family("microseg_policy_endpoint_compilations_total",
                             "Whole-endpoint policy compilations; pod events that only patch peer entries and "
                             "changes that touch no local endpoint compile none.",
                             MetricType::Counter);
  AddCounter(compilations, static_cast<double>(c.compiled_endpoints));
  out.push_back(std::move(compilations));

  auto cleanup = Family("microseg_policy_map_cleanup_failures_total",
                        "Clean-up writes after a policy update that failed: deletes of replaced entries (packets "
                        "no longer reach them; they are kept and deleted on a later update) and undo steps after a "
                        "failed write.",
                        MetricType::Counter);
  AddCounter(cleanup, static_cast<double>(c.updater.cleanup_failures));
  out.push_back(std::move(cleanup));
  return out;
}

MetricFamily AuditEventsFamily(const AuditEventLog* log) {
  auto events = Family("microseg_policy_audit_events_total",
                       "New flows an Audit SegmentPolicy would have dropped, reported by the data path and "
                       "received by the agent, by policy (namespace/name) and direction. Rate-limited: see "
                       "microseg_policy_audit_events_dropped_total; every audited packet is in "
                       "microseg_packets_total{reason=\"audit_would_drop\"}.",
                       MetricType::Counter);
  if (log == nullptr) return events;
  for (const AuditEventLog::Total& total : log->Totals()) {
    AddCounter(events, static_cast<double>(total.events),
               {{"policy", total.policy}, {"direction", std::string(DirectionName(total.direction))}});
  }
  return events;
}

void AgentMetrics::CollectAudit(std::vector<MetricFamily>& out) const {
  // Exported before the first event too: a family that appears only later
  // breaks rate() over the first interval.
  out.push_back(AuditEventsFamily(audit_.load()));

  auto counters = datapath_.ReadAuditCounters();
  if (!counters.ok()) {
    LogWarning("metrics: cannot read ms_audit_stats: ", counters.status().ToString());
    return;
  }
  auto dropped = Family("microseg_policy_audit_events_dropped_total",
                        "Audit events the data path did not deliver: held back by its per-CPU rate limit "
                        "(rate_limited) or lost to a full ring buffer (ring_full).",
                        MetricType::Counter);
  AddCounter(dropped, static_cast<double>(counters->rate_limited), {{"reason", "rate_limited"}});
  AddCounter(dropped, static_cast<double>(counters->ring_full), {{"reason", "ring_full"}});
  out.push_back(std::move(dropped));
}

void AgentMetrics::CollectMapPressure(std::vector<MetricFamily>& out, const AgentCounters& c) const {
  auto entries = Family("microseg_bpf_map_entries",
                        "Entries in each BPF map: the agent's own bookkeeping for the maps it writes, the data "
                        "path's estimate (exact at each count) for ms_sessions.", MetricType::Gauge);
  auto capacity = Family("microseg_bpf_map_capacity", "max_entries of each BPF map.", MetricType::Gauge);
  auto locked = Family("microseg_endpoint_lockdown",
                       "Endpoints locked down because their policy does not fit a policy map (new flows dropped).",
                       MetricType::Gauge);
  AddGauge(locked, c.locked_down_endpoints);
  auto lockdowns = Family("microseg_endpoint_lockdowns_total", "Endpoints that went into lockdown.",
                          MetricType::Counter);
  AddCounter(lockdowns, static_cast<double>(c.lockdowns_total));

  const MapPressureMonitor* monitor = pressure_.load();
  if (monitor == nullptr) {
    AddGauge(entries, static_cast<double>(c.endpoint_entries), {{"map", "ms_endpoints"}});
    AddGauge(entries, static_cast<double>(c.exact_entries), {{"map", "ms_policy"}});
    AddGauge(entries, static_cast<double>(c.lpm_entries), {{"map", "ms_policy_lpm"}});
    AddGauge(entries, static_cast<double>(c.exact6_entries), {{"map", "ms_policy6"}});
    AddGauge(entries, static_cast<double>(c.lpm6_entries), {{"map", "ms_policy6_lpm"}});
    for (const MapCapacity& m : datapath_.capacities()) AddGauge(capacity, m.max_entries, {{"map", m.name}});
    out.push_back(std::move(entries));
    out.push_back(std::move(capacity));
    out.push_back(std::move(locked));
    out.push_back(std::move(lockdowns));
    return;
  }
  auto pressure = Family("microseg_bpf_map_pressure", "entries / capacity of each BPF map (0..1); alerts at 0.9.",
                         MetricType::Gauge);
  auto failures = Family("microseg_bpf_map_insert_failures_total", "Failed inserts into each BPF map.",
                         MetricType::Counter);
  auto evictions = Family("microseg_bpf_map_evictions_total",
                          "Entries an LRU map dropped by itself (estimate: gone between two exact counts without "
                          "a delete).", MetricType::Counter);
  auto refused = Family("microseg_bpf_map_refused_total",
                        "New entries the data path refused because the map counts as full (reason map_full).",
                        MetricType::Counter);
  auto alerts = Family("microseg_bpf_map_pressure_alerts_total",
                       "Map-pressure alerts (ring buffer from the data path, or the agent's own check).",
                       MetricType::Counter);
  auto checked = Family("microseg_bpf_map_last_check_timestamp_seconds",
                        "Unix time of the last pressure check of each map.", MetricType::Gauge);
  for (const MapPressure& m : monitor->Snapshot()) {
    const std::vector<ClientMetric::Label> labels = {{"map", m.map}};
    AddGauge(entries, static_cast<double>(m.entries), labels);
    AddGauge(capacity, static_cast<double>(m.capacity), labels);
    AddGauge(pressure, m.pressure(), labels);
    AddCounter(failures, static_cast<double>(m.insert_failures), labels);
    AddCounter(evictions, static_cast<double>(m.evictions), labels);
    AddCounter(refused, static_cast<double>(m.refused), labels);
    AddCounter(alerts, static_cast<double>(m.alerts), labels);
    AddGauge(checked, m.last_check == absl::InfinitePast() ? 0.0 : absl::ToDoubleSeconds(m.last_check - absl::UnixEpoch()),
             labels);
  }
  for (auto* family : {&entries, &capacity, &pressure, &failures, &evictions, &refused, &alerts, &checked, &locked,
                       &lockdowns}) {
    out.push_back(std::move(*family));
  }
}

}  // namespace microseg
