// microseg-agent: the per-node agent. Loads and pins the TC programs, keeps
// the policy maps in step with the cluster state, serves the CNI plugin over
// gRPC and exports Prometheus metrics.
#include <net/if.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>

#include <google/protobuf/util/json_util.h>
#include <grpcpp/grpcpp.h>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "agent.h"
#include "audit_event_log.h"
#include "bpf_datapath.h"
#include "bpf_map_writer.h"
#include "cluster_source.h"
#include "directory_source.h"
#include "endpoint_registry.h"
#include "grpc_service.h"
#include "health_endpoints.h"
#include "kube/kube_cluster_source.h"
#include "log.h"
#include "manifest_directory.h"
#include "map_pressure_monitor.h"
#include "metrics.h"
#include "ring_buffer_reader.h"
#include "prometheus/exposer.h"
#include "session_sweeper.h"
#include "tc_attach.h"

ABSL_FLAG(bool, standalone, false,
          "Take the cluster state from --manifests instead of the Kubernetes API. Without it the agent watches the "
          "Kubernetes API: --kubeconfig when given, else the in-cluster service account (KUBERNETES_SERVICE_HOST).");
ABSL_FLAG(std::string, manifests, "",
          "Directory of Namespace, Pod and NetworkPolicy YAML files (multi-document files and kind: List allowed). "
          "Adding, changing or removing a file takes effect within a second; a file that does not parse is "
          "reported and its last good version stays in force.");
ABSL_FLAG(std::string, node_name, "",
          "This node's name as pods' spec.nodeName gives it (default: $NODE_NAME, else the hostname); a CNI call for "
          "a pod scheduled on another node is logged as a misconfiguration. Also this agent's Lease identity.");
// --- Kubernetes mode (node-agent/src/kube, docs/kubernetes.md) ---
ABSL_FLAG(std::string, kubeconfig, "",
          "Kubeconfig file for running outside a cluster (server, certificate-authority(-data), token / tokenFile, "
          "client-certificate/key(-data)). Empty: in-cluster config.");
ABSL_FLAG(std::string, kube_context, "", "Kubeconfig context to use (default: its current-context).");
ABSL_FLAG(std::string, kube_service_account_dir, microseg::kube::kInClusterServiceAccountDir,
          "In-cluster config: where the service account's token, ca.crt and namespace are mounted.");
ABSL_FLAG(std::string, kube_namespace, "",
          "Namespace of the status-writer Lease (default: the service account's / kubeconfig context's namespace).");
ABSL_FLAG(absl::Duration, kube_watch_timeout, absl::Minutes(5),
          "Server-side watch duration (timeoutSeconds); each watch takes a random value in [t, 2t).");
ABSL_FLAG(absl::Duration, kube_watch_idle_timeout, absl::Seconds(90),
          "A watch that delivers nothing (not even a bookmark) for this long is stalled: reconnect.");
ABSL_FLAG(absl::Duration, kube_backoff_max, absl::Seconds(30), "Cap of the jittered exponential reconnect backoff.");
ABSL_FLAG(int64_t, kube_page_size, 500, "LIST page size (limit/continue).");
ABSL_FLAG(bool, kube_write_status, true,
          "Take part in the Lease election; the holder writes SegmentPolicy/ClusterSegmentPolicy status conditions "
          "and Events for rejected policies.");
ABSL_FLAG(absl::Duration, kube_lease_duration, absl::Seconds(15),
          "Lease duration; the holder renews every third of it, others take over after it passes unrenewed.");
ABSL_FLAG(std::string, bpffs_dir, "/sys/fs/bpf/microseg",
          "Directory on a bpf filesystem where programs (progs/) and maps (maps/) are pinned. Pinned maps of an "
          "earlier run are reused, so enforcement survives agent restarts.");
ABSL_FLAG(std::string, grpc_socket, "/run/microseg/agent.sock", "Unix socket of the agent's gRPC API (mode 0600).");
ABSL_FLAG(std::string, state_dir, "/run/microseg/state",
          "Directory for registered endpoints (endpoints/) and registrations the CNI plugin left while the agent was "
          "down (pending/).");
ABSL_FLAG(std::string, metrics_address, "127.0.0.1:9464", "host:port of the Prometheus /metrics endpoint.");
ABSL_FLAG(uint32_t, max_endpoints, MS_DEFAULT_MAX_ENDPOINTS, "Capacity of the endpoint map (pods on this node).");
ABSL_FLAG(uint32_t, max_policy_entries, MS_DEFAULT_MAX_POLICY_EXACT, "Capacity of the exact-match policy map.");
ABSL_FLAG(uint32_t, max_lpm_entries, MS_DEFAULT_MAX_POLICY_LPM, "Capacity of the CIDR (LPM) policy map.");
// ---- IPv6 twins of the maps (docs/ipv6.md) ----
ABSL_FLAG(uint32_t, max_policy6_entries, MS_DEFAULT_MAX_POLICY6_EXACT, "Capacity of the IPv6 exact-match policy map.");
ABSL_FLAG(uint32_t, max_lpm6_entries, MS_DEFAULT_MAX_POLICY6_LPM, "Capacity of the IPv6 CIDR (LPM) policy map.");
ABSL_FLAG(uint32_t, max_sessions6, MS_DEFAULT_MAX_SESSIONS6, "Capacity of the IPv6 session map.");
// ---- session tracking ----
ABSL_FLAG(uint32_t, max_sessions, MS_DEFAULT_MAX_SESSIONS,
          "Capacity of the session map (LRU, per-CPU lists); about 1.5 x the node's concurrent connections. "
          "--session_map_preset overrides it.");
ABSL_FLAG(std::string, session_map_preset, "",
          "Session map size preset: 100k (small nodes), 500k, 1m (the default size) or 2m (large nodes); "
          "empty = --max_sessions.");
ABSL_FLAG(absl::Duration, tcp_syn_timeout, absl::Seconds(30),
          "Idle time after which a half-open TCP session (SYN_SENT, SYN_RECV) is forgotten.");
ABSL_FLAG(absl::Duration, tcp_session_timeout, absl::Hours(1),
          "Idle time after which an ESTABLISHED TCP session is forgotten.");
ABSL_FLAG(absl::Duration, tcp_fin_timeout, absl::Seconds(120),
          "Idle time after which a closing TCP session (FIN_WAIT1/2, CLOSE_WAIT, LAST_ACK, CLOSING, TIME_WAIT) is "
          "forgotten.");
ABSL_FLAG(absl::Duration, tcp_close_timeout, absl::Seconds(10), "Idle time after which a reset TCP session is forgotten.");
ABSL_FLAG(absl::Duration, udp_session_timeout, absl::Seconds(60), "Idle time after which a UDP flow is forgotten.");
ABSL_FLAG(absl::Duration, icmp_session_timeout, absl::Seconds(30),
          "Idle time after which an ICMP echo flow is forgotten.");
ABSL_FLAG(uint32_t, max_half_open_per_endpoint, MS_DEFAULT_MAX_HALF_OPEN,
          "SYN-flood cap: half-open TCP sessions one pod may have; further SYNs are dropped (syn_flood). 0 = no cap.");
ABSL_FLAG(absl::Duration, session_sweep_interval, absl::Seconds(10),
          "How often expired sessions are removed from the session map and the half-open counters recounted.");
ABSL_FLAG(absl::Duration, manifest_poll_interval, absl::Milliseconds(200), "How often --manifests is rescanned (Kubernetes mode: how often watched changes are compiled, as one batch).");
ABSL_FLAG(bool, unpin_on_exit, false,
          "Remove the pinned programs and maps on exit (tests and demos; in production keep them so enforcement "
          "survives restarts).");
ABSL_FLAG(std::string, log_level, "info", "debug, info, warning or error.");
// Map pressure (docs/map-pressure.md).
ABSL_FLAG(std::string, session_allow_list, "10.96.0.10/32:udp:53,10.96.0.10/32:tcp:53",
          "Peers that may still open sessions when the session map is full, as CIDR:tcp|udp|sctp[:port] "
          "comma separated, IPv4 or IPv6 CIDRs (e.g. fd00:96::a/128:udp:53; port 0 or none = any); default: the "
          "usual cluster DNS service address. Empty: none.");
ABSL_FLAG(double, session_map_reserve, 0.02,
          "Share of the session map kept for allow-listed flows: beyond (1 - this) of its capacity new sessions are "
          "refused (reason map_full) instead of letting the LRU evict live ones.");
ABSL_FLAG(double, map_pressure_alert, 0.9, "Share of a map's capacity at which a pressure alert is logged and counted.");
ABSL_FLAG(absl::Duration, map_pressure_interval, absl::Seconds(1),
          "How often map fill is checked (and locked-down endpoints are retried).");
ABSL_FLAG(absl::Duration, session_count_interval, absl::Seconds(10),
          "How often the session map is counted exactly when below the alert threshold (every check above it).");
ABSL_FLAG(uint32_t, audit_events_per_sec, MS_DEFAULT_AUDIT_EVENTS_PER_SEC,
          "Audit events (new flows an Audit SegmentPolicy would drop) each CPU may report per second; 0: none. "
          "Events over the limit are counted, not reported.");
ABSL_FLAG(uint32_t, audit_event_burst, MS_DEFAULT_AUDIT_EVENT_BURST,
          "Audit events each CPU may report at once before --audit_events_per_sec applies.");
ABSL_FLAG(absl::Duration, audit_log_interval, absl::Seconds(10),
          "How often audit events are summed up in the log (one line per policy and direction).");

namespace microseg {
namespace {

std::unique_ptr<grpc::Server> StartGrpc(const std::string& socket_path, grpc::Service* service) {
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(socket_path).parent_path(), ec);
  ::unlink(socket_path.c_str());  // a stale socket of a previous run
  grpc::ServerBuilder builder;
  builder.AddListeningPort("unix:" + socket_path, grpc::InsecureServerCredentials());
  builder.RegisterService(service);
  // The socket is created by BuildAndStart; no window where others can connect.
  const mode_t old_mask = ::umask(0077);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ::umask(old_mask);
  if (server) ::chmod(socket_path.c_str(), 0600);
  return server;
}

// Puts the programs this agent pinned on a pod's veth (one atomic tc filter
// replacement per hook). Pods created before this start, and pods the CNI
// plugin isolated while the agent was down, run a previous agent's programs
// (on the same, reused maps); after this every pod runs the current version
// and CNI CHECK finds the pinned program attached.
void AttachCurrentPrograms(const EndpointRecord& r, const std::string& bpffs_dir) {
  AttachResult result = AttachPinnedPrograms(static_cast<int>(r.host_ifindex), bpffs_dir);
  if (result.ok) {
    LogInfo("pod ", r.pod_namespace, "/", r.pod_name, ": this version's programs attached to ", r.host_ifname);
  } else {
    LogError("pod ", r.pod_namespace, "/", r.pod_name, ": cannot replace the programs on ", r.host_ifname,
             " (the previous version keeps enforcing): ", result.error);
  }
}

// Registrations the CNI plugin wrote (failMode isolate) while we were down.
void AdoptPendingRegistrations(const std::string& pending_dir, const std::string& bpffs_dir, Agent& agent) {
  std::error_code ec;
  if (!std::filesystem::is_directory(pending_dir, ec)) return;
  for (const auto& entry : std::filesystem::directory_iterator(pending_dir, ec)) {
    if (entry.path().extension() != ".json") continue;
    std::ifstream in(entry.path());
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    v1::AddEndpointRequest request;
    google::protobuf::util::JsonParseOptions options;
    options.ignore_unknown_fields = true;
    if (auto status = google::protobuf::util::JsonStringToMessage(text, &request, options); !status.ok()) {
      LogError("pending registration ", entry.path().string(), " is unreadable, removing it: ", status.ToString());
      std::filesystem::remove(entry.path(), ec);
      continue;
    }
    auto view = agent.AddEndpoint(RecordFromRequest(request));
    if (!view.ok()) {
      LogWarning("pending registration ", entry.path().string(), " not adopted yet: ", view.status().ToString());
      continue;
    }
    LogInfo("adopted pending registration of ", request.pod_namespace(), "/", request.pod_name());
    AttachCurrentPrograms(view->record, bpffs_dir);
    std::filesystem::remove(entry.path(), ec);
  }
}

// --session_map_preset: the sizes the tuning guide names.
absl::StatusOr<uint32_t> SessionMapPresetSize(const std::string& preset) {
  if (preset == "100k") return 100'000;
  if (preset == "500k") return 500'000;
  if (preset == "1m") return 1'000'000;
  if (preset == "2m") return 2'000'000;
  return absl::InvalidArgumentError(
      absl::StrCat("--session_map_preset must be 100k, 500k, 1m or 2m (got '", preset, "')"));
}

// Runs the session sweeper every `interval` until stopped.
class SweeperThread {
 public:
  SweeperThread(SessionSweeper& sweeper, absl::Duration interval)
      : sweeper_(sweeper), interval_(interval), thread_([this] { Loop(); }) {}
  ~SweeperThread() { Stop(); }
  void Stop() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    wake_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

 private:
  void Loop() {
    std::unique_lock<std::mutex> lock(mu_);
    while (!wake_.wait_for(lock, absl::ToChronoNanoseconds(interval_), [this] { return stop_; })) {
      lock.unlock();
      auto result = sweeper_.Sweep(MonotonicNowNs());
      if (!result.ok()) {
        LogWarning("session sweep failed: ", result.status().ToString());
      } else if (result->removed > 0) {
        LogDebug("session sweep: ", result->scanned, " sessions, ", result->removed, " expired removed, ",
                 result->half_open, " half-open");
      }
      lock.lock();
    }
  }

  SessionSweeper& sweeper_;
  absl::Duration interval_;
  std::mutex mu_;
  std::condition_variable wake_;
  bool stop_ = false;
  std::thread thread_;
};

bool VethIsGone(const EndpointRecord& record) {
  char name[IF_NAMESIZE] = {};
  return if_indextoname(record.host_ifindex, name) == nullptr || record.host_ifname != name;
}

std::string NodeName() {
  std::string node_name = absl::GetFlag(FLAGS_node_name);
  if (node_name.empty()) {
    if (const char* env = std::getenv("NODE_NAME"); env != nullptr) node_name = env;
  }
  if (node_name.empty()) {
    char host[256] = {};
    ::gethostname(host, sizeof host - 1);
    node_name = host;
  }
  return node_name;
}

// Standalone: the manifest directory; otherwise the Kubernetes API.
absl::StatusOr<std::unique_ptr<ClusterSource>> MakeClusterSource(const std::string& node_name) {
  if (absl::GetFlag(FLAGS_standalone)) {
    const std::string manifests = absl::GetFlag(FLAGS_manifests);
    if (manifests.empty() || !std::filesystem::is_directory(manifests)) {
      return absl::InvalidArgumentError(absl::StrCat("--manifests must name an existing directory (got '", manifests, "')"));
    }
    return std::make_unique<DirectorySource>(manifests);
  }
  if (absl::GetFlag(FLAGS_kubeconfig).empty() && std::getenv("KUBERNETES_SERVICE_HOST") == nullptr) {
    return absl::InvalidArgumentError(
        "no cluster state source: run with --standalone --manifests DIR, --kubeconfig FILE, or inside a cluster "
        "(KUBERNETES_SERVICE_HOST)");
  }
  kube::KubeModeOptions options;
  options.kubeconfig = absl::GetFlag(FLAGS_kubeconfig);
  options.kube_context = absl::GetFlag(FLAGS_kube_context);
  options.lease_namespace = absl::GetFlag(FLAGS_kube_namespace);
  options.service_account_dir = absl::GetFlag(FLAGS_kube_service_account_dir);
  options.source.node_name = node_name;
  options.source.reflector.watch_timeout = absl::GetFlag(FLAGS_kube_watch_timeout);
  options.source.reflector.idle_timeout = absl::GetFlag(FLAGS_kube_watch_idle_timeout);
  options.source.reflector.backoff.max = absl::GetFlag(FLAGS_kube_backoff_max);
  options.source.reflector.page_size = absl::GetFlag(FLAGS_kube_page_size);
  options.source.write_status = absl::GetFlag(FLAGS_kube_write_status);
  options.source.lease.lease_duration = absl::GetFlag(FLAGS_kube_lease_duration);
  options.source.lease_renew_interval = absl::GetFlag(FLAGS_kube_lease_duration) / 3;
  auto source = kube::KubeClusterSource::Create(std::move(options));
  if (!source.ok()) return source.status();
  return std::unique_ptr<ClusterSource>(std::move(*source));
}

int Run() {
  // Signals are taken synchronously by the main loop; block them before any
  // thread (gRPC, exposer, Kubernetes watches) starts so none of those threads receives them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  const std::string node_name = NodeName();
  auto cluster_source = MakeClusterSource(node_name);
  if (!cluster_source.ok()) {
    LogError(cluster_source.status().message());
    return 2;
  }
  ClusterSource& source = **cluster_source;

  DatapathOptions options;
  options.bpffs_dir = absl::GetFlag(FLAGS_bpffs_dir);
  options.max_endpoints = absl::GetFlag(FLAGS_max_endpoints);
  options.max_policy_exact = absl::GetFlag(FLAGS_max_policy_entries);
  options.max_policy_lpm = absl::GetFlag(FLAGS_max_lpm_entries);
  options.max_sessions = absl::GetFlag(FLAGS_max_sessions);
  options.max_policy6_exact = absl::GetFlag(FLAGS_max_policy6_entries);
  options.max_policy6_lpm = absl::GetFlag(FLAGS_max_lpm6_entries);
  options.max_sessions6 = absl::GetFlag(FLAGS_max_sessions6);
  if (const std::string preset = absl::GetFlag(FLAGS_session_map_preset); !preset.empty()) {
    auto size = SessionMapPresetSize(preset);
    if (!size.ok()) {
      LogError(size.status().message());
      return 2;
    }
    options.max_sessions = *size;
  }
  options.session_timeouts.tcp_syn = absl::GetFlag(FLAGS_tcp_syn_timeout);
  options.session_timeouts.tcp_established = absl::GetFlag(FLAGS_tcp_session_timeout);
  options.session_timeouts.tcp_fin = absl::GetFlag(FLAGS_tcp_fin_timeout);
  options.session_timeouts.tcp_close = absl::GetFlag(FLAGS_tcp_close_timeout);
  options.session_timeouts.udp = absl::GetFlag(FLAGS_udp_session_timeout);
  options.session_timeouts.icmp = absl::GetFlag(FLAGS_icmp_session_timeout);
  options.max_half_open_per_endpoint = absl::GetFlag(FLAGS_max_half_open_per_endpoint);
  options.audit_events_per_sec = absl::GetFlag(FLAGS_audit_events_per_sec);
  options.audit_event_burst = absl::GetFlag(FLAGS_audit_event_burst);
  auto datapath = BpfDatapath::LoadAndPin(options);
  if (!datapath.ok()) {
    LogError("cannot load the data path: ", datapath.status().ToString());
    return 1;
  }
  auto live = (*datapath)->ReadPolicyMaps();
  if (!live.ok()) {
    LogError("cannot read the pinned maps: ", live.status().ToString());
    return 1;
  }

  const std::string state_dir = absl::GetFlag(FLAGS_state_dir);
  EndpointRegistry registry(state_dir);
  if (auto status = registry.Load(); !status.ok()) {
    LogError("cannot load endpoint state: ", status.ToString());
    return 1;
  }
  BpfMapWriter writer(**datapath);
  const BpfDatapath& dp = **datapath;
  Agent agent(node_name, writer, registry, std::move(*live),
              [&dp](uint32_t endpoint_id) { return dp.DeleteSessionsOf(endpoint_id); });

  // Metrics, /healthz and /readyz (503 until the initial state is in the
  // maps) serve while the initial state is still being listed.
  auto metrics = std::make_shared<AgentMetrics>(
      dp, agent, [&source] { return source.rejected_versions(); }, [&source] { return source.errors().size(); });
  std::unique_ptr<prometheus::Exposer> exposer;
  try {
    exposer = std::make_unique<prometheus::Exposer>(absl::GetFlag(FLAGS_metrics_address), 2,
                                                    HealthEndpointCallbacks());
  } catch (const std::exception& e) {
    LogError("cannot serve metrics on ", absl::GetFlag(FLAGS_metrics_address), ": ", e.what());
    return 1;
  }
  exposer->RegisterCollectable(metrics);
  std::shared_ptr<prometheus::Collectable> source_metrics = source.metrics();
  if (source_metrics) exposer->RegisterCollectable(source_metrics);

  // Until the initial state is compiled the gRPC socket does not exist, so
  // a CNI ADD waits (its timeout) and then fails or isolates per failMode.
  std::optional<ClusterState> initial = source.WaitForInitialState([&stop_signals] {
    timespec tick = absl::ToTimespec(absl::Milliseconds(100));
    const int signal = sigtimedwait(&stop_signals, nullptr, &tick);
    return signal != SIGINT && signal != SIGTERM;
  });
  if (!initial) {
    LogInfo("shutting down before the initial cluster state was complete");
    if (absl::GetFlag(FLAGS_unpin_on_exit)) (void)dp.Unpin();
    return 0;
  }
  if (auto status = agent.Start(*std::move(initial)); !status.ok()) {
    LogError("initial policy could not be applied: ", status.ToString());
    return 1;
  }
  agent.ForgetEndpointsWhere(VethIsGone);  // pods deleted while the agent was down
  for (const EndpointView& view : agent.ListEndpoints()) AttachCurrentPrograms(view.record, options.bpffs_dir);

  SessionSweeper sweeper(dp.sessions_fd(), dp.half_open_fd(), dp.half_open_rebase_fd(), options.session_timeouts,
                         dp.sessions6_fd());
  metrics->set_session_sweeper(&sweeper);
  SweeperThread sweeper_thread(sweeper, absl::GetFlag(FLAGS_session_sweep_interval));

  // ---- map pressure: limits, allow-list, alert reader ----
  auto allow_list = ParseSessionAllowList(absl::GetFlag(FLAGS_session_allow_list));
  if (!allow_list.ok()) {
    LogError("--session_allow_list: ", allow_list.status().message());
    return 2;
  }
  MapPressureOptions pressure_options;
  pressure_options.alert_ratio = absl::GetFlag(FLAGS_map_pressure_alert);
  pressure_options.session_reserve_ratio = absl::GetFlag(FLAGS_session_map_reserve);
  pressure_options.session_count_interval = absl::GetFlag(FLAGS_session_count_interval);
  MapPressureMonitor pressure(
      dp, pressure_options,
      [&agent] { return agent.counters().owned_map_entries(); },
      [&writer](unsigned map) { return writer.insert_failures(map); });
  if (auto status = pressure.Configure(*allow_list); !status.ok()) {
    LogError("cannot configure the session map limits: ", status.ToString());
    return 1;
  }
  auto alert_reader = RingBufferReader::Start<ms_pressure_alert>(
      dp.pressure_events_fd(), "map-pressure ring buffer",
      [&pressure](const ms_pressure_alert& alert) { pressure.OnDataPathAlert(alert); });
  if (!alert_reader.ok()) {
    LogError(alert_reader.status().ToString());
    return 1;
  }

  // ---- audit events: policy names, counts, a log summary per interval ----
  AuditEventLog audit_log([&agent](uint32_t rule_id) { return agent.ResolveRuleId(rule_id); },
                          [&agent](uint32_t endpoint_id) { return agent.EndpointName(endpoint_id); });
  auto audit_reader = RingBufferReader::Start<ms_audit_event>(
      dp.audit_events_fd(), "audit-event ring buffer",
      [&audit_log](const ms_audit_event& event) { audit_log.Record(event); });
  if (!audit_reader.ok()) {
    LogError(audit_reader.status().ToString());
    return 1;
  }
  metrics->set_audit_events(&audit_log);
  const absl::Duration audit_log_interval = absl::GetFlag(FLAGS_audit_log_interval);
  absl::Time next_audit_summary = absl::Now() + audit_log_interval;
  AuditCounters audit_dropped_logged;
  const absl::Duration pressure_interval = absl::GetFlag(FLAGS_map_pressure_interval);
  absl::Time next_pressure_check = absl::Now();
  uint64_t swept_reported = 0;   // both session maps
  uint64_t swept6_reported = 0;  // ms_sessions6

  metrics->set_map_pressure(&pressure);

  AgentService service(agent, {options.bpffs_dir, [&source] { return source.errors(); }});
  const std::string socket_path = absl::GetFlag(FLAGS_grpc_socket);
  std::unique_ptr<grpc::Server> server = StartGrpc(socket_path, &service);
  if (!server) {
    LogError("cannot listen on unix:", socket_path);
    return 1;
  }
  SetAgentReady(true);
  LogInfo("microseg-agent ", MICROSEG_VERSION, " ready: gRPC unix:", socket_path, ", metrics http://",
          absl::GetFlag(FLAGS_metrics_address), "/metrics, ", source.description());

  const std::string pending_dir = state_dir + "/pending";
  const absl::Duration poll = absl::GetFlag(FLAGS_manifest_poll_interval);
  absl::Time next_housekeeping = absl::Now();
  while (true) {
    timespec timeout = absl::ToTimespec(poll);
    const int signal = sigtimedwait(&stop_signals, nullptr, &timeout);
    if (signal == SIGINT || signal == SIGTERM) {
      LogInfo("received signal ", signal, ", shutting down");
      break;
    }
    if (std::optional<ClusterState> changed = source.Poll()) {
      if (auto status = agent.SetClusterState(*std::move(changed)); !status.ok()) {
        LogError("cluster change not applied: ", status.ToString());
      }
    }
    if (absl::Now() >= next_pressure_check) {
      // The sweeper's deletes are deletes, not LRU evictions.
      const uint64_t swept = sweeper.removed_total();
      const uint64_t swept6 = sweeper.removed6_total();
      dp.CountSessionDeletes(MS_PMAP_SESSIONS, (swept - swept_reported) - (swept6 - swept6_reported));
      dp.CountSessionDeletes(MS_PMAP_SESSIONS6, swept6 - swept6_reported);
      swept_reported = swept;
      swept6_reported = swept6;
      if (auto status = pressure.Check(absl::Now()); !status.ok()) LogWarning("map pressure check: ", status.ToString());
      if (auto status = agent.RetryLockdowns(); !status.ok()) LogError("retrying locked-down endpoints: ", status.ToString());
      next_pressure_check = absl::Now() + pressure_interval;
    }
    if (absl::Now() >= next_audit_summary) {
      for (const std::string& line : audit_log.TakeSummary()) LogInfo(line);
      if (auto dropped = dp.ReadAuditCounters(); dropped.ok()) {
        const uint64_t limited = dropped->rate_limited - audit_dropped_logged.rate_limited;
        const uint64_t lost = dropped->ring_full - audit_dropped_logged.ring_full;
        if (limited + lost > 0) {
          LogWarning("audit: ", limited, " event(s) held back by the data path's rate limit and ", lost,
                     " lost to a full ring buffer since the last summary (the per-direction audit packet "
                     "counters still count them)");
        }
        audit_dropped_logged = *dropped;
      }
      next_audit_summary = absl::Now() + audit_log_interval;
    }
    if (absl::Now() >= next_housekeeping) {
      AdoptPendingRegistrations(pending_dir, options.bpffs_dir, agent);
      agent.ForgetEndpointsWhere(VethIsGone);
      next_housekeeping = absl::Now() + absl::Seconds(1);
    }
  }

  sweeper_thread.Stop();
  SetAgentReady(false);
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  ::unlink(socket_path.c_str());
  exposer.reset();
  if (absl::GetFlag(FLAGS_unpin_on_exit)) {
    if (auto status = dp.Unpin(); !status.ok()) LogError(status.ToString());
    else LogInfo("unpinned ", options.bpffs_dir);
  }
  return 0;
}

}  // namespace
}  // namespace microseg

int main(int argc, char** argv) {
  // --help lists this program's own flags (abseil's default looks for a
  // source file named after the binary).
  absl::FlagsUsageConfig usage;
  usage.contains_help_flags = [](absl::string_view file) { return absl::EndsWith(file, "main.cc"); };
  usage.contains_helpshort_flags = usage.contains_help_flags;
  usage.version_string = [] { return std::string(MICROSEG_VERSION) + "\n"; };
  absl::SetFlagsUsageConfig(usage);
  absl::SetProgramUsageMessage(
      "microseg node agent.\n  microseg-agent --standalone --manifests DIR [--bpffs_dir DIR] [--grpc_socket PATH] "
      "[--metrics_address HOST:PORT] ...\n  microseg-agent [--kubeconfig FILE] [--node_name NAME] ...   (Kubernetes "
      "mode; in-cluster without --kubeconfig)");
  absl::ParseCommandLine(argc, argv);
  microseg::LogLevel level;
  if (!microseg::ParseLogLevel(absl::GetFlag(FLAGS_log_level), &level)) {
    microseg::LogError("--log-level must be debug, info, warning or error");
    return 2;
  }
  microseg::SetMinLogLevel(level);
  return microseg::Run();
}
