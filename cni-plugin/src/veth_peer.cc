#include "veth_peer.h"

#include <fcntl.h>
#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace microseg::cni {
namespace {

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) close(fd_);
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

// IFLA_LINK of `ifname` in the current network namespace, 0 if none.
int PeerIndexHere(const std::string& ifname, std::string& error) {
  const int index = static_cast<int>(if_nametoindex(ifname.c_str()));
  if (index == 0) {
    error = "no interface " + ifname + " in the pod's network namespace";
    return -1;
  }
  Fd sock(socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE));
  if (sock.get() < 0) {
    error = std::string("netlink socket: ") + std::strerror(errno);
    return -1;
  }
  struct {
    nlmsghdr header;
    ifinfomsg info;
  } request{};
  request.header.nlmsg_len = sizeof request;
  request.header.nlmsg_type = RTM_GETLINK;
  request.header.nlmsg_flags = NLM_F_REQUEST;
  request.info.ifi_family = AF_UNSPEC;
  request.info.ifi_index = index;
  if (send(sock.get(), &request, sizeof request, 0) < 0) {
    error = std::string("netlink send: ") + std::strerror(errno);
    return -1;
  }
  alignas(nlmsghdr) char buffer[16384];
  const ssize_t received = recv(sock.get(), buffer, sizeof buffer, 0);
  if (received < 0) {
    error = std::string("netlink recv: ") + std::strerror(errno);
    return -1;
  }
  int remaining = static_cast<int>(received);
  for (auto* msg = reinterpret_cast<nlmsghdr*>(buffer); NLMSG_OK(msg, remaining); msg = NLMSG_NEXT(msg, remaining)) {
    if (msg->nlmsg_type == NLMSG_ERROR) {
      error = "netlink: RTM_GETLINK failed";
      return -1;
    }
    if (msg->nlmsg_type != RTM_NEWLINK) continue;
    auto* info = static_cast<ifinfomsg*>(NLMSG_DATA(msg));
    int length = static_cast<int>(IFLA_PAYLOAD(msg));
    for (auto* attr = IFLA_RTA(info); RTA_OK(attr, length); attr = RTA_NEXT(attr, length)) {
      if (attr->rta_type == IFLA_LINK && RTA_PAYLOAD(attr) >= sizeof(int)) {
        return *static_cast<int*>(RTA_DATA(attr));
      }
    }
  }
  error = ifname + " has no peer link (not a veth?)";
  return -1;
}

}  // namespace

std::string HostPeerOf(const std::string& netns_path, const std::string& ifname, std::string& error) {
  Fd original(open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC));
  Fd target(open(netns_path.c_str(), O_RDONLY | O_CLOEXEC));
  if (original.get() < 0 || target.get() < 0) {
    error = "cannot open network namespace " + netns_path + ": " + std::strerror(errno);
    return "";
  }
  if (setns(target.get(), CLONE_NEWNET) != 0) {
    error = std::string("setns into the pod: ") + std::strerror(errno);
    return "";
  }
  const int peer = PeerIndexHere(ifname, error);
  if (setns(original.get(), CLONE_NEWNET) != 0) {
    // Continuing in the pod's namespace would attach to the wrong device.
    error = std::string("cannot return to the host network namespace: ") + std::strerror(errno);
    return "";
  }
  if (peer <= 0) return "";
  char name[IF_NAMESIZE] = {};
  if (if_indextoname(static_cast<unsigned>(peer), name) == nullptr) {
    error = "the peer of " + ifname + " (ifindex " + std::to_string(peer) + ") is not in this namespace";
    return "";
  }
  return name;
}

}  // namespace microseg::cni
