// Audit events in the agent: the rule ids the compiler writes into an Audit
// SegmentPolicy's ALLOW_AUDIT entries resolve back to that policy (rule and
// isolation), and the event log counts, labels and sums up what the data
// path reported.
#include "audit_event_log.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <catch2/catch.hpp>
#include <map>
#include <set>

#include "agent.h"
#include "agent_fixture.h"
#include "metrics.h"
#include "prometheus/metric_type.h"

namespace microseg {
namespace {

using testing::PodRecord;

constexpr uint32_t kServerIp = 0x0af40102u;  // 10.244.1.2, x/server on this node
constexpr uint32_t kClientIp = 0x0af40210u;  // 10.244.2.16, x/client elsewhere

// x/audit-db, Audit: x/server denies TCP 5432 from role=client; being an
// isolating policy, it also would drop every other inbound flow.
SegmentPolicy AuditDb() {
  SegmentPolicy segment;
  segment.enforcement = Enforcement::kAudit;
  NetworkPolicy& policy = segment.policy;
  policy.namespace_name = "x";
  policy.name = "audit-db";
  policy.pod_selector.match_labels = {{"role", "server"}};
  PolicyPeer peer;
  peer.pod_selector = LabelSelector{{{"role", "client"}}, {}};
  PolicyPort port;
  port.port = uint16_t{5432};
  policy.ingress.push_back({{peer}, {port}, RuleAction::kDeny});
  return segment;
}

ClusterState Cluster(bool with_audit_policy) {
  ClusterState cluster;
  cluster.namespaces["x"] = {"x", {}};
  cluster.pods["x/server"] = {"x", "server", {{"role", "server"}}, "node-1", kServerIp, {}};
  cluster.pods["x/client"] = {"x", "client", {{"role", "client"}}, "node-2", kClientIp, {}};
  if (with_audit_policy) cluster.segment_policies["x/audit-db"] = AuditDb();
  return cluster;
}

// The rule ids of every ALLOW_AUDIT entry the agent wrote.
std::set<uint32_t> AuditRuleIds(const MapState& maps) {
  std::set<uint32_t> ids;
  for (const auto& [key, value] : maps.exact) {
    if (value.action == MS_ACTION_ALLOW_AUDIT) ids.insert(value.rule_id);
  }
  for (const auto& [key, value] : maps.lpm) {
    if (value.action == MS_ACTION_ALLOW_AUDIT) ids.insert(value.rule_id);
  }
  return ids;
}

TEST_CASE("the rule ids of an Audit policy's entries resolve to its rule and its isolation", "[agent][audit]") {
  testing::AgentFixture f;
  REQUIRE(f.agent.Start(Cluster(true)).ok());
  auto server = f.agent.AddEndpoint(PodRecord("server", 7, "10.244.1.2"));
  REQUIRE(server.ok());

  const std::set<uint32_t> ids = AuditRuleIds(f.writer.maps);
  REQUIRE(ids.size() == 2);  // the Deny rule (client, 5432) and the isolation (everything else)
  std::set<std::optional<size_t>> rule_indexes;
  for (uint32_t id : ids) {
    const std::vector<RuleOrigin> origins = f.agent.ResolveRuleId(id);
    REQUIRE(origins.size() == 1);
    CHECK(origins[0].kind == PolicyKind::kSegmentPolicy);
    CHECK(origins[0].policy() == "x/audit-db");
    CHECK(origins[0].direction == MS_DIR_INGRESS);
    rule_indexes.insert(origins[0].rule_index);
  }
  CHECK(rule_indexes == std::set<std::optional<size_t>>{std::optional<size_t>(0), std::nullopt});

  // The exact entry for the client on 5432 is the rule's.
  ms_policy_key key{};
  key.endpoint_id = ms_policy_id(server->record.endpoint_id, f.writer.maps.endpoints.at(7).flags);
  key.peer_ipv4 = htonl(kClientIp);
  key.port = 5432;
  key.proto = IPPROTO_TCP;
  key.direction = MS_DIR_INGRESS;
  REQUIRE(f.writer.maps.exact.count(key) == 1);
  const std::vector<RuleOrigin> rule = f.agent.ResolveRuleId(f.writer.maps.exact.at(key).rule_id);
  REQUIRE(rule.size() == 1);
  CHECK(rule[0].Describe() == "SegmentPolicy x/audit-db ingress rule 0");

  CHECK(f.agent.ResolveRuleId(0).empty());
  CHECK(f.agent.EndpointName(server->record.endpoint_id) == "x/server");
  CHECK(f.agent.EndpointName(server->record.endpoint_id + 1).empty());

  // Deleted, the policy's ids no longer resolve (the index follows policy changes).
  REQUIRE(f.agent.SetClusterState(Cluster(false)).ok());
  for (uint32_t id : ids) CHECK(f.agent.ResolveRuleId(id).empty());
}

ms_audit_event Event(uint32_t rule_id, ms_direction direction, uint32_t peer_host_order, uint16_t port) {
  ms_audit_event event{};
  event.endpoint_id = 3;
  event.rule_id = rule_id;
  event.policy_rev = 12;
  event.peer_addr[0] = htonl(peer_host_order);
  event.port = port;
  event.proto = IPPROTO_TCP;
  event.direction = direction;
  event.family = MS_FAMILY_IPV4;
  return event;
}

constexpr uint32_t kRuleA = 101;
constexpr uint32_t kIsolationA = 102;
constexpr uint32_t kSharedId = 103;  // two policies' rules hash to it

AuditEventLog::RuleResolver FixedRules() {
  return [](uint32_t id) -> std::vector<RuleOrigin> {
    const RuleOrigin rule{PolicyKind::kSegmentPolicy, "x", "audit-db", MS_DIR_INGRESS, 0};
    const RuleOrigin isolation{PolicyKind::kSegmentPolicy, "x", "audit-db", MS_DIR_EGRESS, std::nullopt};
    const RuleOrigin other{PolicyKind::kSegmentPolicy, "y", "audit-web", MS_DIR_INGRESS, 1};
    if (id == kRuleA) return {rule};
    if (id == kIsolationA) return {isolation};
    if (id == kSharedId) return {rule, other};
    return {};
  };
}

TEST_CASE("audit events are counted per policy and direction and summed up once per interval",
          "[agent][audit]") {
  AuditEventLog log(FixedRules(), [](uint32_t id) { return id == 3 ? std::string("x/server") : std::string(); });
  log.Record(Event(kRuleA, MS_DIR_INGRESS, kClientIp, 5432));
  log.Record(Event(kRuleA, MS_DIR_INGRESS, kClientIp + 1, 5432));
  log.Record(Event(kIsolationA, MS_DIR_EGRESS, 0x0af40305u, 443));
  log.Record(Event(77, MS_DIR_INGRESS, kClientIp, 80));  // no policy has it (deleted since)
  log.Record(Event(kSharedId, MS_DIR_INGRESS, kClientIp, 80));

  CHECK(log.events() == 5);
  const std::vector<AuditEventLog::Total> totals = log.Totals();
  const std::vector<AuditEventLog::Total> expected = {
      {"ambiguous", MS_DIR_INGRESS, 1},
      {"unknown", MS_DIR_INGRESS, 1},
      {"x/audit-db", MS_DIR_INGRESS, 2},
      {"x/audit-db", MS_DIR_EGRESS, 1},
  };
  CHECK(totals == expected);

  const std::vector<std::string> summary = log.TakeSummary();
  REQUIRE(summary.size() == 4);
  const std::string& ingress = summary[2];
  INFO(ingress);
  CHECK(ingress.find("SegmentPolicy x/audit-db ingress rule 0 would have dropped 2 new ingress flow(s)") !=
        std::string::npos);
  CHECK(ingress.find("x/server from TCP 10.244.2.17 port 5432") != std::string::npos);  // the last one
  CHECK(summary[3].find("SegmentPolicy x/audit-db egress isolation would have dropped 1 new egress flow(s)") !=
        std::string::npos);
  CHECK(summary[3].find("x/server to TCP 10.244.3.5 port 443") != std::string::npos);
  CHECK(summary[1].find("rule id 77") != std::string::npos);
  CHECK(summary[0].find(" or SegmentPolicy y/audit-web ingress rule 1") != std::string::npos);

  // The summary starts over; the totals do not.
  CHECK(log.TakeSummary().empty());
  log.Record(Event(kRuleA, MS_DIR_INGRESS, kClientIp, 5432));
  CHECK(log.TakeSummary().size() == 1);
  CHECK(log.Totals()[2].events == 3);
}

TEST_CASE("IPv6 and port-less audit flows read as they should", "[agent][audit]") {
  ms_audit_event event{};
  event.family = MS_FAMILY_IPV6;
  event.proto = IPPROTO_ICMPV6;
  REQUIRE(inet_pton(AF_INET6, "fd00:10:244:2::20", event.peer_addr) == 1);
  CHECK(DescribeAuditFlow(event) == "ICMPv6 fd00:10:244:2::20");
  event.proto = IPPROTO_UDP;
  event.port = 53;
  CHECK(DescribeAuditFlow(event) == "UDP fd00:10:244:2::20 port 53");
}

TEST_CASE("microseg_policy_audit_events_total carries policy and direction", "[agent][audit][metrics]") {
  AuditEventLog log(FixedRules());
  CHECK(AuditEventsFamily(&log).metric.empty());
  log.Record(Event(kRuleA, MS_DIR_INGRESS, kClientIp, 5432));
  log.Record(Event(kRuleA, MS_DIR_INGRESS, kClientIp, 5432));
  log.Record(Event(kIsolationA, MS_DIR_EGRESS, kClientIp, 5432));

  const prometheus::MetricFamily family = AuditEventsFamily(&log);
  CHECK(family.name == "microseg_policy_audit_events_total");
  CHECK(family.type == prometheus::MetricType::Counter);
  std::map<std::string, double> values;
  for (const auto& metric : family.metric) {
    std::string key;
    for (const auto& label : metric.label) key += label.name + "=" + label.value + ",";
    values[key] = metric.counter.value;
  }
  const std::map<std::string, double> expected = {{"policy=x/audit-db,direction=ingress,", 2.0},
                                                  {"policy=x/audit-db,direction=egress,", 1.0}};
  CHECK(values == expected);
}

}  // namespace
}  // namespace microseg
