// The incremental engine: after any sequence of events the endpoints it
// recompiled must hold exactly what a full CompilePolicy gives (so no event
// forgets an endpoint it touches), and an event must recompile only the
// endpoints it touches (counted).
#include "policy_engine.h"

#include <arpa/inet.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <functional>
#include <random>
#include <string>

#include "fake_map_writer.h"
#include "policy_commit.h"
#include "policy_map_updater.h"
#include "test_helpers.h"

namespace microseg {
namespace {

// Every endpoint of the engine, as `actual_of` gives it (nullptr: missing),
// must equal a from-scratch compilation of the engine's inputs.
void CheckAgainstFullCompile(const PolicyEngine& engine,
                             const std::function<const EndpointPolicy*(uint32_t)>& actual_of) {
  std::vector<LocalEndpoint> endpoints;
  for (const auto& [id, endpoint] : engine.endpoints()) endpoints.push_back(endpoint);
  const ClusterState cluster = engine.cluster();
  const PolicyContext full_context = BuildPolicyContext(cluster, endpoints);
  for (const LocalEndpoint& endpoint : endpoints) {
    const EndpointPolicy expected = CompileEndpointPolicy(full_context, endpoint);
    const EndpointPolicy* actual = actual_of(endpoint.endpoint_id);
    INFO("endpoint " << endpoint.pod_namespace << "/" << endpoint.pod_name);
    REQUIRE(actual != nullptr);
    CHECK(SameEntries(actual->exact, expected.exact));
    CHECK(SameEntries(actual->lpm, expected.lpm));
    CHECK(SameEntries(actual->exact6, expected.exact6));
    CHECK(SameEntries(actual->lpm6, expected.lpm6));
    CHECK(actual->endpoint.endpoint_id == expected.endpoint.endpoint_id);
    CHECK(actual->endpoint.ipv4 == expected.endpoint.ipv4);
    CHECK(std::memcmp(actual->endpoint.ipv6, expected.endpoint.ipv6, sizeof expected.endpoint.ipv6) == 0);
    CHECK(VerdictFlags(actual->endpoint) == expected.endpoint.flags);  // the generation bit is the updater's
    CHECK(actual->endpoint.lookup_actions == expected.endpoint.lookup_actions);
    CHECK(actual->summary == expected.summary);
  }
}

// The policies `updater` installed, as CheckAgainstFullCompile reads them.
std::function<const EndpointPolicy*(uint32_t)> InstalledBy(const PolicyMapUpdater& updater) {
  return [&updater](uint32_t endpoint_id) -> const EndpointPolicy* {
    const InstalledEndpoint* installed = updater.Find(endpoint_id);
    return installed ? &installed->policy : nullptr;
  };
}

// Namespaces labelled team=<namespace>, in each a pod labelled app=<name> for
// every name, each pod a local endpoint: ids from 1 in that order, ifindex
// 100 + id, address 10.244.1.<id>.
void AddNamespacesOfLocalPods(PolicyEngine& engine, std::initializer_list<const char*> namespaces,
                              std::initializer_list<const char*> names) {
  for (const char* ns : namespaces) engine.UpsertNamespace({ns, {{"team", ns}}});
  uint32_t id = 1;
  for (const char* ns : namespaces) {
    for (const char* name : names) {
      engine.UpsertPod({ns, name, {{"app", name}}, "node-1", 0x0af40100u + id, {}});
      engine.UpsertEndpoint({id, 100 + id, ns, name, 0x0af40100u + id});
      ++id;
    }
  }
}

// The pods labelled app=<app> of the policy's namespace.
PolicyPeer PodsOfApp(const char* app) {
  PolicyPeer peer;
  peer.pod_selector = LabelSelector{{{"app", app}}, {}};
  return peer;
}

// <ns>/<name>: the pods labelled app=<name> accept `peer` (any port).
NetworkPolicy IngressFrom(const char* ns, const char* name, const PolicyPeer& peer) {
  NetworkPolicy policy;
  policy.namespace_name = ns;
  policy.name = name;
  policy.pod_selector.match_labels = {{"app", name}};
  policy.ingress.push_back({{peer}, {}});
  return policy;
}

// The engine's endpoints' policies, kept current from TakeDirty like the agent does.
class Mirror {
 public:
  explicit Mirror(PolicyEngine& engine) : engine_(engine) {}
  void Sync() {
    for (uint32_t id : engine_.TakeDirty()) {
      if (engine_.endpoints().contains(id)) {
        current_[id] = engine_.Compile(id);
      } else {
        current_.erase(id);
      }
    }
  }
  // Compares with a from-scratch compilation of the same inputs.
  void CheckAgainstFullCompile(const std::string& context) {
    INFO(context);
    REQUIRE(current_.size() == engine_.endpoints().size());
    microseg::CheckAgainstFullCompile(engine_, [&](uint32_t id) -> const EndpointPolicy* {
      auto found = current_.find(id);
      return found == current_.end() ? nullptr : &found->second;
    });
  }

 private:
  PolicyEngine& engine_;
  std::map<uint32_t, EndpointPolicy> current_;
};

class RandomEvents {
 public:
  // `ipv6`: pods and endpoints also get IPv6 addresses (some IPv6 only), rules IPv6 blocks.
  explicit RandomEvents(uint32_t seed, bool ipv6 = false) : rng_(seed), ipv6_(ipv6) {}

  // Applies one random event to the engine and returns what it was; with
  // `crds`, SegmentPolicy and ClusterSegmentPolicy events too.
  std::string Step(PolicyEngine& engine, bool crds = false) {
    if (crds && Chance(0.2)) return CrdStep(engine);
    switch (Uniform(0, 9)) {
      case 0: {
        Namespace ns{Pick(kNamespaces), Labels{}};
        if (Chance(0.7)) ns.labels["team"] = Pick(kValues);
        engine.UpsertNamespace(ns);
        return "upsert namespace " + ns.name;
      }
      case 1: {
        const std::string name = Pick(kNamespaces);
        engine.DeleteNamespace(name);
        return "delete namespace " + name;
      }
      case 2:
      case 3:
      case 4: {
        Pod pod = RandomPod();
        engine.UpsertPod(pod);
        return "upsert pod " + pod.namespace_name + "/" + pod.name;
      }
      case 5: {
        const std::string key = Pick(kNamespaces) + "/p" + std::to_string(Uniform(0, 7));
        engine.DeletePod(key);
        return "delete pod " + key;
      }
      case 6:
      case 7: {
        NetworkPolicy policy = RandomPolicy();
        engine.UpsertNetworkPolicy(policy);
        return "upsert policy " + policy.namespace_name + "/" + policy.name;
      }
      case 8: {
        const std::string key = Pick(kNamespaces) + "/np" + std::to_string(Uniform(0, 2));
        engine.DeleteNetworkPolicy(key);
        return "delete policy " + key;
      }
      default: {
        const uint32_t id = static_cast<uint32_t>(Uniform(1, 5));
        if (Chance(0.3)) {
          engine.DeleteEndpoint(id);
          return "delete endpoint " + std::to_string(id);
        }
        LocalEndpoint endpoint{id, 100 + id, Pick(kNamespaces), "p" + std::to_string(Uniform(0, 7)),
                               Chance(0.8) ? 0x0af40200u + id : 0u};
        if (ipv6_ && Chance(0.6)) endpoint.ipv6 = Address6(0x200 + id);
        engine.UpsertEndpoint(endpoint);
        return "upsert endpoint " + std::to_string(id) + " " + endpoint.pod_namespace + "/" + endpoint.pod_name;
      }
    }
  }

 private:
  inline static const std::vector<std::string> kNamespaces = {"a", "b", "c"};
  inline static const std::vector<std::string> kValues = {"x", "y"};

  std::string CrdStep(PolicyEngine& engine) {
    switch (Uniform(0, 3)) {
      case 0: {
        SegmentPolicy segment;
        segment.policy = RandomPolicy();
        segment.policy.name = "sp" + std::to_string(Uniform(0, 1));
        for (auto* rules : {&segment.policy.ingress, &segment.policy.egress}) {
          for (PolicyRule& rule : *rules) rule.action = Chance(0.5) ? RuleAction::kDeny : RuleAction::kAllow;
        }
        if (Chance(0.3)) segment.enforcement = Enforcement::kAudit;
        engine.UpsertSegmentPolicy(segment);
        return "upsert segment policy " + segment.policy.namespace_name + "/" + segment.policy.name;
      }
      case 1: {
        const std::string key = Pick(kNamespaces) + "/sp" + std::to_string(Uniform(0, 1));
        engine.DeleteSegmentPolicy(key);
        return "delete segment policy " + key;
      }
      case 2: {
        ClusterSegmentPolicy policy;
        policy.name = "csp" + std::to_string(Uniform(0, 1));
        policy.priority = Uniform(0, 3);
        if (Chance(0.5)) policy.subject_namespace_selector.match_labels["team"] = Pick(kValues);
        if (Chance(0.5)) policy.subject_pod_selector = RandomSelector();
        policy.applies_ingress = Chance(0.7);
        policy.applies_egress = Chance(0.5);
        for (auto* rules : {&policy.ingress, &policy.egress}) {
          for (int i = Uniform(0, 2); i > 0; --i) {
            PolicyRule rule = RandomRule();
            const int action = Uniform(0, 2);
            rule.action = action == 0 ? RuleAction::kAllow : action == 1 ? RuleAction::kDeny : RuleAction::kPass;
            // The parser gives every cluster-scoped pod selector peer a namespace selector.
            for (PolicyPeer& peer : rule.peers) {
              if (peer.pod_selector && !peer.namespace_selector) peer.namespace_selector = LabelSelector{};
            }
            rules->push_back(rule);
          }
        }
        engine.UpsertClusterSegmentPolicy(policy);
        return "upsert cluster segment policy " + policy.name;
      }
      default: {
        const std::string name = "csp" + std::to_string(Uniform(0, 1));
        engine.DeleteClusterSegmentPolicy(name);
        return "delete cluster segment policy " + name;
      }
    }
  }

  int Uniform(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }
  bool Chance(double p) { return std::bernoulli_distribution(p)(rng_); }
  template <typename T>
  T Pick(const std::vector<T>& options) {
    return options[static_cast<size_t>(Uniform(0, static_cast<int>(options.size()) - 1))];
  }

  Labels RandomLabels() {
    Labels labels;
    if (Chance(0.6)) labels["app"] = Pick(kValues);
    if (Chance(0.4)) labels["role"] = Pick(kValues);
    return labels;
  }

  Pod RandomPod() {
    Pod pod;
    pod.namespace_name = Pick(kNamespaces);
    pod.name = "p" + std::to_string(Uniform(0, 7));
    pod.labels = RandomLabels();
    if (Chance(0.85)) pod.ipv4 = 0x0af40100u + static_cast<uint32_t>(Uniform(1, 40));
    if (Chance(0.5)) pod.container_ports.push_back({"http", static_cast<uint16_t>(Chance(0.5) ? 80 : 8080)});
    if (ipv6_ && Chance(0.6)) {
      pod.ipv6 = Address6(0x100 + static_cast<uint32_t>(Uniform(1, 40)));
      if (Chance(0.3)) pod.ipv4.reset();
    }
    return pod;
  }

  LabelSelector RandomSelector() {
    LabelSelector selector;
    if (Chance(0.6)) selector.match_labels["app"] = Pick(kValues);
    if (Chance(0.2)) selector.match_expressions.push_back({"role", LabelRequirement::Operator::kExists, {}});
    return selector;
  }

  PolicyRule RandomRule() {
    PolicyRule rule;
    const int peers = Uniform(0, 2);
    for (int i = 0; i < peers; ++i) {
      PolicyPeer peer;
      switch (Uniform(0, 3)) {
        case 0:
          peer.pod_selector = RandomSelector();
          break;
        case 1: {
          LabelSelector ns;
          if (Chance(0.7)) ns.match_labels["team"] = Pick(kValues);
          peer.namespace_selector = ns;
          break;
        }
        case 2:
          peer.pod_selector = RandomSelector();
          peer.namespace_selector = LabelSelector{};
          break;
        default:
          if (ipv6_ && Chance(0.5)) {
            peer.ipv6_block = Ipv6Block{{Address6(0x100), 122}, {}};
            if (Chance(0.5)) peer.ipv6_block->except.push_back({Address6(0x110), 124});
            break;
          }
          peer.ip_block = IpBlock{{0x0af40100u, 26}, {}};
          if (Chance(0.5)) peer.ip_block->except.push_back({0x0af40110u, 28});
      }
      rule.peers.push_back(peer);
    }
    if (Chance(0.6)) {
      PolicyPort port;
      if (Chance(0.5)) {
        port.port = std::string("http");
      } else {
        port.port = uint16_t{80};
      }
      rule.ports.push_back(port);
    }
    return rule;
  }

  NetworkPolicy RandomPolicy() {
    NetworkPolicy policy;
    policy.namespace_name = Pick(kNamespaces);
    policy.name = "np" + std::to_string(Uniform(0, 2));
    policy.pod_selector = RandomSelector();
    policy.isolates_ingress = Chance(0.8);
    policy.isolates_egress = Chance(0.5);
    for (int i = Uniform(0, 2); i > 0; --i) policy.ingress.push_back(RandomRule());
    for (int i = Uniform(0, 2); i > 0; --i) policy.egress.push_back(RandomRule());
    return policy;
  }

  // fd00::<low>
  static Ipv6Address Address6(uint32_t low) { return {htonl(0xfd000000u), 0, 0, htonl(low)}; }

  std::mt19937 rng_;
  bool ipv6_ = false;
};

TEST_CASE("incremental recompilation equals a full compile after every event", "[engine][random]") {
  for (uint32_t seed = 1; seed <= 60; ++seed) {
    PolicyEngine engine;
    Mirror mirror(engine);
    RandomEvents events(seed);
    for (int step = 0; step < 80; ++step) {
      const std::string what = events.Step(engine);
      mirror.Sync();
      mirror.CheckAgainstFullCompile("seed " + std::to_string(seed) + " step " + std::to_string(step) + ": " + what);
    }
  }
}

// The agent's path: PlanEndpointUpdates (whole endpoints, or peer patches
// spliced into what is installed) through a real updater. After every event
// each installed endpoint must be exactly what a full compile gives.
TEST_CASE("peer patches and whole recompiles together equal a full compile after every event",
          "[engine][updater][random]") {
  uint64_t patches = 0;
  for (uint32_t seed = 1; seed <= 60; ++seed) {
    PolicyEngine engine;
    testing::FakeMapWriter writer;
    PolicyMapUpdater updater(writer);
    RandomEvents events(seed);
    for (int step = 0; step < 80; ++step) {
      const std::string what = events.Step(engine, /*crds=*/true);
      REQUIRE(updater.Apply(PlanEndpointUpdates(engine, updater)).ok());

      INFO("seed " << seed << " step " << step << ": " << what);
      REQUIRE(updater.installed().size() == engine.endpoints().size());
      CheckAgainstFullCompile(engine, InstalledBy(updater));
      CHECK(testing::SameMapState(writer.maps, updater.Snapshot()));
    }
    patches += updater.counters().peer_patches;
  }
  CHECK(patches > 100);  // the patch path is what most pod events take
}

// Dual-stack and IPv6-only pods and endpoints, IPv6 blocks: pod events
// patch the entries of the pod's addresses in both families; the maps equal
// a full compile after every event.
TEST_CASE("with IPv6 addresses, incremental updates still equal a full compile after every event",
          "[engine][updater][random][ipv6]") {
  uint64_t patches = 0;
  uint64_t ipv6_patches = 0;
  uint64_t flips = 0;
  for (uint32_t seed = 1; seed <= 40; ++seed) {
    PolicyEngine engine;
    testing::FakeMapWriter writer;
    PolicyMapUpdater updater(writer);
    RandomEvents events(seed, /*ipv6=*/true);
    for (int step = 0; step < 80; ++step) {
      const std::string what = events.Step(engine, /*crds=*/true);
      REQUIRE(updater.Apply(PlanEndpointUpdates(engine, updater)).ok());

      INFO("seed " << seed << " step " << step << ": " << what);
      REQUIRE(updater.installed().size() == engine.endpoints().size());
      CheckAgainstFullCompile(engine, InstalledBy(updater));
      CHECK(testing::SameMapState(writer.maps, updater.Snapshot()));
    }
    patches += updater.counters().peer_patches;
    ipv6_patches += updater.counters().ipv6_peer_patches;
    flips += updater.counters().generation_flips;
  }
  INFO("patches " << patches << ", of them IPv6 " << ipv6_patches << ", flips " << flips);
  CHECK(patches > 50);
  CHECK(ipv6_patches > 100);  // IPv6 entries really go the patch path, not only whole compiles
  CHECK(flips > 100);
}

// A ClusterSegmentPolicy whose subjects stay the same is spliced into its
// subjects (the entries of the addresses it touches, its LPM entries)
// instead of recompiling them; only endpoints that gain or lose it are
// compiled whole. Each step must still equal a full compile.
TEST_CASE("a cluster policy change patches the subjects it keeps", "[engine][updater]") {
  PolicyEngine engine;
  testing::FakeMapWriter writer;
  PolicyMapUpdater updater(writer);
  AddNamespacesOfLocalPods(engine, {"x", "y"}, {"web", "client"});
  engine.UpsertNetworkPolicy(IngressFrom("x", "web", PodsOfApp("client")));

  ClusterSegmentPolicy platform;
  platform.name = "platform";
  platform.applies_ingress = true;
  platform.applies_egress = true;
  PolicyPeer metadata;
  metadata.ip_block = IpBlock{{0xa9fea9feu, 32}, {}};
  platform.egress.push_back({{metadata}, {}, RuleAction::kDeny});
  PolicyPeer partners;
  partners.ip_block = IpBlock{{0xc6336400u, 24}, {}};
  PolicyPort range;
  range.port = uint16_t{8000};
  range.end_port = uint16_t{8002};
  platform.egress.push_back({{partners}, {range}, RuleAction::kAllow});
  engine.UpsertClusterSegmentPolicy(platform);

  auto apply = [&] {
    REQUIRE(updater.Apply(PlanEndpointUpdates(engine, updater)).ok());
    CheckAgainstFullCompile(engine, InstalledBy(updater));
    CHECK(testing::SameMapState(writer.maps, updater.Snapshot()));
  };
  apply();
  const uint64_t compiled = engine.compiled_endpoints();
  const uint64_t patches = updater.counters().peer_patches;

  SECTION("other CIDRs, no pod inside them: LPM entries only") {
    platform.egress[1].peers[0].ip_block = IpBlock{{0xc6336500u, 24}, {{0xc6336580u, 25}}};
    engine.UpsertClusterSegmentPolicy(platform);
    apply();
    CHECK(engine.compiled_endpoints() == compiled);
    CHECK(updater.counters().peer_patches == patches + 4);
    CHECK(updater.counters().generation_flips == 0);
  }
  SECTION("a CIDR around pods, a selector peer, a priority: those pods' entries too") {
    PolicyPeer pods;
    pods.ip_block = IpBlock{{0x0af40100u, 30}, {{0x0af40102u, 32}}};
    platform.ingress.push_back({{pods}, {}, RuleAction::kDeny});
    PolicyPeer team_clients;
    team_clients.namespace_selector = LabelSelector{{{"team", "y"}}, {}};
    team_clients.pod_selector = LabelSelector{{{"app", "client"}}, {}};
    platform.ingress.push_back({{team_clients}, {}, RuleAction::kAllow});
    engine.UpsertClusterSegmentPolicy(platform);
    apply();  // ingress entries where there were none: those directions are compiled whole
    const uint64_t compiled_with_ingress = engine.compiled_endpoints();
    const uint64_t patches_with_ingress = updater.counters().peer_patches;
    platform.priority = 5;
    platform.ingress[1].peers[0].namespace_selector = LabelSelector{{{"team", "x"}}, {}};
    engine.UpsertClusterSegmentPolicy(platform);
    apply();
    CHECK(engine.compiled_endpoints() == compiled_with_ingress);
    CHECK(updater.counters().peer_patches == patches_with_ingress + 4);
  }
  SECTION("subjects narrowed to namespace x: y's endpoints lose it and are compiled whole") {
    platform.subject_namespace_selector.match_labels = {{"team", "x"}};
    platform.egress[0].peers[0].ip_block = IpBlock{{0xa9fea9fdu, 32}, {}};  // the range stays: no new cutting
    engine.UpsertClusterSegmentPolicy(platform);
    apply();
    CHECK(engine.compiled_endpoints() == compiled + 2);
    CHECK(updater.counters().peer_patches == patches + 2);
  }
  SECTION("another endPort range: the ports are cut anew in place, patched") {
    platform.egress[1].ports[0].end_port = uint16_t{8003};
    engine.UpsertClusterSegmentPolicy(platform);
    apply();
    CHECK(engine.compiled_endpoints() == compiled);
    CHECK(updater.counters().peer_patches == patches + 4);
    CHECK(updater.counters().port_recuts == 4);
    CHECK(updater.counters().generation_flips == 0);
  }
  SECTION("a new cutting where pod peers keep interval verdicts: that endpoint is compiled whole, re-cut in place") {
    NetworkPolicy to_clients;
    to_clients.namespace_name = "x";
    to_clients.name = "to-clients";
    to_clients.pod_selector.match_labels = {{"app", "web"}};
    to_clients.isolates_egress = true;
    PolicyPort clients_range;
    clients_range.port = uint16_t{8001};
    clients_range.end_port = uint16_t{8005};
    to_clients.egress.push_back({{PodsOfApp("client")}, {clients_range}});
    engine.UpsertNetworkPolicy(to_clients);
    apply();
    const uint64_t compiled_before = engine.compiled_endpoints();
    const uint64_t patches_before = updater.counters().peer_patches;
    const uint64_t flips_before = updater.counters().generation_flips;
    platform.egress[1].ports[0].end_port = uint16_t{8003};
    engine.UpsertClusterSegmentPolicy(platform);
    apply();
    CHECK(engine.compiled_endpoints() == compiled_before + 1);  // x/web: its clients' entries are keyed by intervals
    CHECK(updater.counters().peer_patches == patches_before + 3);
    CHECK(updater.counters().port_recuts == 4);
    CHECK(updater.counters().generation_flips == flips_before);
  }
  SECTION("another rule on the same range: the ports' cutting stays, patched") {
    PolicyPeer more;
    more.ip_block = IpBlock{{0xcb007100u, 24}, {}};
    platform.egress.push_back({{more}, {platform.egress[1].ports[0]}, RuleAction::kAllow});
    engine.UpsertClusterSegmentPolicy(platform);
    apply();
    CHECK(engine.compiled_endpoints() == compiled);
    CHECK(updater.counters().peer_patches == patches + 4);
    CHECK(updater.counters().generation_flips == 0);
  }
  SECTION("a CIDR rule on one port: a new LPM key shape changes the hints, compiled whole and flipped") {
    PolicyPeer dns;
    dns.ip_block = IpBlock{{0x08080808u, 32}, {}};
    PolicyPort udp53;
    udp53.protocol = Protocol::kUdp;
    udp53.port = uint16_t{53};
    platform.egress.push_back({{dns}, {udp53}, RuleAction::kDeny});
    engine.UpsertClusterSegmentPolicy(platform);
    apply();
    CHECK(engine.compiled_endpoints() == compiled + 4);
    CHECK(updater.counters().generation_flips >= 4);
  }
  SECTION("a selector peer choosing a dual-stack pod: patched in both families") {
    const Ipv6Address dual_ipv6{htonl(0xfd000000u), 0, 0, htonl(1u)};
    engine.UpsertPod({"y", "dual", {{"app", "partner"}}, "node-2", 0x0af40200u, {}, dual_ipv6});
    apply();
    const uint64_t compiled_with_pod = engine.compiled_endpoints();
    const uint64_t patches_with_pod = updater.counters().peer_patches;
    PolicyPeer partner_pods;
    partner_pods.namespace_selector = LabelSelector{};
    partner_pods.pod_selector = LabelSelector{{{"app", "partner"}}, {}};
    platform.egress[1].peers.push_back(partner_pods);
    engine.UpsertClusterSegmentPolicy(platform);
    apply();
    CHECK(engine.compiled_endpoints() == compiled_with_pod);
    CHECK(updater.counters().peer_patches == patches_with_pod + 4);
    // Every subject now has the pod's IPv6 twin of its IPv4 entries.
    size_t ipv6_entries = 0;
    for (const auto& [key, value] : writer.maps.exact6) {
      if (std::memcmp(key.peer_ipv6, dual_ipv6.data(), sizeof key.peer_ipv6) == 0) ++ipv6_entries;
    }
    CHECK(ipv6_entries >= 4);

    // The pod moves to another IPv6 address: its old entries go, new ones come, still patched.
    const Ipv6Address moved{htonl(0xfd000000u), 0, 0, htonl(2u)};
    engine.UpsertPod({"y", "dual", {{"app", "partner"}}, "node-2", 0x0af40200u, {}, moved});
    apply();
    CHECK(engine.compiled_endpoints() == compiled_with_pod);
    for (const auto& [key, value] : writer.maps.exact6) {
      CHECK(std::memcmp(key.peer_ipv6, dual_ipv6.data(), sizeof key.peer_ipv6) != 0);
    }
  }
  SECTION("deleted: every subject loses it") {
    engine.DeleteClusterSegmentPolicy("platform");
    apply();
    CHECK(engine.compiled_endpoints() == compiled + 4);
  }
}

// Three namespaces, one local endpoint per pod; x/web accepts pods labelled
// app=client of its own namespace, y/db accepts namespace team=x.
struct CountingFixture {
  PolicyEngine engine;
  Mirror mirror{engine};

  CountingFixture() {
    AddNamespacesOfLocalPods(engine, {"x", "y", "z"}, {"web", "db", "client"});
    engine.UpsertNetworkPolicy(IngressFrom("x", "web", PodsOfApp("client")));
    PolicyPeer team_x;
    team_x.namespace_selector = LabelSelector{{{"team", "x"}}, {}};
    engine.UpsertNetworkPolicy(IngressFrom("y", "db", team_x));
    mirror.Sync();
  }

  // Endpoints compiled by `event`.
  template <typename Event>
  uint64_t Recompiled(Event event) {
    const uint64_t before = engine.compiled_endpoints();
    event();
    mirror.Sync();
    mirror.CheckAgainstFullCompile("after the event");
    return engine.compiled_endpoints() - before;
  }
};

// prod/web as a local endpoint whose egress an Audit policy selects, so
// that direction is looked up without being isolated, plus the cluster
// policy the test brings; every Apply checks what the updater installed
// against a full compile.
struct AuditedEgressFixture {
  PolicyEngine engine;
  testing::FakeMapWriter writer;
  PolicyMapUpdater updater{writer};

  explicit AuditedEgressFixture(const std::string& cluster_policy) {
    engine.SetClusterState(testing::ClusterFromYaml(R"(
apiVersion: v1
kind: Namespace
metadata: {name: prod}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: prod, labels: {app: web}}
status: {podIP: 10.244.0.10}
---
apiVersion: microseg.io/v1alpha1
kind: SegmentPolicy
metadata: {name: audit-egress, namespace: prod}
spec:
  podSelector: {}
  enforcement: Audit
  policyTypes: [Egress]
---
)" + cluster_policy));
    engine.UpsertEndpoint({1, 10, "prod", "web", testing::Ip("10.244.0.10")});
    Apply();
  }

  void Apply() {
    REQUIRE(updater.Apply(PlanEndpointUpdates(engine, updater)).ok());
    CheckAgainstFullCompile(engine, InstalledBy(updater));
  }

  uint8_t web_lookup_actions() const { return writer.maps.endpoints.at(10).lookup_actions; }
};

// A pod event that gives a non-isolated direction its first Deny entry
// changes ms_endpoint.lookup_actions (what unjudgeable packets get there):
// that is not a peer patch, which never rewrites the endpoint entry.
TEST_CASE("a pod event bringing a looked-up direction its first Deny rewrites the endpoint",
          "[engine][updater]") {
  AuditedEgressFixture f(R"(
apiVersion: microseg.io/v1alpha1
kind: ClusterSegmentPolicy
metadata: {name: no-bad}
spec:
  priority: 1
  egress:
  - action: Deny
    to: [{podSelector: {matchLabels: {role: bad}}}]
)");
  CHECK(f.web_lookup_actions() == MS_EP_LOOKUP_AUDITS(MS_DIR_EGRESS));

  Pod bad{"prod", "bad", {{"role", "bad"}}, "node-2", testing::Ip("10.244.0.66"), {}};
  f.engine.UpsertPod(bad);
  f.Apply();
  CHECK(f.web_lookup_actions() == (MS_EP_LOOKUP_DENIES(MS_DIR_EGRESS) | MS_EP_LOOKUP_AUDITS(MS_DIR_EGRESS)));

  // And back: the last Deny entry gone, unjudgeable packets are only audited again.
  f.engine.DeletePod("prod/bad");
  f.Apply();
  CHECK(f.web_lookup_actions() == MS_EP_LOOKUP_AUDITS(MS_DIR_EGRESS));
}

// The same through the LPM entries a cluster policy patch carries: a CIDR
// rule turned Deny gives the direction its first Deny, which a patch
// cannot write (it keeps the endpoint entry); a CIDR move that keeps the
// actions is still patched.
TEST_CASE("a cluster policy CIDR rule turned Deny in a looked-up direction rewrites the endpoint",
          "[engine][updater]") {
  AuditedEgressFixture f(R"(
apiVersion: microseg.io/v1alpha1
kind: ClusterSegmentPolicy
metadata: {name: partners}
spec:
  priority: 1
  egress:
  - action: Allow
    to: [{ipBlock: {cidr: 198.51.100.0/24}}]
)");
  REQUIRE(f.web_lookup_actions() == MS_EP_LOOKUP_AUDITS(MS_DIR_EGRESS));
  ClusterSegmentPolicy partners = f.engine.cluster().cluster_segment_policies.at("partners");

  partners.egress[0].peers[0].ip_block = IpBlock{{testing::Ip("198.51.101.0"), 24}, {}};
  f.engine.UpsertClusterSegmentPolicy(partners);
  const uint64_t compiled = f.engine.compiled_endpoints();
  const uint64_t patches = f.updater.counters().peer_patches;
  f.Apply();
  CHECK(f.updater.counters().peer_patches == patches + 1);
  CHECK(f.engine.compiled_endpoints() == compiled);

  partners.egress[0].action = RuleAction::kDeny;
  f.engine.UpsertClusterSegmentPolicy(partners);
  f.Apply();
  CHECK(f.web_lookup_actions() == (MS_EP_LOOKUP_DENIES(MS_DIR_EGRESS) | MS_EP_LOOKUP_AUDITS(MS_DIR_EGRESS)));
  CHECK(f.updater.counters().peer_patches == patches + 1);
  CHECK(f.engine.compiled_endpoints() == compiled + 1);
}

TEST_CASE("an event recompiles only the endpoints it touches", "[engine]") {
  CountingFixture f;
  struct Case {
    const char* what;
    std::function<void(PolicyEngine&)> event;
    uint64_t expected;
  };
  const std::vector<Case> cases = {
      // A new client in x: x/web (its peer) and y/db (namespace team=x).
      {"pod added in x", [](PolicyEngine& e) { e.UpsertPod({"x", "client2", {{"app", "client"}}, "n", 0x0af40150u, {}}); }, 2},
      // z is referenced by no policy: nothing to do.
      {"pod added in z", [](PolicyEngine& e) { e.UpsertPod({"z", "other", {{"app", "client"}}, "n", 0x0af40151u, {}}); }, 0},
      // Same object again: nothing.
      {"unchanged pod", [](PolicyEngine& e) { e.UpsertPod({"z", "other", {{"app", "client"}}, "n", 0x0af40151u, {}}); }, 0},
      // A relabelled local pod in z: only itself (no policy selects or references it).
      {"local pod relabelled in z", [](PolicyEngine& e) { e.UpsertPod({"z", "web", {{"app", "web2"}}, "node-1", 0x0af40107u, {}}); }, 1},
      // x/client relabelled: itself, x/web (was its peer), y/db (namespace peer).
      {"local peer relabelled in x", [](PolicyEngine& e) { e.UpsertPod({"x", "client", {{"app", "other"}}, "node-1", 0x0af40103u, {}}); }, 3},
      // A policy in y selecting db: only y/db.
      {"policy changed in y", [](PolicyEngine& e) {
         NetworkPolicy db;
         db.namespace_name = "y";
         db.name = "db";
         db.pod_selector.match_labels = {{"app", "db"}};
         e.UpsertNetworkPolicy(db);
       }, 1},
      // Namespace z relabelled to team=x: y/db's namespace selector now matches z's pods.
      {"namespace relabelled", [](PolicyEngine& e) { e.UpsertNamespace({"z", {{"team", "x"}}}); }, 0},
      {"policy deleted in x", [](PolicyEngine& e) { e.DeleteNetworkPolicy("x/web"); }, 1},
      {"pod deleted in y", [](PolicyEngine& e) { e.DeletePod("y/client"); }, 1},
  };
  for (const Case& c : cases) {
    INFO(c.what);
    CHECK(f.Recompiled([&] { c.event(f.engine); }) == c.expected);
  }
}

TEST_CASE("a namespace relabel recompiles the endpoints of policies selecting it by namespace", "[engine]") {
  CountingFixture f;
  // y/db accepts team=x: relabelling z into team x adds z's pods as its peers.
  CHECK(f.Recompiled([&] { f.engine.UpsertNamespace({"z", {{"team", "x"}}}); }) == 1);
  CHECK(f.Recompiled([&] { f.engine.DeleteNamespace("z"); }) == 1);
}

}  // namespace
}  // namespace microseg
