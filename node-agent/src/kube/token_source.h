// The bearer token for each request. A token file (projected
// service-account tokens are rotated by the kubelet) is re-read whenever its
// inode, size or modification time changes, and on demand after a 401.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <mutex>
#include <string>

namespace microseg::kube {

class TokenSource {
 public:
  // `file` wins over `fixed` when both are set.
  TokenSource(std::string fixed, std::string file) : fixed_(std::move(fixed)), file_(std::move(file)) {}

  // The current token ("" when there is none, e.g. client-certificate auth).
  std::string Token();
  // Forget what was read: the next Token() reads the file again even if it
  // looks unchanged (after a 401, the file may have been rewritten in place
  // within the same second).
  void Invalidate();
  // How many times the file's content changed since start (a metric, tests).
  uint64_t reloads() const;

 private:
  struct Stamp {
    ino_t inode = 0;
    off_t size = -1;
    int64_t mtime_ns = -1;
    friend bool operator==(const Stamp&, const Stamp&) = default;
  };

  mutable std::mutex mu_;
  const std::string fixed_;
  const std::string file_;
  Stamp stamp_;
  std::string cached_;
  uint64_t reloads_ = 0;
};

}  // namespace microseg::kube
