// The one seam between the Kubernetes client logic and the network: plain
// requests and line-streamed responses (watches). The real implementation is
// CurlTransport; unit tests use a scripted fake.
#pragma once

#include <atomic>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace microseg::kube {

struct HttpRequest {
  std::string method = "GET";
  std::string path;  // absolute path with query, e.g. "/api/v1/pods?limit=500"
  std::string body;
  std::string content_type = "application/json";
  // Cap on the whole exchange, below the transport's default (leader
  // election must know a write has ended before its term could end).
  std::optional<absl::Duration> timeout;
};

struct HttpResponse {
  long status = 0;
  std::string body;  // for streams: only filled when status != 200
  std::optional<absl::Duration> retry_after;
};

// Return false to end the stream early.
using LineHandler = std::function<bool(std::string_view line)>;

class ApiTransport {
 public:
  virtual ~ApiTransport() = default;
  // Transport failures (connect, TLS, timeout) are UNAVAILABLE; any HTTP
  // status is a response.
  virtual absl::StatusOr<HttpResponse> Send(const HttpRequest& request) = 0;
  // Delivers a 200 response body line by line as it arrives. Ends when the
  // server closes, `on_line` returns false, `stop` becomes true, or nothing
  // arrives for `idle_timeout` (a stalled watch: DEADLINE_EXCEEDED).
  virtual absl::StatusOr<HttpResponse> Stream(const HttpRequest& request, const LineHandler& on_line,
                                              absl::Duration idle_timeout, const std::atomic<bool>& stop) = 0;
};

}  // namespace microseg::kube
