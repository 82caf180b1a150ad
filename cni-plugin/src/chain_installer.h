// `microseg-cni install | uninstall`: chains microseg after the node's main
// CNI plugin by editing the network configuration the container runtime uses,
// and undoes it.
//
// Which file: the runtime (containerd, CRI-O through libcni) loads the
// lexicographically first *.conf, *.conflist or *.json of the CNI conf dir, so
// that is the file we edit. A single-plugin .conf/.json is converted into a
// conflist next to it (<stem>.conflist) and the original moved aside, since a
// .conf cannot chain plugins.
//
// Guarantees: idempotent (a second install with the same entry writes nothing),
// every write is a temp file + fsync + rename in the same directory (the
// runtime never reads a half-written file), key order of the main plugin's
// config is kept, the original bytes are kept in <file>.microseg-backup (an
// extension the runtime ignores) and uninstall restores them exactly when
// nothing else changed the file meanwhile; otherwise it removes only our entry.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"

namespace microseg::cni {

inline constexpr const char* kPluginType = "microseg-cni";
inline constexpr const char* kBackupSuffix = ".microseg-backup";

struct InstallOptions {
  std::filesystem::path conf_dir = "/etc/cni/net.d";
  std::filesystem::path bin_dir = "/opt/cni/bin";
  // The binary copied to bin_dir/microseg-cni; empty: do not copy.
  std::filesystem::path source_binary;
  // Our entry in "plugins" (without cniVersion/name, which the conflist gives).
  nlohmann::ordered_json entry;
  // Raise a 0.3.x chain to cniVersion 0.4.0 (microseg-cni speaks 0.4.0 and
  // 1.0.0; 0.4.0's result format is 0.3.1's). Without it such a file is refused.
  bool upgrade_cni_version = false;
};

struct UninstallOptions {
  std::filesystem::path conf_dir = "/etc/cni/net.d";
  std::filesystem::path bin_dir = "/opt/cni/bin";
  bool remove_binary = true;
};

struct Outcome {
  bool ok = false;
  bool changed = false;
  std::vector<std::string> actions;  // what was done, one line each, for the log
  std::string error;
};

// The file the runtime would load: first of *.conf/*.conflist/*.json in
// byte order; empty when there is none.
std::filesystem::path RuntimeConfigFile(const std::filesystem::path& conf_dir);

// Pure part: the conflist with our entry last in "plugins" (an existing entry
// of ours is moved there and replaced, never duplicated).
nlohmann::ordered_json WithEntry(const nlohmann::ordered_json& conf, const nlohmann::ordered_json& entry);
// The conflist without any entry of type microseg-cni.
nlohmann::ordered_json WithoutEntry(const nlohmann::ordered_json& conflist);
bool HasEntry(const nlohmann::ordered_json& conflist);

Outcome Install(const InstallOptions& options);
Outcome Uninstall(const UninstallOptions& options);

// `microseg-cni install|uninstall [--flag=value ...]` (argv[1] is the verb).
int RunInstallerCommand(int argc, char** argv);

}  // namespace microseg::cni
