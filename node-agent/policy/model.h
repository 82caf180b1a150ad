// Domain model of the cluster objects the agent enforces: what the manifest
// parser (and later the Kubernetes watch client) produces and the policy
// compiler consumes. Plain values, no behaviour.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace microseg {

using Labels = std::map<std::string, std::string>;

enum class Protocol : uint8_t { kTcp = 6, kUdp = 17, kSctp = 132 };

struct LabelRequirement {
  enum class Operator { kIn, kNotIn, kExists, kDoesNotExist };
  std::string key;
  Operator op = Operator::kExists;
  std::vector<std::string> values;
  friend bool operator==(const LabelRequirement&, const LabelRequirement&) = default;
};

// matchLabels AND matchExpressions; an empty selector matches everything.
struct LabelSelector {
  Labels match_labels;
  std::vector<LabelRequirement> match_expressions;
  friend bool operator==(const LabelSelector&, const LabelSelector&) = default;
};

// IPv4 prefix, address in host byte order, host bits zero.
struct Ipv4Cidr {
  uint32_t addr = 0;
  uint8_t prefix_len = 32;
  friend bool operator==(const Ipv4Cidr&, const Ipv4Cidr&) = default;
};

// An IPv6 address as the BPF maps hold it (datapath.h): four words in
// network order, i.e. the 16 bytes as on the wire. All zero: none (or ::).
using Ipv6Address = std::array<uint32_t, 4>;

// IPv6 prefix, host bits zero.
struct Ipv6Cidr {
  Ipv6Address addr{};
  uint8_t prefix_len = 128;
  friend bool operator==(const Ipv6Cidr&, const Ipv6Cidr&) = default;
};

struct Namespace {
  std::string name;
  Labels labels;
  friend bool operator==(const Namespace&, const Namespace&) = default;
};

struct ContainerPort {
  std::string name;  // may be empty
  uint16_t port = 0;
  Protocol protocol = Protocol::kTcp;
  friend bool operator==(const ContainerPort&, const ContainerPort&) = default;
};

struct Pod {
  std::string namespace_name;
  std::string name;
  Labels labels;
  std::string node_name;
  // status.podIPs (or status.podIP): at most one address per family.
  std::optional<uint32_t> ipv4;  // host byte order
  std::vector<ContainerPort> container_ports;
  std::optional<Ipv6Address> ipv6;  // last, so aggregate initialisers of IPv4 pods stay as they were
  friend bool operator==(const Pod&, const Pod&) = default;
};

// An ipBlock of one family: its except entries are strict subsets of cidr.
template <typename Cidr>
struct BasicIpBlock {
  Cidr cidr;
  std::vector<Cidr> except;
  friend bool operator==(const BasicIpBlock&, const BasicIpBlock&) = default;
};
using IpBlock = BasicIpBlock<Ipv4Cidr>;
using Ipv6Block = BasicIpBlock<Ipv6Cidr>;

// One element of `from`/`to`. Exactly one of {selectors, ip_block,
// ipv6_block} is set: pod_selector and/or namespace_selector (AND), or an
// ipBlock of one family (an ipBlock matches addresses of its family only).
struct PolicyPeer {
  std::optional<LabelSelector> pod_selector;
  std::optional<LabelSelector> namespace_selector;
  std::optional<IpBlock> ip_block;
  std::optional<Ipv6Block> ipv6_block;
  bool is_ip_block() const { return ip_block || ipv6_block; }
  friend bool operator==(const PolicyPeer&, const PolicyPeer&) = default;
};

// `port` absent: every port of `protocol`. A string is a named container port.
struct PolicyPort {
  Protocol protocol = Protocol::kTcp;
  std::optional<std::variant<uint16_t, std::string>> port;
  std::optional<uint16_t> end_port;
  friend bool operator==(const PolicyPort&, const PolicyPort&) = default;
};

// What a matching rule does. NetworkPolicy rules always allow; SegmentPolicy
// rules Allow or Deny; ClusterSegmentPolicy rules Allow, Deny or Pass (hand
// the decision to the namespace tier).
enum class RuleAction : uint8_t { kAllow, kDeny, kPass };

// Empty `peers`: every peer of both families. Empty `ports`: every port and protocol.
struct PolicyRule {
  std::vector<PolicyPeer> peers;
  std::vector<PolicyPort> ports;
  RuleAction action = RuleAction::kAllow;
  friend bool operator==(const PolicyRule&, const PolicyRule&) = default;
};

struct NetworkPolicy {
  std::string namespace_name;
  std::string name;
  LabelSelector pod_selector;
  // policyTypes after defaulting: Ingress always unless only Egress is listed;
  // Egress when listed or when egress rules exist.
  bool isolates_ingress = true;
  bool isolates_egress = false;
  std::vector<PolicyRule> ingress;
  std::vector<PolicyRule> egress;
  friend bool operator==(const NetworkPolicy&, const NetworkPolicy&) = default;
};

// Audit: the policy's would-be drops are allowed and reported (ALLOW_AUDIT).
enum class Enforcement : uint8_t { kEnforce, kAudit };

// microseg.io/v1alpha1 SegmentPolicy: a NetworkPolicy (same selectors,
// policyTypes defaulting, isolation) whose rules may Deny, optionally audited.
struct SegmentPolicy {
  NetworkPolicy policy;  // rules carry kAllow or kDeny
  Enforcement enforcement = Enforcement::kEnforce;
  friend bool operator==(const SegmentPolicy&, const SegmentPolicy&) = default;
};

// microseg.io/v1alpha1 ClusterSegmentPolicy, cluster-scoped. Evaluated before
// the namespace tier in (priority, name) order. Peers with a podSelector but
// no namespaceSelector select pods in every namespace (the parser stores an
// empty namespace_selector for them).
struct ClusterSegmentPolicy {
  std::string name;
  int32_t priority = 0;  // 0..1000, lower first
  LabelSelector subject_namespace_selector;  // empty: every namespace
  LabelSelector subject_pod_selector;        // empty: every pod
  // policyTypes after defaulting: a direction applies when listed, or, with
  // no list, when it has rules. Rules of a direction not applied are ignored.
  bool applies_ingress = false;
  bool applies_egress = false;
  std::vector<PolicyRule> ingress;  // actions kAllow, kDeny or kPass
  std::vector<PolicyRule> egress;
  friend bool operator==(const ClusterSegmentPolicy&, const ClusterSegmentPolicy&) = default;
};

// Everything the agent knows about the cluster. Keys are "name" for
// namespaces and cluster-scoped objects, "namespace/name" for namespaced ones.
struct ClusterState {
  std::map<std::string, Namespace> namespaces;
  std::map<std::string, Pod> pods;
  std::map<std::string, NetworkPolicy> network_policies;
  std::map<std::string, SegmentPolicy> segment_policies;
  std::map<std::string, ClusterSegmentPolicy> cluster_segment_policies;
};

// A pod veth on this node, registered by the CNI plugin.
struct LocalEndpoint {
  uint32_t endpoint_id = 0;  // agent-assigned, never 0
  uint32_t ifindex = 0;      // host-side veth
  std::string pod_namespace;
  std::string pod_name;
  uint32_t ipv4 = 0;  // host byte order
  std::array<uint32_t, 4> ipv6{};  // net order (as ms_endpoint.ipv6); all zero: the pod has none
  friend bool operator==(const LocalEndpoint&, const LocalEndpoint&) = default;
};

}  // namespace microseg
