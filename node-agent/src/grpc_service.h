// gRPC handlers: proto in, one Agent call, proto and a real status out.
#pragma once

#include <functional>
#include <vector>

#include "agent.h"
#include "manifest_directory.h"
#include "microseg/v1/agent.grpc.pb.h"

namespace microseg {

// Everything GetStatus reports beyond the agent's own counters.
struct StatusExtras {
  std::string pin_dir;
  std::function<std::vector<ManifestError>()> manifest_errors;
};

class AgentService final : public v1::Agent::Service {
 public:
  AgentService(Agent& agent, StatusExtras extras) : agent_(agent), extras_(std::move(extras)) {}

  grpc::Status AddEndpoint(grpc::ServerContext*, const v1::AddEndpointRequest*, v1::AddEndpointResponse*) override;
  grpc::Status DeleteEndpoint(grpc::ServerContext*, const v1::DeleteEndpointRequest*,
                              v1::DeleteEndpointResponse*) override;
  grpc::Status CheckEndpoint(grpc::ServerContext*, const v1::CheckEndpointRequest*,
                             v1::CheckEndpointResponse*) override;
  grpc::Status ListEndpoints(grpc::ServerContext*, const v1::ListEndpointsRequest*,
                             v1::ListEndpointsResponse*) override;
  grpc::Status GetStatus(grpc::ServerContext*, const v1::GetStatusRequest*, v1::GetStatusResponse*) override;

 private:
  Agent& agent_;
  StatusExtras extras_;
};

// Shared by the gRPC handler and the pending-registration adopter.
EndpointRecord RecordFromRequest(const v1::AddEndpointRequest& request);
grpc::Status ToGrpcStatus(const absl::Status& status);

}  // namespace microseg
