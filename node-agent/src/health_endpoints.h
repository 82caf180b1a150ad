// /healthz and /readyz on the agent's existing HTTP listener (the Prometheus
// exposer's civetweb server), for kubelet probes. Ready means: the initial
// cluster state (the first complete list of every watched resource, or the
// manifest directory) is compiled into the maps and the gRPC API is serving,
// so a CNI ADD gets a pod's real policy.
#pragma once

struct CivetCallbacks;

namespace microseg {

void SetAgentReady(bool ready);
bool AgentReady();
// Pass to prometheus::Exposer; answers the two paths, leaves the rest to it.
const CivetCallbacks* HealthEndpointCallbacks();

}  // namespace microseg
