// What the container runtime hands microseg-cni: the network configuration on
// stdin, the CNI_* environment, and the previous plugin's result. Pure parsing
// and validation, so every rule here is unit-tested without privileges.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"

namespace microseg::cni {

// CNI spec error codes (1-99 are the spec's, 100+ ours).
enum ErrorCode : int {
  kIncompatibleVersion = 1,
  kInvalidEnvironment = 4,
  kIoFailure = 5,
  kDecodeFailure = 6,
  kInvalidConfig = 7,
  kTryAgainLater = 11,
  kAttachFailed = 100,
  kAgentRejected = 101,
  kNotEnforced = 102,
};

struct CniError {
  int code = 0;
  std::string msg;
  std::string details;
};

inline constexpr const char* kSupportedVersions[] = {"0.4.0", "1.0.0"};

enum class FailMode { kClosed, kIsolate };

struct PluginConfig {
  std::string cni_version;
  std::string name;
  std::string agent_socket = "/run/microseg/agent.sock";
  std::string bpf_pin_dir = "/sys/fs/bpf/microseg";
  FailMode fail_mode = FailMode::kClosed;
  int timeout_seconds = 10;
  std::string state_dir = "/run/microseg/state";
  std::optional<nlohmann::json> prev_result;
};

struct Environment {
  std::string command;  // ADD, DEL, CHECK, VERSION
  std::string container_id;
  std::string netns;
  std::string ifname;
  std::map<std::string, std::string> args;  // CNI_ARGS
};

// Either the value or the error to print.
template <typename T>
struct Parsed {
  std::optional<T> value;
  CniError error;
  bool ok() const { return value.has_value(); }
};

Parsed<PluginConfig> ParseConfig(const std::string& stdin_text);
// Reads CNI_COMMAND, CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME, CNI_ARGS through
// `getenv`; what each command requires is checked here.
Parsed<Environment> ParseEnvironment(const std::map<std::string, std::string>& env);
std::map<std::string, std::string> ParseCniArgs(const std::string& text);


// Host-side interfaces of the previous result (no `sandbox`), minus the ones
// `is_bridge` says are bridges: the pod's veth peer is what remains.
std::vector<std::string> HostSideCandidates(const nlohmann::json& prev_result,
                                            bool (*is_bridge)(const std::string& name));
// IPv4 and IPv6 addresses (CIDR form) of the previous result.
std::vector<std::string> ResultAddresses(const nlohmann::json& prev_result);

std::string ErrorJson(const std::string& cni_version, const CniError& error);
std::string VersionJson();

}  // namespace microseg::cni
