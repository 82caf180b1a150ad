#include "kube/curl_transport.h"

#include <curl/curl.h>

#include <algorithm>
#include <chrono>
#include <mutex>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "kube/backoff.h"

namespace microseg::kube {
namespace {

struct EasyDeleter {
  void operator()(CURL* handle) const { curl_easy_cleanup(handle); }
};
using EasyHandle = std::unique_ptr<CURL, EasyDeleter>;

struct HeaderListDeleter {
  void operator()(curl_slist* list) const { curl_slist_free_all(list); }
};
using HeaderList = std::unique_ptr<curl_slist, HeaderListDeleter>;

void AppendHeader(HeaderList& list, const std::string& header) {
  curl_slist* grown = curl_slist_append(list.get(), header.c_str());
  if (grown != nullptr) {
    (void)list.release();  // curl_slist_append returned the same list, now one longer
    list.reset(grown);
  }
}

void GlobalInitOnce() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

using Clock = std::chrono::steady_clock;

}  // namespace

struct CurlTransport::Exchange {
  // Stream mode when on_line is set.
  const LineHandler* on_line = nullptr;
  const std::atomic<bool>* stop = nullptr;
  const std::atomic<bool>* aborted = nullptr;
  absl::Duration idle_timeout = absl::InfiniteDuration();
  CURL* handle = nullptr;

  std::string body;
  std::string partial_line;
  Clock::time_point last_byte = Clock::now();
  bool stalled = false;
  bool stopped = false;
  bool handler_ended = false;
  std::optional<absl::Duration> retry_after;

  void ResetForRetry() {
    body.clear();
    partial_line.clear();
    last_byte = Clock::now();
    stalled = stopped = handler_ended = false;
    retry_after.reset();
  }

  static size_t OnHeader(char* data, size_t size, size_t count, void* user) {
    auto* self = static_cast<Exchange*>(user);
    const absl::string_view line(data, size * count);
    const size_t colon = line.find(':');
    if (colon != std::string_view::npos &&
        absl::EqualsIgnoreCase(absl::StripAsciiWhitespace(line.substr(0, colon)), "retry-after")) {
      self->retry_after = ParseRetryAfter(std::string(absl::StripAsciiWhitespace(line.substr(colon + 1))));
    }
    return size * count;
  }

  static size_t OnBody(char* data, size_t size, size_t count, void* user) {
    auto* self = static_cast<Exchange*>(user);
    const size_t total = size * count;
    self->last_byte = Clock::now();
    long status = 0;
    curl_easy_getinfo(self->handle, CURLINFO_RESPONSE_CODE, &status);
    if (self->on_line == nullptr || status != 200) {
      self->body.append(data, total);
      return total;
    }
    self->partial_line.append(data, total);
    size_t start = 0;
    for (size_t newline; (newline = self->partial_line.find('\n', start)) != std::string::npos; start = newline + 1) {
      const std::string_view line(self->partial_line.data() + start, newline - start);
      if (absl::StripAsciiWhitespace(absl::string_view(line.data(), line.size())).empty()) continue;
      if (!(*self->on_line)(line)) {
        self->handler_ended = true;
        return 0;  // aborts the transfer
      }
    }
    self->partial_line.erase(0, start);
    return total;
  }

  static int OnProgress(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
    auto* self = static_cast<Exchange*>(user);
    if ((self->stop != nullptr && self->stop->load()) || (self->aborted != nullptr && self->aborted->load())) {
      self->stopped = true;
      return 1;
    }
    if (Clock::now() - self->last_byte > absl::ToChronoNanoseconds(self->idle_timeout)) {
      self->stalled = true;
      return 1;
    }
    return 0;
  }
};

CurlTransport::CurlTransport(KubeConfig config, std::string client_name, absl::Duration request_timeout)
    : config_(std::move(config)),
      user_agent_(client_name.empty() ? "microseg-agent/" MICROSEG_VERSION
                                      : absl::StrCat("microseg-agent/" MICROSEG_VERSION " (", client_name, ")")),
      request_timeout_(request_timeout),
      tokens_(config_.token, config_.token_file) {
  GlobalInitOnce();
}

absl::StatusOr<HttpResponse> CurlTransport::Perform(const HttpRequest& request, Exchange& exchange) {
  if (aborted_) return absl::CancelledError("shutting down");
  EasyHandle easy(curl_easy_init());
  if (!easy) return absl::ResourceExhaustedError("curl_easy_init failed");
  CURL* h = easy.get();
  exchange.handle = h;
  const std::string url = config_.server + request.path;
  curl_easy_setopt(h, CURLOPT_URL, url.c_str());
  curl_easy_setopt(h, CURLOPT_HTTP_VERSION, CURL_HTTP_VERSION_1_1);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
  curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, request.method.c_str());
  if (request.method == "HEAD") curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
  if (!request.body.empty() || request.method == "POST" || request.method == "PUT" || request.method == "PATCH") {
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, request.body.c_str());
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, static_cast<long>(request.body.size()));
  }

  HeaderList headers;
  AppendHeader(headers, "Accept: application/json");
  AppendHeader(headers, "User-Agent: " + user_agent_);
  if (!request.body.empty()) AppendHeader(headers, "Content-Type: " + request.content_type);
  if (const std::string token = tokens_.Token(); !token.empty()) {
    AppendHeader(headers, "Authorization: Bearer " + token);
  }
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers.get());

  // TLS: the cluster CA (file or inline PEM), optionally a client certificate.
  curl_blob ca_blob{}, cert_blob{}, key_blob{};
  if (config_.insecure_skip_tls_verify) {
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
  } else if (!config_.certificate_authority.data.empty()) {
    ca_blob = {const_cast<char*>(config_.certificate_authority.data.data()), config_.certificate_authority.data.size(),
               CURL_BLOB_NOCOPY};
    curl_easy_setopt(h, CURLOPT_CAINFO_BLOB, &ca_blob);
  } else if (!config_.certificate_authority.file.empty()) {
    curl_easy_setopt(h, CURLOPT_CAINFO, config_.certificate_authority.file.c_str());
  }
  if (!config_.client_certificate.data.empty()) {
    cert_blob = {const_cast<char*>(config_.client_certificate.data.data()), config_.client_certificate.data.size(),
                 CURL_BLOB_NOCOPY};
    curl_easy_setopt(h, CURLOPT_SSLCERT_BLOB, &cert_blob);
    curl_easy_setopt(h, CURLOPT_SSLCERTTYPE, "PEM");
  } else if (!config_.client_certificate.file.empty()) {
    curl_easy_setopt(h, CURLOPT_SSLCERT, config_.client_certificate.file.c_str());
  }
  if (!config_.client_key.data.empty()) {
    key_blob = {const_cast<char*>(config_.client_key.data.data()), config_.client_key.data.size(), CURL_BLOB_NOCOPY};
    curl_easy_setopt(h, CURLOPT_SSLKEY_BLOB, &key_blob);
    curl_easy_setopt(h, CURLOPT_SSLKEYTYPE, "PEM");
  } else if (!config_.client_key.file.empty()) {
    curl_easy_setopt(h, CURLOPT_SSLKEY, config_.client_key.file.c_str());
  }

  curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, &Exchange::OnHeader);
  curl_easy_setopt(h, CURLOPT_HEADERDATA, &exchange);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, &Exchange::OnBody);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &exchange);
  // Liveness (idle time of a watch) and the stop/abort flags are checked in
  // the progress callback; a watch lasts as long as the server keeps it.
  exchange.aborted = &aborted_;
  curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, &Exchange::OnProgress);
  curl_easy_setopt(h, CURLOPT_XFERINFODATA, &exchange);
  if (exchange.on_line == nullptr) {
    const absl::Duration timeout = request.timeout ? std::min(*request.timeout, request_timeout_) : request_timeout_;
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, std::max(1L, static_cast<long>(absl::ToInt64Milliseconds(timeout))));
  }

  char error_text[CURL_ERROR_SIZE] = {};
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, error_text);
  const CURLcode code = curl_easy_perform(h);
  long status = 0;
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
  HttpResponse response;
  response.status = status;
  response.retry_after = exchange.retry_after;
  response.body = std::move(exchange.body);
  if (code == CURLE_OK || exchange.handler_ended) return response;
  if (exchange.stopped) {
    if (exchange.on_line != nullptr) return response;  // the caller asked the watch to end
    return absl::CancelledError("shutting down");
  }
  if (exchange.stalled) {
    return absl::DeadlineExceededError(absl::StrCat("no data from ", request.path, " for ",
                                                    absl::FormatDuration(exchange.idle_timeout)));
  }
  return absl::UnavailableError(absl::StrCat(request.method, " ", url, ": ",
                                             error_text[0] != '\0' ? error_text : curl_easy_strerror(code)));
}

absl::StatusOr<HttpResponse> CurlTransport::WithTokenRetry(const HttpRequest& request, Exchange& exchange) {
  absl::StatusOr<HttpResponse> response = Perform(request, exchange);
  if (response.ok() && response->status == 401 && !config_.token_file.empty()) {
    // The token may have been rotated in place: read it again and retry once.
    tokens_.Invalidate();
    exchange.ResetForRetry();
    response = Perform(request, exchange);
  }
  return response;
}

absl::StatusOr<HttpResponse> CurlTransport::Send(const HttpRequest& request) {
  Exchange exchange;
  return WithTokenRetry(request, exchange);
}

absl::StatusOr<HttpResponse> CurlTransport::Stream(const HttpRequest& request, const LineHandler& on_line,
                                                   absl::Duration idle_timeout, const std::atomic<bool>& stop) {
  Exchange exchange;
  exchange.on_line = &on_line;
  exchange.stop = &stop;
  exchange.idle_timeout = idle_timeout;
  return WithTokenRetry(request, exchange);
}

}  // namespace microseg::kube
