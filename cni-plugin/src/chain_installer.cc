#include "chain_installer.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <map>
#include <optional>

#include "cni_config.h"

namespace microseg::cni {
namespace {

namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;

constexpr const char* kLockName = ".microseg-cni.lock";
constexpr const char* kBinaryName = "microseg-cni";
// cniVersion a 0.3.x chain is raised to with --upgrade_cni_version: its result
// format is 0.3.1's (what the main plugins return), plus CHECK.
constexpr const char* kUpgradedVersion = "0.4.0";

bool IsConfigExtension(const fs::path& path) {
  const std::string ext = path.extension().string();
  return ext == ".conf" || ext == ".conflist" || ext == ".json";
}

std::optional<std::string> ReadFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

std::string Errno(const std::string& what, const fs::path& path) {
  return what + " " + path.string() + ": " + std::strerror(errno);
}

// temp file + fsync + rename + fsync(dir): readers see the old or the new file.
std::string WriteAtomically(const fs::path& path, const std::string& bytes, mode_t mode) {
  const fs::path tmp = path.parent_path() / ("." + path.filename().string() + ".microseg-tmp");
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) return Errno("cannot create", tmp);
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      std::string error = Errno("cannot write", tmp);
      ::close(fd);
      ::unlink(tmp.c_str());
      return error;
    }
    done += static_cast<size_t>(n);
  }
  ::fchmod(fd, mode);  // the umask must not narrow the original's mode
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    std::string error = Errno("cannot sync", tmp);
    ::unlink(tmp.c_str());
    return error;
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    std::string error = Errno("cannot rename into", path);
    ::unlink(tmp.c_str());
    return error;
  }
  const int dir = ::open(path.parent_path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir >= 0) {
    ::fsync(dir);
    ::close(dir);
  }
  return "";
}

mode_t ModeOf(const fs::path& path, mode_t fallback) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? (st.st_mode & 07777) : fallback;
}

std::string Serialize(const ojson& conf) { return conf.dump(2) + "\n"; }

// Serializes installers (and a preStop uninstall) on one node.
class DirLock {
 public:
  explicit DirLock(const fs::path& dir) {
    fd_ = ::open((dir / kLockName).c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd_ >= 0 && ::flock(fd_, LOCK_EX) != 0) {
      ::close(fd_);
      fd_ = -1;
    }
  }
  ~DirLock() {
    if (fd_ >= 0) ::close(fd_);
  }
  DirLock(const DirLock&) = delete;
  DirLock& operator=(const DirLock&) = delete;
  bool ok() const { return fd_ >= 0; }

 private:
  int fd_ = -1;
};

std::optional<ojson> ParseJson(const std::string& text) {
  ojson value = ojson::parse(text, nullptr, /*allow_exceptions=*/false);
  if (value.is_discarded() || !value.is_object()) return std::nullopt;
  return value;
}

Outcome Failed(Outcome out, std::string error) {
  out.ok = false;
  out.error = std::move(error);
  return out;
}

std::string CopyBinary(const fs::path& source, const fs::path& bin_dir, Outcome& out) {
  const auto bytes = ReadFile(source);
  if (!bytes) return Errno("cannot read", source);
  const fs::path dest = bin_dir / kBinaryName;
  if (ReadFile(dest) == bytes) {
    out.actions.push_back(dest.string() + " is already this binary");
    return "";
  }
  std::error_code ec;
  fs::create_directories(bin_dir, ec);
  // rename, not overwrite: a plugin run in progress keeps its old inode (no ETXTBSY).
  if (std::string error = WriteAtomically(dest, *bytes, 0755); !error.empty()) return error;
  out.changed = true;
  out.actions.push_back("copied " + source.string() + " to " + dest.string());
  return "";
}

bool IsSupportedVersion(const std::string& version) {
  return std::any_of(std::begin(kSupportedVersions), std::end(kSupportedVersions),
                     [&](const char* v) { return version == v; });
}

}  // namespace

fs::path RuntimeConfigFile(const fs::path& conf_dir) {
  std::vector<fs::path> files;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(conf_dir, ec)) {
    if (!IsConfigExtension(entry.path())) continue;
    if (!entry.is_regular_file(ec)) continue;  // follows symlinks, as the runtime does
    files.push_back(entry.path());
  }
  if (files.empty()) return {};
  return *std::min_element(files.begin(), files.end(), [](const fs::path& a, const fs::path& b) {
    return a.filename().string() < b.filename().string();
  });
}

namespace {

// The conf dir holds what other plugins and operators wrote: a field of an
// unexpected type reads as absent instead of throwing.
std::string StringOrEmpty(const ojson& object, const char* key) {
  if (!object.is_object()) return "";
  const auto it = object.find(key);
  return it != object.end() && it->is_string() ? it->get<std::string>() : "";
}

bool IsOurEntry(const ojson& plugin) { return StringOrEmpty(plugin, "type") == kPluginType; }

}  // namespace

bool HasEntry(const ojson& conflist) {
  if (!conflist.contains("plugins") || !conflist.at("plugins").is_array()) return false;
  for (const auto& plugin : conflist.at("plugins")) {
    if (IsOurEntry(plugin)) return true;
  }
  return false;
}

ojson WithoutEntry(const ojson& conflist) {
  ojson out = conflist;
  if (!out.contains("plugins") || !out.at("plugins").is_array()) return out;
  ojson kept = ojson::array();
  for (const auto& plugin : out.at("plugins")) {
    if (!IsOurEntry(plugin)) kept.push_back(plugin);
  }
  out["plugins"] = std::move(kept);
  return out;
}

ojson WithEntry(const ojson& conflist, const ojson& entry) {
  ojson out = WithoutEntry(conflist);
  out["plugins"].push_back(entry);  // last: it needs the main plugin's result (the veth)
  return out;
}

Outcome Install(const InstallOptions& options) {
  Outcome out;
  DirLock lock(options.conf_dir);
  if (!lock.ok()) return Failed(out, Errno("cannot lock", options.conf_dir / kLockName));
  const fs::path file = RuntimeConfigFile(options.conf_dir);
  if (file.empty()) {
    return Failed(out, "no CNI network configuration (*.conf, *.conflist, *.json) in " + options.conf_dir.string() +
                           " yet: the main CNI plugin writes one when it starts; retry after it has");
  }
  const auto text = ReadFile(file);
  if (!text) return Failed(out, Errno("cannot read", file));
  const auto conf = ParseJson(*text);
  if (!conf) return Failed(out, file.string() + " is not a JSON object; not touching it");

  const bool is_conflist = file.extension() == ".conflist";
  ojson conflist;
  if (is_conflist) {
    if (!conf->contains("plugins") || !conf->at("plugins").is_array() || conf->at("plugins").empty()) {
      return Failed(out, file.string() + " has no \"plugins\" list; not touching it");
    }
    conflist = *conf;
  } else {
    if (!conf->contains("type")) return Failed(out, file.string() + " has no plugin \"type\"; not touching it");
    conflist = ojson::object();
    conflist["cniVersion"] = StringOrEmpty(*conf, "cniVersion");
    conflist["name"] = StringOrEmpty(*conf, "name");
    conflist["plugins"] = ojson::array({*conf});
  }
  const std::string version = StringOrEmpty(conflist, "cniVersion");
  if (!IsSupportedVersion(version)) {
    if (options.upgrade_cni_version && (version == "0.3.0" || version == "0.3.1")) {
      conflist["cniVersion"] = kUpgradedVersion;
      out.actions.push_back("raised cniVersion " + version + " to " + kUpgradedVersion +
                            " (same result format; microseg-cni needs 0.4.0 or 1.0.0)");
    } else {
      return Failed(out, file.string() + " has cniVersion \"" + version +
                             "\"; microseg-cni supports 0.4.0 and 1.0.0 (--upgrade_cni_version raises 0.3.x to "
                             "0.4.0)");
    }
  }
  const ojson desired = WithEntry(conflist, options.entry);

  if (is_conflist) {
    if (desired == *conf) {
      out.actions.push_back(file.string() + " already chains microseg-cni: unchanged");
    } else {
      const mode_t mode = ModeOf(file, 0644);
      if (!HasEntry(*conf)) {  // the main plugin's own version: what uninstall restores
        const fs::path backup = file.string() + kBackupSuffix;
        if (std::string e = WriteAtomically(backup, *text, mode); !e.empty()) return Failed(out, e);
        out.actions.push_back("kept the original as " + backup.string());
      }
      if (std::string e = WriteAtomically(file, Serialize(desired), mode); !e.empty()) return Failed(out, e);
      out.changed = true;
      out.actions.push_back((HasEntry(*conf) ? "updated microseg-cni in " : "appended microseg-cni to ") +
                            file.string());
    }
  } else {
    fs::path target = file;
    target.replace_extension(".conflist");
    std::error_code ec;
    if (fs::exists(target, ec)) {
      return Failed(out, "cannot convert " + file.string() + " into " + target.string() + ": that file exists");
    }
    const mode_t mode = ModeOf(file, 0644);
    if (std::string e = WriteAtomically(target, Serialize(desired), mode); !e.empty()) return Failed(out, e);
    const fs::path backup = file.string() + kBackupSuffix;
    if (::rename(file.c_str(), backup.c_str()) != 0) {
      std::string error = Errno("cannot move aside", file);
      fs::remove(target, ec);
      return Failed(out, error);
    }
    out.changed = true;
    out.actions.push_back("converted " + file.string() + " into " + target.string() +
                          " with microseg-cni last; the original is " + backup.string());
  }

  // Another file sorting first would make the runtime skip ours.
  const fs::path now = RuntimeConfigFile(options.conf_dir);
  const auto now_text = ReadFile(now);
  const auto now_conf = now_text ? ParseJson(*now_text) : std::nullopt;
  if (!now_conf || !HasEntry(*now_conf)) {
    return Failed(out, "after the edit the runtime's file is " + now.string() + ", which does not chain microseg-cni");
  }
  if (!options.source_binary.empty()) {
    if (std::string e = CopyBinary(options.source_binary, options.bin_dir, out); !e.empty()) return Failed(out, e);
  }
  out.ok = true;
  return out;
}

Outcome Uninstall(const UninstallOptions& options) {
  Outcome out;
  DirLock lock(options.conf_dir);
  if (!lock.ok()) return Failed(out, Errno("cannot lock", options.conf_dir / kLockName));
  std::error_code ec;
  std::vector<fs::path> conflists;
  for (const auto& entry : fs::directory_iterator(options.conf_dir, ec)) {
    if (entry.path().extension() == ".conflist" && entry.is_regular_file(ec)) conflists.push_back(entry.path());
  }
  std::sort(conflists.begin(), conflists.end());
  for (const fs::path& file : conflists) {
    const auto text = ReadFile(file);
    const auto conf = text ? ParseJson(*text) : std::nullopt;
    if (!conf || !HasEntry(*conf)) continue;
    const ojson without = WithoutEntry(*conf);
    const mode_t mode = ModeOf(file, 0644);

    // A conflist we made from a single .conf/.json: give the original back.
    bool handled = false;
    for (const char* ext : {".conf", ".json"}) {
      fs::path original = file;
      original.replace_extension(ext);
      const fs::path backup = original.string() + kBackupSuffix;
      const auto backup_text = ReadFile(backup);
      if (!backup_text) continue;
      const auto backup_conf = ParseJson(*backup_text);
      const auto plugins = without.value("plugins", ojson::array());
      const bool untouched = backup_conf && plugins.size() == 1 && plugins.at(0) == *backup_conf;
      if (untouched && ::rename(backup.c_str(), original.c_str()) == 0) {
        fs::remove(file, ec);
        out.actions.push_back("restored " + original.string() + " and removed " + file.string());
      } else {
        // Someone else chained more plugins meanwhile: keep theirs, drop ours.
        if (std::string e = WriteAtomically(file, Serialize(without), mode); !e.empty()) return Failed(out, e);
        fs::remove(backup, ec);
        out.actions.push_back("removed microseg-cni from " + file.string() + " (changed since install; " +
                              original.string() + " not restored)");
      }
      handled = true;
      break;
    }
    if (!handled) {
      const fs::path backup = file.string() + kBackupSuffix;
      const auto backup_text = ReadFile(backup);
      const auto backup_conf = backup_text ? ParseJson(*backup_text) : std::nullopt;
      // Equal except a cniVersion --upgrade_cni_version raised: still ours to undo.
      ojson comparable = without;
      if (backup_conf && backup_conf->contains("cniVersion")) comparable["cniVersion"] = backup_conf->at("cniVersion");
      if (backup_conf && *backup_conf == comparable) {
        if (std::string e = WriteAtomically(file, *backup_text, mode); !e.empty()) return Failed(out, e);
        fs::remove(backup, ec);
        out.actions.push_back("restored the original " + file.string());
      } else {
        if (std::string e = WriteAtomically(file, Serialize(without), mode); !e.empty()) return Failed(out, e);
        if (backup_text) fs::remove(backup, ec);
        out.actions.push_back("removed microseg-cni from " + file.string() +
                              (backup_text ? " (changed since install; backup dropped)" : ""));
      }
    }
    out.changed = true;
  }
  // Backups whose file the main plugin rewrote or removed since: nothing to restore.
  std::vector<fs::path> backups;
  for (const auto& entry : fs::directory_iterator(options.conf_dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.size() > std::strlen(kBackupSuffix) && name.ends_with(kBackupSuffix)) backups.push_back(entry.path());
  }
  for (const fs::path& backup_path : backups) {
    fs::path base = backup_path;
    base.replace_extension();
    fs::path ours = base;
    ours.replace_extension(".conflist");
    if (base.extension() != ".conflist" && !fs::exists(base, ec) && !fs::exists(ours, ec)) {
      // A .conf we moved aside whose conflist is gone: the original comes back.
      if (::rename(backup_path.c_str(), base.c_str()) == 0) {
        out.actions.push_back("restored " + base.string());
        out.changed = true;
      }
      continue;
    }
    fs::remove(backup_path, ec);
    out.actions.push_back("dropped the stale backup " + backup_path.string());
    out.changed = true;
  }
  if (options.remove_binary) {
    const fs::path binary = options.bin_dir / kBinaryName;
    if (fs::remove(binary, ec)) {
      out.changed = true;
      out.actions.push_back("removed " + binary.string());
    }
  }
  fs::remove(options.conf_dir / kLockName, ec);
  if (!out.changed) out.actions.push_back("nothing of microseg-cni in " + options.conf_dir.string());
  out.ok = true;
  return out;
}

namespace {

constexpr const char* kUsage =
    "usage: microseg-cni install   [--cni_conf_dir=/etc/cni/net.d] [--cni_bin_dir=/opt/cni/bin]\n"
    "                              [--source_binary=PATH|--source_binary=] [--wait_seconds=0]\n"
    "                              [--upgrade_cni_version] [--agent_socket=...] [--bpf_pin_dir=...]\n"
    "                              [--fail_mode=closed|isolate] [--timeout_seconds=10] [--state_dir=...]\n"
    "       microseg-cni uninstall [--cni_conf_dir=/etc/cni/net.d] [--cni_bin_dir=/opt/cni/bin] [--keep_binary]\n"
    "install chains microseg-cni last in the conflist the container runtime uses (the first *.conf, *.conflist\n"
    "or *.json of the conf dir; a single .conf becomes a .conflist), idempotently, keeping the original as\n"
    "<file>.microseg-backup, and copies this binary (or --source_binary) into the bin dir.\n"
    "uninstall removes the entry (restoring the original exactly when nothing else changed it) and the binary.\n";

int Usage(const std::string& problem) {
  if (!problem.empty()) std::cerr << "microseg-cni: " << problem << "\n";
  std::cerr << kUsage;
  return 2;
}

}  // namespace

int RunInstallerCommand(int argc, char** argv) {
  const std::string verb = argc > 1 ? argv[1] : "";
  std::map<std::string, std::string> flags;
  for (int i = 2; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::cout << kUsage;
      return 0;
    }
    if (arg.rfind("--", 0) != 0) return Usage("unexpected argument " + arg);
    arg = arg.substr(2);
    const size_t eq = arg.find('=');
    if (eq == std::string::npos) flags[arg] = "true";
    else flags[arg.substr(0, eq)] = arg.substr(eq + 1);
  }
  auto take = [&](const std::string& name, const std::string& fallback) {
    auto it = flags.find(name);
    if (it == flags.end()) return fallback;
    std::string value = it->second;
    flags.erase(it);
    return value;
  };
  auto take_bool = [&](const std::string& name) {
    const std::string v = take(name, "false");
    return v == "true" || v == "1";
  };

  Outcome outcome;
  if (verb == "help" || verb == "--help" || verb == "-h") {
    std::cout << kUsage;
    return 0;
  }
  if (verb == "install") {
    InstallOptions options;
    options.conf_dir = take("cni_conf_dir", options.conf_dir);
    options.bin_dir = take("cni_bin_dir", options.bin_dir);
    options.source_binary = take("source_binary", "/proc/self/exe");
    options.upgrade_cni_version = take_bool("upgrade_cni_version");
    int wait_seconds = 0;
    int timeout_seconds = 0;
    try {
      wait_seconds = std::stoi(take("wait_seconds", "0"));
      timeout_seconds = std::stoi(take("timeout_seconds", "10"));
    } catch (const std::exception&) {
      return Usage("--wait_seconds and --timeout_seconds take integers");
    }
    const PluginConfig defaults;
    options.entry = ojson::object();
    options.entry["type"] = kPluginType;
    options.entry["agentSocket"] = take("agent_socket", defaults.agent_socket);
    options.entry["bpfPinDir"] = take("bpf_pin_dir", defaults.bpf_pin_dir);
    options.entry["failMode"] = take("fail_mode", "closed");
    options.entry["timeoutSeconds"] = timeout_seconds;
    options.entry["stateDir"] = take("state_dir", defaults.state_dir);
    if (!flags.empty()) return Usage("unknown flag --" + flags.begin()->first);
    // The entry must be one the plugin accepts: same validation as at ADD.
    ojson probe = options.entry;
    probe["cniVersion"] = "1.0.0";
    probe["name"] = "probe";
    if (auto parsed = ParseConfig(probe.dump()); !parsed.ok()) {
      return Usage("invalid plugin settings: " + parsed.error.msg + " " + parsed.error.details);
    }
    for (int waited = 0;; ++waited) {
      outcome = Install(options);
      if (outcome.ok || waited >= wait_seconds || !RuntimeConfigFile(options.conf_dir).empty()) break;
      ::sleep(1);  // the main plugin has not written its config yet
    }
  } else if (verb == "uninstall") {
    UninstallOptions options;
    options.conf_dir = take("cni_conf_dir", options.conf_dir);
    options.bin_dir = take("cni_bin_dir", options.bin_dir);
    options.remove_binary = !take_bool("keep_binary");
    if (!flags.empty()) return Usage("unknown flag --" + flags.begin()->first);
    outcome = Uninstall(options);
  } else {
    return Usage("unknown command " + verb);
  }
  for (const auto& action : outcome.actions) std::cout << "microseg-cni " << verb << ": " << action << "\n";
  if (!outcome.ok) {
    std::cerr << "microseg-cni " << verb << ": " << outcome.error << "\n";
    return 1;
  }
  return 0;
}

}  // namespace microseg::cni
