// microsegctl: operator CLI for a node's agent (over its unix socket).
#include <grpcpp/grpcpp.h>

#include <iostream>
#include <string>

#include <google/protobuf/util/json_util.h>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "absl/strings/str_join.h"
#include "microseg/v1/agent.grpc.pb.h"

ABSL_FLAG(std::string, socket, "/run/microseg/agent.sock", "The agent's gRPC unix socket.");
ABSL_FLAG(bool, json, false, "Print the agent's answer as JSON.");
ABSL_FLAG(int, timeout_seconds, 5, "Deadline of the call.");

namespace {

template <typename Message>
void PrintJson(const Message& message) {
  std::string out;
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = true;
  options.preserve_proto_field_names = true;
  options.always_print_primitive_fields = true;
  (void)google::protobuf::util::MessageToJsonString(message, &out, options);
  std::cout << out;
}

int Fail(const grpc::Status& status) {
  std::cerr << "microsegctl: agent at unix:" << absl::GetFlag(FLAGS_socket) << ": " << status.error_message()
            << " (code " << status.error_code() << ")\n";
  return 1;
}

int Status(microseg::v1::Agent::Stub& stub, grpc::ClientContext& context) {
  microseg::v1::GetStatusResponse response;
  grpc::Status status = stub.GetStatus(&context, {}, &response);
  if (!status.ok()) return Fail(status);
  if (absl::GetFlag(FLAGS_json)) {
    PrintJson(response);
    return 0;
  }
  std::cout << "version:          " << response.version() << "\n"
            << "pin dir:          " << response.pin_dir() << "\n"
            << "generation:       " << response.generation() << "\n"
            << "endpoints:        " << response.endpoints() << "\n"
            << "namespaces:       " << response.namespaces() << "\n"
            << "pods:             " << response.pods() << "\n"
            << "networkpolicies:  " << response.network_policies() << "\n"
            << "segmentpolicies:  " << response.segment_policies() << "\n"
            << "clustersegmentpolicies: " << response.cluster_segment_policies() << "\n"
            << "manifest errors:  " << response.manifest_errors_size() << "\n";
  for (const auto& e : response.manifest_errors()) std::cout << "  " << e.file() << ": " << e.message() << "\n";
  return 0;
}

int Endpoints(microseg::v1::Agent::Stub& stub, grpc::ClientContext& context) {
  microseg::v1::ListEndpointsResponse response;
  grpc::Status status = stub.ListEndpoints(&context, {}, &response);
  if (!status.ok()) return Fail(status);
  if (absl::GetFlag(FLAGS_json)) {
    PrintJson(response);
    return 0;
  }
  std::printf("%-4s %-28s %-16s %-18s %-9s %-9s %-5s %-5s %-9s %s\n", "ID", "POD", "HOST-VETH", "IPS", "ING-ISO",
              "EGR-ISO", "EXACT", "LPM", "STATE", "POLICIES");
  for (const auto& e : response.endpoints()) {
    const std::string pod = e.pod_namespace() + "/" + e.pod_name();
    std::printf("%-4u %-28s %-16s %-18s %-9s %-9s %-5u %-5u %-9s %s\n", e.endpoint_id(), pod.c_str(),
                e.host_ifname().c_str(), absl::StrJoin(e.ips(), ",").c_str(), e.ingress_isolated() ? "yes" : "no",
                e.egress_isolated() ? "yes" : "no", e.exact_entries(), e.lpm_entries(),
                e.locked_down() ? "LOCKDOWN" : "enforced", absl::StrJoin(e.policies(), ",").c_str());
  }
  for (const auto& e : response.endpoints()) {
    if (e.locked_down()) {
      std::printf("endpoint %u (%s/%s) is LOCKED DOWN, new flows are dropped: %s\n", e.endpoint_id(),
                  e.pod_namespace().c_str(), e.pod_name().c_str(), e.lockdown_reason().c_str());
    }
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // --help lists this program's own flags (abseil's default looks for a
  // source file named after the binary).
  absl::FlagsUsageConfig usage;
  usage.contains_help_flags = [](absl::string_view file) { return absl::EndsWith(file, "microsegctl.cc"); };
  usage.contains_helpshort_flags = usage.contains_help_flags;
  usage.version_string = [] { return std::string(MICROSEG_VERSION) + "\n"; };
  absl::SetFlagsUsageConfig(usage);
  absl::SetProgramUsageMessage(
      "microseg operator CLI.\n  microsegctl [--socket PATH] [--json] status     agent state and manifest errors\n"
      "  microsegctl [--socket PATH] [--json] endpoints  pods enforced on this node");
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  if (args.size() != 2) {
    std::cerr << "usage: microsegctl [--socket PATH] [--json] status|endpoints\n";
    return 2;
  }
  auto channel = grpc::CreateChannel("unix:" + absl::GetFlag(FLAGS_socket), grpc::InsecureChannelCredentials());
  auto stub = microseg::v1::Agent::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(absl::GetFlag(FLAGS_timeout_seconds)));
  const std::string command = args[1];
  if (command == "status") return Status(*stub, context);
  if (command == "endpoints") return Endpoints(*stub, context);
  std::cerr << "microsegctl: unknown command '" << command << "' (status, endpoints)\n";
  return 2;
}
