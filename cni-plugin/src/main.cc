// microseg-cni: chained CNI plugin. ADD attaches the agent's pinned TC
// programs to the pod's host-side veth *first* (the pod is then isolated:
// its endpoint is unknown to the data path), registers the pod with the node
// agent, and succeeds only once the agent says the pod's policy is in the
// maps. DEL undoes it; CHECK verifies it.
#include <grpcpp/grpcpp.h>
#include <net/if.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>

#include <google/protobuf/util/json_util.h>

#include "chain_installer.h"
#include "cni_config.h"
#include "microseg/v1/agent.grpc.pb.h"
#include "tc_attach.h"
#include "veth_peer.h"

extern char** environ;

namespace microseg::cni {
namespace {

void Log(const std::string& message) { std::fprintf(stderr, "microseg-cni: %s\n", message.c_str()); }

int Fail(const std::string& version, const CniError& error) {
  std::cout << ErrorJson(version, error) << std::endl;
  Log("error " + std::to_string(error.code) + ": " + error.msg + (error.details.empty() ? "" : " (" + error.details + ")"));
  return 1;
}

bool IsBridge(const std::string& name) {
  return access(("/sys/class/net/" + name + "/bridge").c_str(), F_OK) == 0;
}

// The host end of the pod's veth: named by the main plugin, else found as the
// peer of the pod's interface.
std::string FindHostVeth(const PluginConfig& config, const Environment& env, CniError& error) {
  std::vector<std::string> candidates;
  if (config.prev_result) candidates = HostSideCandidates(*config.prev_result, IsBridge);
  if (candidates.size() == 1) return candidates.front();
  if (candidates.size() > 1) {
    error = {kInvalidConfig, "prevResult names several host-side interfaces; cannot tell the pod's veth",
             candidates.front() + ", " + candidates[1]};
    return "";
  }
  if (env.netns.empty()) {
    error = {kInvalidEnvironment, "no host-side interface in prevResult and no CNI_NETNS to find it", ""};
    return "";
  }
  std::string why;
  std::string name = HostPeerOf(env.netns, env.ifname, why);
  if (name.empty()) error = {kInvalidConfig, "cannot find the host side of the pod's veth", why};
  return name;
}

std::unique_ptr<v1::Agent::Stub> AgentStub(const PluginConfig& config) {
  return v1::Agent::NewStub(grpc::CreateChannel("unix:" + config.agent_socket, grpc::InsecureChannelCredentials()));
}

void SetDeadline(grpc::ClientContext& context, int seconds) {
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(seconds));
}

bool AgentUnreachable(const grpc::Status& status) {
  return status.error_code() == grpc::StatusCode::UNAVAILABLE ||
         status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED;
}

std::string SafeName(const std::string& text) {
  std::string out;
  for (char c : text) out += (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_') ? c : '_';
  return out;
}

std::string PendingPath(const PluginConfig& config, const Environment& env) {
  return config.state_dir + "/pending/" + SafeName(env.container_id) + "-" + SafeName(env.ifname) + ".json";
}

// failMode isolate: leave the registration for the agent to adopt when it is back.
std::string WritePending(const PluginConfig& config, const Environment& env, const v1::AddEndpointRequest& request) {
  const std::string path = PendingPath(config, env);
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(path).parent_path(), ec);
  if (ec) return "cannot create " + std::filesystem::path(path).parent_path().string() + ": " + ec.message();
  ::chmod(std::filesystem::path(path).parent_path().c_str(), 0700);
  std::string json;
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  if (!google::protobuf::util::MessageToJsonString(request, &json, options).ok()) return "cannot encode request";
  const std::string temp = path + ".tmp";
  {
    std::ofstream out(temp, std::ios::trunc);
    out << json << "\n";
    if (!out.flush()) return "cannot write " + temp;
  }
  std::filesystem::rename(temp, path, ec);
  return ec ? "cannot rename " + temp + ": " + ec.message() : "";
}

void PrintResult(const PluginConfig& config) {
  nlohmann::json result = *config.prev_result;
  result["cniVersion"] = config.cni_version;
  std::cout << result.dump() << std::endl;
}

int Add(const PluginConfig& config, const Environment& env) {
  if (!config.prev_result) {
    return Fail(config.cni_version, {kInvalidConfig, "microseg-cni must be chained after a main plugin: prevResult "
                                                     "missing", ""});
  }
  CniError error;
  const std::string host_veth = FindHostVeth(config, env, error);
  if (host_veth.empty()) return Fail(config.cni_version, error);
  const int ifindex = static_cast<int>(if_nametoindex(host_veth.c_str()));
  if (ifindex == 0) {
    return Fail(config.cni_version, {kAttachFailed, "host-side veth " + host_veth + " does not exist", ""});
  }

  // Attach first: from here on the pod gets nothing through until its
  // policy is in the maps.
  const AttachResult attached = AttachPinnedPrograms(ifindex, config.bpf_pin_dir);
  if (!attached.ok) return Fail(config.cni_version, {kAttachFailed, "cannot attach microseg to " + host_veth,
                                                     attached.error});

  v1::AddEndpointRequest request;
  request.set_container_id(env.container_id);
  request.set_netns(env.netns);
  request.set_ifname(env.ifname);
  request.set_pod_namespace(env.args.at("K8S_POD_NAMESPACE"));
  request.set_pod_name(env.args.at("K8S_POD_NAME"));
  request.set_host_ifname(host_veth);
  request.set_host_ifindex(static_cast<uint32_t>(ifindex));
  for (const std::string& address : ResultAddresses(*config.prev_result)) request.add_ips(address);

  grpc::ClientContext context;
  SetDeadline(context, config.timeout_seconds);
  context.set_wait_for_ready(true);  // an agent that is (re)starting gets the whole timeout
  v1::AddEndpointResponse response;
  const grpc::Status status = AgentStub(config)->AddEndpoint(&context, request, &response);
  if (status.ok()) {
    Log("pod " + request.pod_namespace() + "/" + request.pod_name() + " enforced on " + host_veth + " (endpoint " +
        std::to_string(response.endpoint().endpoint_id()) + ")");
    PrintResult(config);
    return 0;
  }
  const std::string details = "agent at unix:" + config.agent_socket + ": " + status.error_message();
  if (AgentUnreachable(status) && config.fail_mode == FailMode::kIsolate) {
    if (std::string problem = WritePending(config, env, request); !problem.empty()) {
      (void)DetachPrograms(ifindex, attached.created_qdisc);
      return Fail(config.cni_version, {kIoFailure, "cannot record the pending registration", problem});
    }
    Log("agent unreachable; pod " + request.pod_namespace() + "/" + request.pod_name() +
        " stays fully isolated until the agent adopts it (failMode isolate): " + details);
    PrintResult(config);
    return 0;
  }
  if (std::string problem = DetachPrograms(ifindex, attached.created_qdisc); !problem.empty()) Log(problem);
  if (AgentUnreachable(status)) {
    return Fail(config.cni_version, {kTryAgainLater, "microseg agent unreachable; pod not created", details});
  }
  return Fail(config.cni_version, {kAgentRejected, "microseg agent refused the endpoint", details});
}

int Del(const PluginConfig& config, const Environment& env) {
  // DEL must succeed whatever is already gone, so nothing here is fatal.
  CniError ignored;
  std::string host_veth;
  if (config.prev_result || !env.netns.empty()) host_veth = FindHostVeth(config, env, ignored);
  if (!host_veth.empty()) {
    if (int ifindex = static_cast<int>(if_nametoindex(host_veth.c_str())); ifindex != 0) {
      if (std::string problem = DetachPrograms(ifindex, false); !problem.empty()) Log(problem);
    }
  }
  grpc::ClientContext context;
  SetDeadline(context, std::min(config.timeout_seconds, 5));
  v1::DeleteEndpointRequest request;
  request.set_container_id(env.container_id);
  request.set_ifname(env.ifname);
  v1::DeleteEndpointResponse response;
  if (grpc::Status status = AgentStub(config)->DeleteEndpoint(&context, request, &response); !status.ok()) {
    Log("agent did not take the deletion (it forgets endpoints whose veth is gone): " + status.error_message());
  }
  std::error_code ec;
  std::filesystem::remove(PendingPath(config, env), ec);
  return 0;
}

int Check(const PluginConfig& config, const Environment& env) {
  if (!config.prev_result) {
    return Fail(config.cni_version, {kInvalidConfig, "CHECK needs prevResult", ""});
  }
  CniError error;
  const std::string host_veth = FindHostVeth(config, env, error);
  if (host_veth.empty()) return Fail(config.cni_version, error);
  const int ifindex = static_cast<int>(if_nametoindex(host_veth.c_str()));
  if (ifindex == 0) return Fail(config.cni_version, {kNotEnforced, "host-side veth " + host_veth + " is gone", ""});
  if (std::string problem = VerifyAttached(ifindex, config.bpf_pin_dir); !problem.empty()) {
    return Fail(config.cni_version, {kNotEnforced, "microseg programs are not attached to " + host_veth, problem});
  }
  grpc::ClientContext context;
  SetDeadline(context, config.timeout_seconds);
  v1::CheckEndpointRequest request;
  request.set_container_id(env.container_id);
  request.set_ifname(env.ifname);
  v1::CheckEndpointResponse response;
  const grpc::Status status = AgentStub(config)->CheckEndpoint(&context, request, &response);
  if (status.ok()) return 0;
  const std::string details = "agent at unix:" + config.agent_socket + ": " + status.error_message();
  if (AgentUnreachable(status)) return Fail(config.cni_version, {kTryAgainLater, "microseg agent unreachable", details});
  return Fail(config.cni_version, {kNotEnforced, "the agent does not enforce this pod", details});
}

int Run() {
  std::map<std::string, std::string> env_map;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string entry(*e);
    if (entry.rfind("CNI_", 0) != 0) continue;
    const size_t eq = entry.find('=');
    if (eq != std::string::npos) env_map[entry.substr(0, eq)] = entry.substr(eq + 1);
  }
  auto env = ParseEnvironment(env_map);
  if (!env.ok()) return Fail("", env.error);
  if (env.value->command == "VERSION") {
    std::cout << VersionJson() << std::endl;
    return 0;
  }
  const std::string input((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
  auto config = ParseConfig(input);
  if (!config.ok()) return Fail("", config.error);
  if (env.value->command == "ADD") return Add(*config.value, *env.value);
  if (env.value->command == "DEL") return Del(*config.value, *env.value);
  return Check(*config.value, *env.value);
}

}  // namespace
}  // namespace microseg::cni

// The runtime runs a CNI plugin without arguments; the chaining installer is
// the same binary with a verb, so the init container needs nothing else.
int main(int argc, char** argv) {
  if (argc > 1) return microseg::cni::RunInstallerCommand(argc, argv);
  return microseg::cni::Run();
}
