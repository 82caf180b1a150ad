// Kubernetes mode's source of cluster state: one reflector (LIST+WATCH) per
// watched resource, each object converted into the policy model on arrival.
// An object that does not convert is rejected with its reason, and the last
// good version of it stays in force (or nothing, if it never had one). The
// agent's main loop takes the composed state when it changed, exactly as it
// rescans the manifest directory in standalone mode.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "kube/api_transport.h"
#include "kube/lease_elector.h"
#include "kube/policy_status_writer.h"
#include "kube/reflector.h"
#include "kube/stop_signal.h"
#include "manifest_directory.h"
#include "model.h"

namespace microseg::kube {

struct KubeSourceOptions {
  std::string node_name;
  ReflectorOptions reflector;
  // Status conditions and Events, by the Lease holder only.
  bool write_status = true;
  LeaseOptions lease;
  absl::Duration lease_renew_interval = absl::Seconds(5);
};

struct KubeSourceStats {
  std::vector<std::pair<std::string, ReflectorStats>> reflectors;  // by kind
  StatusWriterStats status;
  bool leading = false;
  uint64_t rejected_versions = 0;
};

class KubeSource {
 public:
  KubeSource(ApiTransport& transport, KubeSourceOptions options);
  ~KubeSource();

  void Start();
  // Stops the status writer and hands its Lease back; the reflectors stop
  // with Stop(). Call while the transport still works (clean shutdown).
  void StopStatusWriter();
  void Stop();

  // Every watched resource has been listed once.
  bool synced() const;
  // The state when it changed since the last call, else nullopt.
  std::optional<ClusterState> TakeChangedState();
  // Rejected objects whose rejection is in force (as "Kind ns/name").
  std::vector<ManifestError> errors() const;
  uint64_t rejected_versions() const;
  KubeSourceStats stats() const;

  // The sink the reflectors feed; public for tests, which drive it directly.
  void OnChanges(const ResourceType& type, std::vector<ObjectChange> changes, bool initial);

 private:
  bool HasObjectLocked(const ResourceType& type, const std::string& key) const;
  void ApplyUpsertLocked(const ResourceType& type, const ObjectChange& change);
  void ApplyDeleteLocked(const ResourceType& type, const ObjectChange& change);
  void ReportVerdict(const ResourceType& type, const nlohmann::json& object, const std::string& status,
                     const std::string& reason, const std::string& message);

  ApiTransport& transport_;
  const KubeSourceOptions options_;
  StopSignal stop_;
  std::vector<std::unique_ptr<Reflector>> reflectors_;
  std::vector<std::thread> threads_;  // the reflectors
  std::thread status_thread_;
  std::unique_ptr<LeaseElector> lease_;
  std::unique_ptr<PolicyStatusWriter> status_writer_;

  mutable std::mutex mu_;
  ClusterState state_;
  bool changed_ = false;
  std::map<std::string, std::string> errors_;  // "Kind key" -> reason
  uint64_t rejected_versions_ = 0;
};

}  // namespace microseg::kube
