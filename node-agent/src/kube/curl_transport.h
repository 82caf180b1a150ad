// ApiTransport over libcurl: HTTPS (HTTP/1.1) to the API server with the
// configured CA, bearer token (re-read on rotation, retried once after a
// 401) or client certificate. One easy handle per call, owned by RAII.
#pragma once

#include <atomic>
#include <memory>
#include <string>

#include "kube/api_transport.h"
#include "kube/kube_config.h"
#include "kube/token_source.h"

namespace microseg::kube {

class CurlTransport final : public ApiTransport {
 public:
  // `client_name` goes into the User-Agent ("microseg-agent/VERSION (NAME)"),
  // so the API server's audit log tells the agents of different nodes apart.
  explicit CurlTransport(KubeConfig config, std::string client_name = "",
                         absl::Duration request_timeout = absl::Seconds(30));

  absl::StatusOr<HttpResponse> Send(const HttpRequest& request) override;
  absl::StatusOr<HttpResponse> Stream(const HttpRequest& request, const LineHandler& on_line,
                                      absl::Duration idle_timeout, const std::atomic<bool>& stop) override;

  // Makes every request in flight, and every later one, fail at once
  // (shutdown must not wait for a slow API server).
  void Abort() { aborted_ = true; }

  const KubeConfig& config() const { return config_; }
  TokenSource& tokens() { return tokens_; }

 private:
  struct Exchange;
  absl::StatusOr<HttpResponse> Perform(const HttpRequest& request, Exchange& exchange);
  absl::StatusOr<HttpResponse> WithTokenRetry(const HttpRequest& request, Exchange& exchange);

  const KubeConfig config_;
  const std::string user_agent_;
  const absl::Duration request_timeout_;
  TokenSource tokens_;
  std::atomic<bool> aborted_{false};
};

}  // namespace microseg::kube
