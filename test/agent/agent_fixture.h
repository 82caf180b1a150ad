// What the agent suites build again and again: a pod's CNI registration, a
// one-rule ingress NetworkPolicy, and an Agent on the fake map writer with a
// fresh registry directory.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "agent.h"
#include "fake_map_writer.h"
#include "temp_dir.h"

namespace microseg::testing {

// Pod x/<name> as microseg-cni registers it: eth0, host veth veth-<name>.
inline EndpointRecord PodRecord(const std::string& name, uint32_t ifindex, const std::string& ip) {
  EndpointRecord r;
  r.container_id = "cid-" + name;
  r.ifname = "eth0";
  r.pod_namespace = "x";
  r.pod_name = name;
  r.host_ifname = "veth-" + name;
  r.host_ifindex = ifindex;
  r.ips = {ip + "/24"};
  return r;
}

// x/<name>: pods labelled key=target accept TCP `port` from pods labelled key=from.
inline NetworkPolicy AllowIngressFrom(const std::string& name, const std::string& key, const std::string& target,
                                      const std::string& from, uint16_t port) {
  NetworkPolicy policy;
  policy.namespace_name = "x";
  policy.name = name;
  policy.pod_selector.match_labels = {{key, target}};
  PolicyPeer peer;
  peer.pod_selector = LabelSelector{{{key, from}}, {}};
  PolicyPort p;
  p.port = port;
  policy.ingress.push_back({{peer}, {p}});
  return policy;
}

// An agent of node-1 on the fake writer; `purged` lists the endpoints whose
// sessions it asked to delete.
struct AgentFixture {
  TempDir dir;
  FakeMapWriter writer;
  EndpointRegistry registry{dir.path()};
  std::vector<uint32_t> purged;
  Agent agent{"node-1", writer, registry, MapState{}, [this](uint32_t id) {
                purged.push_back(id);
                return absl::OkStatus();
              }};
  AgentFixture() { REQUIRE(registry.Load().ok()); }
};

}  // namespace microseg::testing
