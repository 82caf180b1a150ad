#include "kube/policy_status_writer.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "kube/watch_event.h"
#include "log.h"

namespace microseg::kube {
namespace {

std::string EntryKey(const ResourceType& type, const std::string& key) { return absl::StrCat(type.kind, " ", key); }

std::string ObjectKeyOf(const PolicyVerdict& v) {
  return v.namespace_name.empty() ? v.name : absl::StrCat(v.namespace_name, "/", v.name);
}

uint64_t Fnv1a(const std::string& text) {
  uint64_t hash = 1469598103934665603ULL;
  for (unsigned char c : text) {
    hash ^= c;
    hash *= 1099511628211ULL;
  }
  return hash;
}

}  // namespace

nlohmann::json DesiredCondition(const PolicyVerdict& verdict) {
  nlohmann::json condition = {
      {"type", "Accepted"},
      {"status", verdict.status},
      {"reason", verdict.reason},
      {"message", verdict.message},
      {"observedGeneration", verdict.generation},
      {"lastTransitionTime", TimeNow()}};
  if (verdict.current_condition && StringField(*verdict.current_condition, "status") == condition["status"] &&
      !StringField(*verdict.current_condition, "lastTransitionTime").empty()) {
    condition["lastTransitionTime"] = StringField(*verdict.current_condition, "lastTransitionTime");
  }
  return condition;
}

bool ConditionMatches(const nlohmann::json& current, const nlohmann::json& desired) {
  for (const char* field : {"status", "reason", "message"}) {
    if (StringField(current, field) != StringField(desired, field)) return false;
  }
  auto generation = current.find("observedGeneration");
  return generation != current.end() && generation->is_number_integer() &&
         generation->get<int64_t>() == desired["observedGeneration"].get<int64_t>();
}

std::string EventName(const PolicyVerdict& verdict) {
  return absl::StrFormat("%s.%016x", verdict.name,
                         Fnv1a(absl::StrCat(verdict.type.kind, "|", verdict.uid, "|", verdict.message)));
}

PolicyStatusWriter::PolicyStatusWriter(ApiTransport& transport, LeaseElector& lease, std::string node_name,
                                       absl::Duration renew_interval)
    : transport_(transport), lease_(lease), node_name_(std::move(node_name)), renew_interval_(renew_interval) {}

void PolicyStatusWriter::Report(PolicyVerdict verdict) {
  std::lock_guard<std::mutex> lock(mu_);
  const std::string key = EntryKey(verdict.type, ObjectKeyOf(verdict));
  entries_[key] = Entry{std::move(verdict), true};
}

void PolicyStatusWriter::Forget(const ResourceType& type, const std::string& key) {
  std::lock_guard<std::mutex> lock(mu_);
  entries_.erase(EntryKey(type, key));
  status_written_.erase(EntryKey(type, key));
}

StatusWriterStats PolicyStatusWriter::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

bool PolicyStatusWriter::WriteStatus(const PolicyVerdict& verdict) {
  if (!verdict.type.owns_status) return true;
  const nlohmann::json desired = DesiredCondition(verdict);
  if (verdict.current_condition && ConditionMatches(*verdict.current_condition, desired)) return true;
  const std::string key = EntryKey(verdict.type, ObjectKeyOf(verdict));
  const std::string signature = absl::StrCat(desired["status"].get<std::string>(), "|", verdict.reason, "|",
                                             verdict.message, "|", verdict.generation);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (auto it = status_written_.find(key); it != status_written_.end() && it->second == signature) return true;
  }
  // A merge patch of status.conditions replaces the list: Accepted is the
  // only condition these kinds have, and it is ours.
  const nlohmann::json patch = {{"status", {{"conditions", nlohmann::json::array({desired})}}}};
  const std::string path = ObjectPath(verdict.type, verdict.namespace_name, verdict.name) + "/status";
  auto response = Write({"PATCH", path, patch.dump(), "application/merge-patch+json"});
  if (response.ok() && response->status == 404) return true;  // deleted meanwhile
  if (!response.ok() || response->status != 200) {
    LogWarning("status of ", verdict.type.kind, " ", ObjectKeyOf(verdict), " not written: ",
               response.ok() ? absl::StrCat("HTTP ", response->status) : std::string(response.status().message()));
    return false;
  }
  std::lock_guard<std::mutex> lock(mu_);
  status_written_[key] = signature;
  ++stats_.status_patches;
  return true;
}

bool PolicyStatusWriter::EmitEvent(const PolicyVerdict& verdict) {
  if (verdict.status != "False") return true;
  const std::string seen = absl::StrCat(verdict.type.kind, "|", verdict.uid, "|", verdict.generation, "|",
                                        verdict.message);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (events_sent_.count(seen)) return true;
  }
  // Events of cluster-scoped objects live in "default", as kubectl looks for them.
  const std::string events_namespace = verdict.namespace_name.empty() ? "default" : verdict.namespace_name;
  const std::string collection = absl::StrCat("/api/v1/namespaces/", events_namespace, "/events");
  const std::string name = EventName(verdict);
  const std::string now = TimeNow();
  nlohmann::json involved = {{"apiVersion", verdict.type.api_version},
                             {"kind", verdict.type.kind},
                             {"name", verdict.name},
                             {"uid", verdict.uid}};
  if (!verdict.namespace_name.empty()) involved["namespace"] = verdict.namespace_name;
  nlohmann::json event = {{"apiVersion", "v1"},
                          {"kind", "Event"},
                          {"metadata", {{"name", name}, {"namespace", events_namespace}}},
                          {"involvedObject", involved},
                          {"reason", verdict.reason},
                          {"message", verdict.message},
                          {"type", "Warning"},
                          {"count", 1},
                          {"firstTimestamp", now},
                          {"lastTimestamp", now},
                          {"source", {{"component", "microseg-agent"}, {"host", node_name_}}},
                          {"reportingComponent", "microseg-agent"},
                          {"reportingInstance", node_name_}};
  auto created = Write({"POST", collection, event.dump()});
  bool ok = false;
  bool bumped = false;
  if (created.ok() && (created->status == 201 || created->status == 200)) {
    ok = true;
  } else if (created.ok() && created->status == 409) {
    // The same problem reported before (another version, an earlier agent
    // run or leader): count it on the existing Event.
    // RBAC grants create and patch on Events, not get: a first patch
    // (lastTimestamp) returns the Event with its count, a second bumps it.
    const nlohmann::json touch = {{"lastTimestamp", now}};
    auto existing = Write(
        {"PATCH", absl::StrCat(collection, "/", name), touch.dump(), "application/merge-patch+json"});
    if (existing.ok() && existing->status == 200) {
      nlohmann::json current = nlohmann::json::parse(existing->body, nullptr, false);
      int64_t count = 1;
      if (current.is_object() && current.contains("count") && current["count"].is_number_integer()) {
        count = current["count"].get<int64_t>();
      }
      const nlohmann::json patch = {{"count", count + 1}, {"lastTimestamp", now}};
      auto patched = Write(
          {"PATCH", absl::StrCat(collection, "/", name), patch.dump(), "application/merge-patch+json"});
      ok = bumped = patched.ok() && patched->status == 200;
    }
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (!ok) {
    ++stats_.write_failures;
    return false;
  }
  events_sent_.insert(seen);
  if (bumped) ++stats_.events_bumped;
  else ++stats_.events_created;
  return true;
}

absl::StatusOr<HttpResponse> PolicyStatusWriter::Write(HttpRequest request) {
  request.timeout = lease_.request_timeout();
  return transport_.Send(request);
}

bool PolicyStatusWriter::ReportedInEarlierTerm(const PolicyVerdict& verdict) const {
  if (!verdict.type.owns_status || !verdict.current_condition ||
      !ConditionMatches(*verdict.current_condition, DesiredCondition(verdict))) {
    return false;
  }
  std::lock_guard<std::mutex> lock(mu_);
  return status_written_.count(EntryKey(verdict.type, ObjectKeyOf(verdict))) == 0;
}

void PolicyStatusWriter::Flush() {
  std::vector<PolicyVerdict> pending;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [key, entry] : entries_) {
      if (entry.dirty) pending.push_back(entry.verdict);
    }
  }
  for (const PolicyVerdict& verdict : pending) {
    if (!lease_.leading()) return;  // the term ran out mid-round: the next leader writes the rest
    const bool done = WriteStatus(verdict) && (ReportedInEarlierTerm(verdict) || EmitEvent(verdict));
    if (!done) {
      std::lock_guard<std::mutex> lock(mu_);
      ++stats_.write_failures;
      continue;
    }
    std::lock_guard<std::mutex> lock(mu_);
    auto it = entries_.find(EntryKey(verdict.type, ObjectKeyOf(verdict)));
    // Only clear when no newer verdict arrived while we wrote.
    if (it != entries_.end() && it->second.verdict.generation == verdict.generation &&
        it->second.verdict.message == verdict.message && it->second.verdict.current_condition == verdict.current_condition) {
      it->second.dirty = false;
    }
  }
}

void PolicyStatusWriter::TickLease() {
  const bool leading = lease_.Tick();
  if (leading && !was_leading_) {
    // A new term: what the previous leader wrote is visible in the objects;
    // re-check everything against it.
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [key, entry] : entries_) entry.dirty = true;
    status_written_.clear();
    events_sent_.clear();
  }
  was_leading_ = leading;
}

void PolicyStatusWriter::RunOnce() {
  TickLease();
  if (lease_.leading()) Flush();
}

void PolicyStatusWriter::Release() {
  if (absl::Status released = lease_.Release(); !released.ok()) {
    LogWarning("lease ", lease_.options().name, " not released (the next agent takes over when it expires): ",
               released.message());
  }
  was_leading_ = false;
}

void PolicyStatusWriter::Run(StopSignal& stop) {
  absl::Time next_tick = absl::InfinitePast();
  while (!stop.stopped()) {
    if (absl::Now() >= next_tick) {
      TickLease();
      next_tick = absl::Now() + renew_interval_;
    }
    if (lease_.leading()) Flush();
    if (stop.WaitFor(absl::Milliseconds(250))) break;
  }
}

}  // namespace microseg::kube
