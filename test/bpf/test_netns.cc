#include "test_netns.h"

#include <fcntl.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <sched.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <stdexcept>

extern char** environ;

namespace microseg::test {
namespace {

[[noreturn]] void throw_errno(const std::string& what, int error) {
  throw std::runtime_error(what + ": " + std::strerror(error));
}

std::string unique_suffix() {
  std::random_device entropy;
  return std::to_string(getpid() % 100000) + "-" + std::to_string(entropy() % 100000);
}

void run_or_throw(const std::vector<std::string>& argv) {
  if (!run_command(argv)) {
    std::string joined;
    for (const std::string& arg : argv) joined += arg + " ";
    throw std::runtime_error("command failed: " + joined);
  }
}

}  // namespace

bool run_command(const std::vector<std::string>& argv) {
  std::vector<char*> args;
  for (const std::string& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
  args.push_back(nullptr);
  pid_t child = 0;
  if (posix_spawnp(&child, args[0], nullptr, nullptr, args.data(), environ) != 0) return false;
  int status = 0;
  while (waitpid(child, &status, 0) < 0) {
    if (errno != EINTR) return false;
  }
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

std::unique_ptr<TestNetns> TestNetns::create() {
  const std::string suffix = unique_suffix();
  // veth names must fit IFNAMSIZ (15 chars); they only exist inside our netns.
  std::unique_ptr<TestNetns> netns(
      new TestNetns("msbpft-" + suffix, "msh" + suffix, "msp" + suffix));
  run_or_throw({"ip", "netns", "add", netns->name_});
  // From here on a failing step unwinds `netns`, whose destructor deletes
  // the namespace with whatever was made in it.
  // IPv6 off before the veths exist: no router solicitations, no MLD.
  run_or_throw({"ip", "netns", "exec", netns->name_, "sysctl", "-qw",
                "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"});
  run_or_throw({"ip", "-n", netns->name_, "link", "add", netns->host_veth_, "type", "veth",
                "peer", "name", netns->pod_veth_});
  run_or_throw({"ip", "-n", netns->name_, "link", "set", netns->host_veth_, "up"});
  run_or_throw({"ip", "-n", netns->name_, "link", "set", netns->pod_veth_, "up"});
  return netns;
}

TestNetns::~TestNetns() {
  // Deleting the namespace takes the veths, qdiscs and filters with it.
  if (!run_command({"ip", "netns", "del", name_})) {
    fprintf(stderr, "warning: could not delete test netns %s\n", name_.c_str());
  }
}

EnteredNetns::EnteredNetns(const std::string& netns_name) {
  original_netns_fd_ = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  if (original_netns_fd_ < 0) throw_errno("open own netns", errno);
  const std::string path = "/run/netns/" + netns_name;
  const int target = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (target < 0) {
    const int error = errno;
    close(original_netns_fd_);
    throw_errno("open " + path, error);
  }
  const int result = setns(target, CLONE_NEWNET);
  const int error = errno;
  close(target);
  if (result != 0) {
    close(original_netns_fd_);
    throw_errno("setns " + netns_name, error);
  }
}

EnteredNetns::~EnteredNetns() {
  if (setns(original_netns_fd_, CLONE_NEWNET) != 0) {
    // Staying in a namespace that is about to be deleted would break every
    // later test; there is no safe way on.
    fprintf(stderr, "fatal: cannot return to the original netns: %s\n", std::strerror(errno));
    std::abort();
  }
  close(original_netns_fd_);
}

SendOutcome send_raw_frame(const std::string& ifname, const Bytes& frame) {
  const unsigned ifindex = if_nametoindex(ifname.c_str());
  if (ifindex == 0) throw_errno("if_nametoindex " + ifname, errno);
  // Protocol 0: a send-only socket that receives nothing.
  const int fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);
  if (fd < 0) throw_errno("socket(AF_PACKET)", errno);
  sockaddr_ll address{};
  address.sll_family = AF_PACKET;
  address.sll_ifindex = static_cast<int>(ifindex);
  address.sll_halen = 6;
  std::memcpy(address.sll_addr, frame.data(), 6);
  const ssize_t sent = sendto(fd, frame.data(), frame.size(), 0,
                              reinterpret_cast<const sockaddr*>(&address), sizeof(address));
  const int error = errno;
  close(fd);
  if (sent < 0 && error == ENOBUFS) return SendOutcome::kDroppedByQdisc;
  if (sent < 0) throw_errno("sendto " + ifname, error);
  if (static_cast<std::size_t>(sent) != frame.size()) {
    throw std::runtime_error("short send on " + ifname);
  }
  return SendOutcome::kTransmitted;
}

}  // namespace microseg::test
