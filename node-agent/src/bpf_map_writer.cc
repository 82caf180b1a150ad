#include "bpf_map_writer.h"

#include <bpf/bpf.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace microseg {

absl::Status BpfMapWriter::Update(int fd, const void* key, const void* value, const char* map, unsigned slot) {
  if (bpf_map_update_elem(fd, key, value, BPF_ANY) == 0) return absl::OkStatus();
  const int err = errno;
  ++insert_failures_[slot];
  if (err == E2BIG || err == ENOMEM) {
    return absl::ResourceExhaustedError(absl::StrCat(map, " is full (", std::strerror(err), ")"));
  }
  return absl::ErrnoToStatus(err, absl::StrCat("update ", map));
}

namespace {

// Deleting what is already gone is success: the diff only says "absent".
absl::Status Delete(int fd, const void* key, const char* map) {
  if (bpf_map_delete_elem(fd, key) == 0 || errno == ENOENT) return absl::OkStatus();
  return absl::ErrnoToStatus(errno, absl::StrCat("delete from ", map));
}

// A kernel without batch operations for this map type (hash maps < 5.6,
// LPM tries < 5.13) refuses the whole call before touching an element.
bool BatchUnsupported(int err, size_t done) {
  constexpr int kKernelNotSupported = 524;  // ENOTSUPP, not in the UAPI headers
  return done == 0 && (err == kKernelNotSupported || err == EOPNOTSUPP || err == EINVAL);
}

}  // namespace

// One syscall per batch instead of one per entry. The kernel updates the
// elements one by one in array order (generic_map_update_batch) and
// reports how many it did before a failure, so order and undo stay exact.
template <typename Key>
absl::Status BpfMapWriter::UpdateBatch(int fd, const PolicyEntryList<Key>& entries, size_t& done, const char* map,
                                       unsigned slot) {
  done = 0;
  if (entries.empty()) return absl::OkStatus();
  std::vector<Key> keys;
  std::vector<ms_policy_value> values;
  keys.reserve(entries.size());
  values.reserve(entries.size());
  for (const auto& [key, value] : entries) {
    keys.push_back(key);
    values.push_back(value);
  }
  __u32 count = static_cast<__u32>(entries.size());
  if (bpf_map_update_batch(fd, keys.data(), values.data(), &count, nullptr) == 0) {
    done = entries.size();
    return absl::OkStatus();
  }
  const int err = errno;
  done = std::min<size_t>(count, entries.size());
  if (BatchUnsupported(err, done)) return MapWriter::UpsertBatch(entries, done);
  ++insert_failures_[slot];
  if (err == E2BIG || err == ENOMEM) {
    return absl::ResourceExhaustedError(absl::StrCat(map, " is full (", std::strerror(err), ")"));
  }
  return absl::ErrnoToStatus(err, absl::StrCat("batch update ", map));
}

// Like UpdateBatch; an absent key stops the kernel's loop, and is skipped
// (deleting what is gone is success, as for a single delete).
template <typename Key>
absl::Status BpfMapWriter::DeleteBatchFrom(int fd, const std::vector<Key>& keys, size_t& done, const char* map) {
  done = 0;
  while (done < keys.size()) {
    __u32 count = static_cast<__u32>(keys.size() - done);
    if (bpf_map_delete_batch(fd, keys.data() + done, &count, nullptr) == 0) {
      done = keys.size();
      break;
    }
    const int err = errno;
    const size_t before = done;
    done += std::min<size_t>(count, keys.size() - done);
    if (err == ENOENT && done < keys.size()) {
      ++done;
      continue;
    }
    if (BatchUnsupported(err, done - before)) {
      for (; done < keys.size(); ++done) {
        if (absl::Status status = Delete(fd, &keys[done], map); !status.ok()) return status;
      }
      break;
    }
    return absl::ErrnoToStatus(err, absl::StrCat("batch delete from ", map));
  }
  return absl::OkStatus();
}

absl::Status BpfMapWriter::UpsertBatch(const PolicyEntryList<ms_policy_key>& entries, size_t& done) {
  return UpdateBatch(fds_.policy, entries, done, "ms_policy", MS_PMAP_POLICY);
}
absl::Status BpfMapWriter::UpsertBatch(const PolicyEntryList<ms_lpm_key>& entries, size_t& done) {
  return UpdateBatch(fds_.policy_lpm, entries, done, "ms_policy_lpm", MS_PMAP_POLICY_LPM);
}
absl::Status BpfMapWriter::UpsertBatch(const PolicyEntryList<ms_policy6_key>& entries, size_t& done) {
  return UpdateBatch(fds_.policy6, entries, done, "ms_policy6", MS_PMAP_POLICY6);
}
absl::Status BpfMapWriter::UpsertBatch(const PolicyEntryList<ms_lpm6_key>& entries, size_t& done) {
  return UpdateBatch(fds_.policy6_lpm, entries, done, "ms_policy6_lpm", MS_PMAP_POLICY6_LPM);
}
absl::Status BpfMapWriter::DeleteBatch(const std::vector<ms_policy_key>& keys, size_t& done) {
  return DeleteBatchFrom(fds_.policy, keys, done, "ms_policy");
}
absl::Status BpfMapWriter::DeleteBatch(const std::vector<ms_lpm_key>& keys, size_t& done) {
  return DeleteBatchFrom(fds_.policy_lpm, keys, done, "ms_policy_lpm");
}
absl::Status BpfMapWriter::DeleteBatch(const std::vector<ms_policy6_key>& keys, size_t& done) {
  return DeleteBatchFrom(fds_.policy6, keys, done, "ms_policy6");
}
absl::Status BpfMapWriter::DeleteBatch(const std::vector<ms_lpm6_key>& keys, size_t& done) {
  return DeleteBatchFrom(fds_.policy6_lpm, keys, done, "ms_policy6_lpm");
}

absl::Status BpfMapWriter::UpsertEndpoint(uint32_t ifindex, const ms_endpoint& value) {
  ms_endpoint_key key{};
  key.ifindex = ifindex;
  return Update(fds_.endpoints, &key, &value, "ms_endpoints", MS_PMAP_ENDPOINTS);
}

absl::Status BpfMapWriter::DeleteEndpoint(uint32_t ifindex) {
  ms_endpoint_key key{};
  key.ifindex = ifindex;
  return Delete(fds_.endpoints, &key, "ms_endpoints");
}

absl::Status BpfMapWriter::UpsertExact(const ms_policy_key& key, const ms_policy_value& value) {
  return Update(fds_.policy, &key, &value, "ms_policy", MS_PMAP_POLICY);
}

absl::Status BpfMapWriter::DeleteExact(const ms_policy_key& key) {
  return Delete(fds_.policy, &key, "ms_policy");
}

absl::Status BpfMapWriter::UpsertLpm(const ms_lpm_key& key, const ms_policy_value& value) {
  return Update(fds_.policy_lpm, &key, &value, "ms_policy_lpm", MS_PMAP_POLICY_LPM);
}

absl::Status BpfMapWriter::DeleteLpm(const ms_lpm_key& key) {
  return Delete(fds_.policy_lpm, &key, "ms_policy_lpm");
}

absl::Status BpfMapWriter::UpsertExact6(const ms_policy6_key& key, const ms_policy_value& value) {
  return Update(fds_.policy6, &key, &value, "ms_policy6", MS_PMAP_POLICY6);
}

absl::Status BpfMapWriter::DeleteExact6(const ms_policy6_key& key) {
  return Delete(fds_.policy6, &key, "ms_policy6");
}

absl::Status BpfMapWriter::UpsertLpm6(const ms_lpm6_key& key, const ms_policy_value& value) {
  return Update(fds_.policy6_lpm, &key, &value, "ms_policy6_lpm", MS_PMAP_POLICY6_LPM);
}

absl::Status BpfMapWriter::DeleteLpm6(const ms_lpm6_key& key) {
  return Delete(fds_.policy6_lpm, &key, "ms_policy6_lpm");
}

}  // namespace microseg
