// `microseg-cni install|uninstall` on temp CNI conf dirs holding the real
// network configurations of common setups (test/cni/conflists/).
#define CATCH_CONFIG_MAIN
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <string>

#include "chain_installer.h"

namespace fs = std::filesystem;
using microseg::cni::Install;
using microseg::cni::InstallOptions;
using microseg::cni::Outcome;
using microseg::cni::RuntimeConfigFile;
using microseg::cni::Uninstall;
using microseg::cni::UninstallOptions;
using ojson = nlohmann::ordered_json;

namespace {

const fs::path kFixtures = MICROSEG_CONFLIST_DIR;

std::string Read(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

void Write(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

// A fresh conf dir and bin dir, removed at the end of the test.
struct Node {
  fs::path root;
  fs::path conf_dir;
  fs::path bin_dir;
  Node() {
    std::string templ = (fs::temp_directory_path() / "ms-cni-install-XXXXXX").string();
    REQUIRE(::mkdtemp(templ.data()) != nullptr);
    root = templ;
    conf_dir = root / "net.d";
    bin_dir = root / "bin";
    fs::create_directories(conf_dir);
  }
  ~Node() {
    std::error_code ec;
    fs::remove_all(root, ec);
  }
  std::set<std::string> ConfFiles() const {
    std::set<std::string> out;
    for (const auto& e : fs::directory_iterator(conf_dir)) out.insert(e.path().filename().string());
    return out;
  }
};

ojson Entry(const std::string& fail_mode = "closed") {
  return ojson{{"type", "microseg-cni"},          {"agentSocket", "/run/microseg/agent.sock"},
               {"bpfPinDir", "/sys/fs/bpf/microseg"}, {"failMode", fail_mode},
               {"timeoutSeconds", 10},              {"stateDir", "/run/microseg/state"}};
}

InstallOptions InstallIn(const Node& node, const std::string& fail_mode = "closed") {
  InstallOptions options;
  options.conf_dir = node.conf_dir;
  options.bin_dir = node.bin_dir;
  options.entry = Entry(fail_mode);
  options.upgrade_cni_version = true;
  return options;
}

UninstallOptions UninstallIn(const Node& node) {
  UninstallOptions options;
  options.conf_dir = node.conf_dir;
  options.bin_dir = node.bin_dir;
  return options;
}

ojson Parse(const std::string& text) { return ojson::parse(text); }

}  // namespace

TEST_CASE("install chains microseg-cni last, idempotently, and uninstall restores the exact original") {
  const auto fixture = GENERATE(as<std::string>{}, "containerd-bridge.conflist", "flannel.conflist",
                                "calico.conflist", "aws-vpc.conflist", "cilium-chaining.conflist");
  CAPTURE(fixture);
  Node node;
  const std::string original = Read(kFixtures / fixture);
  const fs::path file = node.conf_dir / ("10-" + fixture);
  Write(file, original);
  const auto files_before = node.ConfFiles();

  Outcome first = Install(InstallIn(node));
  INFO(first.error);
  REQUIRE(first.ok);
  CHECK(first.changed);
  CHECK(RuntimeConfigFile(node.conf_dir) == file);

  const ojson before = Parse(original);
  const ojson after = Parse(Read(file));
  const auto& plugins = after.at("plugins");
  REQUIRE(plugins.size() == before.at("plugins").size() + 1);
  CHECK(plugins.back() == Entry());
  for (size_t i = 0; i + 1 < plugins.size(); ++i) {
    CHECK(plugins.at(i).dump() == before.at("plugins").at(i).dump());  // same content, same key order
  }
  std::vector<std::string> keys_before, keys_after;
  for (const auto& [k, v] : before.items()) keys_before.push_back(k);
  for (const auto& [k, v] : after.items()) keys_after.push_back(k);
  CHECK(keys_before == keys_after);
  const std::string version = before.at("cniVersion");
  CHECK(after.at("cniVersion") == (version.rfind("0.3.", 0) == 0 ? "0.4.0" : version));
  CHECK(Read(file.string() + ".microseg-backup") == original);

  const std::string installed = Read(file);
  Outcome second = Install(InstallIn(node));
  REQUIRE(second.ok);
  CHECK_FALSE(second.changed);
  CHECK(Read(file) == installed);
  CHECK(Read(file.string() + ".microseg-backup") == original);

  Outcome removed = Uninstall(UninstallIn(node));
  INFO(removed.error);
  REQUIRE(removed.ok);
  CHECK(removed.changed);
  CHECK(Read(file) == original);
  CHECK(node.ConfFiles() == files_before);

  Outcome again = Uninstall(UninstallIn(node));
  REQUIRE(again.ok);
  CHECK_FALSE(again.changed);
  CHECK(Read(file) == original);
}

TEST_CASE("a single-plugin .conf becomes a conflist and comes back on uninstall") {
  Node node;
  const std::string original = Read(kFixtures / "plain-bridge.conf");
  Write(node.conf_dir / "10-mynet.conf", original);
  Write(node.conf_dir / "99-loopback.conf", R"({"cniVersion":"1.0.0","name":"lo","type":"loopback"})");
  const auto files_before = node.ConfFiles();

  Outcome out = Install(InstallIn(node));
  INFO(out.error);
  REQUIRE(out.ok);
  const fs::path conflist = node.conf_dir / "10-mynet.conflist";
  CHECK(RuntimeConfigFile(node.conf_dir) == conflist);
  CHECK_FALSE(fs::exists(node.conf_dir / "10-mynet.conf"));
  CHECK(Read(node.conf_dir / "10-mynet.conf.microseg-backup") == original);
  const ojson list = Parse(Read(conflist));
  CHECK(list.at("cniVersion") == "0.4.0");
  CHECK(list.at("name") == "mynet");
  REQUIRE(list.at("plugins").size() == 2);
  CHECK(list.at("plugins").at(0) == Parse(original));
  CHECK(list.at("plugins").at(1) == Entry());

  const std::string installed = Read(conflist);
  REQUIRE(Install(InstallIn(node)).ok);
  CHECK(Read(conflist) == installed);

  REQUIRE(Uninstall(UninstallIn(node)).ok);
  CHECK(node.ConfFiles() == files_before);
  CHECK(Read(node.conf_dir / "10-mynet.conf") == original);
}

TEST_CASE("only the file the runtime uses is edited") {
  Node node;
  Write(node.conf_dir / "20-flannel.conflist", Read(kFixtures / "flannel.conflist"));
  Write(node.conf_dir / "10-calico.conflist", Read(kFixtures / "calico.conflist"));
  Write(node.conf_dir / "05-notes.txt", "not a CNI config");
  REQUIRE(Install(InstallIn(node)).ok);
  CHECK(microseg::cni::HasEntry(Parse(Read(node.conf_dir / "10-calico.conflist"))));
  CHECK(Read(node.conf_dir / "20-flannel.conflist") == Read(kFixtures / "flannel.conflist"));
}

TEST_CASE("changed settings replace our entry; the backup stays the main plugin's original") {
  Node node;
  const std::string original = Read(kFixtures / "containerd-bridge.conflist");
  const fs::path file = node.conf_dir / "10-containerd-net.conflist";
  Write(file, original);
  REQUIRE(Install(InstallIn(node, "closed")).ok);
  Outcome update = Install(InstallIn(node, "isolate"));
  REQUIRE(update.ok);
  CHECK(update.changed);
  const ojson list = Parse(Read(file));
  REQUIRE(list.at("plugins").size() == 3);
  CHECK(list.at("plugins").back().at("failMode") == "isolate");
  CHECK(Read(file.string() + ".microseg-backup") == original);
  REQUIRE(Uninstall(UninstallIn(node)).ok);
  CHECK(Read(file) == original);
}

TEST_CASE("uninstall after the main plugin changed the file removes only our entry") {
  Node node;
  const fs::path file = node.conf_dir / "10-calico.conflist";
  Write(file, Read(kFixtures / "calico.conflist"));
  REQUIRE(Install(InstallIn(node)).ok);
  ojson list = Parse(Read(file));
  list["plugins"].push_back(ojson{{"type", "tuning"}, {"sysctl", {{"net.core.somaxconn", "512"}}}});
  Write(file, list.dump(2));

  REQUIRE(Uninstall(UninstallIn(node)).ok);
  const ojson left = Parse(Read(file));
  CHECK_FALSE(microseg::cni::HasEntry(left));
  REQUIRE(left.at("plugins").size() == 4);
  CHECK(left.at("plugins").back().at("type") == "tuning");
  CHECK_FALSE(fs::exists(file.string() + ".microseg-backup"));
}

TEST_CASE("the main plugin rewriting its file drops our entry; install puts it back with a fresh backup") {
  Node node;
  const fs::path file = node.conf_dir / "10-flannel.conflist";
  Write(file, Read(kFixtures / "flannel.conflist"));
  REQUIRE(Install(InstallIn(node)).ok);
  ojson rewritten = Parse(Read(kFixtures / "flannel.conflist"));
  rewritten["plugins"][0]["delegate"]["hairpinMode"] = false;
  const std::string new_original = rewritten.dump(2);
  Write(file, new_original);

  Outcome out = Install(InstallIn(node));
  REQUIRE(out.ok);
  CHECK(out.changed);
  CHECK(Read(file.string() + ".microseg-backup") == new_original);
  REQUIRE(Uninstall(UninstallIn(node)).ok);
  CHECK(Read(file) == new_original);
}

TEST_CASE("what install refuses, leaving the directory as it was") {
  Node node;
  SECTION("no configuration yet") {
    Outcome out = Install(InstallIn(node));
    CHECK_FALSE(out.ok);
    CHECK_THAT(out.error, Catch::Contains("no CNI network configuration"));
  }
  SECTION("not JSON") {
    Write(node.conf_dir / "10-broken.conflist", "{ not json");
    Outcome out = Install(InstallIn(node));
    CHECK_FALSE(out.ok);
    CHECK_THAT(out.error, Catch::Contains("not a JSON object"));
    CHECK(Read(node.conf_dir / "10-broken.conflist") == "{ not json");
  }
  SECTION("a conflist without plugins") {
    Write(node.conf_dir / "10-empty.conflist", R"({"cniVersion":"1.0.0","name":"x","plugins":[]})");
    CHECK_THAT(Install(InstallIn(node)).error, Catch::Contains("no \"plugins\""));
  }
  SECTION("cniVersion 0.3.1 without --upgrade_cni_version") {
    Write(node.conf_dir / "10-flannel.conflist", Read(kFixtures / "flannel.conflist"));
    InstallOptions options = InstallIn(node);
    options.upgrade_cni_version = false;
    Outcome out = Install(options);
    CHECK_FALSE(out.ok);
    CHECK_THAT(out.error, Catch::Contains("cniVersion \"0.3.1\""));
    CHECK(Read(node.conf_dir / "10-flannel.conflist") == Read(kFixtures / "flannel.conflist"));
  }
  SECTION("an unknown cniVersion even with --upgrade_cni_version") {
    Write(node.conf_dir / "10-old.conflist", R"({"cniVersion":"0.2.0","name":"x","plugins":[{"type":"bridge"}]})");
    CHECK_THAT(Install(InstallIn(node)).error, Catch::Contains("0.2.0"));
  }
  SECTION("a cniVersion that is not a string (fuzz_conflist found the throw)") {
    const std::string odd = R"({"cniVersion":1,"name":"x","plugins":[{"type":"bridge"}]})";
    Write(node.conf_dir / "10-odd.conflist", odd);
    CHECK_THAT(Install(InstallIn(node)).error, Catch::Contains("has cniVersion \"\""));
    CHECK(Read(node.conf_dir / "10-odd.conflist") == odd);
  }
  CHECK(node.ConfFiles().count("10-flannel.conflist.microseg-backup") == 0);
}

TEST_CASE("plugins whose type is not a string are other plugins, not errors") {
  const ojson conflist = Parse(R"({"cniVersion":"1.0.0","name":"x","plugins":[{"type":"bridge"},{"type":5},{"type":{}}]})");
  const ojson with = microseg::cni::WithEntry(conflist, ojson{{"type", "microseg-cni"}});
  CHECK(microseg::cni::HasEntry(with));
  CHECK(with.at("plugins").size() == 4);
  CHECK(microseg::cni::WithoutEntry(with) == conflist);
}

TEST_CASE("the binary is copied into the CNI bin dir once, executable") {
  Node node;
  Write(node.conf_dir / "10-bridge.conflist", Read(kFixtures / "containerd-bridge.conflist"));
  const fs::path source = node.root / "microseg-cni-build";
  Write(source, "#!/bin/sh\nexit 0\n");
  InstallOptions options = InstallIn(node);
  options.source_binary = source;
  REQUIRE(Install(options).ok);
  const fs::path installed = node.bin_dir / "microseg-cni";
  CHECK(Read(installed) == Read(source));
  struct stat st {};
  REQUIRE(::stat(installed.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0755);
  Outcome again = Install(options);
  REQUIRE(again.ok);
  CHECK_FALSE(again.changed);

  UninstallOptions remove = UninstallIn(node);
  remove.remove_binary = false;
  REQUIRE(Uninstall(remove).ok);
  CHECK(fs::exists(installed));
  REQUIRE(Uninstall(UninstallIn(node)).ok);
  CHECK_FALSE(fs::exists(installed));
}
