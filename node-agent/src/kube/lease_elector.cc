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
  return holding_ &&
         Clock::now() - renewed_at_.load() < absl::ToChronoNanoseconds(term() - request_timeout());
}

absl::Status LeaseElector::Create() {
  nlohmann::json lease = {
      {"apiVersion", "coordination.k8s.io/v1"},
      {"kind", "Lease"},
      {"metadata", {{"name", options_.name}, {"namespace", options_.namespace_name}}},
      {"spec",
       {{"holderIdentity", options_.identity},
        {"leaseDurationSeconds", absl::ToInt64Seconds(term())},
        {"acquireTime", MicroTimeNow()},
        {"renewTime", MicroTimeNow()},
        {"leaseTransitions", 0}}}};
  HttpRequest request{"POST", LeasesPath(options_), lease.dump()};
  request.timeout = request_timeout();
  auto response = transport_.Send(request);
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
  spec["leaseDurationSeconds"] = absl::ToInt64Seconds(term());
  // metadata.resourceVersion stays: a concurrent writer makes this a 409.
  return Put(lease);
}

absl::Status LeaseElector::Put(const nlohmann::json& lease) {
  HttpRequest request{"PUT", absl::StrCat(LeasesPath(options_), "/", options_.name), lease.dump()};
  request.timeout = request_timeout();
  auto response = transport_.Send(request);
  if (!response.ok()) return response.status();
  if (response->status != 200) return absl::AbortedError(absl::StrCat("update lease: HTTP ", response->status));
  return absl::OkStatus();
}

absl::StatusOr<nlohmann::json> LeaseElector::Get() {
  HttpRequest request{"GET", absl::StrCat(LeasesPath(options_), "/", options_.name)};
  request.timeout = request_timeout();
  auto response = transport_.Send(request);
  if (!response.ok()) return response.status();
  if (response->status == 404) return absl::NotFoundError("no lease");
  if (response->status != 200) return absl::UnavailableError(absl::StrCat("read lease: HTTP ", response->status));
  nlohmann::json lease = nlohmann::json::parse(response->body, nullptr, false);
  if (!lease.is_object() || !lease.contains("spec") || !lease["spec"].is_object()) {
    return absl::DataLossError("lease without a spec");
  }
  return lease;
}

absl::Status LeaseElector::Release() {
  if (!holding_) return absl::OkStatus();
  holding_ = false;  // whatever happens below, this agent writes nothing more
  absl::StatusOr<nlohmann::json> lease = Get();
  if (!lease.ok()) return absl::IsNotFound(lease.status()) ? absl::OkStatus() : lease.status();
  if (StringField((*lease)["spec"], "holderIdentity") != options_.identity) return absl::OkStatus();
  nlohmann::json& spec = (*lease)["spec"];
  const std::string now = MicroTimeNow();
  spec["holderIdentity"] = "";
  spec["leaseDurationSeconds"] = 1;
  spec["acquireTime"] = now;
  spec["renewTime"] = now;
  // resourceVersion stays: if someone took it over meanwhile, this is a 409 and theirs stands.
  if (absl::Status put = Put(*lease); !put.ok()) return put;
  LogInfo("lease ", options_.namespace_name, "/", options_.name, ": released by ", options_.identity);
  return absl::OkStatus();
}

bool LeaseElector::Tick() {
  const bool was_leading = leading();
  absl::StatusOr<nlohmann::json> current = Get();
  if (!current.ok() && !absl::IsNotFound(current.status())) {
    // Cannot tell: keep leading only until our last renewal runs out.
    if (was_leading) LogWarning("lease ", options_.name, ": cannot read it, still leading until it expires");
    return leading();
  }
  absl::Status written;
  const Clock::time_point sent_at = Clock::now();
  if (!current.ok()) {
    written = Create();
    if (written.ok()) {
      holding_ = true;
      renewed_at_ = sent_at;
    }
  } else {
    nlohmann::json lease = *std::move(current);
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
        renewed_at_ = sent_at;
      }
    } else {
      holding_ = false;
      int64_t duration_seconds = absl::ToInt64Seconds(term());
      if (spec.contains("leaseDurationSeconds") && spec["leaseDurationSeconds"].is_number_integer()) {
        duration_seconds = spec["leaseDurationSeconds"].get<int64_t>();
      }
      const bool expired = holder.empty() || Clock::now() - observed_at_ > std::chrono::seconds(duration_seconds);
      if (expired) {
        written = Update(std::move(lease), /*take_over=*/true);
        if (written.ok()) {
          holding_ = true;
          renewed_at_ = sent_at;
          LogInfo("lease ", options_.namespace_name, "/", options_.name, ": taken over ",
                  holder.empty() ? std::string("(released by its last holder)")
                                 : absl::StrCat("from '", holder, "' (not renewed for ", duration_seconds, " s)"));
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
