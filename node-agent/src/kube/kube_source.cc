#include "kube/kube_source.h"

#include "absl/strings/str_cat.h"
#include "kube/object_converter.h"
#include "kube/watch_event.h"
#include "log.h"

namespace microseg::kube {
namespace {

std::string ErrorKey(const ResourceType& type, const std::string& key) { return absl::StrCat(type.kind, " ", key); }

int64_t Generation(const nlohmann::json& object) {
  auto metadata = object.find("metadata");
  if (metadata == object.end() || !metadata->is_object()) return 0;
  auto generation = metadata->find("generation");
  return generation != metadata->end() && generation->is_number_integer() ? generation->get<int64_t>() : 0;
}

std::optional<nlohmann::json> AcceptedCondition(const nlohmann::json& object) {
  auto status = object.find("status");
  if (status == object.end() || !status->is_object()) return std::nullopt;
  auto conditions = status->find("conditions");
  if (conditions == status->end() || !conditions->is_array()) return std::nullopt;
  for (const nlohmann::json& condition : *conditions) {
    if (StringField(condition, "type") == "Accepted") return condition;
  }
  return std::nullopt;
}

}  // namespace

KubeSource::KubeSource(ApiTransport& transport, KubeSourceOptions options)
    : transport_(transport), options_(std::move(options)) {
  uint64_t seed = std::random_device{}();
  for (const ResourceType& type : WatchedResources()) {
    reflectors_.push_back(std::make_unique<Reflector>(
        type, transport_,
        [this](const ResourceType& t, std::vector<ObjectChange> changes, bool initial) {
          OnChanges(t, std::move(changes), initial);
        },
        options_.reflector, seed++));
  }
  if (options_.write_status) {
    lease_ = std::make_unique<LeaseElector>(transport_, options_.lease);
    status_writer_ = std::make_unique<PolicyStatusWriter>(transport_, *lease_, options_.node_name,
                                                          options_.lease_renew_interval);
  }
}

KubeSource::~KubeSource() { Stop(); }

void KubeSource::Start() {
  for (auto& reflector : reflectors_) {
    threads_.emplace_back([this, r = reflector.get()] { r->Run(stop_); });
  }
  if (status_writer_) status_thread_ = std::thread([this] { status_writer_->Run(stop_); });
}

void KubeSource::StopStatusWriter() {
  stop_.Stop();
  if (!status_thread_.joinable()) return;
  status_thread_.join();
  status_writer_->Release();
}

void KubeSource::Stop() {
  StopStatusWriter();
  for (std::thread& thread : threads_) {
    if (thread.joinable()) thread.join();
  }
  threads_.clear();
}

bool KubeSource::synced() const {
  for (const auto& reflector : reflectors_) {
    if (!reflector->synced()) return false;
  }
  return true;
}

std::optional<ClusterState> KubeSource::TakeChangedState() {
  std::lock_guard<std::mutex> lock(mu_);
  if (!changed_) return std::nullopt;
  changed_ = false;
  return state_;
}

std::vector<ManifestError> KubeSource::errors() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<ManifestError> out;
  for (const auto& [object, message] : errors_) out.push_back({object, message});
  return out;
}

uint64_t KubeSource::rejected_versions() const {
  std::lock_guard<std::mutex> lock(mu_);
  return rejected_versions_;
}

KubeSourceStats KubeSource::stats() const {
  KubeSourceStats stats;
  for (const auto& reflector : reflectors_) stats.reflectors.emplace_back(reflector->type().kind, reflector->stats());
  if (status_writer_) {
    stats.status = status_writer_->stats();
    stats.leading = status_writer_->leading();
  }
  stats.rejected_versions = rejected_versions();
  return stats;
}

void KubeSource::ReportVerdict(const ResourceType& type, const nlohmann::json& object, const std::string& status,
                               const std::string& reason, const std::string& message) {
  if (!status_writer_) return;
  // Conditions belong to our CRDs; Events are for any rejected policy.
  const bool policy = type.owns_status || type.kind == "NetworkPolicy";
  if (!policy || (!type.owns_status && status != "False")) return;
  PolicyVerdict verdict;
  verdict.type = type;
  const nlohmann::json& metadata = object.contains("metadata") ? object["metadata"] : nlohmann::json::object();
  verdict.namespace_name = type.namespaced ? StringField(metadata, "namespace") : "";
  verdict.name = StringField(metadata, "name");
  verdict.uid = StringField(metadata, "uid");
  verdict.generation = Generation(object);
  verdict.status = status;
  verdict.reason = reason;
  verdict.message = message;
  verdict.current_condition = AcceptedCondition(object);
  status_writer_->Report(std::move(verdict));
}

bool KubeSource::HasObjectLocked(const ResourceType& type, const std::string& key) const {
  if (type.kind == "Namespace") return state_.namespaces.count(key) > 0;
  if (type.kind == "Pod") return state_.pods.count(key) > 0;
  if (type.kind == "NetworkPolicy") return state_.network_policies.count(key) > 0;
  if (type.kind == kSegmentPolicyKind) return state_.segment_policies.count(key) > 0;
  if (type.kind == kClusterSegmentPolicyKind) return state_.cluster_segment_policies.count(key) > 0;
  return false;
}

void KubeSource::ApplyUpsertLocked(const ResourceType& type, const ObjectChange& change) {
  const std::string error_key = ErrorKey(type, change.key);
  absl::StatusOr<ClusterObject> parsed = ConvertObject(change.object);
  if (!parsed.ok()) {
    const std::string problem(parsed.status().message());
    errors_[error_key] = problem;
    ++rejected_versions_;
    changed_ = true;  // the error list changed
    LogError(error_key, " (resourceVersion ", ResourceVersionOf(change.object), ") rejected, ",
             HasObjectLocked(type, change.key) ? "its last good version stays in force"
                                               : "nothing of it is enforced",
             ": ", problem);
    ReportVerdict(type, change.object, "False", "Invalid", problem);
    return;
  }
  errors_.erase(error_key);
  std::visit(
      [&](auto&& value) {
        using T = std::decay_t<decltype(value)>;
        if constexpr (std::is_same_v<T, Namespace>) state_.namespaces[change.key] = std::move(value);
        if constexpr (std::is_same_v<T, Pod>) state_.pods[change.key] = std::move(value);
        if constexpr (std::is_same_v<T, NetworkPolicy>) state_.network_policies[change.key] = std::move(value);
        if constexpr (std::is_same_v<T, SegmentPolicy>) state_.segment_policies[change.key] = std::move(value);
        if constexpr (std::is_same_v<T, ClusterSegmentPolicy>) {
          state_.cluster_segment_policies[change.key] = std::move(value);
        }
      },
      *std::move(parsed));
  changed_ = true;
  ReportVerdict(type, change.object, "True", "Valid", "the policy is valid and enforced");
}

void KubeSource::ApplyDeleteLocked(const ResourceType& type, const ObjectChange& change) {
  const std::string error_key = ErrorKey(type, change.key);
  errors_.erase(error_key);
  if (type.kind == "Namespace") state_.namespaces.erase(change.key);
  else if (type.kind == "Pod") state_.pods.erase(change.key);
  else if (type.kind == "NetworkPolicy") state_.network_policies.erase(change.key);
  else if (type.kind == kSegmentPolicyKind) state_.segment_policies.erase(change.key);
  else if (type.kind == kClusterSegmentPolicyKind) state_.cluster_segment_policies.erase(change.key);
  changed_ = true;
  if (status_writer_) status_writer_->Forget(type, change.key);
}

void KubeSource::OnChanges(const ResourceType& type, std::vector<ObjectChange> changes, bool initial) {
  std::lock_guard<std::mutex> lock(mu_);
  for (const ObjectChange& change : changes) {
    if (change.kind == ObjectChange::Kind::kDelete) ApplyDeleteLocked(type, change);
    else ApplyUpsertLocked(type, change);
  }
  if (initial) changed_ = true;  // even an empty first list is news: it completes the initial state
}

}  // namespace microseg::kube
