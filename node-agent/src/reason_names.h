// Names of the data path's verdict reasons, as exported in metrics and shown
// by microsegctl. Indexed by enum ms_reason.
#pragma once

#include <array>
#include <string_view>

#include "microseg/datapath.h"

namespace microseg {

inline constexpr std::array<std::string_view, MS_REASON_MAX> kReasonNames = {
    "policy_allowed",     "not_isolated",   "session",         "non_ip",   "policy_denied",
    "unknown_endpoint",   "malformed",      "unsupported_l3",  "fragment", "spoofed_source",
    "audit_would_drop",   "invalid_seq",    "invalid_rst",     "invalid_tcp_state", "syn_flood",
    "map_full",           "missed_tail_call", "policy_revoked", "related",
};
static_assert(kReasonNames.size() == MS_REASON_MAX, "one name per ms_reason");

inline std::string_view ReasonName(unsigned reason) {
  return reason < kReasonNames.size() ? kReasonNames[reason] : std::string_view("unknown");
}
inline bool ReasonIsDrop(unsigned reason) { return ms_reason_is_drop(reason) != 0; }
inline std::string_view DirectionName(unsigned direction) {
  return direction == MS_DIR_INGRESS ? "ingress" : "egress";
}

}  // namespace microseg
