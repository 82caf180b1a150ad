// Runs a libFuzzer target (LLVMFuzzerTestOneInput) without libFuzzer, so the
// fuzz targets build with the project's normal compiler and run in ctest:
// every seed file first, then a fixed number of seeded random mutations of
// them. Deterministic for a given -seed, so a CI failure replays locally.
// scripts/fuzz.sh builds the same targets against real libFuzzer with
// sanitizers for open-ended, coverage-guided runs.
//
//   fuzz_<target> [-runs=N] [-seed=S] [-max_len=N] [-timeout=S] [-rss_limit_mb=N]
//                 <seed file or dir>...
//
// A crash, an escaped exception, a failed invariant (FUZZ_CHECK aborts), an
// input that runs longer than -timeout seconds (default 10) or wants more
// than -rss_limit_mb of address space (default 4096; the allocation fails,
// as it would under a container's memory limit) writes the input to crash-<target>-<sha> in $MICROSEG_FUZZ_ARTIFACT_DIR
// (default: the working directory) before the process dies.
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <string_view>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

using Input = std::vector<uint8_t>;

// The input being run, for the crash handler (which may only use
// async-signal-safe calls, hence a preformatted path).
const Input* g_current = nullptr;
char g_artifact_path[4096];

void WriteAll(int fd, const void* data, size_t size) {
  const char* bytes = static_cast<const char*>(data);
  while (size > 0) {
    const ssize_t written = write(fd, bytes, size);
    if (written <= 0) return;
    bytes += written;
    size -= static_cast<size_t>(written);
  }
}

void OnFatalSignal(int signo) {
  if (g_current != nullptr) {
    const int fd = open(g_artifact_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
      WriteAll(fd, g_current->data(), g_current->size());
      close(fd);
      static const char kMessage[] = "fuzz: the failing input was written to ";
      WriteAll(STDERR_FILENO, kMessage, sizeof(kMessage) - 1);
      WriteAll(STDERR_FILENO, g_artifact_path, strlen(g_artifact_path));
      WriteAll(STDERR_FILENO, "\n", 1);
    }
  }
  signal(signo, SIG_DFL);
  raise(signo);
}

void OnTimeout(int) {
  static const char kMessage[] = "fuzz: an input ran longer than -timeout\n";
  WriteAll(STDERR_FILENO, kMessage, sizeof(kMessage) - 1);
  OnFatalSignal(SIGALRM);
}

void InstallCrashHandlers() {
  for (int signo : {SIGSEGV, SIGABRT, SIGBUS, SIGFPE, SIGILL}) signal(signo, OnFatalSignal);
  signal(SIGALRM, OnTimeout);
}

void LimitAddressSpace(uint64_t megabytes) {
  const rlim_t bytes = static_cast<rlim_t>(megabytes) << 20;
  const rlimit limit = {bytes, bytes};
  if (setrlimit(RLIMIT_AS, &limit) != 0) std::perror("setrlimit(RLIMIT_AS)");
}

// The artifact name is fixed before each run so the handler only writes.
void PrepareArtifactPath(const std::string& target, const Input& input) {
  uint64_t hash = 1469598103934665603ULL;  // FNV-1a: enough to tell inputs apart
  for (uint8_t byte : input) hash = (hash ^ byte) * 1099511628211ULL;
  const char* dir = std::getenv("MICROSEG_FUZZ_ARTIFACT_DIR");
  std::snprintf(g_artifact_path, sizeof(g_artifact_path), "%s/crash-%s-%016llx", dir != nullptr ? dir : ".",
                target.c_str(), static_cast<unsigned long long>(hash));
}

unsigned g_timeout_seconds = 10;

void RunOne(const std::string& target, const Input& input) {
  PrepareArtifactPath(target, input);
  g_current = &input;
  alarm(g_timeout_seconds);
  LLVMFuzzerTestOneInput(input.data(), input.size());
  alarm(0);
  g_current = nullptr;
}

bool ReadFile(const std::filesystem::path& path, Input& out) {
  std::ifstream file(path, std::ios::binary);
  if (!file) return false;
  out.assign(std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>());
  return true;
}

// Words of the seeds (runs of identifier characters, and single punctuation
// marks) make a dictionary, so mutations recombine real keywords such as
// "matchExpressions" or "endPort" instead of waiting for them by chance.
std::vector<std::string> DictionaryOf(const std::vector<Input>& seeds) {
  std::vector<std::string> words;
  for (const Input& seed : seeds) {
    std::string word;
    for (uint8_t byte : seed) {
      if (std::isalnum(byte) || byte == '_' || byte == '-' || byte == '.' || byte == '/') {
        word.push_back(static_cast<char>(byte));
        continue;
      }
      if (word.size() >= 2) words.push_back(word);
      word.clear();
    }
    if (word.size() >= 2) words.push_back(word);
  }
  for (const char* interesting :
       {"0", "-1", "65535", "65536", "4294967296", "32", "33", "0.0.0.0/0", "255.255.255.255", "::1", "null",
        "~", "[]", "{}", "\"\"", "\n---\n", "\t", "&a", "*a", "!!str", "1e400", "\\u0000"}) {
    words.emplace_back(interesting);
  }
  std::sort(words.begin(), words.end());
  words.erase(std::unique(words.begin(), words.end()), words.end());
  return words;
}

class Mutator {
 public:
  Mutator(uint64_t seed, size_t max_len, std::vector<std::string> dictionary)
      : rng_(seed), max_len_(max_len), dictionary_(std::move(dictionary)) {}

  Input Mutate(const std::vector<Input>& seeds) {
    Input input = seeds[Below(seeds.size())];
    const size_t steps = 1 + Below(8);
    for (size_t i = 0; i < steps; ++i) MutateOnce(input, seeds);
    if (input.size() > max_len_) input.resize(max_len_);
    return input;
  }

 private:
  size_t Below(size_t bound) { return bound == 0 ? 0 : std::uniform_int_distribution<size_t>(0, bound - 1)(rng_); }

  void MutateOnce(Input& input, const std::vector<Input>& seeds) {
    const size_t at = Below(input.size() + 1);
    switch (Below(7)) {
      case 0:  // flip one bit
        if (!input.empty()) input[Below(input.size())] ^= static_cast<uint8_t>(1u << Below(8));
        break;
      case 1:  // any byte
        if (!input.empty()) input[Below(input.size())] = static_cast<uint8_t>(Below(256));
        break;
      case 2:  // insert a byte
        input.insert(input.begin() + static_cast<std::ptrdiff_t>(at), static_cast<uint8_t>(Below(256)));
        break;
      case 3: {  // erase a range
        if (input.empty()) break;
        const size_t from = Below(input.size());
        const size_t count = 1 + Below(std::min<size_t>(16, input.size() - from));
        input.erase(input.begin() + static_cast<std::ptrdiff_t>(from),
                    input.begin() + static_cast<std::ptrdiff_t>(from + count));
        break;
      }
      case 4: {  // repeat a range
        if (input.empty()) break;
        const size_t from = Below(input.size());
        const size_t count = 1 + Below(std::min<size_t>(64, input.size() - from));
        const Input chunk(input.begin() + static_cast<std::ptrdiff_t>(from),
                          input.begin() + static_cast<std::ptrdiff_t>(from + count));
        input.insert(input.begin() + static_cast<std::ptrdiff_t>(at), chunk.begin(), chunk.end());
        break;
      }
      case 5: {  // a dictionary word, inserted or over a word-sized stretch
        if (dictionary_.empty()) break;
        const std::string& word = dictionary_[Below(dictionary_.size())];
        if (Below(2) == 0 && at < input.size()) {
          input.erase(input.begin() + static_cast<std::ptrdiff_t>(at),
                      input.begin() + static_cast<std::ptrdiff_t>(std::min(input.size(), at + word.size())));
        }
        input.insert(input.begin() + static_cast<std::ptrdiff_t>(at), word.begin(), word.end());
        break;
      }
      default: {  // splice: this input's head, another seed's tail
        const Input& other = seeds[Below(seeds.size())];
        const size_t cut = Below(other.size() + 1);
        input.resize(at);
        input.insert(input.end(), other.begin() + static_cast<std::ptrdiff_t>(cut), other.end());
        break;
      }
    }
  }

  std::mt19937_64 rng_;
  size_t max_len_;
  std::vector<std::string> dictionary_;
};

bool ParseFlag(std::string_view arg, std::string_view name, uint64_t& value) {
  if (arg.substr(0, name.size()) != name) return false;
  value = std::strtoull(std::string(arg.substr(name.size())).c_str(), nullptr, 10);
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string target = std::filesystem::path(argv[0]).filename().string();
  uint64_t runs = 10000;
  uint64_t seed = 1;
  uint64_t max_len = 64 * 1024;
  uint64_t timeout = 10;
  uint64_t rss_limit_mb = 4096;
  std::vector<std::filesystem::path> seed_paths;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (ParseFlag(arg, "-runs=", runs) || ParseFlag(arg, "-seed=", seed) || ParseFlag(arg, "-max_len=", max_len) ||
        ParseFlag(arg, "-timeout=", timeout) || ParseFlag(arg, "-rss_limit_mb=", rss_limit_mb)) {
      continue;
    }
    if (!arg.empty() && arg[0] == '-') {
      std::fprintf(stderr, "%s: unknown flag %s (known: -runs=N -seed=S -max_len=N -timeout=S -rss_limit_mb=N)\n", target.c_str(), argv[i]);
      return 2;
    }
    seed_paths.emplace_back(arg);
  }

  std::vector<Input> seeds;
  for (const std::filesystem::path& path : seed_paths) {
    std::error_code error;
    if (std::filesystem::is_directory(path, error)) {
      std::vector<std::filesystem::path> files;
      for (const auto& entry : std::filesystem::recursive_directory_iterator(path)) {
        if (entry.is_regular_file()) files.push_back(entry.path());
      }
      std::sort(files.begin(), files.end());  // directory order is not stable; runs must be
      for (const auto& file : files) {
        Input input;
        if (ReadFile(file, input)) seeds.push_back(std::move(input));
      }
    } else {
      Input input;
      if (!ReadFile(path, input)) {
        std::fprintf(stderr, "%s: cannot read seed %s\n", target.c_str(), path.c_str());
        return 2;
      }
      seeds.push_back(std::move(input));
    }
  }
  if (seeds.empty()) {
    std::fprintf(stderr, "%s: no seed inputs given: a fuzz run without seeds tests nothing useful\n",
                 target.c_str());
    return 2;
  }

  g_timeout_seconds = static_cast<unsigned>(timeout);
  LimitAddressSpace(rss_limit_mb);
  InstallCrashHandlers();
  for (const Input& input : seeds) RunOne(target, input);
  Mutator mutator(seed, max_len, DictionaryOf(seeds));
  for (uint64_t i = 0; i < runs; ++i) RunOne(target, mutator.Mutate(seeds));
  std::printf("%s: %zu seeds and %llu mutated inputs (seed %llu): no crash, every invariant held\n", target.c_str(),
              seeds.size(), static_cast<unsigned long long>(runs), static_cast<unsigned long long>(seed));
  return 0;
}
