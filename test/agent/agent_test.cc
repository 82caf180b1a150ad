#include "agent.h"

#include <arpa/inet.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <map>
#include <string>

#include "agent_fixture.h"
#include "ipv6_address.h"
#include "metrics.h"

namespace microseg {
namespace {

using testing::AllowIngressFrom;
using testing::FakeMapWriter;
using testing::PodRecord;

bool SameMaps(const MapState& a, const MapState& b) {
  const auto same = [](const auto& x, const auto& y) {
    return x.size() == y.size() && std::equal(x.begin(), x.end(), y.begin(), [](const auto& p, const auto& q) {
             return BytewiseEqual(p.first, q.first) && BytewiseEqual(p.second, q.second);
           });
  };
  return same(a.endpoints, b.endpoints) && same(a.exact, b.exact) && same(a.lpm, b.lpm) &&
         same(a.exact6, b.exact6) && same(a.lpm6, b.lpm6);
}

// x/b accepts TCP 80 from pods labelled pod=a; nothing else.
ClusterState AllowAToB() {
  ClusterState cluster;
  cluster.namespaces["x"] = {"x", {{"ns", "x"}}};
  cluster.pods["x/a"] = {"x", "a", {{"pod", "a"}}, "node-1", 0x0af40102u, {}};
  cluster.pods["x/b"] = {"x", "b", {{"pod", "b"}}, "node-1", 0x0af40103u, {}};
  cluster.network_policies["x/allow-a"] = AllowIngressFrom("allow-a", "pod", "b", "a", 80);
  return cluster;
}

using Fixture = testing::AgentFixture;

TEST_CASE("an endpoint's policy is in the maps when AddEndpoint returns", "[agent]") {
  Fixture f;
  REQUIRE(f.agent.Start(AllowAToB()).ok());
  auto b = f.agent.AddEndpoint(PodRecord("b", 7, "10.244.1.3"));
  REQUIRE(b.ok());
  CHECK(b->policy.ingress_isolated);
  CHECK_FALSE(b->policy.egress_isolated);
  CHECK(b->policy.policies == std::vector<std::string>{"x/allow-a"});
  CHECK(b->policy_revision != 0);
  REQUIRE(f.writer.maps.endpoints.count(7) == 1);
  const ms_endpoint& ep = f.writer.maps.endpoints.at(7);
  CHECK(ep.endpoint_id == b->record.endpoint_id);
  CHECK(ep.ipv4 == htonl(0x0af40103u));
  CHECK(ep.flags == MS_EP_F_INGRESS_ISOLATED);
  ms_policy_key key{};
  key.endpoint_id = ep.endpoint_id;
  key.peer_ipv4 = htonl(0x0af40102u);
  key.port = 80;
  key.proto = IPPROTO_TCP;
  key.direction = MS_DIR_INGRESS;
  REQUIRE(f.writer.maps.exact.count(key) == 1);
  CHECK(f.writer.maps.exact.at(key).action == MS_ACTION_ALLOW);
}

TEST_CASE("an IPv6-only pod registers and gets its policy in the IPv6 maps", "[agent][ipv6]") {
  Fixture f;
  ClusterState cluster = AllowAToB();
  // Dual-stack client a: its IPv6 address from status.podIPs.
  cluster.pods["x/a"].ipv6 = *ParseIpv6Address("fd00::102");
  REQUIRE(f.agent.Start(cluster).ok());
  EndpointRecord record = PodRecord("b", 7, "10.244.1.3");
  record.ips = {"fd00::103/64"};
  auto b = f.agent.AddEndpoint(record);
  REQUIRE(b.ok());
  CHECK(b->policy.ingress_isolated);
  const ms_endpoint& ep = f.writer.maps.endpoints.at(7);
  CHECK(ep.ipv4 == 0);
  CHECK(std::memcmp(ep.ipv6, ParseIpv6Address("fd00::103")->data(), sizeof ep.ipv6) == 0);
  CHECK(ep.flags == MS_EP_F_INGRESS_ISOLATED);
  ms_policy6_key key{};
  key.endpoint_id = ep.endpoint_id;
  std::memcpy(key.peer_ipv6, ParseIpv6Address("fd00::102")->data(), sizeof key.peer_ipv6);
  key.port = 80;
  key.proto = IPPROTO_TCP;
  key.direction = MS_DIR_INGRESS;
  REQUIRE(f.writer.maps.exact6.count(key) == 1);
  CHECK(f.writer.maps.exact6.at(key).action == MS_ACTION_ALLOW);
  CHECK(f.agent.counters().exact6_entries == f.writer.maps.exact6.size());
  CHECK(f.agent.counters().owned_map_entries()[MS_PMAP_POLICY6] == f.writer.maps.exact6.size());
}

TEST_CASE("a failed map write leaves the previous policy and registry in place", "[agent]") {
  Fixture f;
  REQUIRE(f.agent.Start(AllowAToB()).ok());
  REQUIRE(f.agent.AddEndpoint(PodRecord("a", 6, "10.244.1.2")).ok());
  const MapState before = f.writer.maps;

  // Fail in the middle of writing the new endpoint's entries.
  f.writer.fail_at_operation = f.writer.attempted_operations + 1;
  auto b = f.agent.AddEndpoint(PodRecord("b", 7, "10.244.1.3"));
  REQUIRE_FALSE(b.ok());
  CHECK(b.status().code() == absl::StatusCode::kResourceExhausted);
  CHECK_THAT(std::string(b.status().message()), Catch::Contains("previous policy kept"));
  CHECK(f.registry.Find({"cid-b", "eth0"}) == nullptr);
  CHECK(f.agent.ListEndpoints().size() == 1);
  // The rollback itself needs the writer: let it work again, as a full map
  // still accepts deletes.
  f.writer.fail_at_operation.reset();
  CHECK(SameMaps(f.writer.maps, before) == false);  // the injected failure stopped the rollback too
  REQUIRE(f.agent.SetClusterState(AllowAToB()).ok());
  CHECK(SameMaps(f.writer.maps, before));
}

TEST_CASE("rollback restores the maps exactly when deletes still work", "[agent]") {
  Fixture f;
  REQUIRE(f.agent.Start(AllowAToB()).ok());
  REQUIRE(f.agent.AddEndpoint(PodRecord("b", 7, "10.244.1.3")).ok());
  const MapState before = f.writer.maps;

  // A writer that accepts one upsert and then refuses further upserts only.
  class UpsertLimit final : public MapWriter {
   public:
    explicit UpsertLimit(FakeMapWriter& inner) : inner_(inner) {}
    int upserts_left = 1;
    absl::Status UpsertEndpoint(uint32_t i, const ms_endpoint& v) override {
      return Limit() ? inner_.UpsertEndpoint(i, v) : absl::ResourceExhaustedError("full");
    }
    absl::Status DeleteEndpoint(uint32_t i) override { return inner_.DeleteEndpoint(i); }
    absl::Status UpsertExact(const ms_policy_key& k, const ms_policy_value& v) override {
      return Limit() ? inner_.UpsertExact(k, v) : absl::ResourceExhaustedError("full");
    }
    absl::Status DeleteExact(const ms_policy_key& k) override { return inner_.DeleteExact(k); }
    absl::Status UpsertLpm(const ms_lpm_key& k, const ms_policy_value& v) override {
      return Limit() ? inner_.UpsertLpm(k, v) : absl::ResourceExhaustedError("full");
    }
    absl::Status DeleteLpm(const ms_lpm_key& k) override { return inner_.DeleteLpm(k); }
    absl::Status UpsertExact6(const ms_policy6_key& k, const ms_policy_value& v) override {
      return Limit() ? inner_.UpsertExact6(k, v) : absl::ResourceExhaustedError("full");
    }
    absl::Status DeleteExact6(const ms_policy6_key& k) override { return inner_.DeleteExact6(k); }
    absl::Status UpsertLpm6(const ms_lpm6_key& k, const ms_policy_value& v) override {
      return Limit() ? inner_.UpsertLpm6(k, v) : absl::ResourceExhaustedError("full");
    }
    absl::Status DeleteLpm6(const ms_lpm6_key& k) override { return inner_.DeleteLpm6(k); }

   private:
    bool Limit() { return upserts_left-- > 0; }
    FakeMapWriter& inner_;
  };
  UpsertLimit limited(f.writer);
  std::vector<uint32_t> purged;
  Agent agent2("node-1", limited, f.registry, f.writer.maps, [](uint32_t) { return absl::OkStatus(); });
  REQUIRE(agent2.Start(AllowAToB()).ok());  // nothing to change: no upserts needed

  ClusterState wider = AllowAToB();
  // Two more allowed peers: needs two upserts, the second one fails.
  wider.pods["x/c"] = {"x", "c", {{"pod", "a"}}, "node-1", 0x0af40104u, {}};
  wider.pods["x/d"] = {"x", "d", {{"pod", "a"}}, "node-1", 0x0af40105u, {}};
  auto status = agent2.SetClusterState(wider);
  REQUIRE_FALSE(status.ok());
  CHECK(SameMaps(f.writer.maps, before));
  CHECK(agent2.counters().reconcile_failures == 1);
  CHECK(agent2.counters().pods == 2);  // the rejected state is not believed either
}

TEST_CASE("policy changes bump the endpoint's revision; unrelated changes do not", "[agent]") {
  Fixture f;
  REQUIRE(f.agent.Start(AllowAToB()).ok());
  auto b = f.agent.AddEndpoint(PodRecord("b", 7, "10.244.1.3"));
  REQUIRE(b.ok());
  const uint32_t rev = f.writer.maps.endpoints.at(7).policy_rev;

  ClusterState unrelated = AllowAToB();
  unrelated.namespaces["z"] = {"z", {}};
  REQUIRE(f.agent.SetClusterState(unrelated).ok());
  CHECK(f.writer.maps.endpoints.at(7).policy_rev == rev);

  ClusterState more = unrelated;
  more.pods["x/c"] = {"x", "c", {{"pod", "a"}}, "node-1", 0x0af40104u, {}};
  REQUIRE(f.agent.SetClusterState(more).ok());
  CHECK(f.writer.maps.endpoints.at(7).policy_rev != rev);
}

// Samples of PolicyUpdateFamilies as "name{label=value}" -> value.
std::map<std::string, double> PolicyUpdateSamples(const AgentCounters& counters) {
  std::map<std::string, double> samples;
  for (const prometheus::MetricFamily& family : PolicyUpdateFamilies(counters)) {
    for (const prometheus::ClientMetric& metric : family.metric) {
      std::string name = family.name;
      for (const auto& label : metric.label) name += "{" + label.name + "=" + label.value + "}";
      samples[name] = metric.counter.value;
    }
  }
  return samples;
}

TEST_CASE("the policy update metrics tell peer patches, whole compilations and flips apart", "[agent][metrics]") {
  Fixture f;
  REQUIRE(f.agent.Start(AllowAToB()).ok());
  REQUIRE(f.agent.AddEndpoint(PodRecord("b", 7, "10.244.1.3")).ok());
  const std::map<std::string, double> start = PolicyUpdateSamples(f.agent.counters());
  const auto grew = [&](const std::string& sample) {
    return PolicyUpdateSamples(f.agent.counters()).at(sample) - start.at(sample);
  };
  const std::string patches = "microseg_policy_endpoint_updates_total{kind=peer_patch}";
  const std::string compilations = "microseg_policy_endpoint_compilations_total";

  // A new peer pod: b's entries for its address are spliced in, b is not compiled.
  ClusterState cluster = AllowAToB();
  cluster.pods["x/c"] = {"x", "c", {{"pod", "a"}}, "node-1", 0x0af40104u, {}};
  REQUIRE(f.agent.SetClusterState(cluster).ok());
  CHECK(grew(patches) == 1);
  CHECK(grew(compilations) == 0);

  // A new port in b's policy: b is compiled whole and rewritten in place.
  cluster.network_policies["x/allow-a"] = AllowIngressFrom("allow-a", "pod", "b", "a", 81);
  REQUIRE(f.agent.SetClusterState(cluster).ok());
  CHECK(grew(patches) == 1);
  CHECK(grew(compilations) == 1);
  CHECK(grew("microseg_policy_endpoint_updates_total{kind=in_place}") == 1);
  CHECK(grew("microseg_policy_endpoint_updates_total{kind=generation_flip}") == 0);

  // Ingress from everything instead: the isolation flag changes, so a second generation.
  cluster.network_policies.clear();
  REQUIRE(f.agent.SetClusterState(cluster).ok());
  CHECK(grew(compilations) == 2);
  CHECK(grew("microseg_policy_endpoint_updates_total{kind=generation_flip}") == 1);
  CHECK(PolicyUpdateSamples(f.agent.counters()).at("microseg_policy_map_cleanup_failures_total") == 0);
  CHECK(PolicyUpdateSamples(f.agent.counters()).at("microseg_policy_port_recuts_total") == 0);
}

TEST_CASE("deleting an endpoint removes its entries and its sessions", "[agent]") {
  Fixture f;
  REQUIRE(f.agent.Start(AllowAToB()).ok());
  auto b = f.agent.AddEndpoint(PodRecord("b", 7, "10.244.1.3"));
  REQUIRE(b.ok());
  REQUIRE_FALSE(f.writer.maps.exact.empty());
  auto existed = f.agent.DeleteEndpoint({"cid-b", "eth0"});
  REQUIRE(existed.ok());
  CHECK(*existed);
  CHECK(f.writer.maps.endpoints.empty());
  CHECK(f.writer.maps.exact.empty());
  CHECK(f.purged == std::vector<uint32_t>{b->record.endpoint_id});
  auto again = f.agent.DeleteEndpoint({"cid-b", "eth0"});
  REQUIRE(again.ok());
  CHECK_FALSE(*again);
}

TEST_CASE("endpoints whose veth is gone are forgotten", "[agent]") {
  Fixture f;
  REQUIRE(f.agent.Start(AllowAToB()).ok());
  REQUIRE(f.agent.AddEndpoint(PodRecord("a", 6, "10.244.1.2")).ok());
  REQUIRE(f.agent.AddEndpoint(PodRecord("b", 7, "10.244.1.3")).ok());
  f.agent.ForgetEndpointsWhere([](const EndpointRecord& r) { return r.host_ifindex == 6; });
  CHECK(f.agent.ListEndpoints().size() == 1);
  CHECK(f.writer.maps.endpoints.count(6) == 0);
  CHECK(f.writer.maps.endpoints.count(7) == 1);
  CHECK(f.purged.size() == 1);
}

}  // namespace
}  // namespace microseg
