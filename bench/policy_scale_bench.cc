// microseg-policy-bench: the policy engine at cluster scale. Generates a
// synthetic cluster (default 10,000 pods in 1,000 namespaces, 2,000 policies
// of all three kinds: NetworkPolicies, SegmentPolicies (Deny rules, Audit
// mode) and 20 ClusterSegmentPolicies (Allow/Deny/Pass, priorities), mixing
// pod selectors, namespace selectors, named ports, endPort ranges and
// ipBlocks with except; 200 endpoints local), then measures what the agent
// does per event (PolicyEngine -> PlanEndpointUpdates (whole endpoints or
// peer patches) -> PolicyMapUpdater -> BpfMapWriter into freshly loaded,
// unpinned BPF maps):
//   - full compile + initial map fill;
//   - one pod add / label change / delete -> maps updated (p50/p99/max);
//   - one policy change -> maps updated (p50/p99/max);
//   - every ClusterSegmentPolicy changed in turn (p50/p99/max);
//   - the baseline in the same run: a full CompilePolicy of the same state;
//   - RSS (VmRSS/VmHWM) and each BPF map's memory (fdinfo memlock).
// A tool, not a test: nothing here asserts on timing. Needs root for the BPF
// maps; with --no_bpf it writes into an in-memory map instead.
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "bpf_map_writer.h"
#include "map_state.h"
#include "microseg.skel.h"
#include "policy_commit.h"
#include "policy_compiler.h"
#include "policy_engine.h"
#include "policy_map_updater.h"

namespace microseg {
namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  int pods = 10000;
  int namespaces = 1000;
  int policies = 2000;  // all kinds together
  int cluster_policies = 20;
  int segment_percent = 30;  // of the namespaced policies
  int local = 200;
  int pod_events = 600;
  int policy_events = 300;
  int cluster_policy_events = 100;
  int cluster_policy_shape = -1;  // >= 0: the cluster policy phase changes only policies of this shape (i % 4)
  bool bpf = true;
  bool dual_stack = false;  // every pod also gets an IPv6 address (fd00:10:244::/64)
  uint32_t seed = 42;
};

// In-memory writer for --no_bpf runs (no privilege).
class MemoryWriter : public MapWriter {
 public:
  MapState maps;
  absl::Status UpsertEndpoint(uint32_t i, const ms_endpoint& v) override { maps.endpoints[i] = v; return absl::OkStatus(); }
  absl::Status DeleteEndpoint(uint32_t i) override { maps.endpoints.erase(i); return absl::OkStatus(); }
  absl::Status UpsertExact(const ms_policy_key& k, const ms_policy_value& v) override { maps.exact[k] = v; return absl::OkStatus(); }
  absl::Status DeleteExact(const ms_policy_key& k) override { maps.exact.erase(k); return absl::OkStatus(); }
  absl::Status UpsertLpm(const ms_lpm_key& k, const ms_policy_value& v) override { maps.lpm[k] = v; return absl::OkStatus(); }
  absl::Status DeleteLpm(const ms_lpm_key& k) override { maps.lpm.erase(k); return absl::OkStatus(); }
  absl::Status UpsertExact6(const ms_policy6_key& k, const ms_policy_value& v) override { maps.exact6[k] = v; return absl::OkStatus(); }
  absl::Status DeleteExact6(const ms_policy6_key& k) override { maps.exact6.erase(k); return absl::OkStatus(); }
  absl::Status UpsertLpm6(const ms_lpm6_key& k, const ms_policy_value& v) override { maps.lpm6[k] = v; return absl::OkStatus(); }
  absl::Status DeleteLpm6(const ms_lpm6_key& k) override { maps.lpm6.erase(k); return absl::OkStatus(); }
};

std::string Ns(int i) { return absl::StrCat("ns-", i); }
const char* kApps[] = {"web", "api", "db", "cache", "monitoring"};

class ClusterGenerator {
 public:
  explicit ClusterGenerator(const Options& options) : options_(options), rng_(options.seed) {}

  int Uniform(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }

  Namespace MakeNamespace(int i) {
    return Namespace{Ns(i), {{"team", absl::StrCat("t", i % 20)}, {"env", i % 2 == 0 ? "prod" : "dev"}}};
  }

  Pod MakePod(int i, int ns) {
    Pod pod;
    pod.namespace_name = Ns(ns);
    pod.name = absl::StrCat("pod-", i);
    pod.labels = {{"app", kApps[Uniform(0, 4)]}, {"tier", Uniform(0, 1) ? "frontend" : "backend"}};
    pod.node_name = "node-x";
    pod.ipv4 = 0x0af40000u + static_cast<uint32_t>(i) + 1;  // 10.244.0.0/16
    if (options_.dual_stack) pod.ipv6 = Ipv6Address{htonl(0xfd000010u), htonl(0x02440000u), 0, htonl(static_cast<uint32_t>(i) + 1)};
    pod.container_ports = {{"http", 8080, Protocol::kTcp}, {"metrics", 9090, Protocol::kTcp}};
    return pod;
  }

  // Three shapes, in proportion 2:1:1.
  NetworkPolicy MakePolicy(int i, int ns, int variant) {
    NetworkPolicy policy;
    policy.namespace_name = Ns(ns);
    policy.name = absl::StrCat("np-", i);
    PolicyPort http;
    http.port = uint16_t{static_cast<uint16_t>(8080 + variant % 3)};
    PolicyPort metrics;
    metrics.port = std::string("metrics");
    switch (i % 4) {
      case 0:
      case 1: {
        // app=X accepts app=Y of its namespace on 8080, and monitoring pods
        // of the namespaces of one team on the named port "metrics".
        policy.pod_selector.match_labels = {{"app", kApps[(i + variant) % 4]}};
        PolicyPeer same_ns;
        same_ns.pod_selector = LabelSelector{{{"app", kApps[(i + 1 + variant) % 4]}}, {}};
        PolicyPeer monitoring;
        monitoring.namespace_selector = LabelSelector{{{"team", absl::StrCat("t", (i + variant) % 20)}}, {}};
        monitoring.pod_selector = LabelSelector{{{"app", "monitoring"}}, {}};
        policy.ingress.push_back({{same_ns}, {http}});
        policy.ingress.push_back({{monitoring}, {metrics}});
        break;
      }
      case 2: {
        // Default deny both ways for the namespace, egress to the backend
        // tier of its own namespace and to 10.0.0.0/8 outside the pod range.
        policy.isolates_egress = true;
        PolicyPeer backend;
        backend.pod_selector = LabelSelector{{}, {{"tier", LabelRequirement::Operator::kIn, {"backend"}}}};
        PolicyPeer outside;
        outside.ip_block = IpBlock{{0x0a000000u, 8}, {{0x0af40000u, 16}}};
        PolicyPort https;
        https.port = uint16_t{static_cast<uint16_t>(443 + variant % 2)};
        policy.egress.push_back({{backend}, {}});
        policy.egress.push_back({{outside}, {https}});
        break;
      }
      default: {
        // Frontends accept an office range (minus two subnets) and every pod
        // of prod namespaces of one team on 80-81.
        policy.pod_selector.match_labels = {{"tier", "frontend"}};
        PolicyPeer office;
        office.ip_block = IpBlock{{0xc0a80000u, 16}, {{0xc0a80100u, 24}, {0xc0a80200u + (variant % 4) * 256u, 24}}};
        PolicyPeer prod;
        prod.namespace_selector = LabelSelector{{{"env", "prod"}, {"team", absl::StrCat("t", (i * 7 + variant) % 20)}}, {}};
        PolicyPort web;
        web.port = uint16_t{80};
        web.end_port = uint16_t{81};
        policy.ingress.push_back({{office, prod}, {web}});
      }
    }
    return policy;
  }

  // SegmentPolicies: Deny rules next to allows, and Audit mode.
  SegmentPolicy MakeSegmentPolicy(int i, int ns, int variant) {
    SegmentPolicy segment;
    NetworkPolicy& policy = segment.policy;
    policy.namespace_name = Ns(ns);
    policy.name = absl::StrCat("sp-", i);
    policy.pod_selector.match_labels = {{"app", kApps[(i + variant) % 4]}};
    PolicyPort http;
    http.port = uint16_t{static_cast<uint16_t>(8080 + variant % 3)};
    if (i % 2 == 0) {
      // Deny the dev namespaces of one team, allow the same app tier.
      PolicyPeer dev;
      dev.namespace_selector = LabelSelector{{{"env", "dev"}, {"team", absl::StrCat("t", (i + variant) % 20)}}, {}};
      PolicyRule deny{{dev}, {}, RuleAction::kDeny};
      PolicyPeer tier;
      tier.pod_selector = LabelSelector{{{"tier", "frontend"}}, {}};
      policy.ingress.push_back(deny);
      policy.ingress.push_back({{tier}, {http}, RuleAction::kAllow});
    } else {
      // Audit: would allow only the backend tier of the namespace on egress.
      segment.enforcement = Enforcement::kAudit;
      policy.isolates_egress = true;
      PolicyPeer backend;
      backend.pod_selector = LabelSelector{{{"tier", "backend"}}, {}};
      policy.egress.push_back({{backend}, {http}, RuleAction::kAllow});
    }
    return segment;
  }

  // Platform policies, evaluated before the namespaces' own.
  ClusterSegmentPolicy MakeClusterPolicy(int i, int variant) {
    ClusterSegmentPolicy policy;
    policy.name = absl::StrCat("csp-", i);
    policy.priority = 10 * i + variant % 5;
    const std::string team = absl::StrCat("t", (i + variant) % 20);
    switch (i % 4) {
      case 0: {
        // Prod of one team refuses the dev namespaces of another team.
        policy.subject_namespace_selector = LabelSelector{{{"env", "prod"}, {"team", team}}, {}};
        policy.applies_ingress = true;
        PolicyPeer dev;
        dev.namespace_selector = LabelSelector{{{"env", "dev"}, {"team", absl::StrCat("t", (i + 7) % 20)}}, {}};
        policy.ingress.push_back({{dev}, {}, RuleAction::kDeny});
        break;
      }
      case 1: {
        // Monitoring of one team scrapes every prod pod on the named port.
        policy.subject_namespace_selector = LabelSelector{{{"env", "prod"}}, {}};
        policy.applies_ingress = true;
        PolicyPeer monitoring;
        monitoring.namespace_selector = LabelSelector{{{"team", team}}, {}};
        monitoring.pod_selector = LabelSelector{{{"app", "monitoring"}}, {}};
        PolicyPort metrics;
        metrics.port = std::string("metrics");
        policy.ingress.push_back({{monitoring}, {metrics}, RuleAction::kAllow});
        break;
      }
      case 2: {
        // Traffic to the corporate range minus the pod range: the namespaces decide.
        policy.applies_egress = true;
        PolicyPeer corporate;
        corporate.ip_block = IpBlock{{0x0a000000u, 8}, {{0x0af40000u, 16}}};
        policy.egress.push_back({{corporate}, {}, RuleAction::kPass});
        break;
      }
      default: {
        // Nobody reaches the cloud metadata service, and a web range on a port range.
        policy.applies_egress = true;
        PolicyPeer metadata;
        metadata.ip_block = IpBlock{{0xa9fea9feu, 32}, {}};
        policy.egress.push_back({{metadata}, {}, RuleAction::kDeny});
        PolicyPeer web;
        web.ip_block = IpBlock{{0xc6336400u + static_cast<uint32_t>(variant % 4) * 256u, 24}, {}};
        PolicyPort range;
        range.port = uint16_t{8000};
        range.end_port = uint16_t{static_cast<uint16_t>(8010 + variant % 3)};
        policy.egress.push_back({{web}, {range}, RuleAction::kAllow});
      }
    }
    return policy;
  }

  ClusterState Build(std::vector<LocalEndpoint>& local) {
    ClusterState cluster;
    for (int i = 0; i < options_.namespaces; ++i) {
      Namespace ns = MakeNamespace(i);
      cluster.namespaces[ns.name] = ns;
    }
    const int per_ns = options_.pods / options_.namespaces;
    for (int i = 0; i < options_.pods; ++i) {
      Pod pod = MakePod(i, i / per_ns);
      cluster.pods[pod.namespace_name + "/" + pod.name] = pod;
    }
    for (int i = 0; i < options_.cluster_policies; ++i) {
      ClusterSegmentPolicy policy = MakeClusterPolicy(i, 0);
      cluster.cluster_segment_policies[policy.name] = policy;
    }
    // Namespaced policy i lives in namespace i % namespaces.
    for (int i = 0; i < options_.policies - options_.cluster_policies; ++i) {
      if (IsSegment(i)) {
        SegmentPolicy segment = MakeSegmentPolicy(i, i % options_.namespaces, 0);
        cluster.segment_policies[segment.policy.namespace_name + "/" + segment.policy.name] = segment;
      } else {
        NetworkPolicy policy = MakePolicy(i, i % options_.namespaces, 0);
        cluster.network_policies[policy.namespace_name + "/" + policy.name] = policy;
      }
    }
    // Local pods spread evenly over the cluster.
    const int stride = std::max(1, options_.pods / options_.local);
    uint32_t id = 1;
    for (int i = 0; i < options_.pods && static_cast<int>(local.size()) < options_.local; i += stride) {
      const Pod& pod = cluster.pods.at(absl::StrCat(Ns(i / per_ns), "/pod-", i));
      LocalEndpoint endpoint{id, 1000 + id, pod.namespace_name, pod.name, *pod.ipv4};
      if (pod.ipv6) endpoint.ipv6 = *pod.ipv6;
      local.push_back(endpoint);
      ++id;
    }
    return cluster;
  }

  bool IsSegment(int i) const { return i % 100 < options_.segment_percent; }

 private:
  const Options& options_;
  std::mt19937 rng_;
};

struct Percentiles {
  double p50 = 0, p99 = 0, max = 0;
};
Percentiles Summarize(std::vector<double> ms) {
  Percentiles p;
  if (ms.empty()) return p;
  std::sort(ms.begin(), ms.end());
  p.p50 = ms[ms.size() / 2];
  p.p99 = ms[std::min(ms.size() - 1, static_cast<size_t>(static_cast<double>(ms.size()) * 0.99))];
  p.max = ms.back();
  return p;
}

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

// CPU time of this thread (user + system, BPF syscalls included): on a
// loaded machine wall time also counts waiting for a core.
double CpuMs() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) * 1e3 + static_cast<double>(ts.tv_nsec) / 1e6;
}

std::string ProcStatus(const char* field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(field, 0) == 0) {
      std::string value = line.substr(std::strlen(field));
      value.erase(0, value.find_first_not_of(" \t"));
      return value;
    }
  }
  return "?";
}

std::string MemlockOf(int fd) {
  std::ifstream in(absl::StrCat("/proc/self/fdinfo/", fd));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("memlock:", 0) == 0) {
      std::istringstream fields(line.substr(8));
      uint64_t bytes = 0;
      fields >> bytes;
      return absl::StrCat(bytes / 1024, " KiB");
    }
  }
  return "?";
}

int Run(const Options& options) {
  ClusterGenerator generator(options);
  std::vector<LocalEndpoint> local;
  const ClusterState cluster = generator.Build(local);
  std::printf("cluster: %zu namespaces, %zu pods, %zu NetworkPolicies, %zu SegmentPolicies, %zu "
              "ClusterSegmentPolicies, %zu local endpoints\n",
              cluster.namespaces.size(), cluster.pods.size(), cluster.network_policies.size(),
              cluster.segment_policies.size(), cluster.cluster_segment_policies.size(), local.size());

  microseg_bpf* skeleton = nullptr;
  std::unique_ptr<MapWriter> writer;
  if (options.bpf) {
    skeleton = microseg_bpf__open();
    if (skeleton == nullptr) {
      std::fprintf(stderr, "cannot open the BPF skeleton: %s\n", std::strerror(errno));
      return 1;
    }
    // Room for the whole policy plus staging headroom.
    bpf_map__set_max_entries(skeleton->maps.ms_policy, 1u << 20);
    bpf_map__set_max_entries(skeleton->maps.ms_policy_lpm, 1u << 17);
    bpf_map__set_max_entries(skeleton->maps.ms_sessions, 1024);
    // Dual-stack: every selector peer has an IPv6 twin (agent: --max_policy6_entries).
    if (options.dual_stack) bpf_map__set_max_entries(skeleton->maps.ms_policy6, 1u << 20);
    if (int error = microseg_bpf__load(skeleton); error != 0) {
      std::fprintf(stderr, "loading the BPF object failed (needs root; or run with --no_bpf): %s\n",
                   std::strerror(-error));
      return 1;
    }
    writer = std::make_unique<BpfMapWriter>(BpfMapWriter::MapFds{
        bpf_map__fd(skeleton->maps.ms_endpoints), bpf_map__fd(skeleton->maps.ms_policy),
        bpf_map__fd(skeleton->maps.ms_policy_lpm), bpf_map__fd(skeleton->maps.ms_policy6),
        bpf_map__fd(skeleton->maps.ms_policy6_lpm)});
  } else {
    writer = std::make_unique<MemoryWriter>();
  }
  std::printf("RSS before the engine: %s\n", ProcStatus("VmRSS:").c_str());

  PolicyEngine engine;
  PolicyMapUpdater updater(*writer);
  // CPU of the last commit's two halves: compiling (whole or patches) and writing the maps.
  double last_plan_cpu_ms = 0, last_apply_cpu_ms = 0;
  auto commit = [&] {
    const double plan0 = CpuMs();
    std::vector<EndpointUpdate> updates = PlanEndpointUpdates(engine, updater);
    const double apply0 = CpuMs();
    last_plan_cpu_ms = apply0 - plan0;
    const size_t count = updates.size();
    absl::Status applied = updater.Apply(std::move(updates));
    last_apply_cpu_ms = CpuMs() - apply0;
    if (absl::Status status = applied; !status.ok()) {
      std::fprintf(stderr, "apply failed: %s\n", status.ToString().c_str());
      std::exit(1);
    }
    return count;
  };

  // 1. Full compile + initial fill.
  auto started = Clock::now();
  const double fill_cpu0 = CpuMs();
  engine.SetClusterState(cluster);
  for (const LocalEndpoint& endpoint : local) engine.UpsertEndpoint(endpoint);
  const auto loaded = Clock::now();
  const double loaded_cpu = CpuMs();
  commit();
  const auto filled = Clock::now();
  const double filled_cpu = CpuMs();
  std::printf("\n## full compile + initial map fill\n");
  std::printf("state load %.1f ms (CPU %.1f), compile+fill %.1f ms (CPU %.1f), total %.1f ms (CPU %.1f ms); "
              "%zu exact + %zu LPM entries (IPv6: %zu exact + %zu LPM)\n",
              Ms(loaded - started), loaded_cpu - fill_cpu0, Ms(filled - loaded), filled_cpu - loaded_cpu,
              Ms(filled - started), filled_cpu - fill_cpu0, updater.exact_entries(), updater.lpm_entries(),
              updater.exact6_entries(), updater.lpm6_entries());

  // Baseline: the whole-state compiler the agent used before (one full
  // CompilePolicy per change).
  std::vector<double> baseline;
  for (int i = 0; i < 3; ++i) {
    const auto t0 = Clock::now();
    const CompiledPolicy full = CompilePolicy(engine.cluster(), local);
    baseline.push_back(Ms(Clock::now() - t0));
    if (i == 0 && full.maps.exact.size() != updater.exact_entries()) {
      std::fprintf(stderr, "mismatch: full compile has %zu exact entries, incremental %zu\n", full.maps.exact.size(),
                   updater.exact_entries());
      return 1;
    }
  }
  std::printf("baseline, full CompilePolicy (no map writes): median of 3 = %.1f ms\n", Summarize(baseline).p50);

  // 2. Pod events.
  std::vector<double> add_ms, relabel_ms, delete_ms, pod_cpu_ms;
  size_t pod_recompiled = 0;
  const int per_ns = options.pods / options.namespaces;
  std::string last_added;
  for (int i = 0; i < options.pod_events; ++i) {
    const int kind = i % 3;
    const int ns = generator.Uniform(0, options.namespaces - 1);
    const auto t0 = Clock::now();
    const double cpu0 = CpuMs();
    if (kind == 0) {
      Pod pod = generator.MakePod(options.pods + i, ns);
      last_added = pod.namespace_name + "/" + pod.name;
      engine.UpsertPod(pod);
    } else if (kind == 1) {
      const int index = ns * per_ns + generator.Uniform(0, per_ns - 1);
      Pod pod = engine.cluster().pods.at(absl::StrCat(Ns(ns), "/pod-", index));
      pod.labels["app"] = kApps[generator.Uniform(0, 4)];
      pod.labels["tier"] = pod.labels["tier"] == "frontend" ? "backend" : "frontend";
      engine.UpsertPod(pod);
    } else {
      engine.DeletePod(last_added);  // the pod added two events ago
    }
    pod_recompiled += commit();
    pod_cpu_ms.push_back(CpuMs() - cpu0);
    (kind == 0 ? add_ms : kind == 1 ? relabel_ms : delete_ms).push_back(Ms(Clock::now() - t0));
  }
  std::printf("\n## pod events -> maps updated (%d events, %.2f endpoints updated per event, whole or patched)\n",
              options.pod_events, static_cast<double>(pod_recompiled) / options.pod_events);
  for (const auto& [name, samples] : {std::pair{"add", &add_ms}, {"label change", &relabel_ms}, {"delete", &delete_ms}}) {
    const Percentiles p = Summarize(*samples);
    std::printf("| pod %-12s | p50 %.3f ms | p99 %.3f ms | max %.3f ms |\n", name, p.p50, p.p99, p.max);
  }
  std::vector<double> all_pod = add_ms;
  all_pod.insert(all_pod.end(), relabel_ms.begin(), relabel_ms.end());
  all_pod.insert(all_pod.end(), delete_ms.begin(), delete_ms.end());
  const Percentiles pod_all = Summarize(all_pod);
  std::printf("| pod, all      | p50 %.3f ms | p99 %.3f ms | max %.3f ms |\n", pod_all.p50, pod_all.p99, pod_all.max);
  const Percentiles pod_cpu = Summarize(pod_cpu_ms);
  std::printf("| pod, all, CPU | p50 %.3f ms | p99 %.3f ms | max %.3f ms |\n", pod_cpu.p50, pod_cpu.p99, pod_cpu.max);

  // 3. Policy events: half of them in namespaces with local endpoints; the
  // namespaced kinds in their proportion, and a ClusterSegmentPolicy change
  // (every local endpoint may be a subject) every `cluster_every` events,
  // reported on its own as well.
  std::vector<double> policy_ms, policy_cpu_ms, cluster_policy_ms, namespaced_policy_ms;
  const int cluster_every = 50;
  size_t policy_recompiled = 0;
  std::vector<int> local_namespaces;
  for (const LocalEndpoint& endpoint : local) local_namespaces.push_back(std::stoi(endpoint.pod_namespace.substr(3)));
  for (int i = 0; i < options.policy_events; ++i) {
    const int ns = i % 2 == 0 ? local_namespaces[static_cast<size_t>(generator.Uniform(0, static_cast<int>(local_namespaces.size()) - 1))]
                              : generator.Uniform(0, options.namespaces - 1);
    // Namespaced policies of namespace ns are (ns + k * namespaces).
    const int namespaced = options.policies - options.cluster_policies;
    const int policy_index =
        ns + options.namespaces * generator.Uniform(0, std::max(1, namespaced / options.namespaces) - 1);
    const bool cluster_scoped = options.cluster_policies > 0 && i % cluster_every == cluster_every - 1;
    const auto t0 = Clock::now();
    const double cpu0 = CpuMs();
    if (cluster_scoped) {
      engine.UpsertClusterSegmentPolicy(
          generator.MakeClusterPolicy(generator.Uniform(0, options.cluster_policies - 1), i + 1));
    } else if (generator.IsSegment(policy_index)) {
      engine.UpsertSegmentPolicy(generator.MakeSegmentPolicy(policy_index, ns, i + 1));
    } else {
      engine.UpsertNetworkPolicy(generator.MakePolicy(policy_index, ns, i + 1));
    }
    policy_recompiled += commit();
    policy_ms.push_back(Ms(Clock::now() - t0));
    policy_cpu_ms.push_back(CpuMs() - cpu0);
    (cluster_scoped ? cluster_policy_ms : namespaced_policy_ms).push_back(policy_ms.back());
  }
  const Percentiles policy = Summarize(policy_ms);
  std::printf("\n## policy changes -> maps updated (%d events, %.2f endpoints updated per event, whole or patched)\n",
              options.policy_events, static_cast<double>(policy_recompiled) / options.policy_events);
  std::printf("| policy change | p50 %.3f ms | p99 %.3f ms | max %.3f ms |\n", policy.p50, policy.p99, policy.max);
  const Percentiles policy_cpu = Summarize(policy_cpu_ms);
  std::printf("| policy, CPU   | p50 %.3f ms | p99 %.3f ms | max %.3f ms |\n", policy_cpu.p50, policy_cpu.p99,
              policy_cpu.max);
  const Percentiles namespaced_policy = Summarize(namespaced_policy_ms);
  std::printf("| of which NetworkPolicy/SegmentPolicy (%zu) | p50 %.3f ms | p99 %.3f ms | max %.3f ms |\n",
              namespaced_policy_ms.size(), namespaced_policy.p50, namespaced_policy.p99, namespaced_policy.max);
  const Percentiles cluster_policy = Summarize(cluster_policy_ms);
  std::printf("| of which ClusterSegmentPolicy (%zu) | p50 %.3f ms | max %.3f ms |\n", cluster_policy_ms.size(),
              cluster_policy.p50, cluster_policy.max);

  // 4. Every ClusterSegmentPolicy changed in turn (priority, teams, CIDRs,
  // port ranges: MakeClusterPolicy's variants), so all four shapes, the
  // ones whose subject is every local pod included, are measured often
  // enough for a p99 of their own.
  std::vector<double> csp_ms, csp_cpu_ms;
  struct Slow {
    double ms, cpu_ms, plan_cpu_ms, apply_cpu_ms;
    int policy;
    uint64_t whole, patched;
  };
  std::vector<Slow> slowest;
  size_t csp_updated = 0;
  for (int i = 0; options.cluster_policies > 0 && i < options.cluster_policy_events; ++i) {
    const uint64_t whole0 = engine.compiled_endpoints();
    const uint64_t patched0 = updater.counters().peer_patches;
    const auto t0 = Clock::now();
    const double cpu0 = CpuMs();
    const int changed = options.cluster_policy_shape < 0 ? i % options.cluster_policies
                                                        : (4 * i + options.cluster_policy_shape) % options.cluster_policies;
    engine.UpsertClusterSegmentPolicy(generator.MakeClusterPolicy(changed, 1000 + i));
    csp_updated += commit();
    csp_ms.push_back(Ms(Clock::now() - t0));
    csp_cpu_ms.push_back(CpuMs() - cpu0);
    slowest.push_back({csp_ms.back(), csp_cpu_ms.back(), last_plan_cpu_ms, last_apply_cpu_ms, changed,
                       engine.compiled_endpoints() - whole0, updater.counters().peer_patches - patched0});
  }
  // Per shape (MakeClusterPolicy: i % 4): they touch very different amounts.
  std::array<std::vector<double>, 4> shape_ms, shape_cpu_ms;
  for (const Slow& event : slowest) {
    shape_ms[static_cast<size_t>(event.policy % 4)].push_back(event.ms);
    shape_cpu_ms[static_cast<size_t>(event.policy % 4)].push_back(event.cpu_ms);
  }
  std::sort(slowest.begin(), slowest.end(), [](const Slow& a, const Slow& b) { return a.cpu_ms > b.cpu_ms; });
  if (slowest.size() > 5) slowest.resize(5);
  const Percentiles csp = Summarize(csp_ms);
  const Percentiles csp_cpu = Summarize(csp_cpu_ms);
  std::printf("\n## ClusterSegmentPolicy changes, each of the %d in turn (%d events, %.2f endpoints updated per event)\n",
              options.cluster_policies, options.cluster_policy_events,
              options.cluster_policy_events > 0 ? static_cast<double>(csp_updated) / options.cluster_policy_events : 0.0);
  std::printf("| cluster policy change | p50 %.3f ms | p99 %.3f ms | max %.3f ms |\n", csp.p50, csp.p99, csp.max);
  std::printf("| cluster policy, CPU   | p50 %.3f ms | p99 %.3f ms | max %.3f ms |\n", csp_cpu.p50, csp_cpu.p99,
              csp_cpu.max);
  const char* kShapes[] = {"0 prod refuses a team's dev (subjects: one team's prod)",
                            "1 a team's monitoring scrapes every prod pod (subjects: all prod)",
                            "2 Pass to the corporate range (subjects: every pod, CIDR only)",
                            "3 metadata Deny + partner range (subjects: every pod, CIDR only)"};
  for (size_t shape = 0; shape < 4; ++shape) {
    const Percentiles wall = Summarize(shape_ms[shape]);
    const Percentiles cpu = Summarize(shape_cpu_ms[shape]);
    std::printf("| shape %-66s | %3zu events | p50 %.3f ms | max %.3f ms | CPU p50 %.3f ms | CPU max %.3f ms |\n",
                kShapes[shape], shape_ms[shape].size(), wall.p50, wall.max, cpu.p50, cpu.max);
  }
  for (const Slow& slow : slowest) {
    std::printf("  slowest (CPU): csp-%d (shape %d) %.1f ms, CPU %.1f ms (compile %.1f, map writes %.1f), %lu endpoints "
                "compiled whole, %lu patched\n",
                slow.policy, slow.policy % 4, slow.ms, slow.cpu_ms, slow.plan_cpu_ms, slow.apply_cpu_ms,
                static_cast<unsigned long>(slow.whole),
                static_cast<unsigned long>(slow.patched));
  }
  std::printf("updater: %lu generation flips, %lu in-place updates, %lu peer patches, %lu rollbacks\n",
              static_cast<unsigned long>(updater.counters().generation_flips),
              static_cast<unsigned long>(updater.counters().in_place_updates),
              static_cast<unsigned long>(updater.counters().peer_patches),
              static_cast<unsigned long>(updater.counters().rollbacks));

  std::printf("\n## memory\n");
  std::printf("RSS %s (peak %s); %zu exact + %zu LPM entries (IPv6: %zu exact + %zu LPM)\n",
              ProcStatus("VmRSS:").c_str(), ProcStatus("VmHWM:").c_str(), updater.exact_entries(),
              updater.lpm_entries(), updater.exact6_entries(), updater.lpm6_entries());
  if (skeleton != nullptr) {
    for (bpf_map* map : {skeleton->maps.ms_endpoints, skeleton->maps.ms_policy, skeleton->maps.ms_policy_lpm,
                         skeleton->maps.ms_policy6, skeleton->maps.ms_policy6_lpm}) {
      std::printf("| %-14s | max_entries %8u | key %2u B | value %2u B | memlock %s |\n", bpf_map__name(map),
                  bpf_map__max_entries(map), bpf_map__key_size(map), bpf_map__value_size(map),
                  MemlockOf(bpf_map__fd(map)).c_str());
    }
    microseg_bpf__destroy(skeleton);
  }
  return 0;
}

}  // namespace
}  // namespace microseg

int main(int argc, char** argv) {
  microseg::Options options;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&](const char* name) -> const char* {
      const std::string prefix = std::string("--") + name + "=";
      return arg.rfind(prefix, 0) == 0 ? argv[i] + prefix.size() : nullptr;
    };
    if (arg == "--no_bpf") {
      options.bpf = false;
    } else if (arg == "--dual_stack") {
      options.dual_stack = true;
    } else if (const char* v = value("pods")) {
      options.pods = std::atoi(v);
    } else if (const char* v = value("namespaces")) {
      options.namespaces = std::atoi(v);
    } else if (const char* v = value("policies")) {
      options.policies = std::atoi(v);
    } else if (const char* v = value("cluster_policies")) {
      options.cluster_policies = std::atoi(v);
    } else if (const char* v = value("local")) {
      options.local = std::atoi(v);
    } else if (const char* v = value("pod_events")) {
      options.pod_events = std::atoi(v);
    } else if (const char* v = value("policy_events")) {
      options.policy_events = std::atoi(v);
    } else if (const char* v = value("cluster_policy_events")) {
      options.cluster_policy_events = std::atoi(v);
    } else if (const char* v = value("cluster_policy_shape")) {
      options.cluster_policy_shape = std::atoi(v);
    } else {
      std::fprintf(stderr,
                   "usage: %s [--no_bpf] [--dual_stack] [--pods=N] [--namespaces=N] [--policies=N] [--cluster_policies=N] [--local=N] "
                   "[--pod_events=N] [--policy_events=N] [--cluster_policy_events=N] [--cluster_policy_shape=0..3]\n",
                   argv[0]);
      return 2;
    }
  }
  return microseg::Run(options);
}
