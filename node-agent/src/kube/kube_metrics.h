// Prometheus view of Kubernetes mode: list/watch activity per resource,
// failures, relists after 410, status writes, Events, leadership, token
// reloads. Read at scrape time from the running source.
#pragma once

#include <functional>
#include <vector>

#include "kube/kube_source.h"
#include "prometheus/collectable.h"

namespace microseg::kube {

class KubeMetrics final : public prometheus::Collectable {
 public:
  KubeMetrics(std::function<KubeSourceStats()> stats, std::function<uint64_t()> token_reloads)
      : stats_(std::move(stats)), token_reloads_(std::move(token_reloads)) {}
  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  std::function<KubeSourceStats()> stats_;
  std::function<uint64_t()> token_reloads_;
};

}  // namespace microseg::kube
