// PolicyMapUpdater: after every single map operation of an update, every
// probe packet's verdict (through the reference data path lookup) must be
// the old policy's or the new one's; a failed write leaves the maps exactly
// as they were. The same check run against the deliberately naive writer
// must catch it, or the check proves nothing.
#include "policy_map_updater.h"

#include <arpa/inet.h>

#include <catch2/catch.hpp>
#include <functional>
#include <random>

#include "fake_map_writer.h"
#include "policy_commit.h"
#include "policy_engine.h"
#include "reference_datapath.h"
#include "test_helpers.h"

namespace microseg {
namespace {

using testing::FakeMapWriter;
using testing::ReferenceLookup;

// Forwards to a FakeMapWriter and calls `after_each` after every successful
// operation; inserting a new key fails once `upserts_left` reaches 0 (a full
// map), and deleting a key gives its room back. Replacing the value of a key
// the map holds still works, as in the kernel (a preallocated hash keeps
// spare elements for replacements, the trie replaces its node in place):
// rollbacks rely on that, and on putting back what they deleted into the
// room the undone inserts free.
class ObservedWriter : public MapWriter {
 public:
  FakeMapWriter inner;
  std::function<void()> after_each;
  int upserts_left = 1 << 30;

  absl::Status UpsertEndpoint(uint32_t i, const ms_endpoint& v) override {
    return Upsert(inner.maps.endpoints.contains(i), [&] { return inner.UpsertEndpoint(i, v); });
  }
  absl::Status DeleteEndpoint(uint32_t i) override { return Observe(inner.DeleteEndpoint(i)); }
  absl::Status UpsertExact(const ms_policy_key& k, const ms_policy_value& v) override {
    return Upsert(inner.maps.exact.contains(k), [&] { return inner.UpsertExact(k, v); });
  }
  absl::Status DeleteExact(const ms_policy_key& k) override {
    const bool existed = inner.maps.exact.contains(k);
    return Delete(existed, inner.DeleteExact(k));
  }
  absl::Status UpsertLpm(const ms_lpm_key& k, const ms_policy_value& v) override {
    return Upsert(inner.maps.lpm.contains(k), [&] { return inner.UpsertLpm(k, v); });
  }
  absl::Status DeleteLpm(const ms_lpm_key& k) override {
    const bool existed = inner.maps.lpm.contains(k);
    return Delete(existed, inner.DeleteLpm(k));
  }
  absl::Status UpsertExact6(const ms_policy6_key& k, const ms_policy_value& v) override {
    return Upsert(inner.maps.exact6.contains(k), [&] { return inner.UpsertExact6(k, v); });
  }
  absl::Status DeleteExact6(const ms_policy6_key& k) override {
    const bool existed = inner.maps.exact6.contains(k);
    return Delete(existed, inner.DeleteExact6(k));
  }
  absl::Status UpsertLpm6(const ms_lpm6_key& k, const ms_policy_value& v) override {
    return Upsert(inner.maps.lpm6.contains(k), [&] { return inner.UpsertLpm6(k, v); });
  }
  absl::Status DeleteLpm6(const ms_lpm6_key& k) override {
    const bool existed = inner.maps.lpm6.contains(k);
    return Delete(existed, inner.DeleteLpm6(k));
  }

 private:
  absl::Status Upsert(bool replaces, const std::function<absl::Status()>& op) {
    if (!replaces) {
      if (upserts_left <= 0) return absl::ResourceExhaustedError("map full (injected)");
      --upserts_left;
    }
    return Observe(op());
  }
  absl::Status Delete(bool existed, absl::Status status) {
    if (existed && status.ok()) ++upserts_left;
    return Observe(status);
  }
  absl::Status Observe(absl::Status status) {
    if (status.ok() && after_each) after_each();
    return status;
  }
};

struct Probe {
  uint32_t ifindex;
  ms_direction direction;
  uint32_t peer;
  uint8_t proto;
  uint16_t port;
};

std::vector<Probe> Probes(const std::vector<uint32_t>& ifindexes) {
  std::vector<Probe> probes;
  for (uint32_t ifindex : ifindexes) {
    for (ms_direction direction : {MS_DIR_INGRESS, MS_DIR_EGRESS}) {
      for (uint32_t host = 1; host <= 12; ++host) {
        for (uint16_t port : {uint16_t{80}, uint16_t{443}, uint16_t{8050}, uint16_t{8150}}) {
          probes.push_back({ifindex, direction, 0x0af40100u + host, 6, port});
        }
        probes.push_back({ifindex, direction, 0x0af40100u + host, 17, 53});
      }
      probes.push_back({ifindex, direction, 0x08080808u, 6, 443});
    }
  }
  return probes;
}

std::vector<bool> Verdicts(const MapState& maps, const std::vector<Probe>& probes) {
  std::vector<bool> out;
  for (const Probe& p : probes) out.push_back(ReferenceLookup(maps, p.ifindex, p.direction, p.peer, p.proto, p.port).allowed());
  return out;
}

// IPv6 peer i of address generation g (net order): fd00::g:0:i.
Ipv6Address PeerIpv6(uint32_t host, uint32_t generation) {
  return Ipv6Address{htonl(0xfd000000u), 0, htonl(generation), htonl(host)};
}

// The same probes from IPv6 peers (two address generations per host), appended to `out`.
void AppendIpv6Verdicts(const MapState& maps, const std::vector<uint32_t>& ifindexes,
                        const std::vector<uint16_t>& ports, std::vector<bool>& out) {
  for (uint32_t ifindex : ifindexes) {
    for (ms_direction direction : {MS_DIR_INGRESS, MS_DIR_EGRESS}) {
      for (uint32_t host = 1; host <= 12; ++host) {
        for (uint32_t generation : {0u, 1u}) {
          for (uint16_t port : ports) {
            out.push_back(ReferenceLookup(maps, ifindex, direction, PeerIpv6(host, generation), 6, port).allowed());
          }
        }
      }
    }
  }
}

// Verdicts observed between `before` and `after` that are neither.
int CountOutside(const std::vector<bool>& before, const std::vector<std::vector<bool>>& observed,
                 const std::vector<bool>& after) {
  int outside = 0;
  for (const std::vector<bool>& verdicts : observed) {
    for (size_t i = 0; i < verdicts.size(); ++i) {
      if (verdicts[i] != before[i] && verdicts[i] != after[i]) ++outside;
    }
  }
  return outside;
}

// A sequence of policies for namespace x with two local endpoints, mixing
// exact allows, ipBlocks with except, isolation on and off.
std::vector<NetworkPolicy> PolicyVersions() {
  std::vector<NetworkPolicy> versions;
  auto base = [] {
    NetworkPolicy p;
    p.namespace_name = "x";
    p.name = "p";
    p.pod_selector.match_labels = {{"app", "web"}};
    return p;
  };
  PolicyPeer clients;
  clients.pod_selector = LabelSelector{{{"app", "client"}}, {}};
  PolicyPeer block;
  block.ip_block = IpBlock{{0x0af40100u, 28}, {{0x0af40104u, 30}}};
  PolicyPeer wide;
  wide.ip_block = IpBlock{{0, 0}, {{0x0af40100u, 24}}};
  PolicyPort http;
  http.port = uint16_t{80};
  {
    NetworkPolicy p = base();
    p.ingress.push_back({{clients}, {http}});
    versions.push_back(p);
  }
  {
    NetworkPolicy p = base();
    p.ingress.push_back({{block}, {}});
    versions.push_back(p);
  }
  {
    // Same flags as the version before, other CIDR entries: changed in
    // place. The except of the old block (deny) must go only after the block
    // itself, and the new entries must be in before either goes.
    NetworkPolicy p = base();
    p.ingress.push_back({{wide}, {http}});
    versions.push_back(p);
  }
  {
    NetworkPolicy p = base();
    p.ingress.push_back({{block}, {http}});
    p.ingress.push_back({{clients}, {}});
    p.isolates_egress = true;
    p.egress.push_back({{wide}, {}});
    versions.push_back(p);
  }
  {
    NetworkPolicy p = base();
    p.isolates_ingress = false;
    p.isolates_egress = true;
    p.egress.push_back({{clients, block}, {http}});
    versions.push_back(p);
  }
  {
    NetworkPolicy p = base();  // deny all ingress
    versions.push_back(p);
  }
  PolicyPort range;
  range.port = uint16_t{8000};
  range.end_port = uint16_t{8100};
  {
    NetworkPolicy p = base();
    p.ingress.push_back({{block}, {range}});
    p.ingress.push_back({{clients}, {range}});
    versions.push_back(p);
  }
  {
    // The same range (same port-interval lookup entries), other verdicts
    // under it, in both maps: changed in place.
    NetworkPolicy p = base();
    p.ingress.push_back({{wide}, {range}});
    p.ingress.push_back({{clients}, {http}});
    versions.push_back(p);
  }
  {
    // Another cutting of the ports: the lookup entries change, in place
    // through the union cutting (port_recut.h).
    PolicyPort other_range;
    other_range.port = uint16_t{8050};
    other_range.end_port = uint16_t{8200};
    NetworkPolicy p = base();
    p.ingress.push_back({{wide}, {other_range}});
    p.ingress.push_back({{clients}, {http}});
    versions.push_back(p);
  }
  return versions;
}

void SetUpCluster(PolicyEngine& engine) {
  engine.UpsertNamespace({"x", {}});
  for (uint32_t host = 1; host <= 12; ++host) {
    const char* app = host % 3 == 0 ? "client" : host % 3 == 1 ? "web" : "db";
    engine.UpsertPod({"x", "p" + std::to_string(host), {{"app", app}}, "node-1", 0x0af40100u + host, {}});
  }
  engine.UpsertEndpoint({1, 11, "x", "p1", 0x0af40101u});  // web
  engine.UpsertEndpoint({2, 12, "x", "p4", 0x0af40104u});  // web
}

std::vector<EndpointUpdate> DirtyUpdates(PolicyEngine& engine) {
  std::vector<EndpointUpdate> updates;
  for (uint32_t id : engine.TakeDirty()) {
    EndpointUpdate update{id, std::nullopt};
    if (engine.endpoints().contains(id)) update.desired = engine.Compile(id);
    updates.push_back(std::move(update));
  }
  return updates;
}

// Runs every version transition and counts probe verdicts outside {old, new}
// observed after single map operations.
int CountMixedVerdicts(PolicyMapUpdater::Mode mode) {
  ObservedWriter writer;
  PolicyMapUpdater updater(writer, mode);
  PolicyEngine engine;
  SetUpCluster(engine);
  const std::vector<Probe> probes = Probes({11, 12});
  REQUIRE(updater.Apply(DirtyUpdates(engine)).ok());

  int mixed = 0;
  const std::vector<NetworkPolicy> versions = PolicyVersions();
  for (size_t round = 0; round < 2 * versions.size() + 1; ++round) {
    const std::vector<bool> before = Verdicts(writer.inner.maps, probes);
    if (round == 2 * versions.size()) {
      engine.DeleteNetworkPolicy("x/p");
    } else {
      engine.UpsertNetworkPolicy(versions[round % versions.size()]);
    }
    std::vector<EndpointUpdate> updates = DirtyUpdates(engine);
    std::vector<std::vector<bool>> observed;
    writer.after_each = [&] { observed.push_back(Verdicts(writer.inner.maps, probes)); };
    REQUIRE(updater.Apply(std::move(updates)).ok());
    writer.after_each = nullptr;
    mixed += CountOutside(before, observed, Verdicts(writer.inner.maps, probes));
  }
  return mixed;
}

TEST_CASE("no probe ever sees a verdict outside {old, new} during an update", "[updater]") {
  CHECK(CountMixedVerdicts(PolicyMapUpdater::Mode::kAtomic) == 0);
}

TEST_CASE("the same check catches a writer that deletes before it adds", "[updater]") {
  CHECK(CountMixedVerdicts(PolicyMapUpdater::Mode::kNaiveForTests) > 0);
}

// Pod churn under Deny and Allow rules of every tier: the agent's path
// (PlanEndpointUpdates: peer patches where possible) changes exact entries
// in place, and after every single map operation every probe still gets
// the old or the new verdict.
TEST_CASE("peer patches in place never show a verdict outside {old, new}", "[updater]") {
  ObservedWriter writer;
  PolicyMapUpdater updater(writer);
  PolicyEngine engine;
  SetUpCluster(engine);
  PolicyPeer db;
  db.pod_selector = LabelSelector{{{"app", "db"}}, {}};
  PolicyPeer clients;
  clients.pod_selector = LabelSelector{{{"app", "client"}}, {}};
  PolicyPort http;
  http.port = uint16_t{80};
  SegmentPolicy segment;
  segment.policy.namespace_name = "x";
  segment.policy.name = "s";
  segment.policy.pod_selector.match_labels = {{"app", "web"}};
  segment.policy.ingress.push_back({{db}, {http}, RuleAction::kDeny});
  segment.policy.ingress.push_back({{clients, db}, {}, RuleAction::kAllow});
  segment.policy.isolates_egress = true;
  segment.policy.egress.push_back({{clients}, {http}, RuleAction::kAllow});
  engine.UpsertSegmentPolicy(segment);
  ClusterSegmentPolicy cluster;
  cluster.name = "c";
  cluster.applies_ingress = true;
  PolicyPeer role_admin;
  role_admin.namespace_selector = LabelSelector{};
  role_admin.pod_selector = LabelSelector{{{"role", "admin"}}, {}};
  cluster.ingress.push_back({{role_admin}, {}, RuleAction::kAllow});
  PolicyPeer role_bad;
  role_bad.namespace_selector = LabelSelector{};
  role_bad.pod_selector = LabelSelector{{{"role", "bad"}}, {}};
  cluster.ingress.push_back({{role_bad}, {http}, RuleAction::kDeny});
  engine.UpsertClusterSegmentPolicy(cluster);
  const std::vector<Probe> probes = Probes({11, 12});
  REQUIRE(updater.Apply(PlanEndpointUpdates(engine, updater)).ok());

  // Peer pods p2..p12 change role, app, address (IPv6 too: none, or one of
  // two), or go away and come back.
  auto verdicts = [&] {
    std::vector<bool> out = Verdicts(writer.inner.maps, probes);
    AppendIpv6Verdicts(writer.inner.maps, {11, 12}, {80, 443}, out);
    return out;
  };
  std::mt19937 rng(7);
  const std::vector<Labels> label_sets = {{{"app", "db"}},
                                          {{"app", "client"}},
                                          {{"app", "db"}, {"role", "admin"}},
                                          {{"app", "client"}, {"role", "bad"}},
                                          {{"role", "bad"}},
                                          {}};
  int mixed = 0;
  size_t ipv6_entries = 0;
  for (int round = 0; round < 120; ++round) {
    const std::vector<bool> before = verdicts();
    const uint32_t host = 2 + std::uniform_int_distribution<uint32_t>(0, 10)(rng);
    if (host == 4) continue;  // local endpoint 2's own pod
    const std::string name = "p" + std::to_string(host);
    if (std::uniform_int_distribution<int>(0, 5)(rng) == 0) {
      engine.DeletePod("x/" + name);
    } else {
      Pod pod{"x", name, label_sets[std::uniform_int_distribution<size_t>(0, label_sets.size() - 1)(rng)], "node-1",
              0x0af40100u + host, {}};
      const uint32_t ipv6 = std::uniform_int_distribution<uint32_t>(0, 2)(rng);
      if (ipv6 != 2) pod.ipv6 = PeerIpv6(host, ipv6);
      engine.UpsertPod(pod);
    }
    std::vector<std::vector<bool>> observed;
    writer.after_each = [&] { observed.push_back(verdicts()); };
    REQUIRE(updater.Apply(PlanEndpointUpdates(engine, updater)).ok());
    writer.after_each = nullptr;
    mixed += CountOutside(before, observed, verdicts());
    ipv6_entries = std::max(ipv6_entries, writer.inner.maps.exact6.size());
  }
  CHECK(mixed == 0);
  CHECK(ipv6_entries > 0);  // the IPv6 probes had entries to find
  CHECK(updater.counters().peer_patches > 20);
  CHECK(updater.counters().generation_flips == 0);  // no flag or CIDR change: never a second copy
}

TEST_CASE("flag changes flip the generation, CIDR changes and pod churn update in place", "[updater]") {
  ObservedWriter writer;
  PolicyMapUpdater updater(writer);
  PolicyEngine engine;
  SetUpCluster(engine);
  const std::vector<NetworkPolicy> versions = PolicyVersions();
  engine.UpsertNetworkPolicy(versions[0]);
  REQUIRE(updater.Apply(DirtyUpdates(engine)).ok());
  REQUIRE(updater.Find(1) != nullptr);
  CHECK_FALSE(updater.Find(1)->generation());
  const uint32_t rev = updater.Find(1)->policy.endpoint.policy_rev;

  // A new client pod: only exact allows are added, same generation.
  engine.UpsertPod({"x", "new-client", {{"app", "client"}}, "node-1", 0x0af40120u, {}});
  REQUIRE(updater.Apply(DirtyUpdates(engine)).ok());
  CHECK_FALSE(updater.Find(1)->generation());
  CHECK(updater.counters().in_place_updates == 2);
  CHECK(updater.Find(1)->policy.endpoint.policy_rev == rev + 1);

  // An ipBlock instead of the selector: the first LPM entries of a key
  // shape change the LPM shape hints, so generation 1 is staged.
  engine.UpsertNetworkPolicy(versions[1]);
  REQUIRE(updater.Apply(DirtyUpdates(engine)).ok());
  CHECK(updater.Find(1)->generation());
  CHECK(updater.counters().generation_flips == 2);
  CHECK(updater.Find(1)->policy.endpoint.policy_rev == rev + 2);
  CHECK_FALSE(writer.inner.maps.lpm.empty());

  // Another block of the same shapes, isolation unchanged: LPM entries
  // replaced in place, no second copy.
  NetworkPolicy other_block = versions[1];
  other_block.ingress[0].peers[0].ip_block = IpBlock{{0x0af40200u, 28}, {{0x0af40208u, 29}}};
  engine.UpsertNetworkPolicy(other_block);
  REQUIRE(updater.Apply(DirtyUpdates(engine)).ok());
  CHECK(updater.Find(1)->generation());
  CHECK(updater.counters().in_place_updates == 4);
  CHECK(updater.counters().generation_flips == 2);
  CHECK(updater.Find(1)->policy.endpoint.policy_rev == rev + 3);

  // Egress isolation too: the flags change, so generation 0 is staged and
  // generation 1 cleaned.
  engine.UpsertNetworkPolicy(versions[3]);
  REQUIRE(updater.Apply(DirtyUpdates(engine)).ok());
  CHECK_FALSE(updater.Find(1)->generation());
  CHECK(updater.counters().generation_flips == 4);
  for (const auto& [key, value] : writer.inner.maps.exact) CHECK((key.endpoint_id & MS_POLICY_GEN_BIT) == 0);
  for (const auto& [key, value] : writer.inner.maps.lpm) CHECK((key.endpoint_id & MS_POLICY_GEN_BIT) == 0);
  CHECK(testing::SameMapState(writer.inner.maps, updater.Snapshot()));
}

TEST_CASE("a new IPv6 address of an endpoint is written to ms_endpoints", "[updater][ipv6]") {
  ObservedWriter writer;
  PolicyMapUpdater updater(writer);
  PolicyEngine engine;
  SetUpCluster(engine);
  engine.UpsertNetworkPolicy(PolicyVersions()[0]);
  REQUIRE(updater.Apply(DirtyUpdates(engine)).ok());
  const uint32_t rev = updater.Find(1)->policy.endpoint.policy_rev;

  // The same endpoint registers again (a CNI ADD with a dual-stack result):
  // the anti-spoofing address must reach the data path, policy unchanged.
  LocalEndpoint dual_stack{1, 11, "x", "p1", 0x0af40101u};
  dual_stack.ipv6 = {0x000000fdu, 0, 0, 0x01000000u};  // fd00::1 in net order
  engine.UpsertEndpoint(dual_stack);
  REQUIRE(updater.Apply(DirtyUpdates(engine)).ok());
  const ms_endpoint& written = writer.inner.maps.endpoints.at(11);
  CHECK(written.ipv6[0] == 0x000000fdu);
  CHECK(written.ipv6[3] == 0x01000000u);
  CHECK(written.policy_rev != rev);  // sessions are re-judged after an endpoint change
  CHECK(testing::SameMapState(writer.inner.maps, updater.Snapshot()));
}

TEST_CASE("a map filling up mid-stage leaves the old policy in force, untouched", "[updater]") {
  // (start, target): the endPort versions change exact and LPM entries in
  // place (same range, same LPM shapes), then re-cut the ports in place
  // (every step of the re-cut can meet the full map); versions[0] ->
  // versions[3] flips.
  const size_t range_versions = PolicyVersions().size() - 3;
  const std::vector<std::pair<size_t, size_t>> transitions = {
      {range_versions, range_versions + 1}, {range_versions + 1, range_versions + 2}, {0, 3}};
  for (const auto& [start, target] : transitions) {
    int failures = 0;
    for (int upserts_allowed = 0;; ++upserts_allowed) {
      INFO("version " << start << " -> " << target << ", new keys allowed: " << upserts_allowed);
      ObservedWriter writer;
      PolicyMapUpdater updater(writer);
      PolicyEngine engine;
      SetUpCluster(engine);
      const std::vector<NetworkPolicy> versions = PolicyVersions();
      engine.UpsertNetworkPolicy(versions[start]);
      REQUIRE(updater.Apply(DirtyUpdates(engine)).ok());
      const MapState before = writer.inner.maps;
      const uint64_t flips = updater.counters().generation_flips;

      engine.UpsertNetworkPolicy(versions[target]);
      writer.upserts_left = upserts_allowed;
      const absl::Status status = updater.Apply(DirtyUpdates(engine));
      if (status.ok()) {  // enough room for the whole update: the path meant
        CHECK(updater.counters().generation_flips == (start == 0 ? flips + 2 : flips));
        break;
      }
      ++failures;
      CHECK(status.code() == absl::StatusCode::kResourceExhausted);
      CHECK(testing::SameMapState(writer.inner.maps, before));
      CHECK(testing::SameMapState(updater.Snapshot(), before));
      CHECK(updater.counters().rollbacks == 1);
    }
    CHECK(failures >= 4);
  }
}

TEST_CASE("endPort verdicts and a new cutting of the ports change in place", "[updater]") {
  ObservedWriter writer;
  PolicyMapUpdater updater(writer);
  PolicyEngine engine;
  SetUpCluster(engine);
  const std::vector<NetworkPolicy> versions = PolicyVersions();
  const size_t first_range = versions.size() - 3;
  engine.UpsertNetworkPolicy(versions[first_range]);
  REQUIRE(updater.Apply(DirtyUpdates(engine)).ok());
  const UpdaterCounters start = updater.counters();

  engine.UpsertNetworkPolicy(versions[first_range + 1]);
  REQUIRE(updater.Apply(DirtyUpdates(engine)).ok());
  CHECK(updater.counters().in_place_updates == start.in_place_updates + 2);
  CHECK(updater.counters().generation_flips == start.generation_flips);
  CHECK(testing::SameMapState(updater.Snapshot(), writer.inner.maps));

  engine.UpsertNetworkPolicy(versions[first_range + 2]);
  REQUIRE(updater.Apply(DirtyUpdates(engine)).ok());
  CHECK(updater.counters().generation_flips == start.generation_flips);
  CHECK(updater.counters().in_place_updates == start.in_place_updates + 4);
  CHECK(updater.counters().port_recuts == start.port_recuts + 2);
  CHECK(testing::SameMapState(updater.Snapshot(), writer.inner.maps));
  // Nothing of the union cutting is left behind: the maps hold the new policy alone.
  for (uint32_t id : {1u, 2u}) {
    const EndpointPolicy fresh = engine.Compile(id);
    CHECK(SameEntries(updater.Find(id)->policy.exact, fresh.exact));
    CHECK(SameEntries(updater.Find(id)->policy.lpm, fresh.lpm));
  }
  CHECK(writer.inner.maps.exact.size() + writer.inner.maps.lpm.size() == updater.exact_entries() + updater.lpm_entries());
}

// Random endPort ranges in all three tiers, changed one object at a time
// through the agent's path (whole compiles, and cluster policy patches that
// carry the LPM entries): whenever the cutting of the ports changes, the
// update goes through the union cutting. After every single map operation
// every probe, at both ends of every interval any version can have, gets
// the old or the new verdict; after every update each endpoint holds
// exactly what a whole compile gives.
struct RecutRun {
  int mixed = 0;
  int differs_from_whole_compile = 0;
  UpdaterCounters counters;
};

RecutRun RunRandomRecuts(PolicyMapUpdater::Mode mode) {
  ObservedWriter writer;
  PolicyMapUpdater updater(writer, mode);
  PolicyEngine engine;
  SetUpCluster(engine);
  // Dual-stack peers: one lookup serves both families, so the IPv6 maps' interval verdicts are re-cut too.
  for (uint32_t host = 1; host <= 12; ++host) {
    const char* app = host % 3 == 0 ? "client" : host % 3 == 1 ? "web" : "db";
    engine.UpsertPod({"x", "p" + std::to_string(host), {{"app", app}}, "node-1", 0x0af40100u + host, {},
                      PeerIpv6(host, 0)});
  }
  // Ranges start at 8000 + 5k and end at 8004 + 5k (k = 0..6).
  std::vector<uint16_t> ports = {7999};
  for (uint16_t first = 8000; first <= 8030; first += 5) {
    ports.push_back(first);
    ports.push_back(static_cast<uint16_t>(first + 4));
  }
  std::vector<Probe> probes;
  for (uint32_t ifindex : {11u, 12u}) {
    for (ms_direction direction : {MS_DIR_INGRESS, MS_DIR_EGRESS}) {
      for (uint32_t peer : {0x0af40102u, 0x0af40103u, 0x0af40105u, 0x0af40106u, 0x0af40109u, 0x08080808u}) {
        for (uint16_t port : ports) probes.push_back({ifindex, direction, peer, 6, port});
      }
    }
  }
  std::mt19937 rng(11);
  auto pick = [&](int n) { return std::uniform_int_distribution<int>(0, n - 1)(rng); };
  auto range = [&] {
    PolicyPort port;
    const int first = pick(7);
    port.port = static_cast<uint16_t>(8000 + 5 * first);
    port.end_port = static_cast<uint16_t>(8004 + 5 * (first + pick(7 - first)));
    return port;
  };
  PolicyPeer clients;
  clients.pod_selector = LabelSelector{{{"app", "client"}}, {}};
  PolicyPeer db;
  db.pod_selector = LabelSelector{{{"app", "db"}}, {}};
  PolicyPeer block;
  block.ip_block = IpBlock{{0x0af40100u, 28}, {{0x0af40104u, 30}}};
  PolicyPeer wide;
  wide.ip_block = IpBlock{{0, 0}, {{0x0af40100u, 24}}};
  const std::vector<PolicyPeer> peers = {clients, db, block, wide};
  const std::vector<RuleAction> actions = {RuleAction::kAllow, RuleAction::kDeny, RuleAction::kPass};
  auto network_policy = [&] {
    NetworkPolicy p;
    p.namespace_name = "x";
    p.name = "p";
    p.pod_selector.match_labels = {{"app", "web"}};
    p.ingress.push_back({{peers[pick(4)]}, {range()}});
    if (pick(2) == 0) p.ingress.push_back({{peers[pick(4)], peers[pick(4)]}, {range(), range()}});
    return p;
  };
  auto segment_policy = [&] {
    SegmentPolicy s;
    s.policy.namespace_name = "x";
    s.policy.name = "s";
    s.policy.pod_selector.match_labels = {{"app", "web"}};
    s.policy.ingress.push_back({{peers[pick(4)]}, {range()}, RuleAction::kDeny});
    s.policy.ingress.push_back({{clients}, {range()}, RuleAction::kAllow});
    return s;
  };
  // CIDR peers only: changes of it reach the endpoints as patches.
  auto cluster_policy = [&] {
    ClusterSegmentPolicy c;
    c.name = "c";
    c.applies_ingress = true;
    c.applies_egress = true;
    c.ingress.push_back({{block}, {range()}, actions[static_cast<size_t>(pick(3))]});
    c.egress.push_back({{wide}, {range()}, RuleAction::kDeny});
    c.egress.push_back({{block}, {range()}, actions[static_cast<size_t>(pick(3))]});
    return c;
  };
  engine.UpsertNetworkPolicy(network_policy());
  engine.UpsertSegmentPolicy(segment_policy());
  engine.UpsertClusterSegmentPolicy(cluster_policy());
  REQUIRE(updater.Apply(PlanEndpointUpdates(engine, updater)).ok());

  auto verdicts = [&] {
    std::vector<bool> out = Verdicts(writer.inner.maps, probes);
    AppendIpv6Verdicts(writer.inner.maps, {11, 12}, ports, out);
    return out;
  };
  RecutRun run;
  for (int round = 0; round < 90; ++round) {
    const std::vector<bool> before = verdicts();
    switch (round % 3) {
      case 0:
        engine.UpsertClusterSegmentPolicy(cluster_policy());
        break;
      case 1:
        engine.UpsertNetworkPolicy(network_policy());
        break;
      default:
        engine.UpsertSegmentPolicy(segment_policy());
    }
    std::vector<std::vector<bool>> observed;
    writer.after_each = [&] { observed.push_back(verdicts()); };
    REQUIRE(updater.Apply(PlanEndpointUpdates(engine, updater)).ok());
    writer.after_each = nullptr;
    run.mixed += CountOutside(before, observed, verdicts());
    for (uint32_t id : {1u, 2u}) {
      const EndpointPolicy fresh = engine.Compile(id);
      const EndpointPolicy& installed = updater.Find(id)->policy;
      if (!SameEntries(installed.exact, fresh.exact) || !SameEntries(installed.lpm, fresh.lpm) ||
          !SameEntries(installed.exact6, fresh.exact6) || !SameEntries(installed.lpm6, fresh.lpm6) ||
          VerdictFlags(installed.endpoint) != fresh.endpoint.flags) {
        ++run.differs_from_whole_compile;
      }
    }
    // What the updater believes it installed is what the maps hold.
    if (!testing::SameMapState(updater.Snapshot(), writer.inner.maps)) ++run.differs_from_whole_compile;
  }
  run.counters = updater.counters();
  return run;
}

TEST_CASE("new port cuttings go through the union cutting: no verdict outside {old, new}", "[updater]") {
  const RecutRun run = RunRandomRecuts(PolicyMapUpdater::Mode::kAtomic);
  INFO("re-cuts " << run.counters.port_recuts << ", patches " << run.counters.peer_patches << ", flips "
                  << run.counters.generation_flips);
  CHECK(run.mixed == 0);
  CHECK(run.differs_from_whole_compile == 0);
  CHECK(run.counters.port_recuts >= 60);
  CHECK(run.counters.rollbacks == 0);
}

TEST_CASE("the same check catches a new cutting written in place without the union", "[updater]") {
  const RecutRun run = RunRandomRecuts(PolicyMapUpdater::Mode::kDirectRecutForTests);
  CHECK(run.mixed > 0);
}

// An interval verdict under a key no lookup names (an update interrupted
// before its clean-up, then an agent restart that adopts it) must not
// become reachable when a re-cut moves the lookups: the re-cut deletes or
// overwrites it before they move.
TEST_CASE("a re-cut never exposes an adopted interval key that names no interval", "[updater]") {
  ObservedWriter writer;
  PolicyEngine engine;
  SetUpCluster(engine);
  const std::vector<NetworkPolicy> versions = PolicyVersions();
  const size_t range_8000_8100 = versions.size() - 2;
  engine.UpsertNetworkPolicy(versions[range_8000_8100]);
  bool generation = false;
  {
    PolicyMapUpdater first(writer);
    REQUIRE(first.Apply(DirtyUpdates(engine)).ok());
    generation = first.Find(1)->generation();
  }
  // Allow host 2 (db, which no rule allows) on the interval starting at
  // 8050: no lookup of the 8000-8100 cutting names it, the next version's
  // (8050-8200) will.
  ms_policy_key stray{};
  stray.endpoint_id = 1u | (generation ? MS_POLICY_GEN_BIT : 0u);
  stray.peer_ipv4 = htonl(0x0af40102u);
  stray.port = 8050;
  stray.proto = 6;
  stray.direction = MS_DIR_INGRESS | MS_DIR_F_PORT_INTERVAL;
  writer.inner.maps.exact[stray] = ms_policy_value{MS_ACTION_ALLOW, {}, 7};

  PolicyMapUpdater second(writer);
  second.Adopt(writer.inner.maps);
  const std::vector<Probe> probes = Probes({11, 12});
  const std::vector<bool> before = Verdicts(writer.inner.maps, probes);
  engine.UpsertNetworkPolicy(versions[range_8000_8100 + 1]);
  std::vector<std::vector<bool>> observed;
  writer.after_each = [&] { observed.push_back(Verdicts(writer.inner.maps, probes)); };
  REQUIRE(second.Apply(DirtyUpdates(engine)).ok());
  writer.after_each = nullptr;
  CHECK(second.counters().port_recuts == 2);
  CHECK(CountOutside(before, observed, Verdicts(writer.inner.maps, probes)) == 0);
  CHECK(writer.inner.maps.exact.count(stray) == 0);
  CHECK(testing::SameMapState(writer.inner.maps, second.Snapshot()));
}

TEST_CASE("adopting the maps after a restart keeps the live generation and drops strays", "[updater]") {
  ObservedWriter writer;
  PolicyEngine engine;
  SetUpCluster(engine);
  const std::vector<NetworkPolicy> versions = PolicyVersions();
  {
    PolicyMapUpdater first(writer);
    engine.UpsertNetworkPolicy(versions[1]);
    REQUIRE(first.Apply(DirtyUpdates(engine)).ok());
    engine.UpsertNetworkPolicy(versions[3]);
    REQUIRE(first.Apply(DirtyUpdates(engine)).ok());
    REQUIRE(first.Find(1)->generation());
  }
  // A stray of an endpoint that no longer exists, in the other generation.
  ms_policy_key stray{};
  stray.endpoint_id = 1;
  stray.peer_ipv4 = 0x01020304;
  writer.inner.maps.exact[stray] = ms_policy_value{MS_ACTION_ALLOW, {}, 7};

  PolicyMapUpdater second(writer);
  second.Adopt(writer.inner.maps);
  REQUIRE(second.Find(1) != nullptr);
  CHECK(second.Find(1)->generation());
  engine.MarkAllDirty();
  REQUIRE(second.Apply(DirtyUpdates(engine)).ok());
  CHECK(writer.inner.maps.exact.count(stray) == 0);
  CHECK(second.counters().generation_flips == 0);  // nothing changed: nothing rewritten
  CHECK(testing::SameMapState(writer.inner.maps, second.Snapshot()));
}

}  // namespace
}  // namespace microseg
