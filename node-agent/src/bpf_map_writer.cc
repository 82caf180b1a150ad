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
