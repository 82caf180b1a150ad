#include "kube/lease_elector.h"

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "kube/watch_event.h"
#include "log.h"

namespace microseg::kube {

std::string MicroTimeNow() { return absl::FormatTime("%Y-%m-%dT%H:%M:%E6SZ", absl::Now(), absl::UTCTimeZone()); }
std::string TimeNow() { return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", absl::Now(), absl::UTCTimeZone()); }

namespace {

std::string LeasesPath(const LeaseOptions& options) {
  return absl::StrCat("/apis/coordination.k8s.io/v1/namespaces/", options.namespace_name, "/leases");
}

}  // namespace

bool LeaseElector::leading() const {
  return holding_ && Clock::now() - renewed_at_ < absl::ToChronoNanoseconds(options_.lease_duration);
}

absl::Status LeaseElector::Create() {
  nlohmann::json lease = {
      {"apiVersion", "coordination.k8s.io/v1"},
      {"kind", "Lease"},
      {"metadata", {{"name", options_.name}, {"namespace", options_.namespace_name}}},
      {"spec",
       {{"holderIdentity", options_.identity},
        {"leaseDurationSeconds", absl::ToInt64Seconds(options_.lease_duration)},
        {"acquireTime", MicroTimeNow()},
        {"renewTime", MicroTimeNow()},
        {"leaseTransitions", 0}}}};
  auto response = transport_.Send({"POST", LeasesPath(options_), lease.dump()});
  if (!response.ok()) return response.status();
  if (response->status != 201 && response->status != 200) {
    return absl::UnavailableError(absl::StrCat("create lease: HTTP ", response->status));
  }
  return absl::OkStatus();
}

absl::Status LeaseElector::Update(nlohmann::json lease, bool take_over) {
  nlohmann::json& spec = lease["spec"];
  const std::string now = MicroTimeNow();
  if (take_over) {
    spec["holderIdentity"] = options_.identity;
    spec["acquireTime"] = now;
    const int64_t transitions =
        spec.contains("leaseTransitions") && spec["leaseTransitions"].is_number_integer()
            ? spec["leaseTransitions"].get<int64_t>()
            : 0;
    spec["leaseTransitions"] = transitions + 1;
  }
  spec["renewTime"] = now;
  spec["leaseDurationSeconds"] = absl::ToInt64Seconds(options_.lease_duration);
  // metadata.resourceVersion stays: a concurrent writer makes this a 409.
  auto response = transport_.Send({"PUT", absl::StrCat(LeasesPath(options_), "/", options_.name), lease.dump()});
  if (!response.ok()) return response.status();
  if (response->status != 200) return absl::AbortedError(absl::StrCat("update lease: HTTP ", response->status));
  return absl::OkStatus();
}

bool LeaseElector::Tick() {
  const bool was_leading = leading();
  auto response = transport_.Send({"GET", absl::StrCat(LeasesPath(options_), "/", options_.name)});
  if (!response.ok() || (response->status != 200 && response->status != 404)) {
    // Cannot tell: keep leading only until our last renewal runs out.
    if (was_leading) LogWarning("lease ", options_.name, ": cannot read it, still leading until it expires");
    return leading();
  }
  absl::Status written;
  if (response->status == 404) {
    written = Create();
    if (written.ok()) {
      holding_ = true;
      renewed_at_ = Clock::now();
    }
  } else {
    nlohmann::json lease = nlohmann::json::parse(response->body, nullptr, false);
    if (!lease.is_object() || !lease.contains("spec") || !lease["spec"].is_object()) return leading();
    const nlohmann::json& spec = lease["spec"];
    const std::string holder = StringField(spec, "holderIdentity");
    const std::string record =
        absl::StrCat(holder, "|", StringField(spec, "renewTime"), "|", ResourceVersionOf(lease));
    if (record != observed_record_) {
      observed_record_ = record;
      observed_at_ = Clock::now();
    }
    if (holder == options_.identity) {
      written = Update(std::move(lease), /*take_over=*/false);
      if (written.ok()) {
        holding_ = true;
        renewed_at_ = Clock::now();
      }
    } else {
      holding_ = false;
      int64_t duration_seconds = absl::ToInt64Seconds(options_.lease_duration);
      if (spec.contains("leaseDurationSeconds") && spec["leaseDurationSeconds"].is_number_integer()) {
        duration_seconds = spec["leaseDurationSeconds"].get<int64_t>();
      }
      const bool expired = holder.empty() || Clock::now() - observed_at_ > std::chrono::seconds(duration_seconds);
      if (expired) {
        written = Update(std::move(lease), /*take_over=*/true);
        if (written.ok()) {
          holding_ = true;
          renewed_at_ = Clock::now();
          LogInfo("lease ", options_.namespace_name, "/", options_.name, ": taken over from '", holder, "'");
        }
      }
    }
  }
  if (!written.ok() && holding_) LogWarning("lease ", options_.name, ": ", written.message());
  const bool now_leading = leading();
  if (now_leading != was_leading) {
    LogInfo("lease ", options_.namespace_name, "/", options_.name, ": this agent (", options_.identity, ") ",
            now_leading ? "now writes policy status and events" : "no longer writes policy status");
  }
  return now_leading;
}

}  // namespace microseg::kube
