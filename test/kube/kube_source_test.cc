#include <catch2/catch.hpp>

#include "fake_transport.h"
#include "ipv6_address.h"
#include "kube/kube_source.h"
#include "kube/object_converter.h"

namespace microseg::kube {
namespace {

using testing::FakeTransport;

nlohmann::json NetworkPolicyJson(const std::string& rv, const std::string& cidr) {
  return nlohmann::json::parse(R"({
    "kind": "NetworkPolicy", "apiVersion": "networking.k8s.io/v1",
    "metadata": {"name": "web", "namespace": "x", "resourceVersion": ")" + rv + R"(", "uid": "u1", "generation": 1},
    "spec": {"podSelector": {"matchLabels": {"app": "web"}},
             "ingress": [{"from": [{"ipBlock": {"cidr": ")" + cidr + R"("}}], "ports": [{"port": 80}]}]}})");
}

nlohmann::json PodJson(const std::string& name, const std::string& phase, bool host_network) {
  nlohmann::json pod = nlohmann::json::parse(R"({
    "kind": "Pod", "apiVersion": "v1",
    "metadata": {"name": "", "namespace": "x", "resourceVersion": "3", "labels": {"app": "web"},
                 "annotations": {"big": "ignored"}, "ownerReferences": [{"kind": "ReplicaSet", "name": "rs"}]},
    "spec": {"nodeName": "node-1", "containers": [{"name": "c", "image": "nginx", "ports": [{"name": "http", "containerPort": 80}],
             "env": [{"name": "A", "value": "1"}]}], "volumes": [{"name": "v", "emptyDir": {}}]},
    "status": {"phase": "", "podIP": "10.244.1.5", "podIPs": [{"ip": "10.244.1.5"}, {"ip": "fd00::5"}]}})");
  pod["metadata"]["name"] = name;
  pod["status"]["phase"] = phase;
  pod["spec"]["hostNetwork"] = host_network;
  return pod;
}

ObjectChange Upsert(nlohmann::json object) { return {ObjectChange::Kind::kUpsert, ObjectKey(object), object}; }
ObjectChange Delete(nlohmann::json object) { return {ObjectChange::Kind::kDelete, ObjectKey(object), object}; }

KubeSourceOptions NoStatus() {
  KubeSourceOptions options;
  options.node_name = "node-1";
  options.write_status = false;
  return options;
}

TEST_CASE("pods convert with only what policy needs; finished and host-network pods have no address") {
  struct Case {
    std::string phase;
    bool host_network;
    bool has_ip;
  };
  const Case cases[] = {{"Running", false, true}, {"Pending", false, true}, {"Succeeded", false, false},
                        {"Failed", false, false}, {"Running", true, false}};
  for (const Case& c : cases) {
    CAPTURE(c.phase, c.host_network);
    auto parsed = ConvertObject(PodJson("p", c.phase, c.host_network));
    REQUIRE(parsed.ok());
    REQUIRE(std::holds_alternative<Pod>(*parsed));
    const Pod& pod = std::get<Pod>(*parsed);
    CHECK(pod.namespace_name == "x");
    CHECK(pod.node_name == "node-1");
    CHECK(pod.labels == Labels{{"app", "web"}});
    CHECK(pod.container_ports.size() == 1);
    CHECK(pod.ipv4.has_value() == c.has_ip);
    // status.podIPs carries the dual-stack pod's IPv6 address.
    CHECK(pod.ipv6.has_value() == c.has_ip);
    if (pod.ipv6) CHECK(FormatIpv6(*pod.ipv6) == "fd00::5");
  }
}

TEST_CASE("an IPv6-only pod converts with its IPv6 address and no IPv4 one") {
  nlohmann::json json = PodJson("v6", "Running", false);
  json["status"]["podIP"] = "fd00::9";
  json["status"]["podIPs"] = nlohmann::json::parse(R"([{"ip": "fd00::9"}])");
  auto parsed = ConvertObject(json);
  REQUIRE(parsed.ok());
  const Pod& pod = std::get<Pod>(*parsed);
  CHECK_FALSE(pod.ipv4.has_value());
  REQUIRE(pod.ipv6.has_value());
  CHECK(FormatIpv6(*pod.ipv6) == "fd00::9");
}

TEST_CASE("invalid policy version: rejected with its reason, the last good version stays; delete clears both") {
  FakeTransport transport;
  KubeSource source(transport, NoStatus());
  source.OnChanges(NetworkPoliciesResource(), {Upsert(NetworkPolicyJson("1", "10.244.0.0/16"))}, true);
  auto state = source.TakeChangedState();
  REQUIRE(state.has_value());
  REQUIRE(state->network_policies.count("x/web"));
  const Ipv4Cidr good = state->network_policies.at("x/web").ingress.at(0).peers.at(0).ip_block->cidr;
  CHECK(source.errors().empty());

  source.OnChanges(NetworkPoliciesResource(), {Upsert(NetworkPolicyJson("2", "10.244.0.0/99"))}, false);
  state = source.TakeChangedState();
  REQUIRE(state.has_value());
  CHECK(state->network_policies.at("x/web").ingress.at(0).peers.at(0).ip_block->cidr == good);
  auto errors = source.errors();
  REQUIRE(errors.size() == 1);
  CHECK(errors[0].file == "NetworkPolicy x/web");
  CHECK_THAT(errors[0].message, Catch::StartsWith("spec.ingress[0].from[0].ipBlock.cidr"));
  CHECK(source.rejected_versions() == 1);

  source.OnChanges(NetworkPoliciesResource(), {Upsert(NetworkPolicyJson("3", "10.0.0.0/8"))}, false);
  state = source.TakeChangedState();
  CHECK(state->network_policies.at("x/web").ingress.at(0).peers.at(0).ip_block->cidr.prefix_len == 8);
  CHECK(source.errors().empty());

  source.OnChanges(NetworkPoliciesResource(), {Delete(NetworkPolicyJson("4", "10.0.0.0/8"))}, false);
  state = source.TakeChangedState();
  CHECK(state->network_policies.empty());
  CHECK_FALSE(source.TakeChangedState().has_value());  // nothing new since
}

TEST_CASE("namespaces and pods are keyed like the manifest source; deletes remove them") {
  FakeTransport transport;
  KubeSource source(transport, NoStatus());
  nlohmann::json ns = {{"kind", "Namespace"}, {"apiVersion", "v1"},
                       {"metadata", {{"name", "x"}, {"resourceVersion", "1"}, {"labels", {{"team", "a"}}}}}};
  source.OnChanges(NamespacesResource(), {Upsert(ns)}, true);
  source.OnChanges(PodsResource(), {Upsert(PodJson("p", "Running", false))}, true);
  auto state = source.TakeChangedState();
  REQUIRE(state.has_value());
  CHECK(state->namespaces.at("x").labels == Labels{{"team", "a"}});
  CHECK(state->pods.at("x/p").ipv4.has_value());
  source.OnChanges(PodsResource(), {Delete(PodJson("p", "Running", false))}, false);
  CHECK(source.TakeChangedState()->pods.empty());
}

nlohmann::json SegmentPolicyJson(const std::string& rv, bool with_app_protocol) {
  nlohmann::json object = nlohmann::json::parse(R"({
    "kind": "SegmentPolicy", "apiVersion": "microseg.io/v1alpha1",
    "metadata": {"name": "deny-x", "namespace": "y", "resourceVersion": "", "uid": "u2", "generation": 1},
    "spec": {"podSelector": {}, "policyTypes": ["Ingress"],
             "ingress": [{"action": "Deny", "from": [{"namespaceSelector": {"matchLabels": {"ns": "x"}}}],
                          "ports": [{"protocol": "TCP", "port": 80}]}]}})");
  object["metadata"]["resourceVersion"] = rv;
  if (with_app_protocol) object["spec"]["ingress"][0]["ports"][0]["appProtocol"] = "http";
  return object;
}

TEST_CASE("SegmentPolicy and ClusterSegmentPolicy go into the model; an invalid one keeps the last good") {
  FakeTransport transport;
  KubeSource source(transport, NoStatus());
  source.OnChanges(SegmentPoliciesResource(), {Upsert(SegmentPolicyJson("1", false))}, true);
  nlohmann::json csp = nlohmann::json::parse(R"({
    "kind": "ClusterSegmentPolicy", "apiVersion": "microseg.io/v1alpha1",
    "metadata": {"name": "baseline", "resourceVersion": "2"},
    "spec": {"priority": 10, "policyTypes": ["Ingress"], "ingress": [{"action": "Pass"}]}})");
  source.OnChanges(ClusterSegmentPoliciesResource(), {Upsert(csp)}, true);
  auto state = source.TakeChangedState();
  REQUIRE(state.has_value());
  REQUIRE(state->segment_policies.count("y/deny-x"));
  CHECK(state->segment_policies.at("y/deny-x").policy.ingress.size() == 1);
  REQUIRE(state->cluster_segment_policies.count("baseline"));
  CHECK(state->cluster_segment_policies.at("baseline").priority == 10);

  source.OnChanges(SegmentPoliciesResource(), {Upsert(SegmentPolicyJson("3", true))}, false);
  state = source.TakeChangedState();
  CHECK(state->segment_policies.count("y/deny-x"));  // last good version
  auto errors = source.errors();
  REQUIRE(errors.size() == 1);
  CHECK(errors[0].file == "SegmentPolicy y/deny-x");
  CHECK_THAT(errors[0].message, Catch::Contains("appProtocol"));
  source.OnChanges(SegmentPoliciesResource(), {Delete(SegmentPolicyJson("4", true))}, false);
  CHECK(source.TakeChangedState()->segment_policies.empty());
  CHECK(source.errors().empty());
}

TEST_CASE("an empty initial list still counts as a change (it completes the initial state)") {
  FakeTransport transport;
  KubeSource source(transport, NoStatus());
  source.OnChanges(SegmentPoliciesResource(), {}, true);
  CHECK(source.TakeChangedState().has_value());
}

}  // namespace
}  // namespace microseg::kube
