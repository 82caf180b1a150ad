#include "kube/token_source.h"

#include <sys/stat.h>

#include <fstream>
#include <sstream>

#include "absl/strings/strip.h"
#include "log.h"

namespace microseg::kube {

std::string TokenSource::Token() {
  std::lock_guard<std::mutex> lock(mu_);
  if (file_.empty()) return fixed_;
  struct stat st {};
  // Kubelet rotates through a symlink swap (..data): stat follows it.
  if (::stat(file_.c_str(), &st) != 0) {
    if (cached_.empty()) LogWarning("token file ", file_, " is unreadable; requests go without a token");
    return cached_;  // a file briefly missing during a swap: keep the last token
  }
  const Stamp now{st.st_ino, st.st_size, int64_t{st.st_mtim.tv_sec} * 1000000000 + st.st_mtim.tv_nsec};
  if (now == stamp_) return cached_;
  std::ifstream in(file_);
  std::ostringstream text;
  text << in.rdbuf();
  std::string token(absl::StripAsciiWhitespace(text.str()));
  stamp_ = now;
  if (token != cached_) {
    if (!cached_.empty()) LogInfo("token file ", file_, " changed: using the new token");
    cached_ = std::move(token);
    ++reloads_;
  }
  return cached_;
}

void TokenSource::Invalidate() {
  std::lock_guard<std::mutex> lock(mu_);
  stamp_ = Stamp{};
}

uint64_t TokenSource::reloads() const {
  std::lock_guard<std::mutex> lock(mu_);
  return reloads_;
}

}  // namespace microseg::kube
