#include "kube/reflector.h"

#include <chrono>

#include "absl/strings/str_cat.h"
#include "log.h"

namespace microseg::kube {
namespace {

std::string UrlEncode(const std::string& text) {
  static const char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : text) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

// The API server's Status message of an error body, else the body's start.
std::string ErrorText(const HttpResponse& response) {
  nlohmann::json body = nlohmann::json::parse(response.body, nullptr, false);
  if (body.is_object()) {
    if (auto it = body.find("message"); it != body.end() && it->is_string()) return it->get<std::string>();
  }
  return response.body.substr(0, 200);
}

}  // namespace

Reflector::Reflector(ResourceType type, ApiTransport& transport, Sink sink, ReflectorOptions options, uint64_t seed)
    : type_(std::move(type)),
      transport_(transport),
      sink_(std::move(sink)),
      options_(options),
      backoff_(options.backoff, seed),
      rng_(seed ^ 0x9e3779b97f4a7c15ULL) {}

ReflectorStats Reflector::stats() const {
  std::lock_guard<std::mutex> lock(stats_mu_);
  return stats_;
}

void Reflector::Deliver(std::vector<ObjectChange> changes, bool initial) {
  {
    std::lock_guard<std::mutex> lock(stats_mu_);
    stats_.changes += changes.size();
  }
  if (changes.empty() && !initial) return;
  sink_(type_, std::move(changes), initial);
}

bool Reflector::List(StopSignal& stop, Failure& failure, bool& expired, bool& not_served) {
  std::vector<nlohmann::json> items;
  std::string continue_token;
  std::string list_version;
  do {
    if (stop.stopped()) return false;
    std::string path = absl::StrCat(type_.collection, "?limit=", options_.page_size);
    if (!continue_token.empty()) absl::StrAppend(&path, "&continue=", UrlEncode(continue_token));
    absl::StatusOr<HttpResponse> response = transport_.Send({"GET", path});
    if (!response.ok()) {
      failure = {response.status(), std::nullopt};
      return false;
    }
    if (response->status == 410) {
      // The continue token expired between pages: start the list again.
      expired = true;
      failure = {absl::AbortedError(absl::StrCat("list of ", type_.kind, " expired between pages: ",
                                                 ErrorText(*response))),
                 std::nullopt};
      return false;
    }
    if (response->status == 404 && type_.owns_status) {
      not_served = true;
      failure = {absl::NotFoundError(absl::StrCat(type_.collection, " is not served (CRD not installed?)")),
                 std::nullopt};
      return false;
    }
    if (response->status != 200) {
      failure = {absl::UnavailableError(absl::StrCat("list ", path, ": HTTP ", response->status, ": ",
                                                     ErrorText(*response))),
                 response->retry_after};
      return false;
    }
    nlohmann::json body = nlohmann::json::parse(response->body, nullptr, false);
    if (!body.is_object() || !body.contains("items") || !body["items"].is_array()) {
      failure = {absl::DataLossError(absl::StrCat("list ", path, ": not a list: ", response->body.substr(0, 200))),
                 std::nullopt};
      return false;
    }
    const nlohmann::json& meta = body.value("metadata", nlohmann::json::object());
    list_version = meta.is_object() && meta.contains("resourceVersion") && meta["resourceVersion"].is_string()
                       ? meta["resourceVersion"].get<std::string>()
                       : "";
    continue_token = meta.is_object() && meta.contains("continue") && meta["continue"].is_string()
                         ? meta["continue"].get<std::string>()
                         : "";
    for (nlohmann::json& item : body["items"]) {
      // List items carry no kind/apiVersion; the converters need them.
      item["kind"] = type_.kind;
      item["apiVersion"] = type_.api_version;
      items.push_back(std::move(item));
    }
  } while (!continue_token.empty());
  const bool initial = !cache_.has_listed();
  std::vector<ObjectChange> changes = cache_.Replace(std::move(items), list_version);
  {
    std::lock_guard<std::mutex> lock(stats_mu_);
    ++stats_.lists;
  }
  LogInfo(type_.kind, ": listed ", cache_.size(), " objects at resourceVersion ", list_version,
          initial ? "" : absl::StrCat(" (relist: ", changes.size(), " changes)"));
  Deliver(std::move(changes), initial);
  synced_ = true;
  return true;
}

Reflector::WatchEnd Reflector::Watch(StopSignal& stop, Failure& failure) {
  const int64_t base = absl::ToInt64Seconds(options_.watch_timeout);
  std::uniform_int_distribution<int64_t> spread(base, std::max<int64_t>(base, 2 * base - 1));
  const std::string path = absl::StrCat(type_.collection, "?watch=1&allowWatchBookmarks=true&resourceVersion=",
                                        UrlEncode(cache_.resource_version()), "&timeoutSeconds=", spread(rng_));
  {
    std::lock_guard<std::mutex> lock(stats_mu_);
    ++stats_.watches;
  }
  bool expired = false;
  absl::Status decode_error;
  uint64_t received = 0;
  auto on_line = [&](std::string_view line) {
    absl::StatusOr<WatchEvent> event = DecodeWatchEvent(line);
    if (!event.ok()) {
      decode_error = event.status();
      return false;
    }
    ++received;
    {
      std::lock_guard<std::mutex> lock(stats_mu_);
      ++stats_.events;
    }
    if (event->type == WatchEvent::Type::kError) {
      if (event->expired()) {
        expired = true;
      } else {
        decode_error = absl::UnavailableError(
            absl::StrCat("watch error event ", event->error_code, ": ", event->error_message));
      }
      return false;
    }
    if (event->type != WatchEvent::Type::kBookmark) {
      LogDebug(type_.kind, " ", WatchEventTypeName(event->type), " ", ObjectKey(event->object), " rv ",
               event->resource_version);
    }
    if (std::optional<ObjectChange> change = cache_.Apply(*event)) {
      std::vector<ObjectChange> one;
      one.push_back(std::move(*change));
      Deliver(std::move(one), false);
    }
    // A healthy stream: the next failure starts from the shortest delay.
    backoff_.Reset();
    return true;
  };
  absl::StatusOr<HttpResponse> response =
      transport_.Stream({"GET", path}, on_line, options_.idle_timeout, stop.flag());
  if (stop.stopped()) return WatchEnd::kStopped;
  if (expired) return WatchEnd::kExpired;
  if (!response.ok()) {
    failure = {response.status(), std::nullopt};
    return WatchEnd::kFailed;
  }
  if (response->status == 410) return WatchEnd::kExpired;
  if (response->status != 200) {
    failure = {absl::UnavailableError(absl::StrCat("watch ", type_.collection, ": HTTP ", response->status, ": ",
                                                   ErrorText(*response))),
               response->retry_after};
    return WatchEnd::kFailed;
  }
  if (!decode_error.ok()) {
    failure = {decode_error, std::nullopt};
    return WatchEnd::kFailed;
  }
  if (received == 0) {
    // Closed without a single event or bookmark: treat as a failure so a
    // server that hangs up at once is not hammered in a tight loop.
    failure = {absl::UnavailableError(absl::StrCat("watch ", type_.collection, " closed without events")),
               std::nullopt};
    return WatchEnd::kFailed;
  }
  return WatchEnd::kClosed;
}

void Reflector::Run(StopSignal& stop) {
  bool need_list = true;
  while (!stop.stopped()) {
    Failure failure;
    if (need_list) {
      bool expired = false;
      bool not_served = false;
      if (!List(stop, failure, expired, not_served)) {
        if (stop.stopped()) break;
        if (not_served) {
          if (!reported_not_served_) {
            LogWarning(type_.kind, ": ", failure.status.message(), "; none are enforced until it is, checking again");
            reported_not_served_ = true;
          }
          if (!cache_.has_listed()) {
            // Nothing to wait for: readiness must not hang on an optional kind.
            Deliver(cache_.Replace({}, ""), true);
            synced_ = true;
          } else {
            Deliver(cache_.Replace({}, ""), false);  // the CRD was removed: so were its objects
          }
          if (stop.WaitFor(options_.backoff.max)) break;
          continue;
        }
        {
          std::lock_guard<std::mutex> lock(stats_mu_);
          ++stats_.failures;
        }
        const absl::Duration delay = backoff_.Next(failure.retry_after);
        LogWarning(type_.kind, ": list failed (", failure.status.message(), "); retrying in ",
                   absl::FormatDuration(delay));
        if (stop.WaitFor(delay)) break;
        continue;
      }
      need_list = false;
      backoff_.Reset();
    }
    switch (Watch(stop, failure)) {
      case WatchEnd::kStopped:
        return;
      case WatchEnd::kClosed:
        LogDebug(type_.kind, ": watch ended by the server, resuming at resourceVersion ", cache_.resource_version());
        break;
      case WatchEnd::kExpired: {
        LogInfo(type_.kind, ": resourceVersion ", cache_.resource_version(),
                " expired (410 Gone): relisting, only the differences are applied");
        need_list = true;
        std::lock_guard<std::mutex> lock(stats_mu_);
        ++stats_.relists_after_gone;
        break;
      }
      case WatchEnd::kFailed: {
        {
          std::lock_guard<std::mutex> lock(stats_mu_);
          ++stats_.failures;
        }
        const absl::Duration delay = backoff_.Next(failure.retry_after);
        LogWarning(type_.kind, ": watch failed (", failure.status.message(), "); resuming at resourceVersion ",
                   cache_.resource_version(), " in ", absl::FormatDuration(delay));
        if (stop.WaitFor(delay)) return;
        break;
      }
    }
  }
}

}  // namespace microseg::kube
