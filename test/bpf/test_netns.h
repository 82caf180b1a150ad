// A network namespace owned by one test run, with a veth pair inside it that
// stands in for a pod's host-side veth and its pod end. No addresses, no
// routes, IPv6 off: the only packets on the wire are the ones the test sends.
// Everything is removed with the namespace, also when the test fails.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "packet_builder.h"

namespace microseg::test {

class TestNetns {
 public:
  // Creates "msbpft-<pid>-<random>" with veth pair host/pod ends, both up.
  // Throws std::runtime_error if a step fails (after undoing what it made).
  static std::unique_ptr<TestNetns> create();
  ~TestNetns();
  TestNetns(const TestNetns&) = delete;
  TestNetns& operator=(const TestNetns&) = delete;

  const std::string& name() const { return name_; }
  const std::string& host_veth() const { return host_veth_; }
  const std::string& pod_veth() const { return pod_veth_; }

 private:
  TestNetns(std::string name, std::string host_veth, std::string pod_veth)
      : name_(std::move(name)), host_veth_(std::move(host_veth)), pod_veth_(std::move(pod_veth)) {}

  std::string name_;
  std::string host_veth_;
  std::string pod_veth_;
};

// Moves the calling thread into a named namespace; moves it back on scope exit.
class EnteredNetns {
 public:
  explicit EnteredNetns(const std::string& netns_name);
  ~EnteredNetns();
  EnteredNetns(const EnteredNetns&) = delete;
  EnteredNetns& operator=(const EnteredNetns&) = delete;

 private:
  int original_netns_fd_ = -1;
};

// Runs argv (PATH lookup), waits, returns true on exit status 0.
bool run_command(const std::vector<std::string>& argv);

enum class SendOutcome { kTransmitted, kDroppedByQdisc };

// Sends one raw Ethernet frame out of `ifname` (current namespace) through
// an AF_PACKET socket, so it passes the device's qdiscs like real traffic.
// A drop on the sending device's egress (TC_ACT_SHOT) comes back as ENOBUFS
// and is reported as kDroppedByQdisc; other failures throw.
SendOutcome send_raw_frame(const std::string& ifname, const Bytes& frame);

}  // namespace microseg::test
