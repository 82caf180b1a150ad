// Atomic policy updates, checked on the real programs and maps: one thread
// runs probe packets through from_pod/to_pod (BPF_PROG_TEST_RUN) without
// pause while this thread moves the endpoint through a sequence of policies
// with the real BpfMapWriter and PolicyMapUpdater. Every verdict the prober
// sees must be one that a policy in force during its run gives.
//
// Expected verdicts come from the same programs run while nothing changes
// (before and after each transition), so the check needs no model of the
// data path. After every single map operation the writer waits until the
// prober has run every probe at least once more, so each intermediate map
// state is really probed (no reliance on timing). The same run against the
// deliberately non-atomic writer mode must find wrong verdicts: that is the
// proof the test can fail.
#include <linux/pkt_cls.h>
#include <bpf/bpf.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <functional>
#include <optional>
#include <thread>

#include "bpf_map_writer.h"
#include "datapath_test_support.h"
#include "loaded_datapath.h"
#include "microseg.skel.h"
#include "packet_builder.h"
#include "policy_engine.h"
#include "policy_map_updater.h"

namespace microseg::test {
namespace {

constexpr uint32_t kPodBase = 0x0af40100u;  // 10.244.1.0

std::string Dotted(uint32_t host_order) {
  return std::to_string(host_order >> 24) + "." + std::to_string((host_order >> 16) & 255) + "." +
         std::to_string((host_order >> 8) & 255) + "." + std::to_string(host_order & 255);
}

struct Probe {
  Program program;
  std::string peer;
  uint16_t dport;
};

const std::string kPodIp = Dotted(kPodBase + 1);

std::vector<Probe> MakeProbes() {
  std::vector<Probe> probes;
  for (Program program : {Program::kToPod, Program::kFromPod}) {
    for (uint32_t host = 2; host <= 12; ++host) {
      for (uint16_t port : {uint16_t{80}, uint16_t{53}}) probes.push_back({program, Dotted(kPodBase + host), port});
    }
    probes.push_back({program, "8.8.8.8", 80});
  }
  return probes;
}

// One UDP packet of a fresh flow (new source port each time, so no session
// admitted earlier can decide it): true when the program lets it pass.
bool Allowed(const LoadedDatapath& datapath, const Probe& probe, uint16_t sport) {
  const Bytes frame = probe.program == Program::kToPod ? udp_packet(probe.peer, sport, kPodIp, probe.dport)
                                                       : udp_packet(kPodIp, sport, probe.peer, probe.dport);
  bpf_test_run_opts opts{};
  opts.sz = sizeof(opts);
  opts.data_in = frame.data();
  opts.data_size_in = static_cast<uint32_t>(frame.size());
  opts.repeat = 1;
  if (bpf_prog_test_run_opts(datapath.program_fd(probe.program), &opts) != 0) return false;
  return opts.retval == TC_ACT_OK;
}

// Calls `after_each` after every successful map operation.
class HookedWriter : public MapWriter {
 public:
  HookedWriter(MapWriter& inner, std::function<void()> after_each)
      : inner_(inner), after_each_(std::move(after_each)) {}
  absl::Status UpsertEndpoint(uint32_t i, const ms_endpoint& v) override { return Hook(inner_.UpsertEndpoint(i, v)); }
  absl::Status DeleteEndpoint(uint32_t i) override { return Hook(inner_.DeleteEndpoint(i)); }
  absl::Status UpsertExact(const ms_policy_key& k, const ms_policy_value& v) override { return Hook(inner_.UpsertExact(k, v)); }
  absl::Status DeleteExact(const ms_policy_key& k) override { return Hook(inner_.DeleteExact(k)); }
  absl::Status UpsertLpm(const ms_lpm_key& k, const ms_policy_value& v) override { return Hook(inner_.UpsertLpm(k, v)); }
  absl::Status DeleteLpm(const ms_lpm_key& k) override { return Hook(inner_.DeleteLpm(k)); }
  absl::Status UpsertExact6(const ms_policy6_key& k, const ms_policy_value& v) override { return Hook(inner_.UpsertExact6(k, v)); }
  absl::Status DeleteExact6(const ms_policy6_key& k) override { return Hook(inner_.DeleteExact6(k)); }
  absl::Status UpsertLpm6(const ms_lpm6_key& k, const ms_policy_value& v) override { return Hook(inner_.UpsertLpm6(k, v)); }
  absl::Status DeleteLpm6(const ms_lpm6_key& k) override { return Hook(inner_.DeleteLpm6(k)); }

 private:
  absl::Status Hook(absl::Status status) {
    if (status.ok() && after_each_) after_each_();
    return status;
  }
  MapWriter& inner_;
  std::function<void()> after_each_;
};

std::vector<NetworkPolicy> PolicyVersions() {
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
  block.ip_block = IpBlock{{kPodBase, 28}, {{kPodBase + 4, 30}}};
  PolicyPeer wide;
  wide.ip_block = IpBlock{{0, 0}, {{kPodBase, 24}}};
  PolicyPort udp80;
  udp80.protocol = Protocol::kUdp;
  udp80.port = uint16_t{80};
  std::vector<NetworkPolicy> versions;
  NetworkPolicy p = base();
  p.ingress.push_back({{clients}, {udp80}});
  versions.push_back(p);
  p = base();
  p.ingress.push_back({{block}, {}});
  versions.push_back(p);
  p = base();
  p.ingress.push_back({{block}, {udp80}});
  p.ingress.push_back({{clients}, {}});
  p.isolates_egress = true;
  p.egress.push_back({{wide}, {}});
  versions.push_back(p);
  p = base();
  p.isolates_ingress = false;
  p.isolates_egress = true;
  p.egress.push_back({{clients, block}, {udp80}});
  versions.push_back(p);
  p = base();  // no rules: every ingress dropped
  versions.push_back(p);
  return versions;
}

// endPort ranges on UDP whose cutting of the ports changes with every
// version (the LPM key shapes and flags stay): each change is a re-cut in
// place through the union cutting (port_recut.h).
std::vector<NetworkPolicy> RangeVersions() {
  PolicyPeer clients;
  clients.pod_selector = LabelSelector{{{"app", "client"}}, {}};
  PolicyPeer block;
  block.ip_block = IpBlock{{kPodBase, 28}, {{kPodBase + 4, 30}}};
  PolicyPeer wide;
  wide.ip_block = IpBlock{{0, 0}, {{kPodBase, 24}}};
  auto udp_range = [](uint16_t first, uint16_t last) {
    PolicyPort port;
    port.protocol = Protocol::kUdp;
    port.port = first;
    port.end_port = last;
    return port;
  };
  const std::vector<std::vector<PolicyRule>> rules = {
      {{{clients}, {udp_range(8000, 8010)}}, {{block}, {udp_range(8005, 8020)}}},
      {{{clients}, {udp_range(8000, 8004)}}, {{wide}, {udp_range(8011, 8030)}}},
      {{{block}, {udp_range(8000, 8030)}}},
      {{{clients}, {udp_range(8003, 8012), udp_range(8020, 8025)}}, {{wide}, {udp_range(8000, 8002)}}},
      {{{wide}, {udp_range(8000, 8010)}}, {{clients, block}, {udp_range(8006, 8030)}}},
  };
  std::vector<NetworkPolicy> versions;
  for (const std::vector<PolicyRule>& ingress : rules) {
    NetworkPolicy p;
    p.namespace_name = "x";
    p.name = "p";
    p.pod_selector.match_labels = {{"app", "web"}};
    p.ingress = ingress;
    versions.push_back(p);
  }
  return versions;
}

// Both ends of every interval of RangeVersions, and the ports around them.
std::vector<Probe> RangeProbes() {
  std::vector<Probe> probes;
  for (uint16_t port : {7999, 8000, 8002, 8003, 8004, 8005, 8006, 8010, 8011, 8012, 8013, 8019, 8020, 8021, 8025,
                        8026, 8030, 8031}) {
    for (uint32_t host : {2u, 3u, 5u, 6u, 9u}) probes.push_back({Program::kToPod, Dotted(kPodBase + host), port});
    probes.push_back({Program::kToPod, "8.8.8.8", port});
  }
  return probes;
}

// Transition k: even k installs the next policy version, odd k relabels
// host 6 between client and db (pod churn: exact allows come and go).
void ApplyTransition(PolicyEngine& engine, int k, const std::vector<NetworkPolicy>& versions) {
  if (k % 2 == 0) {
    engine.UpsertNetworkPolicy(versions[static_cast<size_t>(k / 2) % versions.size()]);
  } else {
    const bool client = (k / 2) % 2 == 0;
    engine.UpsertPod({"x", "p6", {{"app", client ? "db" : "client"}}, "node-1", kPodBase + 6, {}});
  }
}

struct Observation {
  uint32_t probe;
  bool allowed;
  uint64_t phase_before;  // 2k: version k stable; 2k+1: moving from k to k+1
  uint64_t phase_after;
};

struct HammerResult {
  uint64_t wrong_verdicts = 0;
  uint64_t observations_during_updates = 0;
  uint64_t total_observations = 0;
  UpdaterCounters counters;
};

HammerResult Hammer(LoadedDatapath& datapath, PolicyMapUpdater::Mode mode, int transitions,
                    const std::vector<NetworkPolicy>& versions = PolicyVersions(),
                    const std::vector<Probe>& probes = MakeProbes()) {
  BpfMapWriter real({datapath.map_fd("ms_endpoints"), datapath.map_fd("ms_policy"), datapath.map_fd("ms_policy_lpm"),
                     datapath.map_fd("ms_policy6"), datapath.map_fd("ms_policy6_lpm")});
  REQUIRE(datapath.map_fd("ms_policy") >= 0);

  std::atomic<uint64_t> phase{0};
  std::atomic<uint64_t> runs{0};
  std::atomic<bool> stop{false};
  std::vector<Observation> observations;
  std::atomic<bool> probing{false};
  // After each map operation: let the prober run every probe at least once
  // against this exact intermediate state.
  auto let_prober_see_it = [&] {
    if (!probing.load()) return;
    const uint64_t target = runs.load() + 2 * probes.size();
    while (runs.load() < target) std::this_thread::yield();
  };
  HookedWriter writer(real, let_prober_see_it);
  PolicyMapUpdater updater(writer, mode);

  PolicyEngine engine;
  engine.UpsertNamespace({"x", {}});
  for (uint32_t host = 1; host <= 12; ++host) {
    const char* app = host == 1 ? "web" : host % 3 == 0 ? "client" : "db";
    engine.UpsertPod({"x", "p" + std::to_string(host), {{"app", app}}, "node-1", kPodBase + host, {}});
  }
  engine.UpsertEndpoint({1, kTestRunIfindex, "x", "p1", kPodBase + 1});
  auto apply_dirty = [&] {
    std::vector<EndpointUpdate> updates;
    for (uint32_t id : engine.TakeDirty()) updates.push_back({id, engine.Compile(id)});
    return updater.Apply(std::move(updates));
  };
  // The stable verdicts of each version, measured while nothing changes.
  auto measure = [&] {
    std::vector<bool> verdicts;
    for (const Probe& probe : probes) verdicts.push_back(Allowed(datapath, probe, 7));  // no sessions: any port
    return verdicts;
  };
  std::vector<std::vector<bool>> expected;
  absl::Status status = apply_dirty();
  expected.push_back(measure());
  // Probing starts once version 0 is in force.
  std::thread prober([&] {
    uint16_t sport = 1024;
    for (uint64_t i = 0; !stop.load(); ++i) {
      const uint32_t index = static_cast<uint32_t>(i % probes.size());
      const uint64_t before = phase.load();
      const bool allowed = Allowed(datapath, probes[index], sport);
      const uint64_t after = phase.load();
      sport = sport == 65535 ? 1024 : sport + 1;
      observations.push_back({index, allowed, before, after});
      runs.fetch_add(1);
    }
  });
  probing.store(true);
  for (int k = 0; status.ok() && k < transitions; ++k) {
    ApplyTransition(engine, k, versions);
    phase.store(2 * static_cast<uint64_t>(k) + 1);
    status = apply_dirty();
    phase.store(2 * static_cast<uint64_t>(k) + 2);
    expected.push_back(measure());
  }
  stop.store(true);
  prober.join();
  INFO(status.ToString());
  REQUIRE(status.ok());

  HammerResult result;
  result.counters = updater.counters();
  result.total_observations = observations.size();
  for (const Observation& o : observations) {
    if (o.phase_before % 2 == 1 || o.phase_before != o.phase_after) ++result.observations_during_updates;
    const uint64_t first = o.phase_before / 2;
    const uint64_t last = (o.phase_after + 1) / 2;
    bool possible = false;
    for (uint64_t version = first; version <= last && version < expected.size(); ++version) {
      possible = possible || expected[version][o.probe] == o.allowed;
    }
    if (!possible) ++result.wrong_verdicts;
  }
  return result;
}

// UDP sessions expire at once: every probe is judged by policy alone, even
// when a source port comes round again.
std::unique_ptr<LoadedDatapath> LoadWithoutSessions() {
  return load_or_skip([](microseg_bpf& skeleton) { skeleton.rodata->session_timeout_udp_ns = 1; });
}

TEST_CASE("no probe gets a verdict outside the old and new policy while the maps change", "[hammer][privileged]") {
  auto datapath = LoadWithoutSessions();
  if (!datapath) return;
  const HammerResult result = Hammer(*datapath, PolicyMapUpdater::Mode::kAtomic, 40);
  INFO("observations: " << result.total_observations << ", during updates: " << result.observations_during_updates);
  CHECK(result.observations_during_updates > 0);
  CHECK(result.wrong_verdicts == 0);
}

TEST_CASE("the hammer catches a writer that removes old entries before adding new ones", "[hammer][privileged]") {
  auto datapath = LoadWithoutSessions();
  if (!datapath) return;
  const HammerResult result = Hammer(*datapath, PolicyMapUpdater::Mode::kNaiveForTests, 10);
  INFO("observations: " << result.total_observations << ", during updates: " << result.observations_during_updates);
  CHECK(result.wrong_verdicts > 0);
}

// The range versions (every policy change a re-cut) on a fresh load;
// nullopt where the programs cannot be loaded (the test is skipped).
std::optional<HammerResult> HammerRecuts(PolicyMapUpdater::Mode mode) {
  auto datapath = LoadWithoutSessions();
  if (!datapath) return std::nullopt;
  return Hammer(*datapath, mode, 20, RangeVersions(), RangeProbes());
}

TEST_CASE("new port cuttings change in place without a verdict outside the old and new policy", "[hammer][privileged]") {
  const std::optional<HammerResult> result = HammerRecuts(PolicyMapUpdater::Mode::kAtomic);
  if (!result) return;
  INFO("observations: " << result->total_observations << ", during updates: " << result->observations_during_updates);
  CHECK(result->observations_during_updates > 0);
  CHECK(result->counters.port_recuts == 9);  // versions 1, 2, 3, 4, 0, 1, 2, 3, 4
  CHECK(result->counters.generation_flips == 1);  // the first version isolates the endpoint; the rest are re-cuts
  CHECK(result->wrong_verdicts == 0);
}

TEST_CASE("the hammer catches new port cuttings written in place without the union cutting", "[hammer][privileged]") {
  const std::optional<HammerResult> result = HammerRecuts(PolicyMapUpdater::Mode::kDirectRecutForTests);
  if (!result) return;
  CHECK(result->wrong_verdicts > 0);
}

}  // namespace
}  // namespace microseg::test
