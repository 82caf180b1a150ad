#include "health_endpoints.h"

#include <CivetServer.h>
#include <civetweb.h>

#include <atomic>
#include <cstring>

namespace microseg {
namespace {

std::atomic<bool> g_ready{false};

void Reply(mg_connection* connection, int code, const char* reason, const char* body) {
  mg_printf(connection,
            "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\nCache-Control: no-store\r\n"
            "Connection: close\r\n\r\n%s",
            code, reason, std::strlen(body), body);
}

// Non-zero: handled here; zero: civetweb goes on to the exposer's handlers.
int BeginRequest(mg_connection* connection) {
  const mg_request_info* request = mg_get_request_info(connection);
  if (request == nullptr || request->local_uri == nullptr) return 0;
  if (std::strcmp(request->local_uri, "/healthz") == 0) {
    Reply(connection, 200, "OK", "ok\n");
    return 200;
  }
  if (std::strcmp(request->local_uri, "/readyz") == 0) {
    if (g_ready.load()) Reply(connection, 200, "OK", "ready\n");
    else Reply(connection, 503, "Service Unavailable", "not ready: initial cluster state not in the maps yet\n");
    return g_ready.load() ? 200 : 503;
  }
  return 0;
}

}  // namespace

void SetAgentReady(bool ready) { g_ready.store(ready); }
bool AgentReady() { return g_ready.load(); }

const CivetCallbacks* HealthEndpointCallbacks() {
  static const CivetCallbacks callbacks = [] {
    CivetCallbacks c;  // zeroed by its constructor
    c.begin_request = &BeginRequest;
    return c;
  }();
  return &callbacks;
}

}  // namespace microseg
