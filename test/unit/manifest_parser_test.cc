#include <catch2/catch.hpp>

#include "ipv4_cidr.h"
#include "ipv6_address.h"
#include "manifest_parser.h"

namespace microseg {
namespace {

ParsedManifests ParseOk(const std::string& yaml) {
  absl::StatusOr<ParsedManifests> parsed = ParseManifests(yaml);
  INFO(parsed.status().ToString());
  REQUIRE(parsed.ok());
  return *std::move(parsed);
}

NetworkPolicy ParseOnePolicy(const std::string& yaml) {
  ParsedManifests parsed = ParseOk(yaml);
  REQUIRE(parsed.network_policies.size() == 1);
  return parsed.network_policies[0];
}

// A NetworkPolicy document "x/p" with `spec` (indented by two spaces).
std::string PolicyDoc(const std::string& spec) {
  return "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: x}\nspec:\n" + spec;
}

TEST_CASE("parses Namespace, Pod and NetworkPolicy from a multi-document text", "[parser]") {
  const ParsedManifests parsed = ParseOk(R"(
---
apiVersion: v1
kind: Namespace
metadata:
  name: shop
  labels: {team: blue}
---
---
apiVersion: v1
kind: Pod
metadata:
  name: web-1
  labels: {app: web, "version": "1.0"}
spec:
  nodeName: node-a
  containers:
  - name: c1
    ports:
    - {name: http, containerPort: 8080}
    - {containerPort: 53, protocol: UDP}
  - name: c2
    ports:
    - {name: sctp-svc, containerPort: 9999, protocol: SCTP}
status:
  podIP: 10.244.1.7
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-web, namespace: shop}
spec:
  podSelector:
    matchLabels: {app: web}
    matchExpressions:
    - {key: tier, operator: In, values: [front, edge]}
  ingress:
  - from:
    - podSelector: {matchLabels: {app: client}}
      namespaceSelector: {matchExpressions: [{key: team, operator: Exists}]}
    - ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.0/16]}
    ports:
    - {port: 80}
    - {protocol: UDP, port: dns}
    - {protocol: TCP, port: 8000, endPort: 8010}
    - {protocol: SCTP}
...
)");
  REQUIRE(parsed.namespaces.size() == 1);
  CHECK(parsed.namespaces[0].name == "shop");
  CHECK(parsed.namespaces[0].labels == Labels{{"team", "blue"}});

  REQUIRE(parsed.pods.size() == 1);
  const Pod& pod = parsed.pods[0];
  CHECK(pod.namespace_name == "default");
  CHECK(pod.name == "web-1");
  CHECK(pod.labels == Labels{{"app", "web"}, {"version", "1.0"}});
  CHECK(pod.node_name == "node-a");
  CHECK(pod.ipv4 == std::optional<uint32_t>(0x0af40107));
  REQUIRE(pod.container_ports.size() == 3);
  CHECK(pod.container_ports[0].name == "http");
  CHECK(pod.container_ports[0].port == 8080);
  CHECK(pod.container_ports[0].protocol == Protocol::kTcp);
  CHECK(pod.container_ports[1].name.empty());
  CHECK(pod.container_ports[1].protocol == Protocol::kUdp);
  CHECK(pod.container_ports[2].protocol == Protocol::kSctp);

  REQUIRE(parsed.network_policies.size() == 1);
  const NetworkPolicy& policy = parsed.network_policies[0];
  CHECK(policy.namespace_name == "shop");
  CHECK(policy.name == "allow-web");
  CHECK(policy.pod_selector.match_labels == Labels{{"app", "web"}});
  REQUIRE(policy.pod_selector.match_expressions.size() == 1);
  CHECK(policy.pod_selector.match_expressions[0].op == LabelRequirement::Operator::kIn);
  CHECK(policy.pod_selector.match_expressions[0].values == std::vector<std::string>{"front", "edge"});
  CHECK(policy.isolates_ingress);
  CHECK_FALSE(policy.isolates_egress);
  REQUIRE(policy.ingress.size() == 1);
  const PolicyRule& rule = policy.ingress[0];
  REQUIRE(rule.peers.size() == 2);
  CHECK(rule.peers[0].pod_selector.has_value());
  CHECK(rule.peers[0].namespace_selector.has_value());
  CHECK_FALSE(rule.peers[0].ip_block.has_value());
  REQUIRE(rule.peers[1].ip_block.has_value());
  CHECK(FormatCidr(rule.peers[1].ip_block->cidr) == "10.0.0.0/8");
  REQUIRE(rule.peers[1].ip_block->except.size() == 1);
  CHECK(FormatCidr(rule.peers[1].ip_block->except[0]) == "10.1.0.0/16");
  REQUIRE(rule.ports.size() == 4);
  CHECK(rule.ports[0].protocol == Protocol::kTcp);
  CHECK(std::get<uint16_t>(*rule.ports[0].port) == 80);
  CHECK(rule.ports[1].protocol == Protocol::kUdp);
  CHECK(std::get<std::string>(*rule.ports[1].port) == "dns");
  CHECK(rule.ports[2].end_port == std::optional<uint16_t>(8010));
  CHECK(rule.ports[3].protocol == Protocol::kSctp);
  CHECK_FALSE(rule.ports[3].port.has_value());
  CHECK(parsed.ignored.empty());
}

TEST_CASE("kind List items are expanded and unsupported kinds are reported as ignored", "[parser]") {
  const ParsedManifests parsed = ParseOk(R"(
apiVersion: v1
kind: List
items:
- {apiVersion: v1, kind: Namespace, metadata: {name: a}}
- {apiVersion: v1, kind: Service, metadata: {name: svc, namespace: a}}
- {apiVersion: v1, kind: Pod, metadata: {name: p, namespace: a}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: d}
---
apiVersion: crd.projectcalico.org/v1
kind: NetworkPolicy
metadata: {name: calico, namespace: a}
)");
  CHECK(parsed.namespaces.size() == 1);
  CHECK(parsed.pods.size() == 1);
  CHECK(parsed.network_policies.empty());
  CHECK(parsed.ignored == std::vector<std::string>{"Service a/svc", "Deployment d", "NetworkPolicy a/calico"});
}

TEST_CASE("empty texts and empty documents parse to nothing", "[parser]") {
  for (const char* text : {"", "---\n", "---\n---\n...\n", "# only a comment\n"}) {
    INFO(text);
    const ParsedManifests parsed = ParseOk(text);
    CHECK(parsed.namespaces.empty());
    CHECK(parsed.pods.empty());
    CHECK(parsed.network_policies.empty());
  }
}

TEST_CASE("policyTypes default exactly as Kubernetes does", "[parser]") {
  struct Case {
    const char* spec;
    bool ingress;
    bool egress;
  };
  const std::vector<Case> cases = {
      {"  podSelector: {}\n", true, false},
      {"  podSelector: {}\n  ingress: [{}]\n", true, false},
      {"  podSelector: {}\n  egress: [{}]\n", true, true},
      {"  podSelector: {}\n  egress: []\n", true, false},
      {"  podSelector: {}\n  policyTypes: []\n  egress: [{}]\n", true, true},
      {"  podSelector: {}\n  policyTypes: [Egress]\n", false, true},
      {"  podSelector: {}\n  policyTypes: [Ingress]\n  egress: [{}]\n", true, false},
      {"  podSelector: {}\n  policyTypes: [Ingress, Egress]\n", true, true},
  };
  for (const Case& c : cases) {
    INFO(c.spec);
    const NetworkPolicy policy = ParseOnePolicy(PolicyDoc(c.spec));
    CHECK(policy.isolates_ingress == c.ingress);
    CHECK(policy.isolates_egress == c.egress);
  }
}

TEST_CASE("ipBlock cidr host bits are masked like Kubernetes normalises them", "[parser]") {
  const NetworkPolicy policy =
      ParseOnePolicy(PolicyDoc("  podSelector: {}\n  ingress:\n  - from: [{ipBlock: {cidr: 10.0.0.1/24}}]\n"));
  CHECK(FormatCidr(policy.ingress[0].peers[0].ip_block->cidr) == "10.0.0.0/24");
}

TEST_CASE("IPv6 pod addresses and ipBlocks are parsed per family", "[parser]") {
  const ParsedManifests parsed = ParseOk(R"(
apiVersion: v1
kind: Pod
metadata: {name: v6, namespace: a}
status: {podIP: "fd00::5"}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: a}
spec:
  podSelector: {}
  ingress:
  - from: [{ipBlock: {cidr: "fd00::/64", except: ["fd00::/80"]}}]
  - from: [{ipBlock: {cidr: "fd00::/64"}}, {ipBlock: {cidr: 10.0.0.0/8}}]
  - from: []
)");
  REQUIRE(parsed.pods.size() == 1);
  CHECK_FALSE(parsed.pods[0].ipv4.has_value());
  REQUIRE(parsed.pods[0].ipv6.has_value());
  CHECK(FormatIpv6(*parsed.pods[0].ipv6) == "fd00::5");
  const NetworkPolicy& policy = parsed.network_policies.at(0);
  REQUIRE(policy.ingress.size() == 3);
  // IPv6 blocks are kept as IPv6 peers (never "every peer").
  REQUIRE(policy.ingress[0].peers.size() == 1);
  REQUIRE(policy.ingress[0].peers[0].ipv6_block.has_value());
  CHECK_FALSE(policy.ingress[0].peers[0].ip_block.has_value());
  CHECK(FormatCidr(policy.ingress[0].peers[0].ipv6_block->cidr) == "fd00::/64");
  REQUIRE(policy.ingress[0].peers[0].ipv6_block->except.size() == 1);
  CHECK(FormatCidr(policy.ingress[0].peers[0].ipv6_block->except[0]) == "fd00::/80");
  REQUIRE(policy.ingress[1].peers.size() == 2);
  CHECK(policy.ingress[1].peers[0].ipv6_block.has_value());
  CHECK(policy.ingress[1].peers[1].ip_block.has_value());
  // An explicitly empty peer list does mean every peer.
  CHECK(policy.ingress[2].peers.empty());
}

TEST_CASE("status.podIPs gives a dual-stack pod one address per family", "[parser]") {
  struct Case {
    std::string status;
    std::optional<std::string> ipv4;
    std::optional<std::string> ipv6;
  };
  const std::vector<Case> cases = {
      {"{podIP: 10.244.0.7, podIPs: [{ip: 10.244.0.7}, {ip: \"fd00::7\"}]}", "10.244.0.7", "fd00::7"},
      {"{podIP: \"fd00::7\", podIPs: [{ip: \"fd00::7\"}, {ip: 10.244.0.7}]}", "10.244.0.7", "fd00::7"},
      {"{podIPs: [{ip: \"fd00::7\"}]}", std::nullopt, "fd00::7"},
      {"{podIP: 10.244.0.7}", "10.244.0.7", std::nullopt},
      // The first address of a family wins (the API server allows only one).
      {"{podIPs: [{ip: \"fd00::7\"}, {ip: \"fd00::8\"}]}", std::nullopt, "fd00::7"},
      {"{podIPs: []}", std::nullopt, std::nullopt},
  };
  for (const Case& c : cases) {
    INFO(c.status);
    const ParsedManifests parsed =
        ParseOk("apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: a}\nstatus: " + c.status + "\n");
    REQUIRE(parsed.pods.size() == 1);
    const Pod& pod = parsed.pods[0];
    CHECK((pod.ipv4 ? std::optional<std::string>(FormatIpv4(*pod.ipv4)) : std::nullopt) == c.ipv4);
    CHECK((pod.ipv6 ? std::optional<std::string>(FormatIpv6(*pod.ipv6)) : std::nullopt) == c.ipv6);
  }
}

TEST_CASE("quoted numbers are strings and plain numbers are integers", "[parser]") {
  const NetworkPolicy policy = ParseOnePolicy(
      PolicyDoc("  podSelector: {matchLabels: {version: \"2\"}}\n  ingress:\n  - ports: [{port: 443}]\n"));
  CHECK(policy.pod_selector.match_labels.at("version") == "2");
  CHECK(std::get<uint16_t>(*policy.ingress[0].ports[0].port) == 443);
}

TEST_CASE("endPort ranges of any width parse (wider than 1024 ports too)", "[parser]") {
  const NetworkPolicy policy =
      ParseOnePolicy(PolicyDoc("  podSelector: {}\n  ingress:\n  - ports: [{port: 1000, endPort: 2024}]\n"));
  CHECK(policy.ingress[0].ports[0].end_port == std::optional<uint16_t>(2024));
  const NetworkPolicy almost_every_port =
      ParseOnePolicy(PolicyDoc("  podSelector: {}\n  ingress:\n  - ports: [{port: 2, endPort: 65535}]\n"));
  CHECK(std::get<uint16_t>(*almost_every_port.ingress[0].ports[0].port) == 2);
  CHECK(almost_every_port.ingress[0].ports[0].end_port == std::optional<uint16_t>(65535));
  const NetworkPolicy one_port =
      ParseOnePolicy(PolicyDoc("  podSelector: {}\n  ingress:\n  - ports: [{port: 443, endPort: 443}]\n"));
  CHECK(one_port.ingress[0].ports[0].end_port == std::optional<uint16_t>(443));
  const NetworkPolicy every_port =
      ParseOnePolicy(PolicyDoc("  podSelector: {}\n  ingress:\n  - ports: [{port: 1, endPort: 65535}]\n"));
  CHECK(every_port.ingress[0].ports[0].end_port == std::optional<uint16_t>(65535));
}

// Every validation error: the whole text fails, and the message names the
// document, the object and the field.
TEST_CASE("invalid manifests are rejected with the document, object and field", "[parser]") {
  struct Case {
    const char* name;
    std::string yaml;
    std::string expected_message;  // substring
  };
  const std::string good_ns = "apiVersion: v1\nkind: Namespace\nmetadata: {name: ok}\n---\n";
  const std::vector<Case> cases = {
      {"port out of range (second document)",
       good_ns + PolicyDoc("  podSelector: {}\n  ingress:\n  - ports: [{port: 80}, {port: 65536}]\n"),
       "document 2 (NetworkPolicy x/p): spec.ingress[0].ports[1].port: 65536 is out of range 1-65535"},
      {"port zero", PolicyDoc("  podSelector: {}\n  ingress:\n  - ports: [{port: 0}]\n"),
       "spec.ingress[0].ports[0].port: 0 is out of range 1-65535"},
      {"endPort without port", PolicyDoc("  podSelector: {}\n  egress:\n  - ports: [{endPort: 90}]\n"),
       "spec.egress[0].ports[0].endPort: requires a numeric port"},
      {"endPort with named port", PolicyDoc("  podSelector: {}\n  egress:\n  - ports: [{port: http, endPort: 90}]\n"),
       "spec.egress[0].ports[0].endPort: requires a numeric port"},
      {"endPort below port", PolicyDoc("  podSelector: {}\n  ingress:\n  - ports: [{port: 80, endPort: 79}]\n"),
       "spec.ingress[0].ports[0].endPort: 79 is less than port 80"},
      {"endPort out of range", PolicyDoc("  podSelector: {}\n  ingress:\n  - ports: [{port: 80, endPort: 70000}]\n"),
       "endPort: 70000 is out of range 1-65535"},
      {"unknown protocol", PolicyDoc("  podSelector: {}\n  ingress:\n  - ports: [{protocol: ICMP}]\n"),
       "spec.ingress[0].ports[0].protocol: unknown protocol \"ICMP\" (expected TCP, UDP or SCTP)"},
      {"lowercase protocol", PolicyDoc("  podSelector: {}\n  ingress:\n  - ports: [{protocol: tcp, port: 1}]\n"),
       "unknown protocol \"tcp\""},
      {"invalid named port", PolicyDoc("  podSelector: {}\n  ingress:\n  - ports: [{port: Http_Port}]\n"),
       "spec.ingress[0].ports[0].port: \"Http_Port\" is not a valid port name"},
      {"quoted numeric port is a bad name", PolicyDoc("  podSelector: {}\n  ingress:\n  - ports: [{port: \"80\"}]\n"),
       "\"80\" is not a valid port name"},
      {"bad cidr", PolicyDoc("  podSelector: {}\n  ingress:\n  - from: [{ipBlock: {cidr: 10.0.0.0/33}}]\n"),
       "spec.ingress[0].from[0].ipBlock.cidr: \"10.0.0.0/33\" is not a valid IPv4 CIDR"},
      {"cidr without length", PolicyDoc("  podSelector: {}\n  ingress:\n  - from: [{ipBlock: {cidr: 10.0.0.1}}]\n"),
       "ipBlock.cidr: \"10.0.0.1\" is not a CIDR"},
      {"missing cidr", PolicyDoc("  podSelector: {}\n  ingress:\n  - from: [{ipBlock: {except: [10.0.0.0/8]}}]\n"),
       "spec.ingress[0].from[0].ipBlock.cidr: is required"},
      {"except outside cidr",
       PolicyDoc("  podSelector: {}\n  egress:\n  - to: [{ipBlock: {cidr: 10.0.0.0/8, except: [11.0.0.0/16]}}]\n"),
       "spec.egress[0].to[0].ipBlock.except[0]: \"11.0.0.0/16\" must be a strict subset of cidr \"10.0.0.0/8\""},
      {"except equal to cidr",
       PolicyDoc("  podSelector: {}\n  egress:\n  - to: [{ipBlock: {cidr: 10.0.0.0/8, except: [10.0.0.0/8]}}]\n"),
       "must be a strict subset of cidr"},
      {"except wider than cidr",
       PolicyDoc("  podSelector: {}\n  egress:\n  - to: [{ipBlock: {cidr: 10.1.0.0/16, except: [10.0.0.0/8]}}]\n"),
       "must be a strict subset of cidr"},
      {"bad except", PolicyDoc("  podSelector: {}\n  egress:\n  - to: [{ipBlock: {cidr: 10.0.0.0/8, except: [x]}}]\n"),
       "ipBlock.except[0]: \"x\" is not a CIDR"},
      {"bad IPv6 cidr", PolicyDoc("  podSelector: {}\n  ingress:\n  - from: [{ipBlock: {cidr: \"fd00::/129\"}}]\n"),
       "spec.ingress[0].from[0].ipBlock.cidr: \"fd00::/129\" is not a valid IPv6 CIDR"},
      {"IPv6 cidr without length", PolicyDoc("  podSelector: {}\n  ingress:\n  - from: [{ipBlock: {cidr: \"fd00::1\"}}]\n"),
       "ipBlock.cidr: \"fd00::1\" is not a CIDR"},
      {"malformed IPv6 cidr", PolicyDoc("  podSelector: {}\n  ingress:\n  - from: [{ipBlock: {cidr: \"fd00:::1/64\"}}]\n"),
       "\"fd00:::1/64\" is not a valid IPv6 CIDR"},
      {"IPv6 except outside cidr",
       PolicyDoc("  podSelector: {}\n  egress:\n  - to: [{ipBlock: {cidr: \"2001:db8::/32\", except: [\"2001:db9::/48\"]}}]\n"),
       "spec.egress[0].to[0].ipBlock.except[0]: \"2001:db9::/48\" must be a strict subset of cidr \"2001:db8::/32\""},
      {"IPv6 except equal to cidr",
       PolicyDoc("  podSelector: {}\n  egress:\n  - to: [{ipBlock: {cidr: \"2001:db8::/32\", except: [\"2001:db8::/32\"]}}]\n"),
       "must be a strict subset of cidr"},
      {"IPv4 except in an IPv6 cidr",
       PolicyDoc("  podSelector: {}\n  egress:\n  - to: [{ipBlock: {cidr: \"::/0\", except: [10.0.0.0/8]}}]\n"),
       "ipBlock.except[0]: \"10.0.0.0/8\" must be a strict subset of cidr \"::/0\""},
      {"IPv6 except in an IPv4 cidr",
       PolicyDoc("  podSelector: {}\n  egress:\n  - to: [{ipBlock: {cidr: 0.0.0.0/0, except: [\"fd00::/8\"]}}]\n"),
       "ipBlock.except[0]: \"fd00::/8\" must be a strict subset of cidr \"0.0.0.0/0\""},
      {"bad pod IPv6 address", "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: a}\n"
                               "status: {podIPs: [{ip: \"fd00::g\"}]}\n",
       "status.podIPs[0].ip: \"fd00::g\" is not a valid IP address"},
      {"unknown operator",
       PolicyDoc("  podSelector: {matchExpressions: [{key: a, operator: Equals, values: [b]}]}\n"),
       "spec.podSelector.matchExpressions[0].operator: unknown operator \"Equals\""},
      {"In without values", PolicyDoc("  podSelector: {matchExpressions: [{key: a, operator: In}]}\n"),
       "spec.podSelector.matchExpressions[0].values: must be non-empty for operator In"},
      {"NotIn with empty values",
       PolicyDoc("  podSelector: {}\n  ingress:\n  - from: [{namespaceSelector: {matchExpressions: "
                 "[{key: a, operator: NotIn, values: []}]}}]\n"),
       "spec.ingress[0].from[0].namespaceSelector.matchExpressions[0].values: must be non-empty for operator NotIn"},
      {"Exists with values",
       PolicyDoc("  podSelector: {matchExpressions: [{key: a, operator: Exists, values: [b]}]}\n"),
       "values: must be empty for operator Exists"},
      {"DoesNotExist with values",
       PolicyDoc("  podSelector: {matchExpressions: [{key: a, operator: DoesNotExist, values: [b]}]}\n"),
       "values: must be empty for operator DoesNotExist"},
      {"expression without key", PolicyDoc("  podSelector: {matchExpressions: [{operator: Exists}]}\n"),
       "spec.podSelector.matchExpressions[0].key: is required"},
      {"expression without operator", PolicyDoc("  podSelector: {matchExpressions: [{key: a}]}\n"),
       "spec.podSelector.matchExpressions[0].operator: is required"},
      {"ipBlock with podSelector",
       PolicyDoc("  podSelector: {}\n  ingress:\n  - from: [{ipBlock: {cidr: 10.0.0.0/8}, podSelector: {}}]\n"),
       "spec.ingress[0].from[0]: ipBlock cannot be combined with podSelector or namespaceSelector"},
      {"ipBlock with namespaceSelector",
       PolicyDoc("  podSelector: {}\n  egress:\n  - to: [{ipBlock: {cidr: 10.0.0.0/8}, namespaceSelector: {}}]\n"),
       "spec.egress[0].to[0]: ipBlock cannot be combined"},
      {"empty peer", PolicyDoc("  podSelector: {}\n  ingress:\n  - from: [{}]\n"),
       "spec.ingress[0].from[0]: must specify podSelector, namespaceSelector or ipBlock"},
      {"missing podSelector", PolicyDoc("  ingress: [{}]\n"), "spec.podSelector: is required"},
      {"null podSelector", PolicyDoc("  podSelector:\n"), "spec.podSelector: is required"},
      {"missing spec",
       "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: x}\n",
       "spec.podSelector: is required"},
      {"unknown policy type", PolicyDoc("  podSelector: {}\n  policyTypes: [Inbound]\n"),
       "spec.policyTypes[0]: unknown policy type \"Inbound\""},
      {"policy without name", "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {namespace: x}\n"
                              "spec: {podSelector: {}}\n",
       "document 1 (NetworkPolicy x/<unnamed>): metadata.name: is required"},
      {"namespace without metadata", "apiVersion: v1\nkind: Namespace\n",
       "document 1 (Namespace <unnamed>): metadata.name: is required"},
      {"pod with empty name", "apiVersion: v1\nkind: Pod\nmetadata: {name: \"\"}\n", "metadata.name: is required"},
      {"spec is a list", "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p}\nspec: [1]\n",
       "document 1 (NetworkPolicy default/p): spec: must be a map, got a list"},
      {"ingress is a map", PolicyDoc("  podSelector: {}\n  ingress: {from: []}\n"), "spec.ingress: must be a list"},
      {"port is a map", PolicyDoc("  podSelector: {}\n  ingress:\n  - ports: [{port: {a: 1}}]\n"),
       "spec.ingress[0].ports[0].port: must be a string, got a map"},
      {"label value is a number", "apiVersion: v1\nkind: Pod\nmetadata: {name: p, labels: {version: 2}}\n",
       "document 1 (Pod default/p): metadata.labels.version: must be a string, got 2 (quote it"},
      {"label value is a boolean", "apiVersion: v1\nkind: Namespace\nmetadata: {name: n, labels: {enabled: yes}}\n",
       "must be a string, got yes"},
      {"labels is a list", "apiVersion: v1\nkind: Namespace\nmetadata: {name: n, labels: [a]}\n",
       "metadata.labels: must be a map, got a list"},
      {"name is a number", "apiVersion: v1\nkind: Namespace\nmetadata: {name: 42}\n",
       "metadata.name: must be a string, got 42"},
      {"containerPort missing", "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n"
                                "  - ports: [{name: http}]\n",
       "spec.containers[0].ports[0].containerPort: is required"},
      {"containerPort not a number", "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n"
                                     "  - ports: [{containerPort: eighty}]\n",
       "spec.containers[0].ports[0].containerPort: must be an integer, got eighty"},
      {"container port protocol", "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n"
                                  "  - ports: [{containerPort: 1, protocol: HTTP}]\n",
       "spec.containers[0].ports[0].protocol: unknown protocol \"HTTP\""},
      {"bad pod IP", "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: a}\nstatus: {podIP: 10.0.0.300}\n",
       "document 1 (Pod a/p): status.podIP: \"10.0.0.300\" is not a valid IP address"},
      {"document is a scalar", "just text\n", "document 1: must be a Kubernetes object (a map)"},
      {"missing kind", "apiVersion: v1\nmetadata: {name: x}\n", "document 1: kind: is required"},
      {"missing apiVersion", "kind: Pod\nmetadata: {name: x}\n", "document 1: apiVersion: is required"},
      {"bad item in a List",
       "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Namespace, metadata: {name: a}}\n"
       "- {apiVersion: v1, kind: Pod, metadata: {namespace: a}}\n",
       "document 1 items[1] (Pod a/<unnamed>): metadata.name: is required"},
      {"List items not a list", "apiVersion: v1\nkind: List\nitems: {a: 1}\n", "document 1: items: must be a list"},
      {"YAML syntax error", "apiVersion: v1\nkind: [Pod\n", "invalid YAML"},
      // yaml-cpp 0.7's LoadAll loops forever on these (fuzz_manifest found it).
      {"stray comma", ",\n", "invalid YAML: unexpected token at line 1, column 1"},
      {"stray comma after a document",
       "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\n\"x\",\n",
       "invalid YAML: unexpected token at line 5"},
  };
  for (const Case& c : cases) {
    INFO(c.name);
    absl::StatusOr<ParsedManifests> parsed = ParseManifests(c.yaml);
    REQUIRE_FALSE(parsed.ok());
    CHECK(parsed.status().code() == absl::StatusCode::kInvalidArgument);
    CHECK_THAT(std::string(parsed.status().message()), Catch::Matchers::Contains(c.expected_message));
  }
}

TEST_CASE("one invalid document fails the whole text", "[parser]") {
  const absl::StatusOr<ParsedManifests> parsed = ParseManifests(
      "apiVersion: v1\nkind: Namespace\nmetadata: {name: good}\n---\napiVersion: v1\nkind: Namespace\n");
  CHECK_FALSE(parsed.ok());
}

}  // namespace
}  // namespace microseg
