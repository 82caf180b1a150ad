#define CATCH_CONFIG_MAIN
#include "cni_config.h"

#include <catch2/catch.hpp>

namespace microseg::cni {
namespace {

using nlohmann::json;

// Shapes as Debian's ptp and bridge plugins (CNI 1.0.0) return them.
const json kPtpResult = json::parse(R"({
  "cniVersion": "1.0.0",
  "interfaces": [
    {"name": "veth1a2b3c4d", "mac": "ee:11:22:33:44:55"},
    {"name": "eth0", "mac": "aa:bb:cc:dd:ee:ff", "sandbox": "/var/run/netns/pod"}],
  "ips": [{"interface": 1, "address": "10.244.7.5/24", "gateway": "10.244.7.1"}],
  "routes": [{"dst": "0.0.0.0/0", "gw": "10.244.7.1"}],
  "dns": {}})");

const json kBridgeResult = json::parse(R"({
  "cniVersion": "1.0.0",
  "interfaces": [
    {"name": "cni0", "mac": "02:00:00:00:00:01"},
    {"name": "veth9f8e7d6c", "mac": "02:00:00:00:00:02"},
    {"name": "eth0", "mac": "02:00:00:00:00:03", "sandbox": "/var/run/netns/pod"}],
  "ips": [{"interface": 2, "address": "10.244.8.9/24", "gateway": "10.244.8.1"},
          {"interface": 2, "address": "fd00:8::9/64"}]})");

bool NameIsCni0(const std::string& name) { return name == "cni0"; }

TEST_CASE("config defaults", "[cni]") {
  auto parsed = ParseConfig(R"({"cniVersion":"1.0.0","name":"k8s","type":"microseg-cni"})");
  REQUIRE(parsed.ok());
  const PluginConfig& c = *parsed.value;
  CHECK(c.agent_socket == "/run/microseg/agent.sock");
  CHECK(c.bpf_pin_dir == "/sys/fs/bpf/microseg");
  CHECK(c.fail_mode == FailMode::kClosed);
  CHECK(c.timeout_seconds == 10);
  CHECK(c.state_dir == "/run/microseg/state");
  CHECK_FALSE(c.prev_result.has_value());
}

TEST_CASE("config fields are read", "[cni]") {
  json conf = {{"cniVersion", "0.4.0"}, {"name", "k8s"}, {"type", "microseg-cni"},
               {"agentSocket", "/x/a.sock"}, {"bpfPinDir", "/sys/fs/bpf/x"}, {"failMode", "isolate"},
               {"timeoutSeconds", 3}, {"stateDir", "/x/state"}, {"prevResult", kPtpResult}};
  auto parsed = ParseConfig(conf.dump());
  REQUIRE(parsed.ok());
  CHECK(parsed.value->agent_socket == "/x/a.sock");
  CHECK(parsed.value->bpf_pin_dir == "/sys/fs/bpf/x");
  CHECK(parsed.value->fail_mode == FailMode::kIsolate);
  CHECK(parsed.value->timeout_seconds == 3);
  CHECK(parsed.value->state_dir == "/x/state");
  REQUIRE(parsed.value->prev_result.has_value());
  CHECK((*parsed.value->prev_result)["ips"][0]["address"] == "10.244.7.5/24");
}

TEST_CASE("invalid configurations get the spec's error codes", "[cni]") {
  struct Case {
    const char* stdin_text;
    int code;
    const char* message_part;
  };
  const Case cases[] = {
      {"", kDecodeFailure, "not valid JSON"},
      {"{\"cniVersion\":", kDecodeFailure, "not valid JSON"},
      {"[1,2]", kDecodeFailure, "not a JSON object"},
      {R"({"name":"k8s"})", kInvalidConfig, "cniVersion is missing"},
      {R"({"cniVersion":"0.3.1"})", kIncompatibleVersion, "unsupported cniVersion 0.3.1"},
      {R"({"cniVersion":"1.0.0","failMode":"open"})", kInvalidConfig, "failMode"},
      {R"({"cniVersion":"1.0.0","timeoutSeconds":0})", kInvalidConfig, "timeoutSeconds"},
      {R"({"cniVersion":"1.0.0","timeoutSeconds":121})", kInvalidConfig, "timeoutSeconds"},
      {R"({"cniVersion":"1.0.0","timeoutSeconds":"10"})", kInvalidConfig, "timeoutSeconds has the wrong type"},
      {R"({"cniVersion":"1.0.0","agentSocket":"relative.sock"})", kInvalidConfig, "absolute"},
      {R"({"cniVersion":"1.0.0","bpfPinDir":""})", kInvalidConfig, "absolute"},
      {R"({"cniVersion":"1.0.0","prevResult":"x"})", kInvalidConfig, "prevResult has the wrong type"},
  };
  for (const Case& c : cases) {
    INFO(c.stdin_text);
    auto parsed = ParseConfig(c.stdin_text);
    REQUIRE_FALSE(parsed.ok());
    CHECK(parsed.error.code == c.code);
    CHECK_THAT(parsed.error.msg, Catch::Contains(c.message_part));
  }
}

TEST_CASE("CNI_ARGS parsing", "[cni]") {
  auto args = ParseCniArgs("IgnoreUnknown=1;K8S_POD_NAMESPACE=x;K8S_POD_NAME=a-b;K8S_POD_INFRA_CONTAINER_ID=abc;bad;=v");
  CHECK(args.at("K8S_POD_NAMESPACE") == "x");
  CHECK(args.at("K8S_POD_NAME") == "a-b");
  CHECK(args.at("IgnoreUnknown") == "1");
  CHECK(args.size() == 4);
  CHECK(ParseCniArgs("").empty());
}

TEST_CASE("environment requirements per command", "[cni]") {
  const std::map<std::string, std::string> add = {
      {"CNI_COMMAND", "ADD"}, {"CNI_CONTAINERID", "c1"}, {"CNI_NETNS", "/var/run/netns/p"}, {"CNI_IFNAME", "eth0"},
      {"CNI_ARGS", "K8S_POD_NAMESPACE=x;K8S_POD_NAME=a"}};
  REQUIRE(ParseEnvironment(add).ok());

  struct Case {
    const char* name;
    const char* variable;
    const char* value;  // nullptr: unset
    const char* message_part;
  };
  const Case cases[] = {
      {"no command", "CNI_COMMAND", nullptr, "CNI_COMMAND"},
      {"bad command", "CNI_COMMAND", "UPDATE", "unknown CNI_COMMAND"},
      {"no container", "CNI_CONTAINERID", nullptr, "CNI_CONTAINERID"},
      {"no ifname", "CNI_IFNAME", nullptr, "CNI_IFNAME"},
      {"no netns", "CNI_NETNS", nullptr, "CNI_NETNS"},
      {"no pod name", "CNI_ARGS", "K8S_POD_NAMESPACE=x", "K8S_POD_NAME"},
  };
  for (const Case& c : cases) {
    SECTION(c.name) {
      auto env = add;
      if (c.value) env[c.variable] = c.value;
      else env.erase(c.variable);
      auto parsed = ParseEnvironment(env);
      REQUIRE_FALSE(parsed.ok());
      CHECK(parsed.error.code == kInvalidEnvironment);
      CHECK_THAT(parsed.error.msg, Catch::Contains(c.message_part));
    }
  }
  SECTION("DEL needs neither netns nor pod identity") {
    auto parsed = ParseEnvironment({{"CNI_COMMAND", "DEL"}, {"CNI_CONTAINERID", "c1"}, {"CNI_IFNAME", "eth0"}});
    CHECK(parsed.ok());
  }
  SECTION("VERSION needs nothing else") { CHECK(ParseEnvironment({{"CNI_COMMAND", "VERSION"}}).ok()); }
}

TEST_CASE("the host-side veth is found in real-shaped results", "[cni]") {
  CHECK(HostSideCandidates(kPtpResult, nullptr) == std::vector<std::string>{"veth1a2b3c4d"});
  // The bridge plugin also lists the bridge itself: it is not the pod's veth.
  CHECK(HostSideCandidates(kBridgeResult, NameIsCni0) == std::vector<std::string>{"veth9f8e7d6c"});
  CHECK(HostSideCandidates(json::parse(R"({"interfaces":[{"name":"eth0","sandbox":"/x"}]})"), nullptr).empty());
  CHECK(HostSideCandidates(json::parse(R"({"ips":[]})"), nullptr).empty());
  CHECK(ResultAddresses(kBridgeResult) == std::vector<std::string>{"10.244.8.9/24", "fd00:8::9/64"});
}

TEST_CASE("error and version JSON follow the spec", "[cni]") {
  json error = json::parse(ErrorJson("1.0.0", {kTryAgainLater, "agent unreachable", "unix:/x: connect failed"}));
  CHECK(error["cniVersion"] == "1.0.0");
  CHECK(error["code"] == 11);
  CHECK(error["msg"] == "agent unreachable");
  CHECK(error["details"] == "unix:/x: connect failed");
  CHECK_FALSE(json::parse(ErrorJson("", {kDecodeFailure, "bad", ""})).contains("details"));
  json version = json::parse(VersionJson());
  CHECK(version["cniVersion"] == "1.0.0");
  CHECK(version["supportedVersions"] == json::array({"0.4.0", "1.0.0"}));
}

TEST_CASE("an error quoting bytes that are not UTF-8 is still printable JSON", "[cni]") {
  // fuzz_cni_config found ErrorJson throwing on such a CNI_COMMAND.
  const auto parsed = ParseEnvironment({{"CNI_COMMAND", "AD\xff\xfe" "D"}});
  REQUIRE_FALSE(parsed.ok());
  const json error = json::parse(ErrorJson("1.0.0", parsed.error));
  CHECK(error["code"] == kInvalidEnvironment);
  CHECK(error["msg"] == "unknown CNI_COMMAND AD\xef\xbf\xbd\xef\xbf\xbd" "D");  // U+FFFD each
}

}  // namespace
}  // namespace microseg::cni
