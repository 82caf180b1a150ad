// A scripted ApiTransport: answers are queued per request in order; every
// request is recorded. When the script runs out the fake stops the
// reflector under test (and answers UNAVAILABLE), so Run() returns.
#pragma once

#include <deque>
#include <string>
#include <vector>

#include "kube/api_transport.h"
#include "kube/stop_signal.h"

namespace microseg::kube::testing {

struct ScriptedAnswer {
  // For Send, and for Stream when status != 200 or `transport_error`.
  HttpResponse response{200, "", std::nullopt};
  // For Stream with status 200: the lines, then the end of the stream.
  std::vector<std::string> lines;
  // The stream (or request) breaks with this after the lines (a dropped
  // connection: UNAVAILABLE, a stall: DEADLINE_EXCEEDED).
  absl::Status transport_error;
};

class FakeTransport final : public ApiTransport {
 public:
  explicit FakeTransport(StopSignal* stop_when_done = nullptr) : stop_(stop_when_done) {}

  void Expect(ScriptedAnswer answer) { script_.push_back(std::move(answer)); }

  absl::StatusOr<HttpResponse> Send(const HttpRequest& request) override {
    requests.push_back(request);
    ScriptedAnswer answer;
    if (!Next(answer)) return absl::UnavailableError("script exhausted");
    if (!answer.transport_error.ok()) return answer.transport_error;
    return answer.response;
  }

  absl::StatusOr<HttpResponse> Stream(const HttpRequest& request, const LineHandler& on_line, absl::Duration,
                                      const std::atomic<bool>&) override {
    requests.push_back(request);
    ScriptedAnswer answer;
    if (!Next(answer)) return absl::UnavailableError("script exhausted");
    if (answer.response.status == 200) {
      for (const std::string& line : answer.lines) {
        if (!on_line(line)) return answer.response;
      }
    }
    if (!answer.transport_error.ok()) return answer.transport_error;
    return answer.response;
  }

  std::vector<HttpRequest> requests;

 private:
  bool Next(ScriptedAnswer& answer) {
    if (script_.empty()) {
      if (stop_ != nullptr) stop_->Stop();
      return false;
    }
    answer = std::move(script_.front());
    script_.pop_front();
    return true;
  }

  StopSignal* stop_;
  std::deque<ScriptedAnswer> script_;
};

}  // namespace microseg::kube::testing
