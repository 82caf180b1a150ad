// What a container runtime hands microseg-cni, fuzzed: the CNI_* environment
// and the network configuration on stdin. The input's first three lines are
// CNI_COMMAND, CNI_ARGS and CNI_IFNAME, the rest is stdin. Every outcome must
// be a value or an error the plugin can print as CNI error JSON: the runtime
// reads stdout, so a plugin that dies on odd bytes leaves it guessing.
#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include "cni_config.h"
#include "fuzz_check.h"
#include "nlohmann/json.hpp"

namespace {

std::string_view NextLine(std::string_view& rest) {
  const size_t end = rest.find('\n');
  const std::string_view line = rest.substr(0, end);
  rest = end == std::string_view::npos ? std::string_view() : rest.substr(end + 1);
  return line;
}

void CheckPrintable(const std::string& cni_version, const microseg::cni::CniError& error) {
  FUZZ_CHECK(error.code != 0 && !error.msg.empty(), "an error without code or message");
  std::string printed;
  try {
    printed = microseg::cni::ErrorJson(cni_version, error);
  } catch (const std::exception& e) {
    FUZZ_CHECK(false, "error JSON cannot be printed (%s) for message \"%s\"", e.what(), error.msg.c_str());
  }
  const nlohmann::json parsed = nlohmann::json::parse(printed, nullptr, /*allow_exceptions=*/false);
  FUZZ_CHECK(parsed.is_object() && parsed.value("code", 0) == error.code, "printed error is not CNI error JSON: %s",
             printed.c_str());
}

bool NeverBridge(const std::string&) { return false; }

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view rest(reinterpret_cast<const char*>(data), size);
  std::map<std::string, std::string> env = {
      {"CNI_COMMAND", std::string(NextLine(rest))},
      {"CNI_ARGS", std::string(NextLine(rest))},
      {"CNI_IFNAME", std::string(NextLine(rest))},
      {"CNI_CONTAINERID", "c0ffee"},
      {"CNI_NETNS", "/var/run/netns/fuzz"},
  };
  const std::string stdin_text(rest);

  const auto environment = microseg::cni::ParseEnvironment(env);
  if (!environment.ok()) CheckPrintable("1.0.0", environment.error);

  const auto config = microseg::cni::ParseConfig(stdin_text);
  if (!config.ok()) {
    CheckPrintable("", config.error);
    return 0;
  }
  FUZZ_CHECK(config.value->timeout_seconds >= 1 && config.value->timeout_seconds <= 120, "timeout %d accepted",
             config.value->timeout_seconds);
  FUZZ_CHECK(!config.value->agent_socket.empty() && config.value->agent_socket.front() == '/',
             "relative agent socket accepted");
  if (config.value->prev_result) {
    // The previous plugin's result is someone else's output: read what fits, skip the rest.
    const nlohmann::json& previous = *config.value->prev_result;
    const auto count = [&](const char* field) {
      return previous.contains(field) && previous.at(field).is_array() ? previous.at(field).size() : 0;
    };
    FUZZ_CHECK(microseg::cni::ResultAddresses(previous).size() <= count("ips"), "more addresses than ips");
    FUZZ_CHECK(microseg::cni::HostSideCandidates(previous, NeverBridge).size() <= count("interfaces"),
               "more host-side candidates than interfaces");
  }
  return 0;
}
