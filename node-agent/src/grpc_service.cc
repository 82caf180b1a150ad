#include "grpc_service.h"

namespace microseg {
namespace {

void FillEndpoint(const EndpointView& view, v1::Endpoint* out) {
  const EndpointRecord& r = view.record;
  out->set_endpoint_id(r.endpoint_id);
  out->set_container_id(r.container_id);
  out->set_ifname(r.ifname);
  out->set_pod_namespace(r.pod_namespace);
  out->set_pod_name(r.pod_name);
  out->set_host_ifname(r.host_ifname);
  out->set_host_ifindex(r.host_ifindex);
  for (const auto& ip : r.ips) out->add_ips(ip);
  out->set_ingress_isolated(view.policy.ingress_isolated);
  out->set_egress_isolated(view.policy.egress_isolated);
  out->set_policy_revision(view.policy_revision);
  out->set_exact_entries(view.policy.exact_entries);
  out->set_lpm_entries(view.policy.lpm_entries);
  for (const auto& p : view.policy.policies) out->add_policies(p);
  out->set_locked_down(view.locked_down);
  out->set_lockdown_reason(view.lockdown_reason);
}

}  // namespace

grpc::Status ToGrpcStatus(const absl::Status& status) {
  // absl and gRPC share the canonical code numbering.
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

EndpointRecord RecordFromRequest(const v1::AddEndpointRequest& request) {
  EndpointRecord record;
  record.container_id = request.container_id();
  record.netns = request.netns();
  record.ifname = request.ifname();
  record.pod_namespace = request.pod_namespace();
  record.pod_name = request.pod_name();
  record.host_ifname = request.host_ifname();
  record.host_ifindex = request.host_ifindex();
  record.ips.assign(request.ips().begin(), request.ips().end());
  return record;
}

grpc::Status AgentService::AddEndpoint(grpc::ServerContext*, const v1::AddEndpointRequest* request,
                                       v1::AddEndpointResponse* response) {
  auto view = agent_.AddEndpoint(RecordFromRequest(*request));
  if (!view.ok()) return ToGrpcStatus(view.status());
  FillEndpoint(*view, response->mutable_endpoint());
  return grpc::Status::OK;
}

grpc::Status AgentService::DeleteEndpoint(grpc::ServerContext*, const v1::DeleteEndpointRequest* request,
                                          v1::DeleteEndpointResponse* response) {
  auto existed = agent_.DeleteEndpoint({request->container_id(), request->ifname()});
  if (!existed.ok()) return ToGrpcStatus(existed.status());
  response->set_existed(*existed);
  return grpc::Status::OK;
}

grpc::Status AgentService::CheckEndpoint(grpc::ServerContext*, const v1::CheckEndpointRequest* request,
                                         v1::CheckEndpointResponse* response) {
  auto view = agent_.GetEndpoint({request->container_id(), request->ifname()});
  if (!view.ok()) return ToGrpcStatus(view.status());
  FillEndpoint(*view, response->mutable_endpoint());
  return grpc::Status::OK;
}

grpc::Status AgentService::ListEndpoints(grpc::ServerContext*, const v1::ListEndpointsRequest*,
                                         v1::ListEndpointsResponse* response) {
  for (const EndpointView& view : agent_.ListEndpoints()) FillEndpoint(view, response->add_endpoints());
  return grpc::Status::OK;
}

grpc::Status AgentService::GetStatus(grpc::ServerContext*, const v1::GetStatusRequest*,
                                     v1::GetStatusResponse* response) {
  const AgentCounters c = agent_.counters();
  response->set_version(MICROSEG_VERSION);
  response->set_pin_dir(extras_.pin_dir);
  response->set_generation(c.generation);
  response->set_endpoints(c.endpoints);
  response->set_namespaces(c.namespaces);
  response->set_pods(c.pods);
  response->set_network_policies(c.network_policies);
  response->set_segment_policies(c.segment_policies);
  response->set_cluster_segment_policies(c.cluster_segment_policies);
  if (extras_.manifest_errors) {
    for (const ManifestError& e : extras_.manifest_errors()) {
      auto* out = response->add_manifest_errors();
      out->set_file(e.file);
      out->set_message(e.message);
    }
  }
  return grpc::Status::OK;
}

}  // namespace microseg
