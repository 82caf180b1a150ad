// The agent's map-pressure handling on real BPF maps (root): a private bpffs,
// the real object with a 4-entry exact policy map, the real map writer. A
// policy that does not fit locks its endpoint down in the kernel map, the
// endpoint status and the metrics say so, and it recovers. The session map
// count and the eviction estimate are checked against entries written here.
#include <bpf/bpf.h>
#include <sys/mount.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>

#include "agent.h"
#include "agent_fixture.h"
#include "bpf_datapath.h"
#include "bpf_map_writer.h"
#include "map_pressure_monitor.h"
#include "metrics.h"
#include "policy_commit.h"
#include "policy_engine.h"
#include "policy_map_updater.h"
#include "prometheus/client_metric.h"
#include "prometheus/metric_family.h"
#include "prometheus/metric_type.h"
#include "temp_dir.h"

namespace microseg {
namespace {

using testing::AllowIngressFrom;
using testing::PodRecord;

// A bpffs mounted on a fresh temporary directory, unmounted at the end.
class PrivateBpffs {
 public:
  PrivateBpffs() {
    if (::mount("bpf", dir_.path().c_str(), "bpf", 0, nullptr) == 0) mounted_ = true;
    else error_ = errno;
  }
  ~PrivateBpffs() {
    if (mounted_) ::umount2(dir_.path().c_str(), MNT_DETACH);
  }
  bool mounted() const { return mounted_; }
  int error() const { return error_; }
  std::string pins() const { return dir_.path() + "/microseg"; }

 private:
  TempDir dir_;
  bool mounted_ = false;
  int error_ = 0;
};

// The real object loaded with `options` (small maps, session map 1024) and
// pinned in `bpffs`, or nullptr after a SKIPPED warning where this process
// cannot (not root, no bpffs of its own).
std::unique_ptr<BpfDatapath> LoadPinnedOrSkip(const PrivateBpffs& bpffs, DatapathOptions options) {
  if (::geteuid() != 0) {
    WARN("SKIPPED: needs root (mounts a private bpffs and loads BPF programs)");
    return nullptr;
  }
  if (!bpffs.mounted()) {
    WARN("SKIPPED: needs a mountable bpf filesystem: " << std::strerror(bpffs.error()));
    return nullptr;
  }
  options.bpffs_dir = bpffs.pins();
  options.max_sessions = 1024;
  auto loaded = BpfDatapath::LoadAndPin(options);
  REQUIRE(loaded.ok());
  return std::move(*loaded);
}

// x/server accepts TCP 80 from `clients` pods: one exact entry each.
ClusterState ServerWithClients(int clients) {
  ClusterState cluster;
  cluster.namespaces["x"] = {"x", {}};
  cluster.pods["x/server"] = {"x", "server", {{"role", "server"}}, "node-1", 0x0af40102u, {}};
  for (int i = 0; i < clients; ++i) {
    const std::string name = "client-" + std::to_string(i);
    cluster.pods["x/" + name] = {"x", name, {{"role", "client"}}, "node-2", 0x0af40210u + i, {}};
  }
  cluster.network_policies["x/server"] = AllowIngressFrom("server", "role", "server", "client", 80);
  return cluster;
}

std::optional<double> MetricValue(const std::vector<prometheus::MetricFamily>& families, const std::string& name,
                                  const std::string& map = "") {
  for (const auto& family : families) {
    if (family.name != name) continue;
    for (const auto& metric : family.metric) {
      bool match = map.empty();
      for (const auto& label : metric.label) match = match || (label.name == "map" && label.value == map);
      if (match) return family.type == prometheus::MetricType::Counter ? metric.counter.value : metric.gauge.value;
    }
  }
  return std::nullopt;
}

size_t KernelExactEntriesOf(const BpfDatapath& datapath, uint32_t endpoint_id) {
  auto maps = datapath.ReadPolicyMaps();
  REQUIRE(maps.ok());
  size_t n = 0;
  // Entries of either policy generation (MS_POLICY_GEN_BIT) count.
  for (const auto& [key, value] : maps->exact) n += (key.endpoint_id & ~MS_POLICY_GEN_BIT) == endpoint_id;
  return n;
}

ms_endpoint KernelEndpoint(const BpfDatapath& datapath, uint32_t ifindex) {
  ms_endpoint_key key{};
  key.ifindex = ifindex;
  ms_endpoint value{};
  REQUIRE(bpf_map_lookup_elem(datapath.endpoints_fd(), &key, &value) == 0);
  return value;
}

TEST_CASE("a full policy map locks the endpoint down in the kernel, in its status and in the metrics",
          "[privileged][map_pressure]") {
  PrivateBpffs bpffs;
  DatapathOptions options;
  options.max_policy_exact = 4;
  const std::unique_ptr<BpfDatapath> loaded = LoadPinnedOrSkip(bpffs, options);
  if (!loaded) return;
  const BpfDatapath& datapath = *loaded;

  TempDir state;
  EndpointRegistry registry(state.path());
  REQUIRE(registry.Load().ok());
  BpfMapWriter writer(datapath);
  Agent agent("node-1", writer, registry, MapState{}, [&](uint32_t id) { return datapath.DeleteSessionsOf(id); });
  REQUIRE(agent.Start(ServerWithClients(6)).ok());
  auto server = agent.AddEndpoint(PodRecord("server", 4242, "10.244.1.2"));
  REQUIRE(server.ok());
  const uint32_t server_id = server->record.endpoint_id;

  // Six entries wanted, four fit: none of them is in the kernel map.
  CHECK(server->locked_down);
  CHECK_THAT(server->lockdown_reason, Catch::Contains("ms_policy is full"));
  CHECK((KernelEndpoint(datapath, 4242).flags & MS_EP_F_LOCKDOWN) != 0);
  CHECK(KernelExactEntriesOf(datapath, server_id) == 0);

  MapPressureOptions pressure_options;
  pressure_options.session_count_interval = absl::ZeroDuration();  // count on every check
  MapPressureMonitor monitor(
      datapath, pressure_options,
      [&agent] { return agent.counters().owned_map_entries(); },
      [&writer](unsigned map) { return writer.insert_failures(map); });
  auto allow = ParseSessionAllowList("10.244.0.10/32:udp:53, 10.244.0.0/24:tcp, fd00:96::a/128:udp:53");
  REQUIRE(allow.ok());
  REQUIRE(monitor.Configure(*allow).ok());
  AgentMetrics metrics(datapath, agent, nullptr, nullptr);
  metrics.set_map_pressure(&monitor);

  REQUIRE(monitor.Check(absl::Now()).ok());
  auto families = metrics.Collect();
  CHECK(MetricValue(families, "microseg_endpoint_lockdown") == 1.0);
  CHECK(MetricValue(families, "microseg_endpoint_lockdowns_total") == 1.0);
  CHECK(MetricValue(families, "microseg_bpf_map_capacity", "ms_policy") == 4.0);
  CHECK(MetricValue(families, "microseg_bpf_map_entries", "ms_policy") == 0.0);
  CHECK(MetricValue(families, "microseg_bpf_map_insert_failures_total", "ms_policy").value_or(0) > 0);
  CHECK(MetricValue(families, "microseg_bpf_map_pressure", "ms_sessions") == 0.0);
  // Preallocated: at least key + value for every one of the 1024 slots.
  CHECK(MetricValue(families, "microseg_bpf_map_memory_bytes", "ms_sessions").value_or(0) >=
        1024.0 * (sizeof(ms_session_key) + sizeof(ms_session)));
  CHECK(MetricValue(families, "microseg_bpf_map_memory_bytes", "ms_policy").value_or(0) > 0);
  CHECK(MetricValue(families, "microseg_bpf_map_memory_bytes", "ms_policy_lpm").has_value());
  // Read from the real per-CPU ms_audit_stats: present, nothing audited here.
  CHECK(MetricValue(families, "microseg_policy_audit_events_dropped_total") == 0.0);

  // The session limits and the allow-list are in the kernel.
  const uint32_t slot = MS_PMAP_SESSIONS;
  ms_pressure_config config{};
  REQUIRE(bpf_map_lookup_elem(datapath.pressure_config_fd(), &slot, &config) == 0);
  CHECK(config.full_entries == 1024 - 21);  // 2 % reserve, rounded up
  CHECK(config.alert_entries == 922);       // 90 %, rounded up
  ms_allow_key allow_key{}, next{};
  int allow_entries = 0;
  for (const void* prev = nullptr; bpf_map_get_next_key(datapath.session_allow_fd(), prev, &next) == 0;
       prev = &allow_key) {
    allow_key = next;
    ++allow_entries;
  }
  CHECK(allow_entries == 2);
  ms_allow6_key allow6_key{}, next6{};
  int allow6_entries = 0;
  for (const void* prev = nullptr; bpf_map_get_next_key(datapath.session_allow6_fd(), prev, &next6) == 0;
       prev = &allow6_key) {
    allow6_key = next6;
    ++allow6_entries;
  }
  CHECK(allow6_entries == 1);
  CHECK(allow6_key.prefixlen == MS_ALLOW_FIXED_BITS + 128);
  CHECK(allow6_key.port == 53);

  // Ten sessions in; three vanish without anybody reporting a delete (as an
  // LRU eviction would); the agent's own purge of the rest is a delete.
  auto evictions_are_told_from_deletes = [&](auto key_type, int fd, const std::string& map,
                                             const std::string& other_map) {
    using Key = decltype(key_type);
    auto key_of = [&](uint16_t port) {
      Key key{};
      key.endpoint_id = server_id;
      key.pod_port = port;
      key.proto = 17;
      return key;
    };
    for (uint16_t port = 1; port <= 10; ++port) {
      const Key key = key_of(port);
      ms_session value{};
      REQUIRE(bpf_map_update_elem(fd, &key, &value, BPF_NOEXIST) == 0);
    }
    REQUIRE(monitor.Check(absl::Now()).ok());
    families = metrics.Collect();
    CHECK(MetricValue(families, "microseg_bpf_map_entries", map) == 10.0);
    CHECK(MetricValue(families, "microseg_bpf_map_evictions_total", map) == 0.0);
    for (uint16_t port = 1; port <= 3; ++port) {
      const Key key = key_of(port);
      REQUIRE(bpf_map_delete_elem(fd, &key) == 0);
    }
    REQUIRE(monitor.Check(absl::Now()).ok());
    REQUIRE(datapath.DeleteSessionsOf(server_id).ok());
    REQUIRE(monitor.Check(absl::Now()).ok());
    families = metrics.Collect();
    CHECK(MetricValue(families, "microseg_bpf_map_entries", map) == 0.0);
    CHECK(MetricValue(families, "microseg_bpf_map_evictions_total", map) == 3.0);
    // The purge is not credited to the other family's map either.
    CHECK(MetricValue(families, "microseg_bpf_map_evictions_total", other_map) == 0.0);
  };
  SECTION("ms_sessions is counted exactly, silent disappearance is an eviction") {
    evictions_are_told_from_deletes(ms_session_key{}, datapath.sessions_fd(), "ms_sessions", "ms_sessions6");
  }
  SECTION("ms_sessions6 is counted exactly, silent disappearance is an eviction") {
    evictions_are_told_from_deletes(ms_session6_key{}, datapath.sessions6_fd(), "ms_sessions6", "ms_sessions");
  }
  SECTION("deletes reported for one family never hide evictions of the other") {
    // Seven IPv6 sessions swept by the agent, reported as ms_sessions6 deletes,
    // while three IPv4 sessions vanish: those three are evictions.
    for (uint16_t port = 1; port <= 3; ++port) {
      ms_session_key key{};
      key.endpoint_id = server_id;
      key.pod_port = port;
      key.proto = 17;
      ms_session value{};
      REQUIRE(bpf_map_update_elem(datapath.sessions_fd(), &key, &value, BPF_NOEXIST) == 0);
    }
    REQUIRE(monitor.Check(absl::Now()).ok());
    for (uint16_t port = 1; port <= 3; ++port) {
      ms_session_key key{};
      key.endpoint_id = server_id;
      key.pod_port = port;
      key.proto = 17;
      REQUIRE(bpf_map_delete_elem(datapath.sessions_fd(), &key) == 0);
    }
    datapath.CountSessionDeletes(MS_PMAP_SESSIONS6, 7);
    REQUIRE(monitor.Check(absl::Now()).ok());
    families = metrics.Collect();
    CHECK(MetricValue(families, "microseg_bpf_map_evictions_total", "ms_sessions") == 3.0);
  }
  SECTION("recovery once the policy fits") {
    REQUIRE(agent.SetClusterState(ServerWithClients(4)).ok());
    CHECK_FALSE(agent.GetEndpoint({"cid-server", "eth0"})->locked_down);
    CHECK(VerdictFlags(KernelEndpoint(datapath, 4242)) == MS_EP_F_INGRESS_ISOLATED);
    CHECK(KernelExactEntriesOf(datapath, server_id) == 4);
    REQUIRE(monitor.Check(absl::Now()).ok());
    families = metrics.Collect();
    CHECK(MetricValue(families, "microseg_endpoint_lockdown") == 0.0);
    CHECK(MetricValue(families, "microseg_bpf_map_pressure", "ms_policy") == 1.0);
  }
  REQUIRE(datapath.Unpin().ok());
}

}  // namespace
ms_policy_key ExactKey(uint32_t endpoint_id, uint32_t peer) {
  ms_policy_key key{};
  key.endpoint_id = endpoint_id;
  key.peer_ipv4 = peer;
  key.port = 80;
  key.proto = 6;
  return key;
}

ms_lpm_key LpmKey(uint32_t endpoint_id, uint32_t prefix, uint8_t bits) {
  ms_lpm_key key{};
  key.prefixlen = MS_LPM_FIXED_BITS + bits;
  key.endpoint_id = endpoint_id;
  key.proto = 6;
  key.port = 80;
  key.peer_ipv4 = prefix;
  return key;
}

// The real writer's batches (one BPF_MAP_UPDATE_BATCH / DELETE_BATCH per
// call): a full map stops the batch where the kernel did, `done` says how
// far, and the updater's undo of a failed in-place batch leaves the old
// policy in the kernel, entry for entry.
TEST_CASE("the real writer's batches stop where the kernel did, and a failed batch is undone",
          "[privileged][map_pressure]") {
  PrivateBpffs bpffs;
  DatapathOptions options;
  options.max_policy_exact = 4;
  options.max_policy_lpm = 4;
  const std::unique_ptr<BpfDatapath> loaded = LoadPinnedOrSkip(bpffs, options);
  if (!loaded) return;
  const BpfDatapath& datapath = *loaded;
  BpfMapWriter writer(datapath);
  ms_policy_value allow{};
  allow.action = MS_ACTION_ALLOW;

  SECTION("exact map: six entries into four slots, then deletes with an absent key") {
    PolicyEntryList<ms_policy_key> entries;
    for (uint32_t i = 0; i < 6; ++i) entries.emplace_back(ExactKey(7, 0x0af40200u + i), allow);
    size_t done = 99;
    const absl::Status status = writer.UpsertBatch(entries, done);
    CHECK(status.code() == absl::StatusCode::kResourceExhausted);
    REQUIRE(done == 4);
    auto maps = datapath.ReadPolicyMaps();
    REQUIRE(maps.ok());
    REQUIRE(maps->exact.size() == 4);
    for (size_t i = 0; i < 4; ++i) CHECK(maps->exact.contains(entries[i].first));

    const std::vector<ms_policy_key> keys = {entries[0].first, entries[5].first, entries[1].first};
    REQUIRE(writer.DeleteBatch(keys, done).ok());
    CHECK(done == 3);
    maps = datapath.ReadPolicyMaps();
    REQUIRE(maps.ok());
    CHECK(maps->exact.size() == 2);
    CHECK(maps->exact.contains(entries[2].first));
    CHECK(maps->exact.contains(entries[3].first));
  }
  SECTION("LPM trie: the same, prefixes of different lengths") {
    PolicyEntryList<ms_lpm_key> entries;
    for (uint8_t bits : {32, 28, 24, 16, 8, 0}) entries.emplace_back(LpmKey(7, bits == 0 ? 0 : 0x0af40200u, bits), allow);
    size_t done = 99;
    CHECK(writer.UpsertBatch(entries, done).code() == absl::StatusCode::kResourceExhausted);
    REQUIRE(done == 4);
    auto maps = datapath.ReadPolicyMaps();
    REQUIRE(maps.ok());
    CHECK(maps->lpm.size() == 4);
    const std::vector<ms_lpm_key> keys = {entries[3].first, entries[4].first, entries[0].first};
    REQUIRE(writer.DeleteBatch(keys, done).ok());
    CHECK(done == 3);
    maps = datapath.ReadPolicyMaps();
    REQUIRE(maps.ok());
    CHECK(maps->lpm.size() == 2);
  }
  SECTION("an in-place change that overflows mid-batch leaves the old policy, entry for entry") {
    PolicyEngine engine;
    engine.SetClusterState(ServerWithClients(3));
    engine.UpsertEndpoint({1, 4242, "x", "server", 0x0af40102u});
    PolicyMapUpdater updater(writer);
    REQUIRE(updater.Apply(PlanEndpointUpdates(engine, updater)).ok());
    REQUIRE(updater.counters().generation_flips == 0);
    auto before = datapath.ReadPolicyMaps();
    REQUIRE(before.ok());
    REQUIRE(before->exact.size() == 3);

    // Three more clients on a second port: same flags, in place, six new
    // entries for one free slot.
    NetworkPolicy policy = AllowIngressFrom("server", "role", "server", "client", 80);
    PolicyPort https;
    https.port = uint16_t{443};
    policy.ingress[0].ports.push_back(https);
    engine.UpsertNetworkPolicy(policy);
    const absl::Status status = updater.Apply(PlanEndpointUpdates(engine, updater));
    CHECK(status.code() == absl::StatusCode::kResourceExhausted);
    CHECK(updater.counters().rollbacks == 1);
    auto after = datapath.ReadPolicyMaps();
    REQUIRE(after.ok());
    auto same_policy = [](const MapState& a, const MapState& b) {
      return SameEntries(a.exact, b.exact) && SameEntries(a.lpm, b.lpm) && SameEntries(a.exact6, b.exact6) &&
             SameEntries(a.lpm6, b.lpm6);
    };
    CHECK(same_policy(*after, *before));
    CHECK(same_policy(updater.Snapshot(), *before));
  }
}

}  // namespace microseg
