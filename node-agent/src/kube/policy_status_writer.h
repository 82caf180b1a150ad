// Tells users what the agents made of their policies: the Accepted condition
// in the status of SegmentPolicy / ClusterSegmentPolicy objects (PATCH to the
// /status subresource) and a Warning Event for every rejected policy
// version. Only the agent holding the Lease writes, so N nodes do not race
// N identical writes; every agent computes the same verdict from the same
// objects with the same parser, so which one leads does not matter.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>

#include <nlohmann/json.hpp>

#include "kube/api_transport.h"
#include "kube/lease_elector.h"
#include "kube/resource_type.h"
#include "kube/stop_signal.h"

namespace microseg::kube {

struct PolicyVerdict {
  ResourceType type;
  std::string namespace_name;  // "" for cluster-scoped objects
  std::string name;
  std::string uid;
  int64_t generation = 0;
  std::string status = "True";  // of the Accepted condition: True, False or Unknown
  std::string reason;   // CamelCase, e.g. "Valid", "InvalidSpec"
  std::string message;
  // status.conditions[type=Accepted] as the object carries it now.
  std::optional<nlohmann::json> current_condition;
};

struct StatusWriterStats {
  uint64_t status_patches = 0;
  uint64_t events_created = 0;
  uint64_t events_bumped = 0;
  uint64_t write_failures = 0;
};

class PolicyStatusWriter {
 public:
  PolicyStatusWriter(ApiTransport& transport, LeaseElector& lease, std::string node_name,
                     absl::Duration renew_interval);

  // Thread-safe; the newest verdict per object replaces older ones.
  void Report(PolicyVerdict verdict);
  void Forget(const ResourceType& type, const std::string& key);

  // Renews/acquires the lease every renew interval and, while leading,
  // writes what is pending.
  void Run(StopSignal& stop);
  // One lease round then, when leading, one write round (Run's body; tests).
  void RunOnce();
  // After Run has returned: hand the Lease back (clean shutdown).
  void Release();
  StatusWriterStats stats() const;
  bool leading() const { return lease_.leading(); }

 private:
  struct Entry {
    PolicyVerdict verdict;
    bool dirty = true;
  };
  void Flush();
  // Every write of the holder: cut off in time to end within its term.
  absl::StatusOr<HttpResponse> Write(HttpRequest request);
  void TickLease();
  bool was_leading_ = false;
  // true when written (or nothing to write); false to retry later.
  bool WriteStatus(const PolicyVerdict& verdict);
  bool EmitEvent(const PolicyVerdict& verdict);
  // The object already carries this verdict's condition and this term did
  // not write it: an earlier leader (or this agent before a restart) wrote
  // it, and the Event with it. A new leader does not repeat those Events.
  // (NetworkPolicies carry no condition: their Events are repeated.)
  bool ReportedInEarlierTerm(const PolicyVerdict& verdict) const;

  ApiTransport& transport_;
  LeaseElector& lease_;
  const std::string node_name_;
  const absl::Duration renew_interval_;
  mutable std::mutex mu_;
  std::map<std::string, Entry> entries_;   // "Kind key"
  std::set<std::string> events_sent_;      // uid|generation|message, this leadership term
  std::map<std::string, std::string> status_written_;  // "Kind key" -> signature
  StatusWriterStats stats_;
};

// The Accepted condition we want on an object, keeping lastTransitionTime
// when the status does not change.
nlohmann::json DesiredCondition(const PolicyVerdict& verdict);
// Same status, reason, message and observedGeneration.
bool ConditionMatches(const nlohmann::json& current, const nlohmann::json& desired);
// Event name stable across agents and restarts for one (object, message):
// a repeat bumps the count of the same Event instead of creating another.
std::string EventName(const PolicyVerdict& verdict);

}  // namespace microseg::kube
