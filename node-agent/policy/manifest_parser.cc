#include "manifest_parser.h"

#include <algorithm>
#include <exception>
#include <iterator>
#include <regex>
#include <type_traits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "ipv4_cidr.h"
#include "ipv6_address.h"
#include "status_macros.h"
#include "yaml-cpp/yaml.h"
#include "yaml_documents.h"
#include "yaml_fields.h"

namespace microseg {
namespace {

using yaml_fields::Child;
using yaml_fields::FieldError;
using yaml_fields::IsSet;
using yaml_fields::ReadInteger;
using yaml_fields::ReadOptionalString;
using yaml_fields::ReadString;
using yaml_fields::RequireMap;
using yaml_fields::RequireSequence;

std::string Field(absl::string_view path, absl::string_view name) { return absl::StrCat(path, ".", name); }
std::string Element(absl::string_view path, size_t index) { return absl::StrCat(path, "[", index, "]"); }

absl::StatusOr<Labels> ParseLabels(const YAML::Node& node, const std::string& path) {
  MS_RETURN_IF_ERROR(RequireMap(node, path));
  Labels labels;
  for (auto it = node.begin(); it != node.end(); ++it) {
    MS_ASSIGN_OR_RETURN(std::string key, ReadString(it->first, Element(path, labels.size())));
    if (key.empty()) return FieldError(path, "label keys must not be empty");
    MS_ASSIGN_OR_RETURN(std::string value, ReadString(it->second, Field(path, key)));
    labels[key] = std::move(value);
  }
  return labels;
}

struct Metadata {
  std::string name;
  std::string namespace_name;
  Labels labels;
};

absl::StatusOr<Metadata> ParseMetadata(const YAML::Node& object, bool namespaced) {
  const YAML::Node node = Child(object, "metadata");
  if (!IsSet(node)) return FieldError("metadata.name", "is required");
  MS_RETURN_IF_ERROR(RequireMap(node, "metadata"));
  Metadata metadata;
  MS_ASSIGN_OR_RETURN(std::optional<std::string> name, ReadOptionalString(node, "name", "metadata.name"));
  if (!name || name->empty()) return FieldError("metadata.name", "is required");
  metadata.name = *name;
  if (namespaced) {
    MS_ASSIGN_OR_RETURN(std::optional<std::string> ns,
                        ReadOptionalString(node, "namespace", "metadata.namespace"));
    metadata.namespace_name = ns && !ns->empty() ? *ns : "default";
  }
  if (const YAML::Node labels = Child(node, "labels"); IsSet(labels)) {
    MS_ASSIGN_OR_RETURN(metadata.labels, ParseLabels(labels, "metadata.labels"));
  }
  return metadata;
}

absl::StatusOr<Protocol> ParseProtocol(const YAML::Node& parent, const std::string& path) {
  MS_ASSIGN_OR_RETURN(std::optional<std::string> name, ReadOptionalString(parent, "protocol", path));
  if (!name) return Protocol::kTcp;  // Kubernetes default
  if (*name == "TCP") return Protocol::kTcp;
  if (*name == "UDP") return Protocol::kUdp;
  if (*name == "SCTP") return Protocol::kSctp;
  return FieldError(path, absl::StrCat("unknown protocol \"", *name, "\" (expected TCP, UDP or SCTP)"));
}

absl::StatusOr<uint16_t> ParsePortNumber(const YAML::Node& node, const std::string& path) {
  MS_ASSIGN_OR_RETURN(int64_t port, ReadInteger(node, path));
  if (port < 1 || port > 65535) return FieldError(path, absl::StrCat(port, " is out of range 1-65535"));
  return static_cast<uint16_t>(port);
}

// Kubernetes IANA_SVC_NAME: what a container port name (and so a named
// policy port) must look like.
absl::Status ValidatePortName(const std::string& name, const std::string& path) {
  static const std::regex kAllowedChars("^[a-z0-9]([a-z0-9-]*[a-z0-9])?$");
  static const std::regex kHasLetter("[a-z]");
  if (name.size() > 15 || !std::regex_match(name, kAllowedChars) || !std::regex_search(name, kHasLetter) ||
      name.find("--") != std::string::npos) {
    return FieldError(path, absl::StrCat("\"", name,
                                         "\" is not a valid port name (1-15 lowercase letters, digits and "
                                         "'-', at least one letter, no leading, trailing or double '-')"));
  }
  return absl::OkStatus();
}

absl::StatusOr<LabelRequirement::Operator> ParseOperator(const std::string& name, const std::string& path) {
  if (name == "In") return LabelRequirement::Operator::kIn;
  if (name == "NotIn") return LabelRequirement::Operator::kNotIn;
  if (name == "Exists") return LabelRequirement::Operator::kExists;
  if (name == "DoesNotExist") return LabelRequirement::Operator::kDoesNotExist;
  return FieldError(path, absl::StrCat("unknown operator \"", name,
                                       "\" (expected In, NotIn, Exists or DoesNotExist)"));
}

absl::StatusOr<LabelRequirement> ParseRequirement(const YAML::Node& node, const std::string& path) {
  MS_RETURN_IF_ERROR(RequireMap(node, path));
  LabelRequirement requirement;
  MS_ASSIGN_OR_RETURN(std::optional<std::string> key, ReadOptionalString(node, "key", Field(path, "key")));
  if (!key || key->empty()) return FieldError(Field(path, "key"), "is required");
  requirement.key = *key;
  const std::string operator_path = Field(path, "operator");
  MS_ASSIGN_OR_RETURN(std::optional<std::string> op, ReadOptionalString(node, "operator", operator_path));
  if (!op) return FieldError(operator_path, "is required");
  MS_ASSIGN_OR_RETURN(requirement.op, ParseOperator(*op, operator_path));
  const std::string values_path = Field(path, "values");
  if (const YAML::Node values = Child(node, "values"); IsSet(values)) {
    MS_RETURN_IF_ERROR(RequireSequence(values, values_path));
    for (size_t i = 0; i < values.size(); ++i) {
      MS_ASSIGN_OR_RETURN(std::string value, ReadString(values[i], Element(values_path, i)));
      requirement.values.push_back(std::move(value));
    }
  }
  const bool needs_values = requirement.op == LabelRequirement::Operator::kIn ||
                            requirement.op == LabelRequirement::Operator::kNotIn;
  if (needs_values && requirement.values.empty()) {
    return FieldError(values_path, absl::StrCat("must be non-empty for operator ", *op));
  }
  if (!needs_values && !requirement.values.empty()) {
    return FieldError(values_path, absl::StrCat("must be empty for operator ", *op));
  }
  return requirement;
}

absl::StatusOr<LabelSelector> ParseSelector(const YAML::Node& node, const std::string& path) {
  MS_RETURN_IF_ERROR(RequireMap(node, path));
  LabelSelector selector;
  if (const YAML::Node labels = Child(node, "matchLabels"); IsSet(labels)) {
    MS_ASSIGN_OR_RETURN(selector.match_labels, ParseLabels(labels, Field(path, "matchLabels")));
  }
  if (const YAML::Node expressions = Child(node, "matchExpressions"); IsSet(expressions)) {
    const std::string expressions_path = Field(path, "matchExpressions");
    MS_RETURN_IF_ERROR(RequireSequence(expressions, expressions_path));
    for (size_t i = 0; i < expressions.size(); ++i) {
      MS_ASSIGN_OR_RETURN(LabelRequirement requirement,
                          ParseRequirement(expressions[i], Element(expressions_path, i)));
      selector.match_expressions.push_back(std::move(requirement));
    }
  }
  return selector;
}

bool LooksLikeIpv6(const std::string& text) { return text.find(':') != std::string::npos; }

// Kubernetes: every except is a strict subset of the cidr, of its family.
template <typename Cidr>
absl::StatusOr<BasicIpBlock<Cidr>> ValidateIpBlock(
    const std::string& cidr_text, const std::vector<std::string>& except_texts, const std::string& cidr_path,
    const std::string& except_path, absl::StatusOr<Cidr> (*parse)(absl::string_view)) {
  BasicIpBlock<Cidr> block;
  absl::StatusOr<Cidr> cidr = parse(cidr_text);
  if (!cidr.ok()) return FieldError(cidr_path, cidr.status().message());
  block.cidr = *cidr;
  for (size_t i = 0; i < except_texts.size(); ++i) {
    const std::string element_path = Element(except_path, i);
    const bool other_family = LooksLikeIpv6(except_texts[i]) != LooksLikeIpv6(cidr_text);
    absl::StatusOr<Cidr> except = parse(except_texts[i]);
    if (!other_family && !except.ok()) return FieldError(element_path, except.status().message());
    if (other_family || !CidrContains(block.cidr, *except) || except->prefix_len == block.cidr.prefix_len) {
      return FieldError(element_path, absl::StrCat("\"", except_texts[i], "\" must be a strict subset of cidr \"",
                                                   cidr_text, "\""));
    }
    block.except.push_back(*except);
  }
  return block;
}

// Fills peer.ip_block or peer.ipv6_block, by the cidr's family.
absl::Status ParseIpBlock(const YAML::Node& node, const std::string& path, PolicyPeer& peer) {
  MS_RETURN_IF_ERROR(RequireMap(node, path));
  const std::string cidr_path = Field(path, "cidr");
  MS_ASSIGN_OR_RETURN(std::optional<std::string> cidr_text, ReadOptionalString(node, "cidr", cidr_path));
  if (!cidr_text) return FieldError(cidr_path, "is required");
  std::vector<std::string> except_texts;
  const std::string except_path = Field(path, "except");
  if (const YAML::Node excepts = Child(node, "except"); IsSet(excepts)) {
    MS_RETURN_IF_ERROR(RequireSequence(excepts, except_path));
    for (size_t i = 0; i < excepts.size(); ++i) {
      MS_ASSIGN_OR_RETURN(std::string text, ReadString(excepts[i], Element(except_path, i)));
      except_texts.push_back(std::move(text));
    }
  }
  if (LooksLikeIpv6(*cidr_text)) {
    MS_ASSIGN_OR_RETURN(peer.ipv6_block, ValidateIpBlock<Ipv6Cidr>(*cidr_text, except_texts, cidr_path,
                                                                   except_path, &ParseIpv6Cidr));
  } else {
    MS_ASSIGN_OR_RETURN(peer.ip_block, ValidateIpBlock<Ipv4Cidr>(*cidr_text, except_texts, cidr_path,
                                                                 except_path, &ParseIpv4Cidr));
  }
  return absl::OkStatus();
}

absl::StatusOr<PolicyPeer> ParsePeer(const YAML::Node& node, const std::string& path) {
  MS_RETURN_IF_ERROR(RequireMap(node, path));
  const YAML::Node pod_selector = Child(node, "podSelector");
  const YAML::Node namespace_selector = Child(node, "namespaceSelector");
  const YAML::Node ip_block = Child(node, "ipBlock");
  if (IsSet(ip_block) && (IsSet(pod_selector) || IsSet(namespace_selector))) {
    return FieldError(path, "ipBlock cannot be combined with podSelector or namespaceSelector");
  }
  if (!IsSet(ip_block) && !IsSet(pod_selector) && !IsSet(namespace_selector)) {
    return FieldError(path, "must specify podSelector, namespaceSelector or ipBlock");
  }
  PolicyPeer peer;
  if (IsSet(ip_block)) {
    MS_RETURN_IF_ERROR(ParseIpBlock(ip_block, Field(path, "ipBlock"), peer));
    return peer;
  }
  if (IsSet(pod_selector)) {
    MS_ASSIGN_OR_RETURN(peer.pod_selector, ParseSelector(pod_selector, Field(path, "podSelector")));
  }
  if (IsSet(namespace_selector)) {
    MS_ASSIGN_OR_RETURN(peer.namespace_selector,
                        ParseSelector(namespace_selector, Field(path, "namespaceSelector")));
  }
  return peer;
}

// What differs between the three policy kinds' rule syntax.
struct RuleSyntax {
  enum class Actions { kNone, kAllowDeny, kAllowDenyPassRequired };
  Actions actions = Actions::kNone;
  bool app_protocol_field = false;  // in the CRD schema, rejected until implemented
  // Cluster-scoped: a podSelector without namespaceSelector means every namespace.
  bool cluster_scoped = false;
};

constexpr RuleSyntax kNetworkPolicySyntax{};
constexpr RuleSyntax kSegmentPolicySyntax{RuleSyntax::Actions::kAllowDeny, true, false};
constexpr RuleSyntax kClusterSegmentPolicySyntax{RuleSyntax::Actions::kAllowDenyPassRequired, true, true};

absl::StatusOr<PolicyPort> ParsePolicyPort(const YAML::Node& node, const std::string& path,
                                           const RuleSyntax& syntax) {
  MS_RETURN_IF_ERROR(RequireMap(node, path));
  if (syntax.app_protocol_field && IsSet(Child(node, "appProtocol"))) {
    return FieldError(Field(path, "appProtocol"), "is not supported yet (remove it to enforce the port)");
  }
  PolicyPort port;
  MS_ASSIGN_OR_RETURN(port.protocol, ParseProtocol(node, Field(path, "protocol")));
  const std::string port_path = Field(path, "port");
  if (const YAML::Node value = Child(node, "port"); IsSet(value)) {
    if (yaml_fields::IsIntegerScalar(value)) {
      MS_ASSIGN_OR_RETURN(uint16_t number, ParsePortNumber(value, port_path));
      port.port = number;
    } else {
      MS_ASSIGN_OR_RETURN(std::string name, ReadString(value, port_path));
      MS_RETURN_IF_ERROR(ValidatePortName(name, port_path));
      port.port = std::move(name);
    }
  }
  const std::string end_port_path = Field(path, "endPort");
  if (const YAML::Node value = Child(node, "endPort"); IsSet(value)) {
    MS_ASSIGN_OR_RETURN(uint16_t end_port, ParsePortNumber(value, end_port_path));
    if (!port.port || !std::holds_alternative<uint16_t>(*port.port)) {
      return FieldError(end_port_path, "requires a numeric port");
    }
    const uint16_t start = std::get<uint16_t>(*port.port);
    if (end_port < start) {
      return FieldError(end_port_path, absl::StrCat(end_port, " is less than port ", start));
    }
    port.end_port = end_port;
  }
  return port;
}

absl::StatusOr<RuleAction> ParseRuleAction(const YAML::Node& rule, const std::string& path,
                                           const RuleSyntax& syntax) {
  if (syntax.actions == RuleSyntax::Actions::kNone) return RuleAction::kAllow;
  const std::string action_path = Field(path, "action");
  MS_ASSIGN_OR_RETURN(std::optional<std::string> action, ReadOptionalString(rule, "action", action_path));
  const bool pass_allowed = syntax.actions == RuleSyntax::Actions::kAllowDenyPassRequired;
  if (!action) {
    if (pass_allowed) return FieldError(action_path, "is required (Allow, Deny or Pass)");
    return RuleAction::kAllow;
  }
  if (*action == "Allow") return RuleAction::kAllow;
  if (*action == "Deny") return RuleAction::kDeny;
  if (*action == "Pass" && pass_allowed) return RuleAction::kPass;
  if (*action == "Pass") {
    return FieldError(action_path, "Pass is only valid in a ClusterSegmentPolicy (expected Allow or Deny)");
  }
  return FieldError(action_path, absl::StrCat("unknown action \"", *action, "\" (expected ",
                                              pass_allowed ? "Allow, Deny or Pass)" : "Allow or Deny)"));
}

absl::StatusOr<PolicyRule> ParseRule(const YAML::Node& node, const std::string& path,
                                     absl::string_view peers_key, const RuleSyntax& syntax) {
  MS_RETURN_IF_ERROR(RequireMap(node, path));
  PolicyRule rule;
  MS_ASSIGN_OR_RETURN(rule.action, ParseRuleAction(node, path, syntax));
  if (const YAML::Node peers = Child(node, peers_key); IsSet(peers)) {
    const std::string peers_path = Field(path, peers_key);
    MS_RETURN_IF_ERROR(RequireSequence(peers, peers_path));
    for (size_t i = 0; i < peers.size(); ++i) {
      MS_ASSIGN_OR_RETURN(PolicyPeer peer, ParsePeer(peers[i], Element(peers_path, i)));
      if (syntax.cluster_scoped && !peer.is_ip_block() && !peer.namespace_selector) {
        peer.namespace_selector = LabelSelector{};
      }
      rule.peers.push_back(std::move(peer));
    }
  }
  if (const YAML::Node ports = Child(node, "ports"); IsSet(ports)) {
    const std::string ports_path = Field(path, "ports");
    MS_RETURN_IF_ERROR(RequireSequence(ports, ports_path));
    for (size_t i = 0; i < ports.size(); ++i) {
      MS_ASSIGN_OR_RETURN(PolicyPort port, ParsePolicyPort(ports[i], Element(ports_path, i), syntax));
      rule.ports.push_back(std::move(port));
    }
  }
  return rule;
}

absl::StatusOr<std::vector<PolicyRule>> ParseRules(const YAML::Node& spec, absl::string_view key,
                                                   absl::string_view peers_key, const RuleSyntax& syntax) {
  std::vector<PolicyRule> rules;
  const YAML::Node node = Child(spec, key);
  if (!IsSet(node)) return rules;
  const std::string path = Field("spec", key);
  MS_RETURN_IF_ERROR(RequireSequence(node, path));
  for (size_t i = 0; i < node.size(); ++i) {
    MS_ASSIGN_OR_RETURN(PolicyRule rule, ParseRule(node[i], Element(path, i), peers_key, syntax));
    rules.push_back(std::move(rule));
  }
  return rules;
}

// spec.policyTypes: nullopt when absent or empty, else (ingress, egress).
absl::StatusOr<std::optional<std::pair<bool, bool>>> ParsePolicyTypes(const YAML::Node& spec) {
  std::vector<std::string> types;
  if (const YAML::Node node = Child(spec, "policyTypes"); IsSet(node)) {
    MS_RETURN_IF_ERROR(RequireSequence(node, "spec.policyTypes"));
    for (size_t i = 0; i < node.size(); ++i) {
      const std::string path = Element("spec.policyTypes", i);
      MS_ASSIGN_OR_RETURN(std::string type, ReadString(node[i], path));
      if (type != "Ingress" && type != "Egress") {
        return FieldError(path, absl::StrCat("unknown policy type \"", type, "\" (expected Ingress or Egress)"));
      }
      types.push_back(std::move(type));
    }
  }
  if (types.empty()) return std::optional<std::pair<bool, bool>>();
  return std::optional<std::pair<bool, bool>>(
      std::pair{std::find(types.begin(), types.end(), "Ingress") != types.end(),
                std::find(types.begin(), types.end(), "Egress") != types.end()});
}

absl::StatusOr<NetworkPolicy> ParseNetworkPolicySpec(const YAML::Node& object, const RuleSyntax& syntax) {
  MS_ASSIGN_OR_RETURN(Metadata metadata, ParseMetadata(object, /*namespaced=*/true));
  NetworkPolicy policy;
  policy.namespace_name = metadata.namespace_name;
  policy.name = metadata.name;
  const YAML::Node spec = Child(object, "spec");
  if (!IsSet(spec)) return FieldError("spec.podSelector", "is required");
  MS_RETURN_IF_ERROR(RequireMap(spec, "spec"));
  const YAML::Node pod_selector = Child(spec, "podSelector");
  if (!IsSet(pod_selector)) {
    return FieldError("spec.podSelector", "is required (use {} to select every pod of the namespace)");
  }
  MS_ASSIGN_OR_RETURN(policy.pod_selector, ParseSelector(pod_selector, "spec.podSelector"));
  MS_ASSIGN_OR_RETURN(policy.ingress, ParseRules(spec, "ingress", "from", syntax));
  MS_ASSIGN_OR_RETURN(policy.egress, ParseRules(spec, "egress", "to", syntax));
  MS_ASSIGN_OR_RETURN(auto types, ParsePolicyTypes(spec));
  // Kubernetes defaulting (SetDefaults_NetworkPolicySpec): an empty or absent
  // list means Ingress, plus Egress when egress rules exist; an explicit
  // list is taken as is, and rules of an unlisted direction have no effect.
  if (!types) {
    policy.isolates_ingress = true;
    policy.isolates_egress = !policy.egress.empty();
  } else {
    policy.isolates_ingress = types->first;
    policy.isolates_egress = types->second;
  }
  return policy;
}

absl::StatusOr<NetworkPolicy> ParseNetworkPolicy(const YAML::Node& object) {
  return ParseNetworkPolicySpec(object, kNetworkPolicySyntax);
}

absl::StatusOr<SegmentPolicy> ParseSegmentPolicy(const YAML::Node& object) {
  SegmentPolicy segment;
  MS_ASSIGN_OR_RETURN(segment.policy, ParseNetworkPolicySpec(object, kSegmentPolicySyntax));
  const YAML::Node spec = Child(object, "spec");
  MS_ASSIGN_OR_RETURN(std::optional<std::string> enforcement,
                      ReadOptionalString(spec, "enforcement", "spec.enforcement"));
  if (!enforcement || *enforcement == "Enforce") {
    segment.enforcement = Enforcement::kEnforce;
  } else if (*enforcement == "Audit") {
    segment.enforcement = Enforcement::kAudit;
  } else {
    return FieldError("spec.enforcement",
                      absl::StrCat("unknown enforcement \"", *enforcement, "\" (expected Enforce or Audit)"));
  }
  return segment;
}

absl::StatusOr<ClusterSegmentPolicy> ParseClusterSegmentPolicy(const YAML::Node& object) {
  MS_ASSIGN_OR_RETURN(Metadata metadata, ParseMetadata(object, /*namespaced=*/false));
  ClusterSegmentPolicy policy;
  policy.name = metadata.name;
  const YAML::Node spec = Child(object, "spec");
  if (!IsSet(spec)) return FieldError("spec.priority", "is required");
  MS_RETURN_IF_ERROR(RequireMap(spec, "spec"));
  const YAML::Node priority = Child(spec, "priority");
  if (!IsSet(priority)) return FieldError("spec.priority", "is required (0..1000, lower is evaluated first)");
  MS_ASSIGN_OR_RETURN(int64_t number, ReadInteger(priority, "spec.priority"));
  if (number < kMinClusterPolicyPriority || number > kMaxClusterPolicyPriority) {
    return FieldError("spec.priority", absl::StrCat(number, " is out of range ", kMinClusterPolicyPriority, "..",
                                                    kMaxClusterPolicyPriority));
  }
  policy.priority = static_cast<int32_t>(number);
  if (const YAML::Node subject = Child(spec, "subject"); IsSet(subject)) {
    MS_RETURN_IF_ERROR(RequireMap(subject, "spec.subject"));
    if (const YAML::Node ns = Child(subject, "namespaceSelector"); IsSet(ns)) {
      MS_ASSIGN_OR_RETURN(policy.subject_namespace_selector, ParseSelector(ns, "spec.subject.namespaceSelector"));
    }
    if (const YAML::Node pods = Child(subject, "podSelector"); IsSet(pods)) {
      MS_ASSIGN_OR_RETURN(policy.subject_pod_selector, ParseSelector(pods, "spec.subject.podSelector"));
    }
  }
  MS_ASSIGN_OR_RETURN(policy.ingress, ParseRules(spec, "ingress", "from", kClusterSegmentPolicySyntax));
  MS_ASSIGN_OR_RETURN(policy.egress, ParseRules(spec, "egress", "to", kClusterSegmentPolicySyntax));
  MS_ASSIGN_OR_RETURN(auto types, ParsePolicyTypes(spec));
  policy.applies_ingress = types ? types->first : !policy.ingress.empty();
  policy.applies_egress = types ? types->second : !policy.egress.empty();
  return policy;
}

absl::StatusOr<Namespace> ParseNamespace(const YAML::Node& object) {
  MS_ASSIGN_OR_RETURN(Metadata metadata, ParseMetadata(object, /*namespaced=*/false));
  return Namespace{metadata.name, std::move(metadata.labels)};
}

absl::Status ParseContainerPorts(const YAML::Node& container, const std::string& path,
                                 std::vector<ContainerPort>& out) {
  MS_RETURN_IF_ERROR(RequireMap(container, path));
  const YAML::Node ports = Child(container, "ports");
  if (!IsSet(ports)) return absl::OkStatus();
  const std::string ports_path = Field(path, "ports");
  MS_RETURN_IF_ERROR(RequireSequence(ports, ports_path));
  for (size_t i = 0; i < ports.size(); ++i) {
    const std::string port_path = Element(ports_path, i);
    MS_RETURN_IF_ERROR(RequireMap(ports[i], port_path));
    ContainerPort port;
    MS_ASSIGN_OR_RETURN(std::optional<std::string> name,
                        ReadOptionalString(ports[i], "name", Field(port_path, "name")));
    if (name && !name->empty()) {
      MS_RETURN_IF_ERROR(ValidatePortName(*name, Field(port_path, "name")));
      port.name = *name;
    }
    const YAML::Node number = Child(ports[i], "containerPort");
    if (!IsSet(number)) return FieldError(Field(port_path, "containerPort"), "is required");
    MS_ASSIGN_OR_RETURN(port.port, ParsePortNumber(number, Field(port_path, "containerPort")));
    MS_ASSIGN_OR_RETURN(port.protocol, ParseProtocol(ports[i], Field(port_path, "protocol")));
    out.push_back(std::move(port));
  }
  return absl::OkStatus();
}

// Kubernetes gives a pod at most one address per family; the first one of
// a family is kept.
absl::Status AddPodIp(const std::string& text, const std::string& path, Pod& pod) {
  if (LooksLikeIpv6(text)) {
    const std::optional<Ipv6Address> address = ParseIpv6Address(text);
    if (!address) return FieldError(path, absl::StrCat("\"", text, "\" is not a valid IP address"));
    if (!pod.ipv6) pod.ipv6 = *address;
    return absl::OkStatus();
  }
  const std::optional<uint32_t> address = ParseIpv4Address(text);
  if (!address) return FieldError(path, absl::StrCat("\"", text, "\" is not a valid IP address"));
  if (!pod.ipv4) pod.ipv4 = *address;
  return absl::OkStatus();
}

absl::StatusOr<Pod> ParsePod(const YAML::Node& object) {
  MS_ASSIGN_OR_RETURN(Metadata metadata, ParseMetadata(object, /*namespaced=*/true));
  Pod pod;
  pod.namespace_name = metadata.namespace_name;
  pod.name = metadata.name;
  pod.labels = std::move(metadata.labels);
  if (const YAML::Node spec = Child(object, "spec"); IsSet(spec)) {
    MS_RETURN_IF_ERROR(RequireMap(spec, "spec"));
    MS_ASSIGN_OR_RETURN(std::optional<std::string> node_name,
                        ReadOptionalString(spec, "nodeName", "spec.nodeName"));
    pod.node_name = node_name.value_or("");
    if (const YAML::Node containers = Child(spec, "containers"); IsSet(containers)) {
      MS_RETURN_IF_ERROR(RequireSequence(containers, "spec.containers"));
      for (size_t i = 0; i < containers.size(); ++i) {
        MS_RETURN_IF_ERROR(
            ParseContainerPorts(containers[i], Element("spec.containers", i), pod.container_ports));
      }
    }
  }
  if (const YAML::Node status = Child(object, "status"); IsSet(status)) {
    MS_RETURN_IF_ERROR(RequireMap(status, "status"));
    MS_ASSIGN_OR_RETURN(std::optional<std::string> pod_ip,
                        ReadOptionalString(status, "podIP", "status.podIP"));
    if (pod_ip && !pod_ip->empty()) MS_RETURN_IF_ERROR(AddPodIp(*pod_ip, "status.podIP", pod));
    // podIPs[0] is podIP; a dual-stack pod lists its other family's address after it.
    if (const YAML::Node pod_ips = Child(status, "podIPs"); IsSet(pod_ips)) {
      MS_RETURN_IF_ERROR(RequireSequence(pod_ips, "status.podIPs"));
      for (size_t i = 0; i < pod_ips.size(); ++i) {
        const std::string element_path = Element("status.podIPs", i);
        MS_RETURN_IF_ERROR(RequireMap(pod_ips[i], element_path));
        MS_ASSIGN_OR_RETURN(std::optional<std::string> ip,
                            ReadOptionalString(pod_ips[i], "ip", Field(element_path, "ip")));
        if (ip && !ip->empty()) MS_RETURN_IF_ERROR(AddPodIp(*ip, Field(element_path, "ip"), pod));
      }
    }
  }
  return pod;
}

// "ns/name" (or "name") for messages, read leniently: the strict read of
// metadata happens later and reports its own errors.
std::string DescribeObject(const YAML::Node& object, bool default_namespace) {
  const YAML::Node metadata = Child(object, "metadata");
  if (!metadata.IsMap()) return "<unnamed>";
  const YAML::Node name = Child(metadata, "name");
  const YAML::Node ns = Child(metadata, "namespace");
  std::string text = name.IsScalar() && !name.Scalar().empty() ? name.Scalar() : "<unnamed>";
  if (ns.IsScalar() && !ns.Scalar().empty()) return absl::StrCat(ns.Scalar(), "/", text);
  return default_namespace ? absl::StrCat("default/", text) : text;
}

absl::Status ParseObject(const YAML::Node& object, const std::string& where, ParsedManifests& out) {
  if (!object.IsMap()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": must be a Kubernetes object (a map)"));
  }
  const auto at = [&where](const absl::Status& status) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": ", status.message()));
  };
  absl::StatusOr<std::optional<std::string>> kind = ReadOptionalString(object, "kind", "kind");
  if (!kind.ok()) return at(kind.status());
  if (!*kind || (*kind)->empty()) return at(FieldError("kind", "is required"));
  absl::StatusOr<std::optional<std::string>> api_version =
      ReadOptionalString(object, "apiVersion", "apiVersion");
  if (!api_version.ok()) return at(api_version.status());
  if (!*api_version || (*api_version)->empty()) return at(FieldError("apiVersion", "is required"));

  if (**kind == "List") {
    const YAML::Node items = Child(object, "items");
    if (!IsSet(items)) return absl::OkStatus();
    if (absl::Status status = RequireSequence(items, "items"); !status.ok()) return at(status);
    for (size_t i = 0; i < items.size(); ++i) {
      if (!IsSet(items[i])) continue;
      MS_RETURN_IF_ERROR(ParseObject(items[i], absl::StrCat(where, " ", Element("items", i)), out));
    }
    return absl::OkStatus();
  }

  const std::string& type = **kind;
  const std::string& group_version = **api_version;
  const bool namespaced_default = type == "Pod" || type == "NetworkPolicy" || type == kSegmentPolicyKind;
  const std::string name = DescribeObject(object, namespaced_default);
  const auto in_object = [&](const absl::Status& status) {
    return absl::InvalidArgumentError(absl::StrCat(where, " (", type, " ", name, "): ", status.message()));
  };
  const std::optional<std::string> expected_version = ApiVersionOfKind(type);
  if (!expected_version || *expected_version != group_version) {
    out.ignored.push_back(absl::StrCat(type, " ", DescribeObject(object, false)));
    return absl::OkStatus();
  }
  absl::StatusOr<ClusterObject> parsed = ParseClusterObject(type, object);
  if (!parsed.ok()) return in_object(parsed.status());
  std::visit(
      [&out](auto&& value) {
        using T = std::decay_t<decltype(value)>;
        if constexpr (std::is_same_v<T, Namespace>) out.namespaces.push_back(std::move(value));
        if constexpr (std::is_same_v<T, Pod>) out.pods.push_back(std::move(value));
        if constexpr (std::is_same_v<T, NetworkPolicy>) out.network_policies.push_back(std::move(value));
        if constexpr (std::is_same_v<T, SegmentPolicy>) out.segment_policies.push_back(std::move(value));
        if constexpr (std::is_same_v<T, ClusterSegmentPolicy>) {
          out.cluster_segment_policies.push_back(std::move(value));
        }
      },
      *std::move(parsed));
  return absl::OkStatus();
}

}  // namespace

std::optional<std::string> ApiVersionOfKind(absl::string_view kind) {
  if (kind == "Namespace" || kind == "Pod") return "v1";
  if (kind == "NetworkPolicy") return "networking.k8s.io/v1";
  if (kind == kSegmentPolicyKind || kind == kClusterSegmentPolicyKind) return std::string(kMicrosegApiVersion);
  return std::nullopt;
}

absl::StatusOr<ClusterObject> ParseClusterObject(absl::string_view kind, const YAML::Node& object) {
  if (!object.IsMap()) return absl::InvalidArgumentError("must be a Kubernetes object (a map)");
  try {
    const auto wrap = [](auto parsed) -> absl::StatusOr<ClusterObject> {
      if (!parsed.ok()) return parsed.status();
      return ClusterObject(*std::move(parsed));
    };
    if (kind == "Namespace") return wrap(ParseNamespace(object));
    if (kind == "Pod") return wrap(ParsePod(object));
    if (kind == "NetworkPolicy") return wrap(ParseNetworkPolicy(object));
    if (kind == kSegmentPolicyKind) return wrap(ParseSegmentPolicy(object));
    if (kind == kClusterSegmentPolicyKind) return wrap(ParseClusterSegmentPolicy(object));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(e.what());
  }
  return absl::InvalidArgumentError(absl::StrCat("kind \"", kind, "\" is not enforced by microseg"));
}

namespace {

// One object (a List's items one by one) into `out`, or into `rejected`.
void ParseObjectKeepingGood(const YAML::Node& object, const std::string& where, PerObjectParse& out) {
  if (object.IsMap()) {
    const YAML::Node kind = Child(object, "kind");
    const absl::StatusOr<std::optional<std::string>> api_version =
        ReadOptionalString(object, "apiVersion", "apiVersion");
    // A List that is itself invalid is one rejected object, as in ParseManifests.
    const bool valid_list_header = kind.IsScalar() && kind.Scalar() == "List" && api_version.ok() &&
                                   *api_version && !(*api_version)->empty();
    if (valid_list_header) {
      const YAML::Node items = Child(object, "items");
      if (items.IsSequence()) {
        for (size_t i = 0; i < items.size(); ++i) {
          if (IsSet(items[i])) ParseObjectKeepingGood(items[i], absl::StrCat(where, " ", Element("items", i)), out);
        }
        return;
      }
    }
  }
  ParsedManifests one;
  absl::Status status;
  try {
    status = ParseObject(object, where, one);
  } catch (const YAML::Exception& e) {
    status = absl::InvalidArgumentError(absl::StrCat(where, ": ", e.what()));
  }
  if (status.ok()) {
    const auto append = [](auto& into, auto& from) { std::move(from.begin(), from.end(), std::back_inserter(into)); };
    append(out.parsed.namespaces, one.namespaces);
    append(out.parsed.pods, one.pods);
    append(out.parsed.network_policies, one.network_policies);
    append(out.parsed.segment_policies, one.segment_policies);
    append(out.parsed.cluster_segment_policies, one.cluster_segment_policies);
    append(out.parsed.ignored, one.ignored);
    return;
  }
  RejectedObject rejected;
  rejected.message = std::string(status.message());
  if (object.IsMap()) {
    const YAML::Node kind = Child(object, "kind");
    const YAML::Node metadata = Child(object, "metadata");
    const YAML::Node name = metadata.IsMap() ? Child(metadata, "name") : YAML::Node();
    if (kind.IsScalar() && name.IsScalar() && !name.Scalar().empty()) {
      rejected.kind = kind.Scalar();
      const bool namespaced = rejected.kind == "Pod" || rejected.kind == "NetworkPolicy" ||
                              rejected.kind == kSegmentPolicyKind;
      rejected.key = namespaced ? DescribeObject(object, /*default_namespace=*/true) : name.Scalar();
    }
  }
  out.rejected.push_back(std::move(rejected));
}

}  // namespace

absl::StatusOr<PerObjectParse> ParseManifestsPerObject(std::string_view yaml_text) {
  absl::StatusOr<std::vector<YAML::Node>> documents = LoadYamlDocuments(yaml_text);
  if (!documents.ok()) return documents.status();
  PerObjectParse out;
  for (size_t i = 0; i < documents->size(); ++i) {
    if (!IsSet((*documents)[i])) continue;
    ParseObjectKeepingGood((*documents)[i], absl::StrCat("document ", i + 1), out);
  }
  return out;
}

absl::StatusOr<ParsedManifests> ParseManifests(std::string_view yaml_text) {
  MS_ASSIGN_OR_RETURN(std::vector<YAML::Node> documents, LoadYamlDocuments(yaml_text));
  ParsedManifests parsed;
  for (size_t i = 0; i < documents.size(); ++i) {
    if (!IsSet(documents[i])) continue;  // empty document, e.g. a trailing "---"
    // Documents are numbered from 1, as a person counts them in the file.
    const std::string where = absl::StrCat("document ", i + 1);
    try {
      MS_RETURN_IF_ERROR(ParseObject(documents[i], where, parsed));
    } catch (const YAML::Exception& e) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": ", e.what()));
    }
  }
  return parsed;
}

ClusterState ClusterStateOf(const ParsedManifests& parsed) {
  ClusterState cluster;
  for (const Namespace& ns : parsed.namespaces) cluster.namespaces[ns.name] = ns;
  for (const Pod& pod : parsed.pods) cluster.pods[pod.namespace_name + "/" + pod.name] = pod;
  for (const NetworkPolicy& policy : parsed.network_policies) {
    cluster.network_policies[policy.namespace_name + "/" + policy.name] = policy;
  }
  for (const SegmentPolicy& segment : parsed.segment_policies) {
    cluster.segment_policies[segment.policy.namespace_name + "/" + segment.policy.name] = segment;
  }
  for (const ClusterSegmentPolicy& policy : parsed.cluster_segment_policies) {
    cluster.cluster_segment_policies[policy.name] = policy;
  }
  return cluster;
}

}  // namespace microseg
