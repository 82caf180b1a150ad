#include "tc_attach.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "microseg/datapath.h"

namespace microseg {
namespace {

struct ProgramFd {
  int fd = -1;
  ~ProgramFd() {
    if (fd >= 0) close(fd);
  }
};

std::string Why(const std::string& what, int err) { return what + ": " + std::strerror(err); }

struct Hook {
  bpf_tc_attach_point point;
  const char* pin;
  const char* name;
};
constexpr Hook kHooks[] = {{BPF_TC_INGRESS, MS_PIN_PROG_FROM_POD, "ingress"},
                           {BPF_TC_EGRESS, MS_PIN_PROG_TO_POD, "egress"}};

bool OpenPinned(const std::string& dir, const char* pin, ProgramFd& out, std::string& error) {
  const std::string path = dir + "/" + pin;
  out.fd = bpf_obj_get(path.c_str());
  if (out.fd < 0) {
    error = Why("cannot open pinned program " + path + " (is the microseg agent running, is bpfPinDir right?)", errno);
    return false;
  }
  return true;
}

}  // namespace

AttachResult AttachPinnedPrograms(int ifindex, const std::string& bpf_pin_dir) {
  AttachResult result;
  ProgramFd programs[2];
  for (int i = 0; i < 2; ++i) {
    if (!OpenPinned(bpf_pin_dir, kHooks[i].pin, programs[i], result.error)) return result;
  }
  DECLARE_LIBBPF_OPTS(bpf_tc_hook, qdisc, .ifindex = ifindex,
                      .attach_point = static_cast<bpf_tc_attach_point>(BPF_TC_INGRESS | BPF_TC_EGRESS));
  int err = bpf_tc_hook_create(&qdisc);
  if (err != 0 && err != -EEXIST) {
    result.error = Why("cannot add clsact qdisc", -err);
    return result;
  }
  result.created_qdisc = err == 0;
  for (int i = 0; i < 2; ++i) {
    DECLARE_LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex, .attach_point = kHooks[i].point);
    DECLARE_LIBBPF_OPTS(bpf_tc_opts, opts, .prog_fd = programs[i].fd, .flags = BPF_TC_F_REPLACE,
                        .handle = kFilterHandle, .priority = kFilterPriority);
    if (int e = bpf_tc_attach(&hook, &opts); e != 0) {
      result.error = Why(std::string("cannot attach to tc ") + kHooks[i].name, -e);
      (void)DetachPrograms(ifindex, result.created_qdisc);
      return result;
    }
  }
  result.ok = true;
  return result;
}

std::string DetachPrograms(int ifindex, bool remove_qdisc) {
  std::string error;
  for (const Hook& h : kHooks) {
    DECLARE_LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex, .attach_point = h.point);
    DECLARE_LIBBPF_OPTS(bpf_tc_opts, opts, .handle = kFilterHandle, .priority = kFilterPriority);
    int err = bpf_tc_detach(&hook, &opts);
    if (err != 0 && err != -ENOENT && err != -ENODEV && err != -EINVAL) {
      error = Why(std::string("cannot detach from tc ") + h.name, -err);
    }
  }
  if (remove_qdisc) {
    DECLARE_LIBBPF_OPTS(bpf_tc_hook, qdisc, .ifindex = ifindex,
                        .attach_point = static_cast<bpf_tc_attach_point>(BPF_TC_INGRESS | BPF_TC_EGRESS));
    int err = bpf_tc_hook_destroy(&qdisc);
    if (err != 0 && err != -ENOENT && err != -ENODEV && err != -EINVAL) error = Why("cannot remove clsact", -err);
  }
  return error;
}

std::string VerifyAttached(int ifindex, const std::string& bpf_pin_dir) {
  for (const Hook& h : kHooks) {
    ProgramFd pinned;
    std::string error;
    if (!OpenPinned(bpf_pin_dir, h.pin, pinned, error)) return error;
    bpf_prog_info info{};
    uint32_t len = sizeof info;
    if (bpf_obj_get_info_by_fd(pinned.fd, &info, &len) != 0) return Why("cannot inspect pinned program", errno);
    DECLARE_LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex, .attach_point = h.point);
    DECLARE_LIBBPF_OPTS(bpf_tc_opts, opts, .handle = kFilterHandle, .priority = kFilterPriority);
    if (int err = bpf_tc_query(&hook, &opts); err != 0) {
      return Why(std::string("microseg filter missing on tc ") + h.name, -err);
    }
    if (opts.prog_id != info.id) {
      return std::string("tc ") + h.name + " runs program id " + std::to_string(opts.prog_id) +
             ", the pinned one is " + std::to_string(info.id);
    }
  }
  return "";
}

}  // namespace microseg
