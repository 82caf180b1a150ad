#include "policy_commit.h"

#include <utility>

#include "peer_selection_cache.h"

namespace microseg {

std::vector<EndpointUpdate> PlanEndpointUpdates(PolicyEngine& engine, const PolicyMapUpdater& updater,
                                                const std::set<uint32_t>& also_whole) {
  PolicyEngine::Work work = engine.TakeWork();
  work.whole.insert(also_whole.begin(), also_whole.end());
  std::vector<EndpointUpdate> updates;
  updates.reserve(work.whole.size() + work.peers.size());
  PeerSelectionCache selections;  // one batch, no event in between
  auto compile_whole = [&](uint32_t id) {
    EndpointUpdate update{id, std::nullopt, std::nullopt};
    if (engine.endpoints().contains(id)) update.desired = engine.Compile(id, &selections);
    updates.push_back(std::move(update));
  };
  for (uint32_t id : work.whole) compile_whole(id);
  for (auto& [id, addresses] : work.peers) {
    if (work.whole.contains(id)) continue;
    if (!engine.endpoints().contains(id)) {
      compile_whole(id);
      continue;
    }
    // The patch carries its addresses; this batch's copy is not needed after it.
    PeerEntries peers = engine.CompilePeers(id, std::move(addresses), work.cidrs.contains(id), &selections);
    if (!updater.CanPatch(id, peers)) {
      compile_whole(id);
      continue;
    }
    updates.push_back(EndpointUpdate{id, std::nullopt, std::move(peers)});
  }
  return updates;
}

}  // namespace microseg
