#include "cni_config.h"

#include <algorithm>
#include <cstring>

namespace microseg::cni {
namespace {

using nlohmann::json;

CniError Error(int code, std::string msg, std::string details = "") {
  return {code, std::move(msg), std::move(details)};
}

template <typename T>
Parsed<T> Fail(int code, std::string msg, std::string details = "") {
  Parsed<T> out;
  out.error = Error(code, std::move(msg), std::move(details));
  return out;
}

bool SupportedVersion(const std::string& version) {
  return std::any_of(std::begin(kSupportedVersions), std::end(kSupportedVersions),
                     [&](const char* v) { return version == v; });
}

// A field must be absent or of the expected JSON type.
std::optional<std::string> WrongType(const json& conf, const char* field, json::value_t type) {
  if (!conf.contains(field)) return std::nullopt;
  const json& value = conf.at(field);
  const bool ok = type == json::value_t::number_integer
                      ? value.is_number_integer()
                      : value.type() == type;
  if (ok) return std::nullopt;
  return std::string(field) + " has the wrong type (" + value.type_name() + ")";
}

}  // namespace

Parsed<PluginConfig> ParseConfig(const std::string& stdin_text) {
  json conf = json::parse(stdin_text, nullptr, /*allow_exceptions=*/false);
  if (conf.is_discarded()) return Fail<PluginConfig>(kDecodeFailure, "network configuration is not valid JSON");
  if (!conf.is_object()) return Fail<PluginConfig>(kDecodeFailure, "network configuration is not a JSON object");

  for (auto [field, type] : {std::pair{"cniVersion", json::value_t::string}, {"name", json::value_t::string},
                             {"agentSocket", json::value_t::string}, {"bpfPinDir", json::value_t::string},
                             {"failMode", json::value_t::string}, {"timeoutSeconds", json::value_t::number_integer},
                             {"stateDir", json::value_t::string}, {"prevResult", json::value_t::object}}) {
    if (auto problem = WrongType(conf, field, type)) return Fail<PluginConfig>(kInvalidConfig, *problem);
  }
  PluginConfig config;
  config.cni_version = conf.value("cniVersion", "");
  if (config.cni_version.empty()) return Fail<PluginConfig>(kInvalidConfig, "cniVersion is missing");
  if (!SupportedVersion(config.cni_version)) {
    return Fail<PluginConfig>(kIncompatibleVersion, "unsupported cniVersion " + config.cni_version,
                              "microseg-cni supports 0.4.0 and 1.0.0");
  }
  config.name = conf.value("name", "");
  config.agent_socket = conf.value("agentSocket", config.agent_socket);
  config.bpf_pin_dir = conf.value("bpfPinDir", config.bpf_pin_dir);
  config.state_dir = conf.value("stateDir", config.state_dir);
  for (const auto* path : {&config.agent_socket, &config.bpf_pin_dir, &config.state_dir}) {
    if (path->empty() || path->front() != '/') {
      return Fail<PluginConfig>(kInvalidConfig, "agentSocket, bpfPinDir and stateDir must be absolute paths",
                                "got '" + *path + "'");
    }
  }
  const std::string fail_mode = conf.value("failMode", "closed");
  if (fail_mode == "closed") config.fail_mode = FailMode::kClosed;
  else if (fail_mode == "isolate") config.fail_mode = FailMode::kIsolate;
  else return Fail<PluginConfig>(kInvalidConfig, "failMode must be \"closed\" or \"isolate\"", "got " + fail_mode);
  config.timeout_seconds = conf.value("timeoutSeconds", config.timeout_seconds);
  if (config.timeout_seconds < 1 || config.timeout_seconds > 120) {
    return Fail<PluginConfig>(kInvalidConfig, "timeoutSeconds must be within 1..120",
                              "got " + std::to_string(config.timeout_seconds));
  }
  if (conf.contains("prevResult")) config.prev_result = conf.at("prevResult");
  Parsed<PluginConfig> out;
  out.value = std::move(config);
  return out;
}

std::map<std::string, std::string> ParseCniArgs(const std::string& text) {
  std::map<std::string, std::string> args;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find(';', start);
    if (end == std::string::npos) end = text.size();
    const std::string pair = text.substr(start, end - start);
    if (size_t eq = pair.find('='); eq != std::string::npos && eq > 0) {
      args[pair.substr(0, eq)] = pair.substr(eq + 1);
    }
    start = end + 1;
  }
  return args;
}

Parsed<Environment> ParseEnvironment(const std::map<std::string, std::string>& env) {
  auto get = [&](const char* name) {
    auto it = env.find(name);
    return it == env.end() ? std::string() : it->second;
  };
  Environment e;
  e.command = get("CNI_COMMAND");
  if (e.command.empty()) return Fail<Environment>(kInvalidEnvironment, "CNI_COMMAND is not set");
  if (e.command != "ADD" && e.command != "DEL" && e.command != "CHECK" && e.command != "VERSION") {
    return Fail<Environment>(kInvalidEnvironment, "unknown CNI_COMMAND " + e.command);
  }
  if (e.command == "VERSION") {
    Parsed<Environment> out;
    out.value = std::move(e);
    return out;
  }
  e.container_id = get("CNI_CONTAINERID");
  e.netns = get("CNI_NETNS");
  e.ifname = get("CNI_IFNAME");
  e.args = ParseCniArgs(get("CNI_ARGS"));
  if (e.container_id.empty()) return Fail<Environment>(kInvalidEnvironment, "CNI_CONTAINERID is not set");
  if (e.ifname.empty()) return Fail<Environment>(kInvalidEnvironment, "CNI_IFNAME is not set");
  if (e.command != "DEL" && e.netns.empty()) return Fail<Environment>(kInvalidEnvironment, "CNI_NETNS is not set");
  if (e.command == "ADD" &&
      (e.args["K8S_POD_NAMESPACE"].empty() || e.args["K8S_POD_NAME"].empty())) {
    return Fail<Environment>(kInvalidEnvironment, "CNI_ARGS must carry K8S_POD_NAMESPACE and K8S_POD_NAME",
                             "microseg enforces policy per pod; the runtime passes these for Kubernetes pods");
  }
  Parsed<Environment> out;
  out.value = std::move(e);
  return out;
}

std::vector<std::string> HostSideCandidates(const json& prev_result, bool (*is_bridge)(const std::string&)) {
  std::vector<std::string> out;
  if (!prev_result.contains("interfaces") || !prev_result.at("interfaces").is_array()) return out;
  for (const json& iface : prev_result.at("interfaces")) {
    if (!iface.is_object() || !iface.contains("name") || !iface.at("name").is_string()) continue;
    if (iface.contains("sandbox") && iface.at("sandbox").is_string() && !iface.at("sandbox").get<std::string>().empty())
      continue;
    const std::string name = iface.at("name").get<std::string>();
    if (is_bridge != nullptr && is_bridge(name)) continue;
    out.push_back(name);
  }
  return out;
}

std::vector<std::string> ResultAddresses(const json& prev_result) {
  std::vector<std::string> out;
  if (!prev_result.contains("ips") || !prev_result.at("ips").is_array()) return out;
  for (const json& ip : prev_result.at("ips")) {
    if (ip.is_object() && ip.contains("address") && ip.at("address").is_string()) {
      out.push_back(ip.at("address").get<std::string>());
    }
  }
  return out;
}

std::string ErrorJson(const std::string& cni_version, const CniError& error) {
  json out = {{"cniVersion", cni_version.empty() ? "1.0.0" : cni_version}, {"code", error.code}, {"msg", error.msg}};
  if (!error.details.empty()) out["details"] = error.details;
  // Messages quote what the runtime passed (CNI_COMMAND, CNI_ARGS), which need
  // not be UTF-8; the runtime must still get an error it can parse.
  return out.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string VersionJson() {
  json versions = json::array();
  for (const char* v : kSupportedVersions) versions.push_back(v);
  return json{{"cniVersion", "1.0.0"}, {"supportedVersions", versions}}.dump();
}

}  // namespace microseg::cni
