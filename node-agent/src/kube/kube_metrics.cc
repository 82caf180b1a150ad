#include "kube/kube_metrics.h"

#include "metric_family.h"

namespace microseg::kube {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

std::vector<MetricFamily> KubeMetrics::Collect() const {
  const KubeSourceStats stats = stats_();
  auto lists = Family("microseg_kube_lists_total", "Complete (all pages) LISTs, by resource.", MetricType::Counter);
  auto relists = Family("microseg_kube_relists_after_gone_total",
                        "Relists because the watched resourceVersion expired (410 Gone), by resource.",
                        MetricType::Counter);
  auto watches = Family("microseg_kube_watches_total", "WATCH requests started, by resource.", MetricType::Counter);
  auto events = Family("microseg_kube_watch_events_total", "Watch events received (bookmarks included), by resource.",
                       MetricType::Counter);
  auto failures = Family("microseg_kube_failures_total",
                         "Failed requests and broken or stalled watches (each retried after backoff), by resource.",
                         MetricType::Counter);
  auto changes = Family("microseg_kube_object_changes_total",
                        "Object upserts/deletes applied to the cluster state, by resource.", MetricType::Counter);
  for (const auto& [kind, r] : stats.reflectors) {
    const std::vector<ClientMetric::Label> labels = {{"resource", kind}};
    AddCounter(lists, static_cast<double>(r.lists), labels);
    AddCounter(relists, static_cast<double>(r.relists_after_gone), labels);
    AddCounter(watches, static_cast<double>(r.watches), labels);
    AddCounter(events, static_cast<double>(r.events), labels);
    AddCounter(failures, static_cast<double>(r.failures), labels);
    AddCounter(changes, static_cast<double>(r.changes), labels);
  }
  auto leader = Family("microseg_kube_status_leader", "1 while this agent holds the status-writer Lease.",
                       MetricType::Gauge);
  AddGauge(leader, stats.leading ? 1 : 0);
  auto status = Family("microseg_kube_status_writes_total", "Status conditions patched and Events written.",
                       MetricType::Counter);
  AddCounter(status, static_cast<double>(stats.status.status_patches), {{"kind", "status_condition"}});
  AddCounter(status, static_cast<double>(stats.status.events_created), {{"kind", "event_created"}});
  AddCounter(status, static_cast<double>(stats.status.events_bumped), {{"kind", "event_count_bumped"}});
  AddCounter(status, static_cast<double>(stats.status.write_failures), {{"kind", "failed"}});
  auto rejected = Family("microseg_kube_rejected_object_versions_total",
                         "Object versions rejected as invalid (their last good version stayed in force).",
                         MetricType::Counter);
  AddCounter(rejected, static_cast<double>(stats.rejected_versions));
  auto tokens = Family("microseg_kube_token_reloads_total", "Times the bearer token file was (re)read with new content.",
                       MetricType::Counter);
  AddCounter(tokens, static_cast<double>(token_reloads_()));
  return {lists, relists, watches, events, failures, changes, leader, status, rejected, tokens};
}

}  // namespace microseg::kube
