// Prometheus metrics, read at scrape time from the BPF stats map and the
// agent, so a scrape always shows the kernel's current counters.
#pragma once

#include <atomic>
#include <functional>
#include <vector>

#include "agent.h"
#include "audit_event_log.h"
#include "bpf_datapath.h"
#include "map_pressure_monitor.h"
#include "session_sweeper.h"
#include "prometheus/collectable.h"
#include "prometheus/metric_family.h"

namespace microseg {

// microseg_policy_audit_events_total from the agent's audit event log
// (nullptr: the family without samples).
prometheus::MetricFamily AuditEventsFamily(const AuditEventLog* log);

// How policy changes reached the maps: endpoint updates by kind (a flipped
// generation, in place, a peer patch), port re-cuts, whole-endpoint
// compilations and entries left to retry. An operator tells from them whether
// churn takes the cheap paths.
std::vector<prometheus::MetricFamily> PolicyUpdateFamilies(const AgentCounters& c);

class AgentMetrics final : public prometheus::Collectable {
 public:
  AgentMetrics(const BpfDatapath& datapath, const Agent& agent, std::function<uint64_t()> rejected_manifests,
               std::function<size_t()> invalid_manifest_files)
      : datapath_(datapath),
        agent_(agent),
        rejected_manifests_(std::move(rejected_manifests)),
        invalid_manifest_files_(std::move(invalid_manifest_files)) {}

  std::vector<prometheus::MetricFamily> Collect() const override;

  // Map pressure and lockdown metrics; without it, entries come from the agent only.
  void set_map_pressure(const MapPressureMonitor* monitor) { pressure_.store(monitor); }
  // Exports the sweeper's counters (optional; set before the first scrape).
  void set_session_sweeper(const SessionSweeper* sweeper) { sweeper_ = sweeper; }
  // Audit events per policy (optional; without it only the data path's counters are exported).
  void set_audit_events(const AuditEventLog* log) { audit_.store(log); }

 private:
  void CollectMapPressure(std::vector<prometheus::MetricFamily>& out, const AgentCounters& c) const;
  void CollectAudit(std::vector<prometheus::MetricFamily>& out) const;

  const BpfDatapath& datapath_;
  const Agent& agent_;
  std::function<uint64_t()> rejected_manifests_;
  std::function<size_t()> invalid_manifest_files_;
  std::atomic<const MapPressureMonitor*> pressure_{nullptr};  // set after the exposer may already scrape
  const SessionSweeper* sweeper_ = nullptr;
  std::atomic<const AuditEventLog*> audit_{nullptr};
};

}  // namespace microseg
