// Prometheus metrics, read at scrape time from the BPF stats map and the
// agent, so a scrape always shows the kernel's current counters.
#pragma once

#include <functional>
#include <vector>

#include "agent.h"
#include "bpf_datapath.h"
#include "session_sweeper.h"
#include "prometheus/collectable.h"

namespace microseg {

class AgentMetrics final : public prometheus::Collectable {
 public:
  AgentMetrics(const BpfDatapath& datapath, const Agent& agent, std::function<uint64_t()> rejected_manifests,
               std::function<size_t()> invalid_manifest_files)
      : datapath_(datapath),
        agent_(agent),
        rejected_manifests_(std::move(rejected_manifests)),
        invalid_manifest_files_(std::move(invalid_manifest_files)) {}

  std::vector<prometheus::MetricFamily> Collect() const override;

  // Exports the sweeper's counters (optional; set before the first scrape).
  void set_session_sweeper(const SessionSweeper* sweeper) { sweeper_ = sweeper; }

 private:
  const BpfDatapath& datapath_;
  const Agent& agent_;
  std::function<uint64_t()> rejected_manifests_;
  std::function<size_t()> invalid_manifest_files_;
  const SessionSweeper* sweeper_ = nullptr;
};

}  // namespace microseg
