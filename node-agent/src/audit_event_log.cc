#include "audit_event_log.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include "absl/strings/str_cat.h"
#include "reason_names.h"

namespace microseg {
namespace {

std::string ProtoName(uint8_t proto) {
  switch (proto) {
    case IPPROTO_TCP: return "TCP";
    case IPPROTO_UDP: return "UDP";
    case IPPROTO_SCTP: return "SCTP";
    case IPPROTO_ICMP: return "ICMP";
    case IPPROTO_ICMPV6: return "ICMPv6";
    default: return absl::StrCat("proto ", proto);
  }
}

std::string PeerText(const ms_audit_event& event) {
  char text[INET6_ADDRSTRLEN] = {};
  const bool v6 = event.family == MS_FAMILY_IPV6;
  if (inet_ntop(v6 ? AF_INET6 : AF_INET, event.peer_addr, text, sizeof text) == nullptr) return "?";
  return text;
}

}  // namespace

std::string DescribeAuditFlow(const ms_audit_event& event) {
  std::string text = absl::StrCat(ProtoName(event.proto), " ", PeerText(event));
  if (event.port != 0) absl::StrAppend(&text, " port ", event.port);
  return text;
}

const AuditEventLog::Resolved& AuditEventLog::ResolveLocked(uint32_t rule_id) {
  if (const auto found = resolved_.find(rule_id); found != resolved_.end()) return found->second;
  Resolved resolved{kUnknownPolicy, absl::StrCat("rule id ", rule_id, " (no current policy has it)")};
  const std::vector<RuleOrigin> origins = resolve_rule_ ? resolve_rule_(rule_id) : std::vector<RuleOrigin>{};
  if (!origins.empty()) {
    resolved.policy = origins.front().policy();
    resolved.describe = origins.front().Describe();
    for (size_t i = 1; i < origins.size(); ++i) {
      if (origins[i].policy() != resolved.policy) resolved.policy = kAmbiguousPolicy;
      absl::StrAppend(&resolved.describe, " or ", origins[i].Describe());
    }
  }
  return resolved_.emplace(rule_id, std::move(resolved)).first->second;
}

void AuditEventLog::Record(const ms_audit_event& event) {
  std::lock_guard<std::mutex> lock(mu_);
  const Resolved& resolved = ResolveLocked(event.rule_id);
  const auto key = std::make_pair(resolved.policy, event.direction);
  ++totals_[key];
  Interval& interval = interval_[key];
  ++interval.events;
  interval.rule = resolved.describe;
  interval.last = event;
  ++events_;
}

std::vector<AuditEventLog::Total> AuditEventLog::Totals() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<Total> out;
  for (const auto& [key, events] : totals_) {
    out.push_back({key.first, static_cast<ms_direction>(key.second), events});
  }
  return out;
}

uint64_t AuditEventLog::events() const {
  std::lock_guard<std::mutex> lock(mu_);
  return events_;
}

std::vector<std::string> AuditEventLog::TakeSummary() {
  std::map<std::pair<std::string, uint8_t>, Interval> interval;
  {
    std::lock_guard<std::mutex> lock(mu_);
    interval.swap(interval_);
    resolved_.clear();
  }
  // Endpoint names come from the agent: asked outside our lock.
  std::vector<std::string> lines;
  for (const auto& [key, seen] : interval) {
    std::string pod = name_endpoint_ ? name_endpoint_(seen.last.endpoint_id) : "";
    if (pod.empty()) pod = absl::StrCat("endpoint ", seen.last.endpoint_id);
    lines.push_back(absl::StrCat("audit: ", seen.rule, " would have dropped ", seen.events, " new ",
                                 std::string(DirectionName(key.second)), " flow(s); last: ", pod, " ",
                                 key.second == MS_DIR_INGRESS ? "from " : "to ", DescribeAuditFlow(seen.last),
                                 " (policy revision ", seen.last.policy_rev, ")"));
  }
  return lines;
}

}  // namespace microseg
