#include "bpf_map_writer.h"

#include <bpf/bpf.h>

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

}  // namespace

absl::Status BpfMapWriter::UpsertEndpoint(uint32_t ifindex, const ms_endpoint& value) {
  ms_endpoint_key key{};
  key.ifindex = ifindex;
  return Update(endpoints_fd_, &key, &value, "ms_endpoints", MS_PMAP_ENDPOINTS);
}

absl::Status BpfMapWriter::DeleteEndpoint(uint32_t ifindex) {
  ms_endpoint_key key{};
  key.ifindex = ifindex;
  return Delete(endpoints_fd_, &key, "ms_endpoints");
}

absl::Status BpfMapWriter::UpsertExact(const ms_policy_key& key, const ms_policy_value& value) {
  return Update(policy_fd_, &key, &value, "ms_policy", MS_PMAP_POLICY);
}

absl::Status BpfMapWriter::DeleteExact(const ms_policy_key& key) {
  return Delete(policy_fd_, &key, "ms_policy");
}

absl::Status BpfMapWriter::UpsertLpm(const ms_lpm_key& key, const ms_policy_value& value) {
  return Update(policy_lpm_fd_, &key, &value, "ms_policy_lpm", MS_PMAP_POLICY_LPM);
}

absl::Status BpfMapWriter::DeleteLpm(const ms_lpm_key& key) {
  return Delete(policy_lpm_fd_, &key, "ms_policy_lpm");
}

}  // namespace microseg
