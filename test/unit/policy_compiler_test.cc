#include <arpa/inet.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <set>

#include "ipv6_address.h"
#include "policy_compiler.h"
#include "reference_datapath.h"
#include "rule_id.h"
#include "test_helpers.h"

namespace microseg {
namespace {

using testing::ClusterFromYaml;
using testing::Decision;
using testing::Ip;
using testing::ReferenceLookup;

constexpr uint8_t kTcp = 6;
constexpr uint8_t kUdp = 17;
constexpr uint8_t kIcmp = 1;

// Namespaces a (team=red) and b (team=blue); pods in both with IPs.
const char* const kCluster = R"(
apiVersion: v1
kind: Namespace
metadata: {name: a, labels: {team: red}}
---
apiVersion: v1
kind: Namespace
metadata: {name: b, labels: {team: blue}}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: a, labels: {app: web}}
spec:
  containers:
  - ports: [{name: http, containerPort: 8080}, {name: dns, containerPort: 5353, protocol: UDP}]
status: {podIP: 10.244.0.10}
---
apiVersion: v1
kind: Pod
metadata: {name: db, namespace: a, labels: {app: db}}
spec:
  containers:
  - ports: [{name: http, containerPort: 9090}]
status: {podIP: 10.244.0.11}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: a, labels: {role: client}}
status: {podIP: 10.244.0.12}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: b, labels: {role: client}}
status: {podIP: 10.244.1.12}
---
apiVersion: v1
kind: Pod
metadata: {name: other, namespace: b, labels: {role: other}}
status: {podIP: 10.244.1.13}
---
apiVersion: v1
kind: Pod
metadata: {name: pending, namespace: b, labels: {role: client}}
)";

ClusterState ClusterWith(const std::string& policies) { return ClusterFromYaml(std::string(kCluster) + policies); }

// Local endpoints: web (ifindex 10) and db (ifindex 11) of namespace a.
std::vector<LocalEndpoint> WebAndDb() {
  return {{1, 10, "a", "web", Ip("10.244.0.10")}, {2, 11, "a", "db", Ip("10.244.0.11")}};
}

bool Allows(const CompiledPolicy& compiled, uint32_t ifindex, ms_direction direction, const char* peer,
            uint8_t proto, uint16_t port) {
  return ReferenceLookup(compiled.maps, ifindex, direction, Ip(peer), proto, port).allowed();
}

// Every hint bit must name a shape without an entry (a wrong bit skips a
// lookup that would have decided), and a shape with an entry never gets one.
void CheckLpmHints(const CompiledPolicy& compiled) {
  for (const auto& [ifindex, endpoint] : compiled.maps.endpoints) {
    uint8_t present = 0, present6 = 0;
    for (const auto& [key, value] : compiled.maps.lpm) {
      if (key.endpoint_id != endpoint.endpoint_id) continue;
      if ((key.direction & (MS_DIR_F_PORT_INTERVAL | MS_DIR_F_PORT_LOOKUP)) != 0) continue;
      present |= ms_lpm_shape_bit(key.direction, key.proto, key.port);
    }
    for (const auto& [key, value] : compiled.maps.lpm6) {
      if (key.endpoint_id != endpoint.endpoint_id) continue;
      if ((key.direction & MS_DIR_F_PORT_INTERVAL) != 0) continue;
      present6 |= ms_lpm_shape_bit(key.direction, key.proto, key.port);
    }
    INFO("endpoint " << endpoint.endpoint_id);
    CHECK(endpoint.lpm_absent == (MS_EP_LPM_ABSENT_ALL & ~present));
    CHECK(endpoint.lpm6_absent == (MS_EP_LPM_ABSENT_ALL & ~present6));
  }
}

TEST_CASE("lpm_absent names the LPM key shapes a direction has no entry of", "[compiler]") {
  // web: ingress from a CIDR on TCP 8080 only ((proto, port) keys); egress
  // to a CIDR on every protocol and port ((any, any) keys), IPv6 too.
  const ClusterState cluster = ClusterWith(R"(
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web, namespace: a}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Ingress, Egress]
  ingress:
  - from: [{ipBlock: {cidr: 192.168.0.0/16}}]
    ports: [{port: 8080}]
  egress:
  - to: [{ipBlock: {cidr: 172.16.0.0/12}}, {ipBlock: {cidr: "fd00:99::/32"}}]
)");
  const CompiledPolicy compiled = CompilePolicy(cluster, WebAndDb());
  const ms_endpoint& web = compiled.maps.endpoints.at(10);
  CHECK(web.lpm_absent == (MS_EP_LPM_ABSENT_PROTO(MS_DIR_INGRESS) | MS_EP_LPM_ABSENT_ANY(MS_DIR_INGRESS) |
                           MS_EP_LPM_ABSENT_PORT(MS_DIR_EGRESS) | MS_EP_LPM_ABSENT_PROTO(MS_DIR_EGRESS)));
  CHECK(web.lpm6_absent == (MS_EP_LPM_ABSENT_ALL & ~MS_EP_LPM_ABSENT_ANY(MS_DIR_EGRESS)));
  CheckLpmHints(compiled);
  // db: nothing selects it, no LPM entry at all.
  CHECK(compiled.maps.endpoints.at(11).lpm_absent == MS_EP_LPM_ABSENT_ALL);
  CHECK(compiled.maps.endpoints.at(11).lpm6_absent == MS_EP_LPM_ABSENT_ALL);
}

TEST_CASE("lpm_absent: port-interval keys name no shape, the standard ones beside them do", "[compiler]") {
  // A CIDR with an endPort range only: its LPM keys are interval keys (and
  // the port -> interval lookups), no standard shape.
  const ClusterState cluster = ClusterWith(R"(
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web, namespace: a}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Ingress]
  ingress:
  - from: [{ipBlock: {cidr: 192.168.0.0/16}}]
    ports: [{port: 1000, endPort: 2000}]
  - from: [{ipBlock: {cidr: 10.0.0.0/8}}]
    ports: [{port: 53, protocol: UDP}]
)");
  const CompiledPolicy compiled = CompilePolicy(cluster, WebAndDb());
  const ms_endpoint& web = compiled.maps.endpoints.at(10);
  REQUIRE((web.flags & MS_EP_F_PORT_RANGES) != 0);
  CHECK((web.lpm_absent & MS_EP_LPM_ABSENT_PORT(MS_DIR_INGRESS)) == 0);  // UDP 53
  CHECK((web.lpm_absent & MS_EP_LPM_ABSENT_PROTO(MS_DIR_INGRESS)) != 0);
  CHECK((web.lpm_absent & MS_EP_LPM_ABSENT_ANY(MS_DIR_INGRESS)) != 0);
  CheckLpmHints(compiled);
  // The verdicts the hints let the data path skip to: the range still allows.
  CHECK(Allows(compiled, 10, MS_DIR_INGRESS, "192.168.1.1", kTcp, 1500));
  CHECK(Allows(compiled, 10, MS_DIR_INGRESS, "10.1.1.1", kUdp, 53));
  CHECK_FALSE(Allows(compiled, 10, MS_DIR_INGRESS, "10.1.1.1", kUdp, 54));
}

TEST_CASE("endpoint flags follow the policies that select the pod", "[compiler]") {
  const ClusterState cluster = ClusterWith(R"(
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-ingress, namespace: a}
spec:
  podSelector: {matchLabels: {app: web}}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-egress, namespace: a}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Egress]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: other-namespace, namespace: b}
spec:
  podSelector: {}
  policyTypes: [Ingress, Egress]
)");
  std::vector<LocalEndpoint> endpoints = WebAndDb();
  const CompiledPolicy compiled = CompilePolicy(cluster, endpoints);

  const ms_endpoint& web = compiled.maps.endpoints.at(10);
  CHECK(web.endpoint_id == 1);
  CHECK(web.ipv4 == htonl(Ip("10.244.0.10")));
  CHECK(web.flags == (MS_EP_F_INGRESS_ISOLATED | MS_EP_F_EGRESS_ISOLATED));
  CHECK(web.policy_rev == 0);
  CHECK(compiled.maps.endpoints.at(11).flags == 0);  // b's policy does not reach a's pods

  const EndpointPolicySummary& summary = compiled.summaries.at(1);
  CHECK(summary.ingress_isolated);
  CHECK(summary.egress_isolated);
  CHECK(summary.policies == std::vector<std::string>{"a/web-egress", "a/web-ingress"});
  CHECK_FALSE(compiled.summaries.at(2).ingress_isolated);
  CHECK(compiled.summaries.at(2).policies.empty());

  // Isolated with no rules: everything denied; db not isolated: everything allowed.
  CHECK_FALSE(Allows(compiled, 10, MS_DIR_INGRESS, "10.244.0.12", kTcp, 80));
  CHECK_FALSE(Allows(compiled, 10, MS_DIR_EGRESS, "10.244.0.12", kTcp, 80));
  CHECK(ReferenceLookup(compiled.maps, 11, MS_DIR_INGRESS, Ip("10.244.0.12"), kTcp, 80).decision ==
        Decision::kAllowNotIsolated);
  CHECK(compiled.maps.exact.empty());
  CHECK(compiled.maps.lpm.empty());
}

TEST_CASE("podSelector, namespaceSelector and both select the right peers", "[compiler]") {
  const ClusterState cluster = ClusterWith(R"(
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: a}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - from: [{podSelector: {matchLabels: {role: client}}}]
    ports: [{port: 80}]
  - from: [{namespaceSelector: {matchLabels: {team: blue}}}]
    ports: [{port: 81}]
  - from: [{namespaceSelector: {matchLabels: {team: blue}}, podSelector: {matchLabels: {role: client}}}]
    ports: [{port: 82}]
  - from: [{namespaceSelector: {}}]
    ports: [{port: 83}]
)");
  const CompiledPolicy compiled = CompilePolicy(cluster, WebAndDb());
  struct Case {
    const char* peer;
    uint16_t port;
    bool allowed;
  };
  const std::vector<Case> cases = {
      // podSelector alone: role=client in the policy's namespace only
      {"10.244.0.12", 80, true},
      {"10.244.1.12", 80, false},
      {"10.244.0.11", 80, false},
      // namespaceSelector alone: every pod of b
      {"10.244.1.12", 81, true},
      {"10.244.1.13", 81, true},
      {"10.244.0.12", 81, false},
      // both: role=client pods of b
      {"10.244.1.12", 82, true},
      {"10.244.1.13", 82, false},
      {"10.244.0.12", 82, false},
      // empty namespaceSelector: every pod anywhere, the endpoint itself included
      {"10.244.0.12", 83, true},
      {"10.244.1.13", 83, true},
      {"10.244.0.10", 83, true},
      {"10.9.9.9", 83, false},  // not a pod
  };
  for (const Case& c : cases) {
    INFO(c.peer << " port " << c.port);
    CHECK(Allows(compiled, 10, MS_DIR_INGRESS, c.peer, kTcp, c.port) == c.allowed);
  }
  CHECK_FALSE(Allows(compiled, 10, MS_DIR_INGRESS, "10.244.0.12", kUdp, 80));  // protocol matters
  // Selector peers become exact entries only, one per pod address and port.
  CHECK(compiled.maps.lpm.empty());
  CHECK(compiled.summaries.at(1).exact_entries == 1 + 2 + 1 + 5);
  CHECK(compiled.maps.exact.size() == 9);
}

TEST_CASE("the implicit kubernetes.io/metadata.name label selects namespaces", "[compiler]") {
  const ClusterState cluster = ClusterWith(R"(
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: a}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: b}}}]
)");
  // ns "c" has no Namespace object: it still carries the implicit label.
  std::vector<LocalEndpoint> endpoints = WebAndDb();
  endpoints.push_back({3, 12, "c", "lonely", Ip("10.244.2.2")});
  const CompiledPolicy compiled = CompilePolicy(cluster, endpoints);
  CHECK(Allows(compiled, 10, MS_DIR_INGRESS, "10.244.1.13", kTcp, 1));
  CHECK_FALSE(Allows(compiled, 10, MS_DIR_INGRESS, "10.244.0.12", kTcp, 1));
  CHECK_FALSE(Allows(compiled, 10, MS_DIR_INGRESS, "10.244.2.2", kTcp, 1));
}

TEST_CASE("ipBlock with except gives union semantics through the LPM lookup order", "[compiler]") {
  const ClusterState cluster = ClusterWith(R"(
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: a}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Egress]
  egress:
  - to: [{ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.0/16, 10.2.0.0/16]}}]
  - to: [{ipBlock: {cidr: 10.1.2.0/24}}]
    ports: [{port: 443}]
  - to: [{ipBlock: {cidr: 192.168.0.0/16, except: [192.168.1.0/24]}}]
    ports: [{protocol: UDP}]
  - to: [{podSelector: {matchLabels: {role: client}}}]
    ports: [{port: 22}]
)");
  const CompiledPolicy compiled = CompilePolicy(cluster, WebAndDb());
  struct Case {
    const char* peer;
    uint8_t proto;
    uint16_t port;
    bool allowed;
  };
  const std::vector<Case> cases = {
      {"10.5.0.1", kTcp, 80, true},       // in 10/8
      {"10.5.0.1", kIcmp, 0, true},       // any protocol
      {"10.1.0.1", kTcp, 80, false},      // except
      {"10.1.2.3", kTcp, 80, false},      // except, and the /24 rule is port 443 only
      {"10.1.2.3", kTcp, 443, true},      // a second rule re-allows inside the except
      {"10.1.3.3", kTcp, 443, false},     // outside that /24: still excepted
      {"10.2.2.3", kTcp, 443, false},     // the other except
      {"10.5.0.1", kTcp, 443, true},      // port class inherits the any-port allow of 10/8
      {"11.0.0.1", kTcp, 80, false},      // outside every block
      {"192.168.5.5", kUdp, 53, true},    // UDP any port
      {"192.168.5.5", kTcp, 53, false},   // not TCP
      {"192.168.1.5", kUdp, 53, false},   // except
      {"10.244.0.12", kTcp, 22, true},    // exact (10/8 allows anyway)
      {"10.244.0.12", kTcp, 23, true},    // 10/8 allows every port
  };
  for (const Case& c : cases) {
    INFO(c.peer << " proto " << int(c.proto) << " port " << c.port);
    CHECK(Allows(compiled, 10, MS_DIR_EGRESS, c.peer, c.proto, c.port) == c.allowed);
  }
  // Ingress of web is not isolated by an Egress-only policy.
  CHECK(ReferenceLookup(compiled.maps, 10, MS_DIR_INGRESS, Ip("1.2.3.4"), kTcp, 1).decision ==
        Decision::kAllowNotIsolated);
}

TEST_CASE("an exact allow is not overridden by another rule's except", "[compiler]") {
  const ClusterState cluster = ClusterWith(R"(
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: a}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - from: [{ipBlock: {cidr: 10.244.0.0/16, except: [10.244.0.0/24]}}]
  - from: [{podSelector: {matchLabels: {role: client}}}]
)");
  const CompiledPolicy compiled = CompilePolicy(cluster, WebAndDb());
  CHECK(ReferenceLookup(compiled.maps, 10, MS_DIR_INGRESS, Ip("10.244.0.12"), kTcp, 80).decision ==
        Decision::kAllowExact);
  CHECK(ReferenceLookup(compiled.maps, 10, MS_DIR_INGRESS, Ip("10.244.0.11"), kTcp, 80).decision ==
        Decision::kDenyLpm);
  CHECK(ReferenceLookup(compiled.maps, 10, MS_DIR_INGRESS, Ip("10.244.1.13"), kTcp, 80).decision ==
        Decision::kAllowLpm);
}

TEST_CASE("a rule without peers allows every peer; without ports every port", "[compiler]") {
  const ClusterState cluster = ClusterWith(R"(
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: a}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
  - ports: [{port: 5432}]
  egress:
  - {}
)");
  const CompiledPolicy compiled = CompilePolicy(cluster, WebAndDb());
  CHECK(Allows(compiled, 11, MS_DIR_INGRESS, "8.8.8.8", kTcp, 5432));
  CHECK_FALSE(Allows(compiled, 11, MS_DIR_INGRESS, "8.8.8.8", kTcp, 5433));
  CHECK_FALSE(Allows(compiled, 11, MS_DIR_INGRESS, "8.8.8.8", kUdp, 5432));
  CHECK(Allows(compiled, 11, MS_DIR_EGRESS, "8.8.8.8", kIcmp, 0));
  CHECK(Allows(compiled, 11, MS_DIR_EGRESS, "10.244.1.13", kUdp, 53));

  ms_lpm_key any_peer_any_port{};
  any_peer_any_port.prefixlen = MS_LPM_FIXED_BITS;
  any_peer_any_port.endpoint_id = 2;
  any_peer_any_port.direction = MS_DIR_EGRESS;
  const ms_policy_value& value = compiled.maps.lpm.at(any_peer_any_port);
  CHECK(value.action == MS_ACTION_ALLOW);
  CHECK(value.rule_id == PolicyRuleId("a", "p", MS_DIR_EGRESS, 0));
  // "Every peer" is 0.0.0.0/0 and ::/0: one entry per family and rule class.
  ms_lpm6_key any_peer6{};
  any_peer6.prefixlen = MS_LPM_FIXED_BITS;
  any_peer6.endpoint_id = 2;
  any_peer6.direction = MS_DIR_EGRESS;
  REQUIRE(compiled.maps.lpm6.count(any_peer6) == 1);
  CHECK(compiled.maps.lpm6.at(any_peer6).action == MS_ACTION_ALLOW);
  CHECK(compiled.summaries.at(2).lpm_entries == 4);
}

TEST_CASE("named ports resolve on the local pod for ingress and per peer pod for egress", "[compiler]") {
  const ClusterState cluster = ClusterWith(R"(
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: a}
spec:
  podSelector: {}
  policyTypes: [Ingress, Egress]
  ingress:
  - from: [{ipBlock: {cidr: 0.0.0.0/0}}]
    ports: [{port: http}, {protocol: UDP, port: dns}, {port: missing}]
  egress:
  - to: [{podSelector: {}}]
    ports: [{port: http}]
  - to: [{ipBlock: {cidr: 10.244.0.0/24, except: [10.244.0.11/32]}}]
    ports: [{protocol: UDP, port: dns}]
)");
  const CompiledPolicy compiled = CompilePolicy(cluster, WebAndDb());
  // Ingress: web's http is 8080, db's is 9090; dns only exists on web.
  CHECK(Allows(compiled, 10, MS_DIR_INGRESS, "1.2.3.4", kTcp, 8080));
  CHECK_FALSE(Allows(compiled, 10, MS_DIR_INGRESS, "1.2.3.4", kTcp, 9090));
  CHECK(Allows(compiled, 10, MS_DIR_INGRESS, "1.2.3.4", kUdp, 5353));
  CHECK(Allows(compiled, 11, MS_DIR_INGRESS, "1.2.3.4", kTcp, 9090));
  CHECK_FALSE(Allows(compiled, 11, MS_DIR_INGRESS, "1.2.3.4", kTcp, 8080));
  CHECK_FALSE(Allows(compiled, 11, MS_DIR_INGRESS, "1.2.3.4", kUdp, 5353));
  // Egress: "http" is 8080 at web and 9090 at db; client has no such port.
  CHECK(Allows(compiled, 11, MS_DIR_EGRESS, "10.244.0.10", kTcp, 8080));
  CHECK_FALSE(Allows(compiled, 11, MS_DIR_EGRESS, "10.244.0.10", kTcp, 9090));
  CHECK(Allows(compiled, 10, MS_DIR_EGRESS, "10.244.0.11", kTcp, 9090));
  CHECK_FALSE(Allows(compiled, 10, MS_DIR_EGRESS, "10.244.0.12", kTcp, 8080));
  // Egress named port through an ipBlock: resolved for known pods inside the
  // block (web has dns), never for an excepted pod or a non-pod address.
  CHECK(Allows(compiled, 11, MS_DIR_EGRESS, "10.244.0.10", kUdp, 5353));
  CHECK_FALSE(Allows(compiled, 10, MS_DIR_EGRESS, "10.244.0.13", kUdp, 5353));
  // No LPM entries at all for egress: named ports cannot live in the trie.
  for (const auto& [key, value] : compiled.maps.lpm) CHECK(key.direction == MS_DIR_INGRESS);
}

TEST_CASE("an endPort range of any width costs one entry per peer plus its port prefixes", "[compiler][port-ranges]") {
  const ClusterState cluster = ClusterWith(R"(
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: a}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - from: [{podSelector: {matchLabels: {role: client}}}, {ipBlock: {cidr: 192.168.0.0/16}}]
    ports: [{port: 8000, endPort: 60000}]
)");
  const CompiledPolicy compiled = CompilePolicy(cluster, WebAndDb());
  CHECK(compiled.maps.exact.size() == 1);  // a/client: (tcp, interval 8000-60000)
  const auto& [exact_key, exact_value] = *compiled.maps.exact.begin();
  CHECK(exact_key.direction == (MS_DIR_INGRESS | MS_DIR_F_PORT_INTERVAL));
  CHECK(exact_key.port == 8000);
  CHECK(exact_value.action == MS_ACTION_ALLOW);
  // One verdict for the /16 and the interval's 11 aligned port prefixes.
  size_t lookups = 0;
  for (const auto& [key, value] : compiled.maps.lpm) {
    if ((key.direction & MS_DIR_F_PORT_LOOKUP) == 0) continue;
    ++lookups;
    CHECK(key.prefixlen <= MS_PORT_LOOKUP_FIXED_BITS + 16);
    CHECK(value.action == MS_ACTION_PORT_INTERVAL);
    CHECK(value.rule_id == 8000);
  }
  CHECK(lookups == 11);
  CHECK(compiled.maps.lpm.size() == 12);
  CHECK(compiled.summaries.at(1).lpm_entries == 12);
  CHECK((compiled.maps.endpoints.at(10).flags & MS_EP_F_PORT_RANGES) != 0);
  CHECK((compiled.maps.endpoints.at(11).flags & MS_EP_F_PORT_RANGES) == 0);  // db: no policy
  for (const char* peer : {"10.244.0.12", "192.168.3.4"}) {
    INFO(peer);
    CHECK_FALSE(Allows(compiled, 10, MS_DIR_INGRESS, peer, kTcp, 7999));
    CHECK(Allows(compiled, 10, MS_DIR_INGRESS, peer, kTcp, 8000));
    CHECK(Allows(compiled, 10, MS_DIR_INGRESS, peer, kTcp, 32768));
    CHECK(Allows(compiled, 10, MS_DIR_INGRESS, peer, kTcp, 60000));
    CHECK_FALSE(Allows(compiled, 10, MS_DIR_INGRESS, peer, kTcp, 60001));
    CHECK_FALSE(Allows(compiled, 10, MS_DIR_INGRESS, peer, kUdp, 8000));
  }
  CHECK_FALSE(Allows(compiled, 10, MS_DIR_INGRESS, "10.244.1.13", kTcp, 8000));  // not a peer
}

TEST_CASE("overlapping ranges and exact ports are cut into intervals; a one-port range is an exact port",
          "[compiler][port-ranges]") {
  const ClusterState cluster = ClusterWith(R"(
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: a}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - from: [{podSelector: {matchLabels: {role: client}}}]
    ports: [{port: 1000, endPort: 2000}, {port: 1500, endPort: 3000}, {port: 1700}, {port: 443, endPort: 443}]
  - from: [{namespaceSelector: {}}]
    ports: [{port: 1800, endPort: 1900}]
)");
  const CompiledPolicy compiled = CompilePolicy(cluster, WebAndDb());
  // Intervals 1000-1499, 1500-1799, 1800-1900, 1901-2000, 2001-3000.
  std::set<uint16_t> firsts;
  for (const auto& [key, value] : compiled.maps.lpm) {
    if ((key.direction & MS_DIR_F_PORT_LOOKUP) != 0) firsts.insert(static_cast<uint16_t>(value.rule_id));
  }
  CHECK(firsts == std::set<uint16_t>{1000, 1500, 1800, 1901, 2001});
  // a/client: 5 intervals + exact 1700 + exact 443; every other pod: 1800-1900.
  ms_policy_key client_443{};
  client_443.endpoint_id = 1;
  client_443.peer_ipv4 = htonl(Ip("10.244.0.12"));
  client_443.port = 443;
  client_443.proto = kTcp;
  client_443.direction = MS_DIR_INGRESS;
  CHECK(compiled.maps.exact.contains(client_443));
  for (uint16_t port : {uint16_t{443}, uint16_t{1000}, uint16_t{1499}, uint16_t{1500}, uint16_t{1700},
                        uint16_t{1799}, uint16_t{1800}, uint16_t{2000}, uint16_t{2001}, uint16_t{3000}}) {
    INFO(port);
    CHECK(Allows(compiled, 10, MS_DIR_INGRESS, "10.244.0.12", kTcp, port));
  }
  for (uint16_t port : {uint16_t{442}, uint16_t{444}, uint16_t{999}, uint16_t{3001}}) {
    INFO(port);
    CHECK_FALSE(Allows(compiled, 10, MS_DIR_INGRESS, "10.244.0.12", kTcp, port));
  }
  CHECK(Allows(compiled, 10, MS_DIR_INGRESS, "10.244.1.13", kTcp, 1800));
  CHECK(Allows(compiled, 10, MS_DIR_INGRESS, "10.244.1.13", kTcp, 1900));
  CHECK_FALSE(Allows(compiled, 10, MS_DIR_INGRESS, "10.244.1.13", kTcp, 1799));
  CHECK_FALSE(Allows(compiled, 10, MS_DIR_INGRESS, "10.244.1.13", kTcp, 1901));
  CHECK_FALSE(Allows(compiled, 10, MS_DIR_INGRESS, "10.244.1.13", kTcp, 1700));  // exact port of another peer
}

TEST_CASE("port 1 endPort 65535 is every port of the protocol: one entry, not 65,535", "[compiler]") {
  const ClusterState cluster = ClusterWith(R"(
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: a}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - from: [{podSelector: {matchLabels: {role: client}}}, {ipBlock: {cidr: 192.168.0.0/16}}]
    ports: [{port: 1, endPort: 65535}]
)");
  const CompiledPolicy compiled = CompilePolicy(cluster, WebAndDb());
  CHECK(compiled.maps.exact.size() == 1);  // a/client: (tcp, any port)
  CHECK(compiled.maps.lpm.size() <= 2);
  for (uint16_t port : {uint16_t{1}, uint16_t{80}, uint16_t{40000}, uint16_t{65535}}) {
    CHECK(Allows(compiled, 10, MS_DIR_INGRESS, "10.244.0.12", kTcp, port));
    CHECK(Allows(compiled, 10, MS_DIR_INGRESS, "192.168.7.7", kTcp, port));
    CHECK_FALSE(Allows(compiled, 10, MS_DIR_INGRESS, "10.244.0.12", kUdp, port));  // TCP only
    CHECK_FALSE(Allows(compiled, 10, MS_DIR_INGRESS, "10.244.1.13", kTcp, port));  // not a peer
  }
}

TEST_CASE("rules of a direction the policy does not isolate have no effect", "[compiler]") {
  const ClusterState cluster = ClusterWith(R"(
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: ingress-only, namespace: a}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Ingress]
  egress: [{}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: egress-isolation, namespace: a}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Egress]
)");
  const CompiledPolicy compiled = CompilePolicy(cluster, WebAndDb());
  CHECK_FALSE(Allows(compiled, 10, MS_DIR_EGRESS, "8.8.8.8", kTcp, 443));
  CHECK(compiled.maps.lpm.empty());
}

// Dual-stack pods (status.podIPs) in namespaces a and b: web and client in
// a, client in b; an IPv6-only pod v6only in b.
const char* const kDualStack = R"(
apiVersion: v1
kind: Namespace
metadata: {name: a}
---
apiVersion: v1
kind: Namespace
metadata: {name: b}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: a, labels: {app: web}}
spec:
  containers:
  - ports: [{name: http, containerPort: 8080}]
status: {podIP: 10.244.0.10, podIPs: [{ip: 10.244.0.10}, {ip: "fd00::10"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: a, labels: {role: client}}
status: {podIP: 10.244.0.12, podIPs: [{ip: 10.244.0.12}, {ip: "fd00::12"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: b, labels: {role: client}}
status: {podIP: 10.244.1.12, podIPs: [{ip: 10.244.1.12}, {ip: "fd00:1::12"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: v6only, namespace: b, labels: {role: client}}
spec:
  containers:
  - ports: [{name: http, containerPort: 9090}]
status: {podIP: "fd00:1::13", podIPs: [{ip: "fd00:1::13"}]}
)";

Ipv6Address Ip6(const char* text) { return *ParseIpv6Address(text); }

bool Allows6(const CompiledPolicy& compiled, uint32_t ifindex, ms_direction direction, const char* peer,
             uint8_t proto, uint16_t port) {
  return ReferenceLookup(compiled.maps, ifindex, direction, Ip6(peer), proto, port).allowed();
}

std::vector<LocalEndpoint> DualStackWeb() {
  LocalEndpoint web{1, 10, "a", "web", Ip("10.244.0.10")};
  web.ipv6 = Ip6("fd00::10");
  return {web};
}

TEST_CASE("IPv6: pod addresses become ms_policy6 entries, IPv6 ipBlocks ms_policy6_lpm entries", "[compiler][ipv6]") {
  const ClusterState cluster = ClusterFromYaml(std::string(kDualStack) + R"(
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: a}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - from: [{podSelector: {matchLabels: {role: client}}}]
    ports: [{port: 80}]
  - from: [{ipBlock: {cidr: "2001:db8::/32", except: ["2001:db8:1::/48"]}}]
  - from: [{ipBlock: {cidr: 10.0.0.0/8}}]
)");
  const CompiledPolicy compiled = CompilePolicy(cluster, DualStackWeb());
  const ms_endpoint& web = compiled.maps.endpoints.at(10);
  CHECK(web.flags == MS_EP_F_INGRESS_ISOLATED);
  CHECK(std::memcmp(web.ipv6, Ip6("fd00::10").data(), sizeof web.ipv6) == 0);

  // The selected pod's IPv6 address: exact entries with the rule's ports.
  CHECK(Allows6(compiled, 10, MS_DIR_INGRESS, "fd00::12", kTcp, 80));
  CHECK_FALSE(Allows6(compiled, 10, MS_DIR_INGRESS, "fd00::12", kTcp, 81));
  CHECK(ReferenceLookup(compiled.maps, 10, MS_DIR_INGRESS, Ip6("fd00::12"), kTcp, 80).decision ==
        Decision::kAllowExact);
  CHECK(Allows(compiled, 10, MS_DIR_INGRESS, "10.244.0.12", kTcp, 80));  // and its IPv4 one
  CHECK_FALSE(Allows6(compiled, 10, MS_DIR_INGRESS, "fd00::99", kTcp, 80));  // nobody's
  // The IPv6 block with its except, through the LPM.
  CHECK(Allows6(compiled, 10, MS_DIR_INGRESS, "2001:db8::5", kUdp, 53));
  CHECK(Allows6(compiled, 10, MS_DIR_INGRESS, "2001:db8:ffff::1", kTcp, 443));
  CHECK_FALSE(Allows6(compiled, 10, MS_DIR_INGRESS, "2001:db8:1::5", kUdp, 53));
  CHECK_FALSE(Allows6(compiled, 10, MS_DIR_INGRESS, "2001:db9::1", kUdp, 53));
  CHECK(ReferenceLookup(compiled.maps, 10, MS_DIR_INGRESS, Ip6("2001:db8:1::5"), kUdp, 53).decision ==
        Decision::kDenyLpm);
  // An ipBlock matches its own family only.
  CHECK(Allows(compiled, 10, MS_DIR_INGRESS, "10.1.2.3", kTcp, 22));
  CHECK_FALSE(Allows6(compiled, 10, MS_DIR_INGRESS, "::ffff:10.1.2.3", kTcp, 22));
  CHECK_FALSE(Allows(compiled, 10, MS_DIR_INGRESS, "32.1.13.184", kTcp, 22));  // 2001:db8::/32's first bytes

  // Where the entries are: the selected pod's IPv6 address in ms_policy6
  // (a podSelector alone: namespace a's client only), the IPv6 block and
  // except in ms_policy6_lpm, the IPv4 block in ms_policy_lpm.
  std::set<Ipv6Address> exact_peers;
  for (const auto& [key, value] : compiled.maps.exact6) {
    Ipv6Address peer{};
    std::memcpy(peer.data(), key.peer_ipv6, sizeof key.peer_ipv6);
    exact_peers.insert(peer);
    CHECK(key.endpoint_id == 1);
  }
  CHECK(exact_peers == std::set<Ipv6Address>{Ip6("fd00::12")});
  std::set<uint32_t> lpm_lengths;
  for (const auto& [key, value] : compiled.maps.lpm6) lpm_lengths.insert(key.prefixlen - MS_LPM_FIXED_BITS);
  CHECK(lpm_lengths == std::set<uint32_t>{32, 48});
  for (const auto& [key, value] : compiled.maps.lpm) CHECK(key.prefixlen - MS_LPM_FIXED_BITS == 8);
  CHECK(compiled.summaries.at(1).exact_entries == compiled.maps.exact.size() + compiled.maps.exact6.size());
  CHECK(compiled.summaries.at(1).lpm_entries == compiled.maps.lpm.size() + compiled.maps.lpm6.size());
}

TEST_CASE("IPv6: a rule without peers covers both families, an ipBlock its own family only", "[compiler][ipv6]") {
  const ClusterState cluster = ClusterFromYaml(std::string(kDualStack) + R"(
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: a}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Ingress, Egress]
  ingress:
  - from: [{ipBlock: {cidr: 0.0.0.0/0}}]
    ports: [{port: 22}]
  - from: [{ipBlock: {cidr: "::/0"}}]
    ports: [{port: 443}]
  egress:
  - ports: [{port: 53, protocol: UDP}]
  - to: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: b}}}]
    ports: [{port: http}]
)");
  const CompiledPolicy compiled = CompilePolicy(cluster, DualStackWeb());
  CHECK(Allows(compiled, 10, MS_DIR_INGRESS, "192.0.2.1", kTcp, 22));
  CHECK_FALSE(Allows6(compiled, 10, MS_DIR_INGRESS, "2001:db8::1", kTcp, 22));
  CHECK(Allows6(compiled, 10, MS_DIR_INGRESS, "2001:db8::1", kTcp, 443));
  CHECK_FALSE(Allows(compiled, 10, MS_DIR_INGRESS, "192.0.2.1", kTcp, 443));
  // No peers: every address of both families.
  CHECK(Allows(compiled, 10, MS_DIR_EGRESS, "8.8.8.8", kUdp, 53));
  CHECK(Allows6(compiled, 10, MS_DIR_EGRESS, "2001:4860:4860::8888", kUdp, 53));
  CHECK_FALSE(Allows6(compiled, 10, MS_DIR_EGRESS, "2001:4860:4860::8888", kTcp, 53));
  // A named port resolved on the peer pod, for its IPv6 address too; the
  // IPv6-only pod is selected by the namespace like any other.
  CHECK(Allows6(compiled, 10, MS_DIR_EGRESS, "fd00:1::13", kTcp, 9090));
  CHECK_FALSE(Allows6(compiled, 10, MS_DIR_EGRESS, "fd00:1::13", kTcp, 8080));
  CHECK_FALSE(Allows6(compiled, 10, MS_DIR_EGRESS, "fd00:1::12", kTcp, 9090));  // client b has no http port
  CHECK_FALSE(Allows6(compiled, 10, MS_DIR_EGRESS, "fd00::12", kTcp, 9090));    // namespace a
}

TEST_CASE("IPv6: an IPv6-only endpoint is compiled and is a peer by its IPv6 address", "[compiler][ipv6]") {
  const ClusterState cluster = ClusterFromYaml(std::string(kDualStack) + R"(
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: b}
spec:
  podSelector: {}
  ingress:
  - from: [{podSelector: {}}]
)");
  // The CNI gave v6only another address than the manifest says: the CNI's wins.
  LocalEndpoint v6only{7, 17, "b", "v6only", 0};
  v6only.ipv6 = Ip6("fd00:1::77");
  LocalEndpoint client{8, 18, "b", "client", Ip("10.244.1.12")};
  client.ipv6 = Ip6("fd00:1::12");
  const CompiledPolicy compiled = CompilePolicy(cluster, {v6only, client});
  const ms_endpoint& value = compiled.maps.endpoints.at(17);
  CHECK(value.ipv4 == 0);
  CHECK(std::memcmp(value.ipv6, Ip6("fd00:1::77").data(), sizeof value.ipv6) == 0);
  CHECK(value.flags == MS_EP_F_INGRESS_ISOLATED);
  CHECK(Allows6(compiled, 17, MS_DIR_INGRESS, "fd00:1::12", kTcp, 80));
  CHECK(Allows(compiled, 17, MS_DIR_INGRESS, "10.244.1.12", kTcp, 80));
  CHECK(Allows6(compiled, 18, MS_DIR_INGRESS, "fd00:1::77", kTcp, 80));
  CHECK_FALSE(Allows6(compiled, 18, MS_DIR_INGRESS, "fd00:1::13", kTcp, 80));  // the manifest's, replaced
  CHECK_FALSE(Allows6(compiled, 18, MS_DIR_INGRESS, "fd00::12", kTcp, 80));    // namespace a
}

TEST_CASE("IPv6: a cluster Deny on a direction nobody isolates is looked up in the IPv6 maps", "[compiler][ipv6]") {
  const ClusterState cluster = ClusterFromYaml(std::string(kDualStack) + R"(
---
apiVersion: microseg.io/v1alpha1
kind: ClusterSegmentPolicy
metadata: {name: no-ssh-out}
spec:
  priority: 1
  egress:
  - action: Deny
    to: [{ipBlock: {cidr: "2001:db8::/32"}}]
    ports: [{port: 22}]
)");
  const CompiledPolicy compiled = CompilePolicy(cluster, DualStackWeb());
  CHECK(compiled.maps.endpoints.at(10).flags == MS_EP_F_EGRESS_LOOKUP);
  CHECK(compiled.maps.endpoints.at(10).lookup_actions == MS_EP_LOOKUP_DENIES(MS_DIR_EGRESS));
  CHECK(compiled.maps.exact.empty());
  CHECK(compiled.maps.lpm.empty());
  CHECK_FALSE(compiled.maps.lpm6.empty());
  CHECK_FALSE(Allows6(compiled, 10, MS_DIR_EGRESS, "2001:db8::1", kTcp, 22));
  CHECK(Allows6(compiled, 10, MS_DIR_EGRESS, "2001:db8::1", kTcp, 23));
  CHECK(Allows6(compiled, 10, MS_DIR_EGRESS, "2001:db9::1", kTcp, 22));
  CHECK(Allows(compiled, 10, MS_DIR_EGRESS, "32.1.13.184", kTcp, 22));
}

TEST_CASE("a local endpoint without a Pod object is an unlabelled pod of its namespace", "[compiler]") {
  const ClusterState cluster = ClusterWith(R"(
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: all-in-a, namespace: a}
spec:
  podSelector: {}
  ingress:
  - from: [{podSelector: {matchExpressions: [{key: app, operator: DoesNotExist}]}}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-only, namespace: a}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Egress]
)");
  std::vector<LocalEndpoint> endpoints = WebAndDb();
  endpoints.push_back({7, 17, "a", "ghost", Ip("10.244.0.77")});
  // The local endpoint's address overrides the manifest's status.podIP.
  endpoints[0].ipv4 = Ip("10.244.0.100");
  endpoints[0].ipv6 = {htonl(0xfd000010), htonl(0x02440000), 0, htonl(0x64)};  // fd00:10:244::64
  const CompiledPolicy compiled = CompilePolicy(cluster, endpoints);

  CHECK(compiled.summaries.at(7).policies == std::vector<std::string>{"a/all-in-a"});
  CHECK(compiled.maps.endpoints.at(17).flags == MS_EP_F_INGRESS_ISOLATED);
  // As a peer, the ghost has no labels: matched by DoesNotExist.
  CHECK(Allows(compiled, 10, MS_DIR_INGRESS, "10.244.0.77", kTcp, 80));
  CHECK(Allows(compiled, 17, MS_DIR_INGRESS, "10.244.0.12", kTcp, 80));
  CHECK_FALSE(Allows(compiled, 17, MS_DIR_INGRESS, "10.244.0.100", kTcp, 80));  // web has app=web
  CHECK(compiled.maps.endpoints.at(10).ipv4 == htonl(Ip("10.244.0.100")));
  // Its IPv6 address goes to ms_endpoint as is (anti-spoofing, docs/ipv6.md).
  CHECK(std::memcmp(compiled.maps.endpoints.at(10).ipv6, endpoints[0].ipv6.data(), 16) == 0);
  CHECK(compiled.maps.endpoints.at(17).ipv6[0] == 0);
}

TEST_CASE("compilation is deterministic and rule ids are stable", "[compiler]") {
  const ClusterState cluster = ClusterWith(R"(
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: a}
spec:
  podSelector: {}
  ingress:
  - from: [{podSelector: {}}]
    ports: [{port: 80}]
  - from: [{podSelector: {matchLabels: {role: client}}}, {ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.0/16]}}]
    ports: [{port: 80}, {port: 443}]
)");
  std::vector<LocalEndpoint> endpoints = WebAndDb();
  const CompiledPolicy first = CompilePolicy(cluster, endpoints);
  std::reverse(endpoints.begin(), endpoints.end());
  const CompiledPolicy second = CompilePolicy(cluster, endpoints);
  CHECK(testing::SameMapState(first.maps, second.maps));

  // The client's port 80 entry comes from rules 0 and 1: the smaller id wins.
  const uint32_t rule0 = PolicyRuleId("a", "p", MS_DIR_INGRESS, 0);
  const uint32_t rule1 = PolicyRuleId("a", "p", MS_DIR_INGRESS, 1);
  CHECK(rule0 == Fnv1a32("a/p/ingress/0"));
  ms_policy_key key{};
  key.endpoint_id = 1;
  key.peer_ipv4 = htonl(Ip("10.244.0.12"));
  key.port = 80;
  key.proto = kTcp;
  key.direction = MS_DIR_INGRESS;
  CHECK(first.maps.exact.at(key).rule_id == std::min(rule0, rule1));
  key.port = 443;
  CHECK(first.maps.exact.at(key).rule_id == rule1);
}

TEST_CASE("FNV-1a matches the published test vectors", "[compiler]") {
  CHECK(Fnv1a32("") == 0x811c9dc5u);
  CHECK(Fnv1a32("a") == 0xe40c292cu);
  CHECK(Fnv1a32("foobar") == 0xbf9cf968u);
}

}  // namespace
}  // namespace microseg
