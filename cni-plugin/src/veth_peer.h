// Finds the host-side end of a pod's veth when the main plugin's result does
// not name it (plugins that report only the container interface).
#pragma once

#include <string>

namespace microseg::cni {

// Enters `netns_path`, reads the IFLA_LINK (peer ifindex) of `ifname` over
// rtnetlink, returns to the original netns and resolves the index there.
// On failure returns "" and sets `error`.
std::string HostPeerOf(const std::string& netns_path, const std::string& ifname, std::string& error);

}  // namespace microseg::cni
