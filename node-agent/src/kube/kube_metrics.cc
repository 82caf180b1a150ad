#include "kube/kube_metrics.h"

#include "prometheus/client_metric.h"
#include "prometheus/metric_family.h"
#include "prometheus/metric_type.h"

namespace microseg::kube {
namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

MetricFamily Family(std::string name, std::string help, MetricType type) {
  MetricFamily family;
  family.name = std::move(name);
  family.help = std::move(help);
  family.type = type;
  return family;
}

void Add(MetricFamily& family, double value, std::vector<ClientMetric::Label> labels = {}) {
  ClientMetric metric;
  metric.label = std::move(labels);
  if (family.type == MetricType::Counter) metric.counter.value = value;
  else metric.gauge.value = value;
  family.metric.push_back(std::move(metric));
}

}  // namespace

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
    Add(lists, static_cast<double>(r.lists), labels);
    Add(relists, static_cast<double>(r.relists_after_gone), labels);
    Add(watches, static_cast<double>(r.watches), labels);
    Add(events, static_cast<double>(r.events), labels);
    Add(failures, static_cast<double>(r.failures), labels);
    Add(changes, static_cast<double>(r.changes), labels);
  }
  auto leader = Family("microseg_kube_status_leader", "1 while this agent holds the status-writer Lease.",
                       MetricType::Gauge);
  Add(leader, stats.leading ? 1 : 0);
  auto status = Family("microseg_kube_status_writes_total", "Status conditions patched and Events written.",
                       MetricType::Counter);
  Add(status, static_cast<double>(stats.status.status_patches), {{"kind", "status_condition"}});
  Add(status, static_cast<double>(stats.status.events_created), {{"kind", "event_created"}});
  Add(status, static_cast<double>(stats.status.events_bumped), {{"kind", "event_count_bumped"}});
  Add(status, static_cast<double>(stats.status.write_failures), {{"kind", "failed"}});
  auto rejected = Family("microseg_kube_rejected_object_versions_total",
                         "Object versions rejected as invalid (their last good version stayed in force).",
                         MetricType::Counter);
  Add(rejected, static_cast<double>(stats.rejected_versions));
  auto tokens = Family("microseg_kube_token_reloads_total", "Times the bearer token file was (re)read with new content.",
                       MetricType::Counter);
  Add(tokens, static_cast<double>(token_reloads_()));
  return {lists, relists, watches, events, failures, changes, leader, status, rejected, tokens};
}

}  // namespace microseg::kube
