// Families built at scrape time by the collectors that read their values
// from somewhere else (the BPF stats map, the agent, Kubernetes mode's
// reflectors): one place for the exposition shape, so every collector
// labels and types its samples the same way.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "prometheus/client_metric.h"
#include "prometheus/metric_family.h"
#include "prometheus/metric_type.h"

namespace microseg {

inline prometheus::MetricFamily Family(std::string name, std::string help, prometheus::MetricType type) {
  prometheus::MetricFamily family;
  family.name = std::move(name);
  family.help = std::move(help);
  family.type = type;
  return family;
}

// One sample; the family's type says whether it is a counter or a gauge.
inline void AddSample(prometheus::MetricFamily& family, double value,
                      std::vector<prometheus::ClientMetric::Label> labels = {}) {
  prometheus::ClientMetric metric;
  metric.label = std::move(labels);
  if (family.type == prometheus::MetricType::Counter) metric.counter.value = value;
  else metric.gauge.value = value;
  family.metric.push_back(std::move(metric));
}

// The names the collectors read best with; both are AddSample.
inline void AddGauge(prometheus::MetricFamily& family, double value,
                     std::vector<prometheus::ClientMetric::Label> labels = {}) {
  AddSample(family, value, std::move(labels));
}
inline void AddCounter(prometheus::MetricFamily& family, double value,
                       std::vector<prometheus::ClientMetric::Label> labels = {}) {
  AddSample(family, value, std::move(labels));
}

}  // namespace microseg
