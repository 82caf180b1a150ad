// What the agent makes of the data path's audit events (bpf/audit_events.h,
// docs/policy-model.md "Audit"): each event's rule id is resolved to the
// SegmentPolicy rule that would have dropped the flow, counted per
// (policy, direction) for Prometheus, and summed up for the log: one line
// per policy and direction per summary interval, never a line per flow, so
// an Audit policy on a busy pod cannot flood the log either.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "microseg/datapath.h"
#include "rule_id_index.h"

namespace microseg {

class AuditEventLog {
 public:
  // The rules behind a rule id (Agent::ResolveRuleId); "namespace/pod" of an
  // endpoint id, empty when unknown (Agent::EndpointName).
  using RuleResolver = std::function<std::vector<RuleOrigin>(uint32_t rule_id)>;
  using EndpointNamer = std::function<std::string(uint32_t endpoint_id)>;

  // The `policy` label of events whose rule id no current policy has
  // (deleted since), and of ids two policies share.
  static constexpr const char* kUnknownPolicy = "unknown";
  static constexpr const char* kAmbiguousPolicy = "ambiguous";

  explicit AuditEventLog(RuleResolver resolve_rule, EndpointNamer name_endpoint = {})
      : resolve_rule_(std::move(resolve_rule)), name_endpoint_(std::move(name_endpoint)) {}

  // One event from the ring buffer (the reader's thread).
  void Record(const ms_audit_event& event);

  struct Total {
    std::string policy;  // "namespace/name", or kUnknownPolicy / kAmbiguousPolicy
    ms_direction direction = MS_DIR_INGRESS;
    uint64_t events = 0;
    friend bool operator==(const Total&, const Total&) = default;
  };
  // Events since start per (policy, direction), for the metrics.
  std::vector<Total> Totals() const;
  uint64_t events() const;

  // One line per (policy, direction) with events since the last call, with
  // the rule and one flow of them; empty when there were none. Forgets the
  // resolved rule ids, so a policy created or deleted since is seen.
  std::vector<std::string> TakeSummary();

 private:
  struct Resolved {
    std::string policy;    // the label
    std::string describe;  // the rule, for the log
  };
  struct Interval {
    uint64_t events = 0;
    std::string rule;  // of the last event
    ms_audit_event last{};
  };
  const Resolved& ResolveLocked(uint32_t rule_id);

  const RuleResolver resolve_rule_;
  const EndpointNamer name_endpoint_;
  mutable std::mutex mu_;
  std::unordered_map<uint32_t, Resolved> resolved_;
  std::map<std::pair<std::string, uint8_t>, uint64_t> totals_;
  std::map<std::pair<std::string, uint8_t>, Interval> interval_;
  uint64_t events_ = 0;
};

// "TCP 10.244.2.20 port 80", "ICMPv6 fd00::1": the flow of an event as the log shows it.
std::string DescribeAuditFlow(const ms_audit_event& event);

}  // namespace microseg
