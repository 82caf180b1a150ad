#include "policy_map_updater.h"

#include <set>
#include <utility>

#include "absl/strings/str_cat.h"

namespace microseg {
namespace {

ms_policy_key KernelKey(ms_policy_key key, bool generation) {
  if (generation) key.endpoint_id |= MS_POLICY_GEN_BIT;
  return key;
}
ms_lpm_key KernelKey(ms_lpm_key key, bool generation) {
  if (generation) key.endpoint_id |= MS_POLICY_GEN_BIT;
  return key;
}

template <typename Map>
bool SameEntries(const Map& a, const Map& b) {
  if (a.size() != b.size()) return false;
  for (auto x = a.begin(), y = b.begin(); x != a.end(); ++x, ++y) {
    if (!BytewiseEqual(x->first, y->first) || !BytewiseEqual(x->second, y->second)) return false;
  }
  return true;
}

// The exact entries that differ between two versions, all of them ALLOW
// before and after? Then adding them before the flip and removing them
// after it never yields a verdict outside {old, new}: a lookup that hits an
// added allow gets what the new policy gives, one that hits a kept entry
// gets what both give, a miss falls through to the unchanged CIDR entries.
bool OnlyAllowsDiffer(const MapState::ExactMap& before, const MapState::ExactMap& after) {
  for (const auto& [key, value] : after) {
    auto found = before.find(key);
    if (found != before.end() && BytewiseEqual(found->second, value)) continue;
    if (value.action != MS_ACTION_ALLOW) return false;
    if (found != before.end() && found->second.action != MS_ACTION_ALLOW) return false;
  }
  for (const auto& [key, value] : before) {
    if (!after.contains(key) && value.action != MS_ACTION_ALLOW) return false;
  }
  return true;
}

// One undoable write.
struct Undo {
  enum class Map { kExact, kLpm, kEndpoint } map;
  ms_policy_key exact_key{};
  ms_lpm_key lpm_key{};
  uint32_t ifindex = 0;
  std::optional<ms_policy_value> previous_value;  // exact/lpm: value before, nullopt: was absent
  std::optional<ms_endpoint> previous_endpoint;
};

}  // namespace

struct PolicyMapUpdater::Plan {
  enum class Kind { kNew, kInPlace, kFlip, kRemove, kUnchanged };
  uint32_t endpoint_id = 0;
  Kind kind = Kind::kUnchanged;
  const InstalledEndpoint* old = nullptr;
  std::optional<EndpointPolicy> desired;  // stamped: flags carry the generation, policy_rev set
};

void PolicyMapUpdater::Adopt(const MapState& live) {
  installed_.clear();
  stray_exact_ = live.exact;
  stray_lpm_ = live.lpm;
  stray_endpoints_.clear();
  for (const auto& [ifindex, endpoint] : live.endpoints) {
    if ((endpoint.endpoint_id & MS_POLICY_GEN_BIT) != 0 || installed_.contains(endpoint.endpoint_id)) {
      stray_endpoints_.push_back(ifindex);  // not something this agent writes
      continue;
    }
    InstalledEndpoint& installed = installed_[endpoint.endpoint_id];
    installed.policy.ifindex = ifindex;
    installed.policy.endpoint = endpoint;
    const uint32_t policy_id = ms_policy_id(endpoint.endpoint_id, endpoint.flags);
    for (auto it = stray_exact_.begin(); it != stray_exact_.end();) {
      if (it->first.endpoint_id != policy_id) {
        ++it;
        continue;
      }
      ms_policy_key key = it->first;
      key.endpoint_id = endpoint.endpoint_id;
      installed.policy.exact.emplace(key, it->second);
      it = stray_exact_.erase(it);
    }
    for (auto it = stray_lpm_.begin(); it != stray_lpm_.end();) {
      if (it->first.endpoint_id != policy_id) {
        ++it;
        continue;
      }
      ms_lpm_key key = it->first;
      key.endpoint_id = endpoint.endpoint_id;
      installed.policy.lpm.emplace(key, it->second);
      it = stray_lpm_.erase(it);
    }
    installed.policy.summary.exact_entries = static_cast<uint32_t>(installed.policy.exact.size());
    installed.policy.summary.lpm_entries = static_cast<uint32_t>(installed.policy.lpm.size());
  }
}

const InstalledEndpoint* PolicyMapUpdater::Find(uint32_t endpoint_id) const {
  auto found = installed_.find(endpoint_id);
  return found == installed_.end() ? nullptr : &found->second;
}

size_t PolicyMapUpdater::exact_entries() const {
  size_t total = stray_exact_.size();
  for (const auto& [id, installed] : installed_) total += installed.policy.exact.size();
  return total;
}

size_t PolicyMapUpdater::lpm_entries() const {
  size_t total = stray_lpm_.size();
  for (const auto& [id, installed] : installed_) total += installed.policy.lpm.size();
  return total;
}

MapState PolicyMapUpdater::Snapshot() const {
  MapState state;
  state.exact = stray_exact_;
  state.lpm = stray_lpm_;
  for (const auto& [id, installed] : installed_) {
    const bool generation = installed.generation();
    state.endpoints[installed.policy.ifindex] = installed.policy.endpoint;
    for (const auto& [key, value] : installed.policy.exact) state.exact[KernelKey(key, generation)] = value;
    for (const auto& [key, value] : installed.policy.lpm) state.lpm[KernelKey(key, generation)] = value;
  }
  return state;
}

// Strays are unreachable (no ms_endpoints entry names their generation), so
// deleting them first is invisible to packets and frees room for staging.
absl::Status PolicyMapUpdater::DeleteStrays() {
  for (auto it = stray_exact_.begin(); it != stray_exact_.end();) {
    if (absl::Status status = writer_.DeleteExact(it->first); !status.ok()) return status;
    it = stray_exact_.erase(it);
  }
  for (auto it = stray_lpm_.begin(); it != stray_lpm_.end();) {
    if (absl::Status status = writer_.DeleteLpm(it->first); !status.ok()) return status;
    it = stray_lpm_.erase(it);
  }
  return absl::OkStatus();
}

absl::Status PolicyMapUpdater::Apply(std::vector<EndpointUpdate> updates) {
  for (const EndpointUpdate& update : updates) {
    if ((update.endpoint_id & MS_POLICY_GEN_BIT) != 0 || update.endpoint_id == 0) {
      return absl::InvalidArgumentError(absl::StrCat("endpoint id ", update.endpoint_id, " is out of range"));
    }
  }
  if (absl::Status status = DeleteStrays(); !status.ok()) {
    ++counters_.cleanup_failures;
    return absl::Status(status.code(), absl::StrCat("deleting stale policy entries: ", status.message()));
  }
  if (mode_ == Mode::kNaiveForTests) return ApplyNaive(updates);

  // Plan every endpoint: which path, and its stamped ms_endpoints value.
  std::vector<Plan> plans;
  std::set<uint32_t> claimed_ifindexes;  // ifindexes some endpoint holds after the batch
  std::set<uint32_t> updated_ids;
  for (const EndpointUpdate& update : updates) updated_ids.insert(update.endpoint_id);
  for (const auto& [id, installed] : installed_) {
    if (!updated_ids.contains(id)) claimed_ifindexes.insert(installed.policy.ifindex);
  }
  for (EndpointUpdate& update : updates) {
    Plan plan;
    plan.endpoint_id = update.endpoint_id;
    plan.old = Find(update.endpoint_id);
    if (!update.desired) {
      plan.kind = plan.old ? Plan::Kind::kRemove : Plan::Kind::kUnchanged;
      plans.push_back(std::move(plan));
      continue;
    }
    EndpointPolicy desired = std::move(*update.desired);
    desired.endpoint.flags &= static_cast<uint8_t>(~MS_EP_F_POLICY_GEN);
    desired.endpoint.policy_rev = 1;
    claimed_ifindexes.insert(desired.ifindex);
    if (!plan.old) {
      plan.kind = Plan::Kind::kNew;
    } else {
      const EndpointPolicy& old = plan.old->policy;
      const bool entries_same = SameEntries(old.exact, desired.exact) && SameEntries(old.lpm, desired.lpm);
      const bool verdicts_same = entries_same && VerdictFlags(old.endpoint) == desired.endpoint.flags &&
                                 old.endpoint.ipv4 == desired.endpoint.ipv4;
      desired.endpoint.policy_rev = old.endpoint.policy_rev;
      if (!verdicts_same) {
        // 0 is what a fresh session would compare against: never hand it out.
        desired.endpoint.policy_rev = old.endpoint.policy_rev + 1 == 0 ? 1 : old.endpoint.policy_rev + 1;
      }
      // A lockdown (docs/map-pressure.md) keeps the revision: its sessions
      // go on instead of being re-judged against a policy that is not there.
      if ((desired.endpoint.flags & MS_EP_F_LOCKDOWN) != 0) desired.endpoint.policy_rev = old.endpoint.policy_rev;
      bool generation = plan.old->generation();
      if (verdicts_same && old.ifindex == desired.ifindex) {
        plan.kind = Plan::Kind::kUnchanged;
      } else if (SameEntries(old.lpm, desired.lpm) && OnlyAllowsDiffer(old.exact, desired.exact)) {
        plan.kind = Plan::Kind::kInPlace;
      } else {
        plan.kind = Plan::Kind::kFlip;
        generation = !generation;
      }
      if (generation) desired.endpoint.flags |= MS_EP_F_POLICY_GEN;
    }
    plan.desired = std::move(desired);
    plans.push_back(std::move(plan));
  }

  std::vector<Undo> undo;
  auto roll_back = [&](const absl::Status& cause) {
    ++counters_.rollbacks;
    for (auto it = undo.rbegin(); it != undo.rend(); ++it) {
      absl::Status status;
      switch (it->map) {
        case Undo::Map::kExact:
          status = it->previous_value ? writer_.UpsertExact(it->exact_key, *it->previous_value)
                                      : writer_.DeleteExact(it->exact_key);
          if (!status.ok() && !it->previous_value) stray_exact_.emplace(it->exact_key, ms_policy_value{});
          break;
        case Undo::Map::kLpm:
          status = it->previous_value ? writer_.UpsertLpm(it->lpm_key, *it->previous_value)
                                      : writer_.DeleteLpm(it->lpm_key);
          if (!status.ok() && !it->previous_value) stray_lpm_.emplace(it->lpm_key, ms_policy_value{});
          break;
        case Undo::Map::kEndpoint:
          status = it->previous_endpoint ? writer_.UpsertEndpoint(it->ifindex, *it->previous_endpoint)
                                         : writer_.DeleteEndpoint(it->ifindex);
          break;
      }
      if (!status.ok()) ++counters_.cleanup_failures;
    }
    return absl::Status(cause.code(),
                        absl::StrCat("policy update rolled back, previous policy kept: ", cause.message()));
  };
  auto put_exact = [&](const ms_policy_key& key, const ms_policy_value& value,
                       std::optional<ms_policy_value> previous) {
    absl::Status status = writer_.UpsertExact(key, value);
    if (status.ok()) undo.push_back({Undo::Map::kExact, key, {}, 0, previous, {}});
    return status;
  };
  auto put_lpm = [&](const ms_lpm_key& key, const ms_policy_value& value) {
    absl::Status status = writer_.UpsertLpm(key, value);
    if (status.ok()) undo.push_back({Undo::Map::kLpm, {}, key, 0, std::nullopt, {}});
    return status;
  };

  // Phase A: stage.
  for (const Plan& plan : plans) {
    if (plan.kind == Plan::Kind::kNew || plan.kind == Plan::Kind::kFlip) {
      const bool generation = (plan.desired->endpoint.flags & MS_EP_F_POLICY_GEN) != 0;
      for (const auto& [key, value] : plan.desired->exact) {
        if (absl::Status s = put_exact(KernelKey(key, generation), value, std::nullopt); !s.ok()) {
          return roll_back(s);
        }
      }
      for (const auto& [key, value] : plan.desired->lpm) {
        if (absl::Status s = put_lpm(KernelKey(key, generation), value); !s.ok()) return roll_back(s);
      }
    } else if (plan.kind == Plan::Kind::kInPlace) {
      const bool generation = plan.old->generation();
      for (const auto& [key, value] : plan.desired->exact) {
        auto found = plan.old->policy.exact.find(key);
        if (found != plan.old->policy.exact.end() && BytewiseEqual(found->second, value)) continue;
        std::optional<ms_policy_value> previous;
        if (found != plan.old->policy.exact.end()) previous = found->second;
        if (absl::Status s = put_exact(KernelKey(key, generation), value, previous); !s.ok()) return roll_back(s);
      }
    }
  }

  // Phase B: flip. Removals first, so an ifindex handed to another endpoint
  // is overwritten rather than deleted and re-added (no moment without an
  // endpoint on that veth).
  for (const Plan& plan : plans) {
    if (plan.kind != Plan::Kind::kRemove) continue;
    const uint32_t ifindex = plan.old->policy.ifindex;
    if (claimed_ifindexes.contains(ifindex)) continue;
    if (absl::Status s = writer_.DeleteEndpoint(ifindex); !s.ok()) return roll_back(s);
    undo.push_back({Undo::Map::kEndpoint, {}, {}, ifindex, std::nullopt, plan.old->policy.endpoint});
  }
  for (const Plan& plan : plans) {
    if (!plan.desired) continue;
    if (plan.kind == Plan::Kind::kUnchanged &&
        BytewiseEqual(plan.old->policy.endpoint, plan.desired->endpoint)) {
      continue;
    }
    std::optional<ms_endpoint> previous;
    if (plan.old && plan.old->policy.ifindex == plan.desired->ifindex) previous = plan.old->policy.endpoint;
    if (absl::Status s = writer_.UpsertEndpoint(plan.desired->ifindex, plan.desired->endpoint); !s.ok()) {
      return roll_back(s);
    }
    undo.push_back({Undo::Map::kEndpoint, {}, {}, plan.desired->ifindex, std::nullopt, previous});
  }

  // Phase C: clean up what no packet can reach any more. A failed delete
  // leaves an unreachable stray (retried by the next Apply), except for an
  // in-place removed allow, which stays installed so the next diff retries.
  for (Plan& plan : plans) {
    if (plan.kind == Plan::Kind::kUnchanged) {
      if (plan.desired) installed_[plan.endpoint_id].policy = std::move(*plan.desired);
      continue;
    }
    if (plan.old && (plan.kind == Plan::Kind::kFlip || plan.kind == Plan::Kind::kRemove)) {
      const bool generation = plan.old->generation();
      for (const auto& [key, value] : plan.old->policy.exact) {
        const ms_policy_key kernel_key = KernelKey(key, generation);
        if (!writer_.DeleteExact(kernel_key).ok()) {
          ++counters_.cleanup_failures;
          stray_exact_.emplace(kernel_key, value);
        }
      }
      for (const auto& [key, value] : plan.old->policy.lpm) {
        const ms_lpm_key kernel_key = KernelKey(key, generation);
        if (!writer_.DeleteLpm(kernel_key).ok()) {
          ++counters_.cleanup_failures;
          stray_lpm_.emplace(kernel_key, value);
        }
      }
    }
    if (plan.kind == Plan::Kind::kInPlace) {
      const bool generation = plan.old->generation();
      for (const auto& [key, value] : plan.old->policy.exact) {
        if (plan.desired->exact.contains(key)) continue;
        if (!writer_.DeleteExact(KernelKey(key, generation)).ok()) {
          ++counters_.cleanup_failures;
          plan.desired->exact.emplace(key, value);  // still live: keep it on record
        }
      }
    }
    if (plan.old && plan.desired && plan.old->policy.ifindex != plan.desired->ifindex &&
        !claimed_ifindexes.contains(plan.old->policy.ifindex)) {
      if (!writer_.DeleteEndpoint(plan.old->policy.ifindex).ok()) ++counters_.cleanup_failures;
    }
    switch (plan.kind) {
      case Plan::Kind::kFlip:
        ++counters_.generation_flips;
        break;
      case Plan::Kind::kInPlace:
        ++counters_.in_place_updates;
        break;
      default:
        break;
    }
    if (plan.desired) {
      installed_[plan.endpoint_id].policy = std::move(*plan.desired);
    } else {
      installed_.erase(plan.endpoint_id);
    }
  }
  return absl::OkStatus();
}

// Deliberately wrong (tests only): every old entry out, the endpoint
// rewritten, every new entry in, all in generation 0.
absl::Status PolicyMapUpdater::ApplyNaive(std::vector<EndpointUpdate>& updates) {
  for (EndpointUpdate& update : updates) {
    if (const InstalledEndpoint* old = Find(update.endpoint_id)) {
      for (const auto& [key, value] : old->policy.exact) (void)writer_.DeleteExact(key);
      for (const auto& [key, value] : old->policy.lpm) (void)writer_.DeleteLpm(key);
      if (!update.desired) (void)writer_.DeleteEndpoint(old->policy.ifindex);
    }
    if (!update.desired) {
      installed_.erase(update.endpoint_id);
      continue;
    }
    EndpointPolicy desired = std::move(*update.desired);
    if (const InstalledEndpoint* old = Find(update.endpoint_id)) {
      desired.endpoint.policy_rev = old->policy.endpoint.policy_rev + 1;
    }
    if (absl::Status s = writer_.UpsertEndpoint(desired.ifindex, desired.endpoint); !s.ok()) return s;
    for (const auto& [key, value] : desired.exact) {
      if (absl::Status s = writer_.UpsertExact(key, value); !s.ok()) return s;
    }
    for (const auto& [key, value] : desired.lpm) {
      if (absl::Status s = writer_.UpsertLpm(key, value); !s.ok()) return s;
    }
    installed_[update.endpoint_id].policy = std::move(desired);
  }
  return absl::OkStatus();
}

}  // namespace microseg
