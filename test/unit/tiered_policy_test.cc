// SegmentPolicy / ClusterSegmentPolicy semantics: hand-written scenarios
// (through the real parser) checked against both the naive evaluator and the
// compiled maps, and a property test over thousands of random clusters with
// policies of all three kinds comparing the compiled maps (reference lookup)
// with the naive evaluator, verdict by verdict (allow / deny / allow-audit).
#include <catch2/catch.hpp>
#include <map>

#include "fake_map_writer.h"
#include "ipv4_cidr.h"
#include "ipv6_address.h"
#include "naive_policy_evaluator.h"
#include "policy_compiler.h"
#include "random_cluster.h"
#include "reference_datapath.h"
#include "test_helpers.h"

namespace microseg {
namespace {

using testing::ClusterFromYaml;
using testing::Ip;
using testing::NaiveVerdict;
using testing::NaiveVerdictOf;
using testing::NameOf;
using testing::RandomCluster;
using testing::ReferenceLookup;
using testing::ReferenceVerdict;

constexpr uint8_t kTcp = 6;
constexpr uint8_t kUdp = 17;
constexpr uint8_t kSctp = 132;

NaiveVerdict FromMaps(const ReferenceVerdict& verdict) {
  if (!verdict.allowed()) return NaiveVerdict::kDeny;
  return verdict.audited() ? NaiveVerdict::kAllowAudit : NaiveVerdict::kAllow;
}

// Namespaces prod (env=prod) and dev (env=dev); web and db in prod, client in
// dev, a monitoring pod in prod. "web" serves http on 8080, db on 5432.
const char* const kCluster = R"(
apiVersion: v1
kind: Namespace
metadata: {name: prod, labels: {env: prod}}
---
apiVersion: v1
kind: Namespace
metadata: {name: dev, labels: {env: dev}}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: prod, labels: {app: web}}
spec:
  containers:
  - ports: [{name: http, containerPort: 8080}, {name: sig, containerPort: 9000, protocol: SCTP}]
status: {podIP: 10.244.0.10}
---
apiVersion: v1
kind: Pod
metadata: {name: db, namespace: prod, labels: {app: db}}
spec:
  containers:
  - ports: [{name: http, containerPort: 5432}]
status: {podIP: 10.244.0.11}
---
apiVersion: v1
kind: Pod
metadata: {name: mon, namespace: prod, labels: {app: mon}}
status: {podIP: 10.244.0.12}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: dev, labels: {app: client}}
status: {podIP: 10.244.1.20}
)";

struct Probe {
  const char* endpoint;  // "web" or "db"
  ms_direction direction;
  const char* peer;
  uint8_t proto;
  uint16_t port;
  NaiveVerdict expected;
};

struct Scenario {
  const char* name;
  std::string policies;
  std::vector<Probe> probes;
};

std::string Csp(const std::string& name, int priority, const std::string& body) {
  return "---\napiVersion: microseg.io/v1alpha1\nkind: ClusterSegmentPolicy\nmetadata: {name: " + name +
         "}\nspec:\n  priority: " + std::to_string(priority) + "\n" + body;
}
std::string SegPol(const std::string& name, const std::string& body) {
  return "---\napiVersion: microseg.io/v1alpha1\nkind: SegmentPolicy\nmetadata: {name: " + name +
         ", namespace: prod}\nspec:\n" + body;
}
std::string NetPol(const std::string& name, const std::string& body) {
  return "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: " + name +
         ", namespace: prod}\nspec:\n" + body;
}

constexpr auto kIn = MS_DIR_INGRESS;
constexpr auto kOut = MS_DIR_EGRESS;
constexpr auto kAllow = NaiveVerdict::kAllow;
constexpr auto kDeny = NaiveVerdict::kDeny;
constexpr auto kAudit = NaiveVerdict::kAllowAudit;

TEST_CASE("tiers: scenarios agree with the contract, the naive evaluator and the compiled maps", "[tiers]") {
  const std::vector<Scenario> scenarios = {
      {"cluster Deny beats a namespace Allow",
       Csp("deny-dev", 10, "  subject: {namespaceSelector: {matchLabels: {env: prod}}}\n  ingress:\n"
                           "  - action: Deny\n    from: [{namespaceSelector: {matchLabels: {env: dev}}}]\n") +
           NetPol("allow-all", "  podSelector: {}\n  ingress: [{}]\n"),
       {{"web", kIn, "10.244.1.20", kTcp, 8080, kDeny},
        {"web", kIn, "10.244.0.12", kTcp, 8080, kAllow},
        {"web", kIn, "8.8.8.8", kTcp, 8080, kAllow},
        {"web", kOut, "10.244.1.20", kTcp, 80, kAllow}}},
      {"cluster Deny on a pod that no namespace policy isolates",
       Csp("deny-db-port", 1, "  ingress:\n  - action: Deny\n    ports: [{port: 5432}]\n"),
       {{"db", kIn, "10.244.0.10", kTcp, 5432, kDeny},
        {"db", kIn, "10.244.0.10", kTcp, 5433, kAllow},
        {"db", kIn, "1.2.3.4", kUdp, 5432, kAllow}}},
      {"lower priority number first; ties by name",
       Csp("b-allow", 5, "  ingress:\n  - action: Allow\n    from: [{podSelector: {matchLabels: {app: mon}}}]\n") +
           Csp("a-deny", 5, "  ingress:\n  - action: Deny\n    from: [{podSelector: {}}]\n    ports: [{port: 8080}]\n") +
           Csp("z-first", 1, "  ingress:\n  - action: Allow\n    from: [{ipBlock: {cidr: 10.244.1.0/24}}]\n"),
       {{"web", kIn, "10.244.0.12", kTcp, 8080, kDeny},   // a-deny before b-allow
        {"web", kIn, "10.244.0.12", kTcp, 8081, kAllow},  // b-allow
        {"web", kIn, "10.244.1.20", kTcp, 8080, kAllow},  // z-first, priority 1
        {"web", kIn, "10.244.0.11", kTcp, 8080, kDeny}}},
      {"Pass skips the rest of the cluster tier, the namespace tier decides",
       Csp("pass-mon", 1, "  ingress:\n  - action: Pass\n    from: [{podSelector: {matchLabels: {app: mon}}}]\n") +
           Csp("deny-all", 2, "  ingress:\n  - action: Deny\n") +
           NetPol("only-mon", "  podSelector: {matchLabels: {app: web}}\n  ingress:\n"
                              "  - from: [{podSelector: {matchLabels: {app: mon}}}]\n    ports: [{port: http}]\n"),
       {{"web", kIn, "10.244.0.12", kTcp, 8080, kAllow},  // passed, NetworkPolicy allows (named port)
        {"web", kIn, "10.244.0.12", kTcp, 80, kDeny},     // passed, isolated, no allow
        {"web", kIn, "10.244.0.11", kTcp, 8080, kDeny},   // deny-all
        {"db", kIn, "10.244.0.12", kTcp, 1, kAllow}}},    // passed, db not isolated
      {"SegmentPolicy: Deny wins over Allow in the namespace tier",
       SegPol("deny-client", "  podSelector: {matchLabels: {app: db}}\n  ingress:\n  - action: Deny\n"
                             "    from: [{namespaceSelector: {matchLabels: {env: dev}}}]\n") +
           NetPol("allow-db", "  podSelector: {matchLabels: {app: db}}\n  ingress:\n"
                              "  - from: [{namespaceSelector: {}}]\n"),
       {{"db", kIn, "10.244.1.20", kTcp, 5432, kDeny},
        {"db", kIn, "10.244.0.10", kTcp, 5432, kAllow},
        {"db", kIn, "192.168.0.1", kTcp, 5432, kDeny}}},
      {"Audit: would-be drops are allowed and marked",
       SegPol("audit-db", "  podSelector: {matchLabels: {app: db}}\n  enforcement: Audit\n  ingress:\n"
                          "  - from: [{podSelector: {matchLabels: {app: web}}}]\n    ports: [{port: 5432}]\n"
                          "  - action: Deny\n    from: [{ipBlock: {cidr: 10.244.0.12/32}}]\n"),
       {{"db", kIn, "10.244.0.10", kTcp, 5432, kAllow},
        {"db", kIn, "10.244.0.10", kTcp, 5433, kAudit},
        {"db", kIn, "10.244.0.12", kTcp, 5432, kAudit},
        {"db", kIn, "7.7.7.7", kUdp, 53, kAudit},
        {"db", kOut, "7.7.7.7", kUdp, 53, kAllow},
        {"web", kIn, "7.7.7.7", kUdp, 53, kAllow}}},
      {"Audit on top of an enforced policy: enforced drops stay drops",
       SegPol("audit-web", "  podSelector: {matchLabels: {app: web}}\n  enforcement: Audit\n  egress:\n"
                           "  - action: Deny\n    to: [{ipBlock: {cidr: 10.244.0.0/16, except: [10.244.1.0/24]}}]\n"
                           "  - to: [{ipBlock: {cidr: 0.0.0.0/0}}]\n") +
           NetPol("web-egress", "  podSelector: {matchLabels: {app: web}}\n  policyTypes: [Egress]\n  egress:\n"
                                "  - to: [{namespaceSelector: {}}]\n"),
       {{"web", kOut, "10.244.0.11", kTcp, 5432, kAudit},  // enforced allows, audit denies
        {"web", kOut, "10.244.1.20", kTcp, 80, kAllow},    // both allow
        {"web", kOut, "8.8.8.8", kUdp, 53, kDeny},         // enforced denies
        // The audit policy's defaulted policyTypes include Ingress: it would isolate.
        {"web", kIn, "8.8.8.8", kUdp, 53, kAudit}}},
      {"wide endPort ranges: CSP Pass and Deny, SegmentPolicy Deny over NetworkPolicy Allow, exact ports inside",
       Csp("pass-range", 1, "  ingress:\n  - action: Pass\n    from: [{podSelector: {matchLabels: {app: mon}}}]\n"
                            "    ports: [{port: 20000, endPort: 20999}]\n") +
           Csp("deny-range", 2, "  ingress:\n  - action: Deny\n    ports: [{port: 20000, endPort: 29999}]\n") +
           NetPol("allow-wide", "  podSelector: {matchLabels: {app: web}}\n  ingress:\n"
                                "  - from: [{namespaceSelector: {}}]\n    ports: [{port: 1000, endPort: 40000}]\n"
                                "  - from: [{ipBlock: {cidr: 8.8.0.0/16}}]\n"
                                "    ports: [{port: 1000, endPort: 40000, protocol: UDP}]\n"
                                "  - from: [{ipBlock: {cidr: 10.244.0.12/32}}]\n    ports: [{port: 5500}]\n") +
           SegPol("deny-middle", "  podSelector: {matchLabels: {app: web}}\n  ingress:\n  - action: Deny\n"
                                 "    from: [{podSelector: {matchLabels: {app: mon}}}]\n"
                                 "    ports: [{port: 5000, endPort: 5999}, {port: 7000}]\n") +
           NetPol("db-egress", "  podSelector: {matchLabels: {app: db}}\n  policyTypes: [Egress]\n  egress:\n"
                               "  - to: [{podSelector: {}}]\n    ports: [{port: 1, endPort: 65534}]\n"),
       {{"web", kIn, "10.244.1.20", kTcp, 999, kDeny},
        {"web", kIn, "10.244.1.20", kTcp, 1000, kAllow},
        {"web", kIn, "10.244.1.20", kTcp, 4999, kAllow},
        {"web", kIn, "10.244.1.20", kTcp, 5000, kAllow},  // the Deny is for mon only
        {"web", kIn, "10.244.1.20", kTcp, 19999, kAllow},
        {"web", kIn, "10.244.1.20", kTcp, 20000, kDeny},  // deny-range
        {"web", kIn, "10.244.1.20", kTcp, 20500, kDeny},
        {"web", kIn, "10.244.1.20", kTcp, 29999, kDeny},
        {"web", kIn, "10.244.1.20", kTcp, 30000, kAllow},
        {"web", kIn, "10.244.1.20", kTcp, 40000, kAllow},
        {"web", kIn, "10.244.1.20", kTcp, 40001, kDeny},
        {"web", kIn, "10.244.1.20", kUdp, 20000, kDeny},   // TCP ranges only for pods
        {"web", kIn, "10.244.0.12", kTcp, 4999, kAllow},
        {"web", kIn, "10.244.0.12", kTcp, 5000, kDeny},    // SegmentPolicy Deny over the Allow
        {"web", kIn, "10.244.0.12", kTcp, 5500, kDeny},    // exact Allow inside the Deny range
        {"web", kIn, "10.244.0.12", kTcp, 5999, kDeny},
        {"web", kIn, "10.244.0.12", kTcp, 6000, kAllow},
        {"web", kIn, "10.244.0.12", kTcp, 7000, kDeny},    // exact Deny inside the Allow range
        {"web", kIn, "10.244.0.12", kTcp, 7001, kAllow},
        {"web", kIn, "10.244.0.12", kTcp, 19999, kAllow},
        {"web", kIn, "10.244.0.12", kTcp, 20000, kAllow},  // passed, then allow-wide
        {"web", kIn, "10.244.0.12", kTcp, 20999, kAllow},
        {"web", kIn, "10.244.0.12", kTcp, 21000, kDeny},   // deny-range
        {"web", kIn, "8.8.8.8", kUdp, 999, kDeny},
        {"web", kIn, "8.8.8.8", kUdp, 1000, kAllow},
        {"web", kIn, "8.8.8.8", kUdp, 25000, kAllow},      // deny-range is TCP
        {"web", kIn, "8.8.8.8", kTcp, 25000, kDeny},
        {"web", kIn, "8.8.8.8", kUdp, 40000, kAllow},
        {"web", kIn, "8.8.8.8", kUdp, 40001, kDeny},
        {"web", kIn, "8.9.0.1", kUdp, 1000, kDeny},
        {"db", kIn, "10.244.0.10", kTcp, 25000, kDeny},    // the cluster Deny needs no isolation
        {"db", kIn, "10.244.0.10", kTcp, 30000, kAllow},
        {"db", kOut, "10.244.0.10", kTcp, 1, kAllow},
        {"db", kOut, "10.244.0.10", kTcp, 65534, kAllow},
        {"db", kOut, "10.244.0.10", kTcp, 65535, kDeny},
        {"db", kOut, "8.8.8.8", kTcp, 80, kDeny}}},
      {"egress named port and SCTP endPort resolved per destination pod",
       Csp("allow-sig", 3, "  subject: {podSelector: {matchLabels: {app: client}}}\n  egress:\n"
                           "  - action: Allow\n    to: [{podSelector: {}}]\n    ports: [{port: sig, protocol: SCTP}]\n"
                           "  - action: Deny\n    ports: [{port: 9000, endPort: 9010, protocol: SCTP}]\n"),
       {}},
  };
  for (const Scenario& scenario : scenarios) {
    INFO(scenario.name);
    const ClusterState cluster = ClusterFromYaml(std::string(kCluster) + scenario.policies);
    const std::vector<LocalEndpoint> endpoints = {{1, 10, "prod", "web", Ip("10.244.0.10")},
                                                  {2, 11, "prod", "db", Ip("10.244.0.11")},
                                                  {3, 12, "dev", "client", Ip("10.244.1.20")}};
    const CompiledPolicy compiled = CompilePolicy(cluster, endpoints);
    std::vector<Probe> probes = scenario.probes;
    if (probes.empty()) {
      probes = {{"client", kOut, "10.244.0.10", kSctp, 9000, kAllow},  // sig on web
                {"client", kOut, "10.244.0.11", kSctp, 9000, kDeny},   // db has no sig
                {"client", kOut, "10.244.0.10", kSctp, 9010, kDeny},
                {"client", kOut, "10.244.0.10", kSctp, 9011, kAllow},
                {"client", kOut, "10.244.0.10", kTcp, 9000, kAllow}};
    }
    for (const Probe& probe : probes) {
      const LocalEndpoint& endpoint = *std::find_if(endpoints.begin(), endpoints.end(), [&](const LocalEndpoint& e) {
        return e.pod_name == probe.endpoint;
      });
      INFO(probe.endpoint << (probe.direction == kIn ? " from " : " to ") << probe.peer << " proto "
                          << int(probe.proto) << " port " << probe.port << " expected " << NameOf(probe.expected));
      CHECK(NaiveVerdictOf(cluster, endpoints, endpoint, probe.direction, Ip(probe.peer), probe.proto, probe.port) ==
            probe.expected);
      CHECK(FromMaps(ReferenceLookup(compiled.maps, endpoint.ifindex, probe.direction, Ip(probe.peer), probe.proto,
                                     probe.port)) == probe.expected);
    }
  }
}

TEST_CASE("tiers: summaries and flags name every tier's policies", "[tiers]") {
  const ClusterState cluster = ClusterFromYaml(
      std::string(kCluster) + Csp("deny-dev", 1, "  ingress:\n  - action: Deny\n") +
      SegPol("audit", "  podSelector: {}\n  enforcement: Audit\n  egress: [{}]\n"));
  const CompiledPolicy compiled = CompilePolicy(cluster, {{1, 10, "prod", "web", Ip("10.244.0.10")}});
  const EndpointPolicySummary& summary = compiled.summaries.at(1);
  CHECK(summary.policies == std::vector<std::string>{"ClusterSegmentPolicy deny-dev", "SegmentPolicy prod/audit"});
  CHECK_FALSE(summary.ingress_isolated);
  CHECK_FALSE(summary.egress_isolated);  // Audit never isolates for real
  const uint8_t flags = compiled.maps.endpoints.at(10).flags;
  CHECK(flags == (MS_EP_F_INGRESS_LOOKUP | MS_EP_F_EGRESS_LOOKUP));
  // What cannot be judged (later fragments, other L3) is dropped where the
  // cluster Deny is; the Audit policy allows all egress, so nothing there
  // would be dropped either (datapath.h, lookup_actions).
  CHECK(compiled.maps.endpoints.at(10).lookup_actions == MS_EP_LOOKUP_DENIES(MS_DIR_INGRESS));
}

TEST_CASE("tiers: an Audit policy that would drop marks its direction audit, not deny", "[tiers]") {
  const ClusterState cluster = ClusterFromYaml(
      std::string(kCluster) +
      SegPol("audit", "  podSelector: {}\n  enforcement: Audit\n  policyTypes: [Egress]\n"));
  const CompiledPolicy compiled = CompilePolicy(cluster, {{1, 10, "prod", "web", Ip("10.244.0.10")}});
  CHECK(compiled.maps.endpoints.at(10).flags == MS_EP_F_EGRESS_LOOKUP);
  CHECK(compiled.maps.endpoints.at(10).lookup_actions == MS_EP_LOOKUP_AUDITS(MS_DIR_EGRESS));
}

TEST_CASE("tiers: random clusters of all three kinds agree with the naive evaluator", "[tiers][random]") {
  constexpr int kClusters = 2000;
  const auto probe_ports = RandomCluster::TieredProbePorts();
  int checked = 0;
  std::map<NaiveVerdict, int> verdicts;
  std::map<testing::Decision, int> decisions;
  for (uint32_t seed = 1; seed <= kClusters; ++seed) {
    RandomCluster generator(seed, /*tiers=*/true);
    ClusterState cluster;
    std::vector<LocalEndpoint> endpoints;
    generator.Build(cluster, endpoints);
    const CompiledPolicy compiled = CompilePolicy(cluster, endpoints);
    const std::vector<uint32_t> addresses = generator.ProbeAddresses(cluster, endpoints);
    for (const LocalEndpoint& endpoint : endpoints) {
      for (uint32_t peer : addresses) {
        for (ms_direction direction : {MS_DIR_INGRESS, MS_DIR_EGRESS}) {
          for (const auto& [proto, port] : probe_ports) {
            const NaiveVerdict expected = NaiveVerdictOf(cluster, endpoints, endpoint, direction, peer, proto, port);
            const ReferenceVerdict actual = ReferenceLookup(compiled.maps, endpoint.ifindex, direction, peer, proto, port);
            if (FromMaps(actual) != expected) {
              FAIL("seed " << seed << " (RandomCluster(seed, tiers=true)): endpoint " << endpoint.pod_namespace << "/"
                           << endpoint.pod_name << (direction == MS_DIR_INGRESS ? " ingress from " : " egress to ")
                           << FormatIpv4(peer) << " proto " << int(proto) << " port " << port << ": naive says "
                           << NameOf(expected) << ", maps say " << NameOf(FromMaps(actual)));
            }
            ++checked;
            ++verdicts[expected];
            ++decisions[actual.decision];
          }
        }
      }
    }
  }
  INFO("checked " << checked << ": allow " << verdicts[NaiveVerdict::kAllow] << ", deny "
                  << verdicts[NaiveVerdict::kDeny] << ", audit " << verdicts[NaiveVerdict::kAllowAudit]);
  CHECK(checked > 500000);
  // Every verdict, and every way the maps reach one, is exercised a lot.
  for (NaiveVerdict verdict : {NaiveVerdict::kAllow, NaiveVerdict::kDeny, NaiveVerdict::kAllowAudit}) {
    CHECK(verdicts[verdict] > checked / 50);
  }
  for (auto decision : {testing::Decision::kAllowNotIsolated, testing::Decision::kAllowExact,
                        testing::Decision::kAllowLpm, testing::Decision::kDenyLpm, testing::Decision::kDenyNoMatch,
                        testing::Decision::kDenyExact, testing::Decision::kAuditExact, testing::Decision::kAuditLpm}) {
    INFO("decision " << static_cast<int>(decision) << " seen " << decisions[decision] << " times");
    CHECK(decisions[decision] > 1000);
  }
}

// Both families at once: IPv4 and IPv6 ipBlocks never match the other
// family's addresses, rules without peers cover both, pods are dual-stack or
// single-stack; every pair is checked on the IPv4 and the IPv6 maps.
TEST_CASE("tiers: dual-stack random clusters agree with the naive evaluator for both families",
          "[tiers][random][ipv6]") {
  constexpr int kClusters = 1500;
  const auto probe_ports = RandomCluster::TieredProbePorts();
  int checked6 = 0;
  int checked4 = 0;
  std::map<NaiveVerdict, int> verdicts6;
  std::map<testing::Decision, int> decisions6;
  for (uint32_t seed = 1; seed <= kClusters; ++seed) {
    RandomCluster generator(seed, /*tiers=*/true, /*ipv6=*/true);
    ClusterState cluster;
    std::vector<LocalEndpoint> endpoints;
    generator.Build(cluster, endpoints);
    const CompiledPolicy compiled = CompilePolicy(cluster, endpoints);
    const std::vector<uint32_t> addresses = generator.ProbeAddresses(cluster, endpoints);
    const std::vector<Ipv6Address> addresses6 = generator.ProbeAddresses6(cluster, endpoints);
    for (const LocalEndpoint& endpoint : endpoints) {
      for (ms_direction direction : {MS_DIR_INGRESS, MS_DIR_EGRESS}) {
        for (const auto& [proto, port] : probe_ports) {
          for (const Ipv6Address& peer : addresses6) {
            const NaiveVerdict expected = NaiveVerdictOf(cluster, endpoints, endpoint, direction, peer, proto, port);
            const ReferenceVerdict actual = ReferenceLookup(compiled.maps, endpoint.ifindex, direction, peer, proto, port);
            if (FromMaps(actual) != expected) {
              FAIL("seed " << seed << " (RandomCluster(seed, tiers=true, ipv6=true)): endpoint "
                           << endpoint.pod_namespace << "/" << endpoint.pod_name
                           << (direction == MS_DIR_INGRESS ? " ingress from " : " egress to ") << FormatIpv6(peer)
                           << " proto " << int(proto) << " port " << port << ": naive says " << NameOf(expected)
                           << ", maps say " << NameOf(FromMaps(actual)));
            }
            ++checked6;
            ++verdicts6[expected];
            ++decisions6[actual.decision];
          }
          for (uint32_t peer : addresses) {
            const NaiveVerdict expected = NaiveVerdictOf(cluster, endpoints, endpoint, direction, peer, proto, port);
            const ReferenceVerdict actual = ReferenceLookup(compiled.maps, endpoint.ifindex, direction, peer, proto, port);
            if (FromMaps(actual) != expected) {
              FAIL("seed " << seed << " (RandomCluster(seed, tiers=true, ipv6=true)): endpoint "
                           << endpoint.pod_namespace << "/" << endpoint.pod_name
                           << (direction == MS_DIR_INGRESS ? " ingress from " : " egress to ") << FormatIpv4(peer)
                           << " proto " << int(proto) << " port " << port << ": naive says " << NameOf(expected)
                           << ", maps say " << NameOf(FromMaps(actual)));
            }
            ++checked4;
          }
        }
      }
    }
  }
  INFO("checked " << checked6 << " IPv6 and " << checked4 << " IPv4 probes: IPv6 allow " << verdicts6[NaiveVerdict::kAllow]
                  << ", deny " << verdicts6[NaiveVerdict::kDeny] << ", audit " << verdicts6[NaiveVerdict::kAllowAudit]);
  CHECK(checked6 > 300000);
  CHECK(checked4 > 300000);
  for (NaiveVerdict verdict : {NaiveVerdict::kAllow, NaiveVerdict::kDeny, NaiveVerdict::kAllowAudit}) {
    CHECK(verdicts6[verdict] > checked6 / 50);
  }
  // Every way the IPv6 maps reach a verdict is exercised.
  for (auto decision : {testing::Decision::kAllowNotIsolated, testing::Decision::kAllowExact,
                        testing::Decision::kAllowLpm, testing::Decision::kDenyLpm, testing::Decision::kDenyNoMatch,
                        testing::Decision::kDenyExact, testing::Decision::kAuditExact, testing::Decision::kAuditLpm}) {
    INFO("IPv6 decision " << static_cast<int>(decision) << " seen " << decisions6[decision] << " times");
    CHECK(decisions6[decision] > 500);
  }
}

}  // namespace
}  // namespace microseg
