// Attaches the agent's pinned TC programs to a host-side veth (clsact
// ingress = from the pod, clsact egress = to the pod) and takes them off.
#pragma once

#include <cstdint>
#include <string>

namespace microseg {

// Fixed filter identity, so a repeated ADD replaces rather than stacks and
// DEL removes exactly our filters and nobody else's.
inline constexpr uint32_t kFilterHandle = 0x4d53;  // "MS"
inline constexpr uint32_t kFilterPriority = 1;

struct AttachResult {
  bool ok = false;
  bool created_qdisc = false;  // we added clsact: remove it again on rollback
  std::string error;
};

AttachResult AttachPinnedPrograms(int ifindex, const std::string& bpf_pin_dir);
// Removes our filters; with `remove_qdisc`, the clsact qdisc too. Missing
// filters or a missing device are not errors.
std::string DetachPrograms(int ifindex, bool remove_qdisc);
// Empty when both hooks carry our filter running the currently pinned program.
std::string VerifyAttached(int ifindex, const std::string& bpf_pin_dir);

}  // namespace microseg
