// Parsing and validation of the microseg.io/v1alpha1 kinds (SegmentPolicy,
// ClusterSegmentPolicy) and of the one-object entry point the Kubernetes
// client uses, plus a randomized robustness test of the parser.
#include <catch2/catch.hpp>
#include <random>

#include "manifest_parser.h"

namespace microseg {
namespace {

std::string SegPolDoc(const std::string& spec) {
  return "apiVersion: microseg.io/v1alpha1\nkind: SegmentPolicy\nmetadata: {name: sp, namespace: x}\nspec:\n" +
         spec;
}
std::string CspDoc(const std::string& spec) {
  return "apiVersion: microseg.io/v1alpha1\nkind: ClusterSegmentPolicy\nmetadata: {name: csp}\nspec:\n" + spec;
}

ParsedManifests ParseOk(const std::string& yaml) {
  absl::StatusOr<ParsedManifests> parsed = ParseManifests(yaml);
  INFO(parsed.status().ToString());
  REQUIRE(parsed.ok());
  return *std::move(parsed);
}

TEST_CASE("SegmentPolicy: NetworkPolicy spec plus rule actions and enforcement", "[parser][crd]") {
  const ParsedManifests parsed = ParseOk(SegPolDoc(R"(  podSelector: {matchLabels: {app: db}}
  enforcement: Audit
  ingress:
  - action: Deny
    from: [{podSelector: {}}]
  - from: [{namespaceSelector: {matchLabels: {team: a}}}]
    ports: [{port: 5432, protocol: TCP}]
  egress:
  - action: Allow
    to: [{ipBlock: {cidr: 10.0.0.0/8}}]
)"));
  REQUIRE(parsed.segment_policies.size() == 1);
  const SegmentPolicy& segment = parsed.segment_policies[0];
  CHECK(segment.enforcement == Enforcement::kAudit);
  CHECK(segment.policy.namespace_name == "x");
  CHECK(segment.policy.name == "sp");
  REQUIRE(segment.policy.ingress.size() == 2);
  CHECK(segment.policy.ingress[0].action == RuleAction::kDeny);
  CHECK(segment.policy.ingress[1].action == RuleAction::kAllow);  // default
  // A namespaced kind keeps the NetworkPolicy meaning of podSelector alone.
  CHECK_FALSE(segment.policy.ingress[0].peers[0].namespace_selector.has_value());
  CHECK(segment.policy.isolates_ingress);
  CHECK(segment.policy.isolates_egress);  // defaulted: egress rules exist
  CHECK(ParseOk(SegPolDoc("  podSelector: {}\n")).segment_policies[0].enforcement == Enforcement::kEnforce);
}

TEST_CASE("ClusterSegmentPolicy: priority, subject, actions, policyTypes defaulting", "[parser][crd]") {
  const ParsedManifests parsed = ParseOk(CspDoc(R"(  priority: 10
  subject:
    namespaceSelector: {matchLabels: {tier: prod}}
    podSelector: {matchExpressions: [{key: app, operator: Exists}]}
  ingress:
  - action: Pass
    from: [{podSelector: {matchLabels: {app: mon}}}]
  - action: Deny
    from: [{namespaceSelector: {}}]
    ports: [{port: 8000, endPort: 8010, protocol: SCTP}]
)"));
  REQUIRE(parsed.cluster_segment_policies.size() == 1);
  const ClusterSegmentPolicy& policy = parsed.cluster_segment_policies[0];
  CHECK(policy.name == "csp");
  CHECK(policy.priority == 10);
  CHECK(policy.subject_namespace_selector.match_labels.at("tier") == "prod");
  CHECK(policy.subject_pod_selector.match_expressions.size() == 1);
  CHECK(policy.applies_ingress);
  CHECK_FALSE(policy.applies_egress);
  REQUIRE(policy.ingress.size() == 2);
  CHECK(policy.ingress[0].action == RuleAction::kPass);
  // Cluster-scoped: a podSelector alone selects in every namespace.
  REQUIRE(policy.ingress[0].peers[0].namespace_selector.has_value());
  CHECK(policy.ingress[0].peers[0].namespace_selector->match_labels.empty());
  CHECK(policy.ingress[1].action == RuleAction::kDeny);
  CHECK(policy.ingress[1].ports[0].protocol == Protocol::kSctp);
  CHECK(policy.ingress[1].ports[0].end_port == 8010);

  const ParsedManifests typed = ParseOk(CspDoc("  priority: 0\n  policyTypes: [Egress]\n  ingress:\n  - action: Deny\n"));
  CHECK_FALSE(typed.cluster_segment_policies[0].applies_ingress);
  CHECK(typed.cluster_segment_policies[0].applies_egress);
  CHECK(ParseOk(CspDoc("  priority: 1000\n")).cluster_segment_policies[0].priority == 1000);
}

TEST_CASE("invalid SegmentPolicy and ClusterSegmentPolicy objects are rejected with the field", "[parser][crd]") {
  struct Case {
    const char* name;
    std::string yaml;
    std::string expected_message;
  };
  const std::vector<Case> cases = {
      {"appProtocol", SegPolDoc("  podSelector: {}\n  ingress:\n  - ports: [{port: 80, appProtocol: http}]\n"),
       "(SegmentPolicy x/sp): spec.ingress[0].ports[0].appProtocol: is not supported yet"},
      {"appProtocol cluster", CspDoc("  priority: 1\n  egress:\n  - action: Allow\n    ports: [{appProtocol: dns}]\n"),
       "spec.egress[0].ports[0].appProtocol: is not supported yet"},
      {"Pass in SegmentPolicy", SegPolDoc("  podSelector: {}\n  ingress:\n  - action: Pass\n"),
       "spec.ingress[0].action: Pass is only valid in a ClusterSegmentPolicy"},
      {"unknown action", SegPolDoc("  podSelector: {}\n  egress:\n  - action: Reject\n"),
       "spec.egress[0].action: unknown action \"Reject\" (expected Allow or Deny)"},
      {"lowercase action", CspDoc("  priority: 1\n  ingress:\n  - action: allow\n"),
       "spec.ingress[0].action: unknown action \"allow\" (expected Allow, Deny or Pass)"},
      {"missing cluster action", CspDoc("  priority: 1\n  ingress:\n  - from: [{podSelector: {}}]\n"),
       "(ClusterSegmentPolicy csp): spec.ingress[0].action: is required"},
      {"bad enforcement", SegPolDoc("  podSelector: {}\n  enforcement: DryRun\n"),
       "spec.enforcement: unknown enforcement \"DryRun\""},
      {"missing priority", CspDoc("  ingress: []\n"), "spec.priority: is required"},
      {"missing spec", "apiVersion: microseg.io/v1alpha1\nkind: ClusterSegmentPolicy\nmetadata: {name: c}\n",
       "spec.priority: is required"},
      {"priority too high", CspDoc("  priority: 1001\n"), "spec.priority: 1001 is out of range 0..1000"},
      {"negative priority", CspDoc("  priority: -1\n"), "spec.priority: -1 is out of range 0..1000"},
      {"priority not a number", CspDoc("  priority: high\n"), "spec.priority: must be an integer, got high"},
      {"subject not a map", CspDoc("  priority: 1\n  subject: [a]\n"), "spec.subject: must be a map"},
      {"bad subject operator",
       CspDoc("  priority: 1\n  subject:\n    podSelector: {matchExpressions: [{key: a, operator: Has}]}\n"),
       "spec.subject.podSelector.matchExpressions[0].operator: unknown operator \"Has\""},
      {"bad cidr", CspDoc("  priority: 1\n  egress:\n  - action: Deny\n    to: [{ipBlock: {cidr: 300.0.0.0/8}}]\n"),
       "spec.egress[0].to[0].ipBlock.cidr: \"300.0.0.0/8\" is not a valid IPv4 CIDR"},
      {"port zero", SegPolDoc("  podSelector: {}\n  ingress:\n  - ports: [{port: 0}]\n"),
       "spec.ingress[0].ports[0].port: 0 is out of range 1-65535"},
      {"port too high", CspDoc("  priority: 1\n  ingress:\n  - action: Deny\n    ports: [{port: 65536}]\n"),
       "spec.ingress[0].ports[0].port: 65536 is out of range 1-65535"},
      {"endPort below port", SegPolDoc("  podSelector: {}\n  egress:\n  - ports: [{port: 90, endPort: 80}]\n"),
       "spec.egress[0].ports[0].endPort: 80 is less than port 90"},
      {"endPort without port", CspDoc("  priority: 1\n  egress:\n  - action: Deny\n    ports: [{endPort: 80}]\n"),
       "spec.egress[0].ports[0].endPort: requires a numeric port"},
      {"unknown protocol", SegPolDoc("  podSelector: {}\n  ingress:\n  - ports: [{protocol: ICMP}]\n"),
       "unknown protocol \"ICMP\""},
      {"bad policy type", CspDoc("  priority: 1\n  policyTypes: [Both]\n"), "spec.policyTypes[0]: unknown policy type"},
  };
  for (const Case& c : cases) {
    INFO(c.name);
    absl::StatusOr<ParsedManifests> parsed = ParseManifests(c.yaml);
    REQUIRE_FALSE(parsed.ok());
    CHECK(parsed.status().code() == absl::StatusCode::kInvalidArgument);
    CHECK_THAT(std::string(parsed.status().message()), Catch::Matchers::Contains(c.expected_message));
  }
}

TEST_CASE("NetworkPolicy rules have no action field and never Deny", "[parser][crd]") {
  const ParsedManifests parsed = ParseOk(
      "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: x}\n"
      "spec:\n  podSelector: {}\n  ingress:\n  - action: Deny\n");
  CHECK(parsed.network_policies[0].ingress[0].action == RuleAction::kAllow);
}

TEST_CASE("ParseClusterObject reads one decoded object of a kind, JSON included", "[parser][crd]") {
  // What the Kubernetes client hands over: the API server's JSON.
  const YAML::Node json = YAML::Load(R"({"apiVersion":"microseg.io/v1alpha1","kind":"ClusterSegmentPolicy",
    "metadata":{"name":"deny-db","resourceVersion":"12"},
    "spec":{"priority":5,"subject":{"podSelector":{"matchLabels":{"app":"db"}}},
            "ingress":[{"action":"Deny","from":[{"namespaceSelector":{}}],"ports":[{"port":5432}]}]}})");
  absl::StatusOr<ClusterObject> object = ParseClusterObject("ClusterSegmentPolicy", json);
  INFO(object.status().ToString());
  REQUIRE(object.ok());
  const auto* policy = std::get_if<ClusterSegmentPolicy>(&*object);
  REQUIRE(policy != nullptr);
  CHECK(policy->priority == 5);
  CHECK(std::get<uint16_t>(*policy->ingress[0].ports[0].port) == 5432);

  const YAML::Node bad_json = YAML::Load(
      R"({"metadata":{"name":"s","namespace":"n"},"spec":{"podSelector":{},"ingress":[{"ports":[{"port":0}]}]}})");
  absl::StatusOr<ClusterObject> bad = ParseClusterObject("SegmentPolicy", bad_json);
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.status().message() == "spec.ingress[0].ports[0].port: 0 is out of range 1-65535");

  const YAML::Node pod = YAML::Load(R"({"metadata":{"name":"p","namespace":"n"},"status":{"podIP":"10.244.0.9"}})");
  absl::StatusOr<ClusterObject> parsed_pod = ParseClusterObject("Pod", pod);
  REQUIRE(parsed_pod.ok());
  CHECK(std::get<Pod>(*parsed_pod).ipv4 == 0x0af40009u);

  CHECK_FALSE(ParseClusterObject("Service", pod).ok());
  CHECK_FALSE(ParseClusterObject("Pod", YAML::Load("[1, 2]")).ok());
  CHECK(ApiVersionOfKind("SegmentPolicy") == std::optional<std::string>("microseg.io/v1alpha1"));
  CHECK(ApiVersionOfKind("NetworkPolicy") == std::optional<std::string>("networking.k8s.io/v1"));
  CHECK_FALSE(ApiVersionOfKind("Deployment").has_value());
}

TEST_CASE("a CRD kind at another apiVersion is ignored, not misread", "[parser][crd]") {
  const ParsedManifests parsed = ParseOk(
      "apiVersion: microseg.io/v2\nkind: SegmentPolicy\nmetadata: {name: sp, namespace: x}\nspec: {}\n");
  CHECK(parsed.segment_policies.empty());
  CHECK(parsed.ignored.size() == 1);
}

// Randomly mutated policies: the parser must return (ok or a clear error)
// and never throw or crash, and whatever it accepts must be within bounds.
TEST_CASE("randomized: mutated policy documents never crash the parser", "[parser][fuzz]") {
  const std::vector<std::string> fragments = {
      "80", "0", "65536", "-1", "http", "\"80\"", "Serve-80", "10.0.0.0/8", "10.0.0.0/33", "::1/128", "[]", "{}",
      "null", "TCP", "SCTP", "ICMP", "Allow", "Deny", "Pass", "Audit", "In", "NotIn", "Exists", "Bogus", "[a, b]",
      "{key: a, operator: In, values: [x]}", "1001", "1000", "\"\"", "yes", "~", "{cidr: 10.1.0.0/16, except: [10.1.2.0/24]}"};
  const std::string templ = CspDoc(R"(  priority: $
  subject: {podSelector: {matchExpressions: [{key: app, operator: $, values: $}]}}
  ingress:
  - action: $
    from: [{ipBlock: {cidr: $}}, {podSelector: $}, {namespaceSelector: {matchLabels: {a: $}}}]
    ports: [{port: $, endPort: $, protocol: $}]
)") + "---\n" + SegPolDoc(R"(  podSelector: $
  enforcement: $
  egress:
  - action: $
    to: [{ipBlock: $}]
    ports: [{port: $, protocol: $, appProtocol: $}]
)");
  // The valid value of each placeholder, in order: most slots keep it, so
  // a fair share of documents is valid and the accept path is exercised too.
  const std::vector<std::string> valid = {"10", "In", "[x]", "Deny", "10.0.0.0/8", "{}", "x", "80", "90", "TCP",
                                          "{}", "Audit", "Allow", "{cidr: 10.1.0.0/16, except: [10.1.2.0/24]}",
                                          "53", "UDP", "~"};
  std::mt19937 rng(20261202);
  size_t accepted = 0;
  for (int iteration = 0; iteration < 3000; ++iteration) {
    std::string text;
    size_t slot = 0;
    for (char c : templ) {
      if (c != '$') {
        text += c;
        continue;
      }
      text += rng() % 8 == 0 ? fragments[rng() % fragments.size()] : valid.at(slot);
      ++slot;
    }
    REQUIRE(slot == valid.size());
    // Random byte damage now and then.
    if (rng() % 8 == 0) text[rng() % text.size()] = "{}[]:,-\n #"[rng() % 10];
    absl::StatusOr<ParsedManifests> parsed;
    REQUIRE_NOTHROW(parsed = ParseManifests(text));
    if (!parsed.ok()) {
      CHECK_FALSE(parsed.status().message().empty());
      continue;
    }
    ++accepted;
    for (const ClusterSegmentPolicy& policy : parsed->cluster_segment_policies) {
      CHECK(policy.priority >= 0);
      CHECK(policy.priority <= 1000);
      for (const PolicyRule& rule : policy.ingress) {
        for (const PolicyPort& port : rule.ports) {
          if (port.end_port) CHECK(*port.end_port >= std::get<uint16_t>(*port.port));
        }
      }
    }
  }
  INFO("accepted " << accepted);
  CHECK(accepted > 0);  // the generator also produces valid documents
}

}  // namespace
}  // namespace microseg
