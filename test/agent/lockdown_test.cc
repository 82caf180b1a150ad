// A policy map that is full (FakeMapWriter capacities): the endpoint whose
// policy does not fit is locked down with none of its entries in the maps,
// the others get their policy, and the lockdown lifts once it fits again.
#include <arpa/inet.h>

#include <catch2/catch.hpp>

#include "agent_fixture.h"
#include "ipv6_address.h"

namespace microseg {
namespace {

using testing::AllowIngressFrom;
using testing::PodRecord;

// x/server accepts TCP 80 from every pod labelled role=client: one exact
// entry per client pod. x/other accepts TCP 22 from x/admin: one entry.
ClusterState WithClients(int clients) {
  ClusterState cluster;
  cluster.namespaces["x"] = {"x", {{"ns", "x"}}};
  cluster.pods["x/server"] = {"x", "server", {{"role", "server"}}, "node-1", 0x0af40102u, {}};
  cluster.pods["x/other"] = {"x", "other", {{"role", "other"}}, "node-1", 0x0af40103u, {}};
  cluster.pods["x/admin"] = {"x", "admin", {{"role", "admin"}}, "node-2", 0x0af40201u, {}};
  for (int i = 0; i < clients; ++i) {
    const std::string name = "client-" + std::to_string(i);
    cluster.pods["x/" + name] = {"x", name, {{"role", "client"}}, "node-2", 0x0af40210u + i, {}};
  }
  cluster.network_policies["x/server-from-clients"] =
      AllowIngressFrom("server-from-clients", "role", "server", "client", 80);
  cluster.network_policies["x/other-from-admin"] = AllowIngressFrom("other-from-admin", "role", "other", "admin", 22);
  return cluster;
}

size_t ExactEntriesOf(const MapState& maps, uint32_t endpoint_id) {
  size_t n = 0;
  // Entries of either policy generation (MS_POLICY_GEN_BIT) count.
  for (const auto& [key, value] : maps.exact) n += (key.endpoint_id & ~MS_POLICY_GEN_BIT) == endpoint_id;
  return n;
}

struct Fixture : testing::AgentFixture {
  uint32_t server_id = 0;
  uint32_t other_id = 0;

  Fixture() {
    writer.exact_capacity = 4;
    REQUIRE(agent.Start(WithClients(2)).ok());
    auto server = agent.AddEndpoint(PodRecord("server", 7, "10.244.1.2"));
    auto other = agent.AddEndpoint(PodRecord("other", 8, "10.244.1.3"));
    REQUIRE(server.ok());
    REQUIRE(other.ok());
    server_id = server->record.endpoint_id;
    other_id = other->record.endpoint_id;
    REQUIRE(ExactEntriesOf(writer.maps, server_id) == 2);
    REQUIRE(ExactEntriesOf(writer.maps, other_id) == 1);
  }
  const ms_endpoint& server_entry() const { return writer.maps.endpoints.at(7); }
  EndpointView server_view() const { return *agent.GetEndpoint({"cid-server", "eth0"}); }
};

TEST_CASE("a policy that does not fit locks its endpoint down, never half applied", "[agent][lockdown]") {
  Fixture f;
  const uint32_t rev_before = f.server_entry().policy_rev;

  // Five clients: the server needs 5 entries + 1 for `other`, the map holds 4.
  REQUIRE(f.agent.SetClusterState(WithClients(5)).ok());
  CHECK(f.writer.capacity_refusals > 0);
  CHECK(VerdictFlags(f.server_entry()) ==
        (MS_EP_F_LOCKDOWN | MS_EP_F_INGRESS_ISOLATED | MS_EP_F_EGRESS_ISOLATED));
  CHECK(ExactEntriesOf(f.writer.maps, f.server_id) == 0);  // nothing of the old or the new policy
  // Sessions admitted so far are not re-judged against a policy that is not there.
  CHECK(f.server_entry().policy_rev == rev_before);
  // The endpoint that fits is untouched.
  CHECK(ExactEntriesOf(f.writer.maps, f.other_id) == 1);
  CHECK(VerdictFlags(f.writer.maps.endpoints.at(8)) == MS_EP_F_INGRESS_ISOLATED);

  const EndpointView view = f.server_view();
  CHECK(view.locked_down);
  CHECK_THAT(view.lockdown_reason, Catch::Contains("ms_policy is full"));
  CHECK_FALSE(f.agent.GetEndpoint({"cid-other", "eth0"})->locked_down);
  CHECK(f.agent.counters().locked_down_endpoints == 1);
  CHECK(f.agent.counters().lockdowns_total == 1);
  CHECK(f.agent.counters().reconcile_failures == 0);

  // Still not fitting: retries change nothing and do not count a new lockdown.
  REQUIRE(f.agent.RetryLockdowns().ok());
  CHECK(f.server_view().locked_down);
  CHECK(f.agent.counters().lockdowns_total == 1);
  CHECK(ExactEntriesOf(f.writer.maps, f.server_id) == 0);

  SECTION("lifted when the policy shrinks to fit") {
    REQUIRE(f.agent.SetClusterState(WithClients(3)).ok());
    CHECK_FALSE(f.server_view().locked_down);
    CHECK(VerdictFlags(f.server_entry()) == MS_EP_F_INGRESS_ISOLATED);
    CHECK(ExactEntriesOf(f.writer.maps, f.server_id) == 3);
    CHECK(f.server_entry().policy_rev != rev_before);  // older sessions are re-checked against it
    CHECK(f.agent.counters().locked_down_endpoints == 0);
  }
  SECTION("lifted by the periodic retry when the map has room again") {
    f.writer.exact_capacity = 16;
    REQUIRE(f.agent.RetryLockdowns().ok());
    CHECK_FALSE(f.server_view().locked_down);
    CHECK(ExactEntriesOf(f.writer.maps, f.server_id) == 5);
    CHECK(VerdictFlags(f.server_entry()) == MS_EP_F_INGRESS_ISOLATED);
  }
  SECTION("an endpoint that shrinks makes room for one that grows") {
    // `other` loses its one entry, the server needs 4: only fits if the
    // delete goes first, which a plain all-upserts-first apply does not do.
    ClusterState cluster = WithClients(4);
    cluster.network_policies.erase("x/other-from-admin");
    REQUIRE(f.agent.SetClusterState(cluster).ok());
    CHECK_FALSE(f.server_view().locked_down);
    CHECK(ExactEntriesOf(f.writer.maps, f.server_id) == 4);
    CHECK(ExactEntriesOf(f.writer.maps, f.other_id) == 0);
  }
}

TEST_CASE("swapping a policy that fits alone but not next to the old one goes through a lockdown",
          "[agent][lockdown]") {
  Fixture f;
  // Replace the two clients by three others: old 2 + new 3 + other 1 > 4,
  // new 3 + other 1 = 4 fits once the old entries are gone.
  ClusterState cluster = WithClients(0);
  for (int i = 10; i < 13; ++i) {
    const std::string name = "client-" + std::to_string(i);
    cluster.pods["x/" + name] = {"x", name, {{"role", "client"}}, "node-2", 0x0af40210u + i, {}};
  }
  REQUIRE(f.agent.SetClusterState(cluster).ok());
  CHECK_FALSE(f.server_view().locked_down);
  CHECK(ExactEntriesOf(f.writer.maps, f.server_id) == 3);
  CHECK(VerdictFlags(f.server_entry()) == MS_EP_F_INGRESS_ISOLATED);
  CHECK(f.agent.counters().lockdowns_total == 0);
}

TEST_CASE("a new pod whose policy does not fit is registered locked down", "[agent][lockdown]") {
  Fixture f;
  ClusterState cluster = WithClients(2);
  cluster.pods["x/second-server"] = {"x", "second-server", {{"role", "server"}}, "node-1", 0x0af40104u, {}};
  REQUIRE(f.agent.SetClusterState(cluster).ok());
  auto second = f.agent.AddEndpoint(PodRecord("second-server", 9, "10.244.1.4"));
  REQUIRE(second.ok());
  CHECK(second->locked_down);
  CHECK(ExactEntriesOf(f.writer.maps, second->record.endpoint_id) == 0);
  CHECK((f.writer.maps.endpoints.at(9).flags & MS_EP_F_LOCKDOWN) != 0);
  CHECK_FALSE(f.server_view().locked_down);
}

TEST_CASE("a full endpoint map is an error, not a lockdown", "[agent][lockdown]") {
  Fixture f;
  f.writer.endpoint_capacity = 2;
  auto third = f.agent.AddEndpoint(PodRecord("third", 9, "10.244.1.4"));
  REQUIRE_FALSE(third.ok());
  CHECK(third.status().code() == absl::StatusCode::kResourceExhausted);
  CHECK(f.writer.maps.endpoints.size() == 2);
  CHECK(f.agent.counters().locked_down_endpoints == 0);
}

// x/server accepts TCP 80 from `clients` dual-stack client pods (one entry
// per client in ms_policy and one in ms_policy6) and, when `ipv6_ranges` is
// set, from that many IPv6 ranges (entries of ms_policy6_lpm).
ClusterState DualStackClients(int clients, int ipv6_ranges) {
  ClusterState cluster;
  cluster.namespaces["x"] = {"x", {{"ns", "x"}}};
  cluster.pods["x/server"] = {"x", "server", {{"role", "server"}}, "node-1", 0x0af40102u, {}};
  for (int i = 0; i < clients; ++i) {
    const std::string name = "client-" + std::to_string(i);
    Pod pod{"x", name, {{"role", "client"}}, "node-2", 0x0af40210u + i, {}};
    pod.ipv6 = *ParseIpv6Address("fd00:10:244:2::" + std::to_string(16 + i));
    cluster.pods["x/" + name] = pod;
  }
  NetworkPolicy policy = AllowIngressFrom("server-from-clients", "role", "server", "client", 80);
  for (int i = 0; i < ipv6_ranges; ++i) {
    PolicyPeer range;
    auto cidr = ParseIpv6Cidr("fd00:99:" + std::to_string(i + 1) + "::/48");
    REQUIRE(cidr.ok());
    range.ipv6_block = Ipv6Block{*cidr, {}};
    policy.ingress.front().peers.push_back(range);
  }
  cluster.network_policies["x/server-from-clients"] = policy;
  return cluster;
}

size_t Ipv6EntriesOf(const MapState& maps, uint32_t endpoint_id) {
  size_t n = 0;
  for (const auto& [key, value] : maps.exact6) n += (key.endpoint_id & ~MS_POLICY_GEN_BIT) == endpoint_id;
  for (const auto& [key, value] : maps.lpm6) n += (key.endpoint_id & ~MS_POLICY_GEN_BIT) == endpoint_id;
  return n;
}

TEST_CASE("a full IPv6 policy map locks the endpoint down in both families, never half applied",
          "[agent][lockdown][ipv6]") {
  testing::AgentFixture f;
  const bool lpm = GENERATE(false, true);
  CAPTURE(lpm);
  // Room for two entries in the IPv6 map under test; plenty everywhere else.
  (lpm ? f.writer.lpm6_capacity : f.writer.exact6_capacity) = 2;
  auto cluster_of = [&](int n) { return lpm ? DualStackClients(1, n) : DualStackClients(n, 0); };
  REQUIRE(f.agent.Start(cluster_of(2)).ok());
  auto server = f.agent.AddEndpoint(PodRecord("server", 7, "10.244.1.2"));
  REQUIRE(server.ok());
  const uint32_t id = server->record.endpoint_id;
  CHECK_FALSE(server->locked_down);
  const size_t ipv6_entries_before = Ipv6EntriesOf(f.writer.maps, id);
  CHECK(ipv6_entries_before >= 2);
  const uint32_t rev_before = f.writer.maps.endpoints.at(7).policy_rev;

  // One more IPv6 entry than the map holds: neither family's entries stay.
  REQUIRE(f.agent.SetClusterState(cluster_of(3)).ok());
  CHECK(f.writer.capacity_refusals > 0);
  const ms_endpoint& entry = f.writer.maps.endpoints.at(7);
  CHECK(VerdictFlags(entry) == (MS_EP_F_LOCKDOWN | MS_EP_F_INGRESS_ISOLATED | MS_EP_F_EGRESS_ISOLATED));
  CHECK(entry.policy_rev == rev_before);
  CHECK(ExactEntriesOf(f.writer.maps, id) == 0);
  CHECK(Ipv6EntriesOf(f.writer.maps, id) == 0);
  const EndpointView view = *f.agent.GetEndpoint({"cid-server", "eth0"});
  CHECK(view.locked_down);
  CHECK_THAT(view.lockdown_reason, Catch::Contains(lpm ? "ms_policy6_lpm is full" : "ms_policy6 is full"));

  // Back to what fits: the whole policy, both families, and the lockdown lifts.
  REQUIRE(f.agent.SetClusterState(cluster_of(2)).ok());
  CHECK_FALSE(f.agent.GetEndpoint({"cid-server", "eth0"})->locked_down);
  CHECK(VerdictFlags(f.writer.maps.endpoints.at(7)) == MS_EP_F_INGRESS_ISOLATED);
  CHECK(Ipv6EntriesOf(f.writer.maps, id) == ipv6_entries_before);
  CHECK(ExactEntriesOf(f.writer.maps, id) == (lpm ? 1u : 2u));
}

}  // namespace
}  // namespace microseg
