// Domain model of the cluster objects the agent enforces: what the manifest
// parser (and later the Kubernetes watch client) produces and the policy
// compiler consumes. Plain values, no behaviour.
#pragma once

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
  std::optional<uint32_t> ipv4;  // status.podIP, host byte order
  std::vector<ContainerPort> container_ports;
  friend bool operator==(const Pod&, const Pod&) = default;
};

struct IpBlock {
  Ipv4Cidr cidr;
  std::vector<Ipv4Cidr> except;
  friend bool operator==(const IpBlock&, const IpBlock&) = default;
};

// One element of `from`/`to`. Exactly one of {selectors, ip_block} is set:
// pod_selector and/or namespace_selector (AND), or ip_block.
struct PolicyPeer {
  std::optional<LabelSelector> pod_selector;
  std::optional<LabelSelector> namespace_selector;
  std::optional<IpBlock> ip_block;
  friend bool operator==(const PolicyPeer&, const PolicyPeer&) = default;
};

// `port` absent: every port of `protocol`. A string is a named container port.
struct PolicyPort {
  Protocol protocol = Protocol::kTcp;
  std::optional<std::variant<uint16_t, std::string>> port;
  std::optional<uint16_t> end_port;
  friend bool operator==(const PolicyPort&, const PolicyPort&) = default;
};

// Empty `peers`: every peer. Empty `ports`: every port and protocol.
struct PolicyRule {
  std::vector<PolicyPeer> peers;
  std::vector<PolicyPort> ports;
  // The rule listed peers but all of them were IPv6 ipBlocks, which the IPv4
  // datapath cannot match: the rule allows nothing (and must not be mistaken
  // for "every peer" because `peers` is empty). Kept so rule indices stay stable.
  bool only_ipv6_peers = false;
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

// Everything the agent knows about the cluster. Keys are "name" for
// namespaces and "namespace/name" for namespaced objects.
struct ClusterState {
  std::map<std::string, Namespace> namespaces;
  std::map<std::string, Pod> pods;
  std::map<std::string, NetworkPolicy> network_policies;
};

// A pod veth on this node, registered by the CNI plugin.
struct LocalEndpoint {
  uint32_t endpoint_id = 0;  // agent-assigned, never 0
  uint32_t ifindex = 0;      // host-side veth
  std::string pod_namespace;
  std::string pod_name;
  uint32_t ipv4 = 0;  // host byte order
  friend bool operator==(const LocalEndpoint&, const LocalEndpoint&) = default;
};

}  // namespace microseg
