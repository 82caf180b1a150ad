// The API resources the agent lists and watches.
#pragma once

#include <string>
#include <vector>

namespace microseg::kube {

struct ResourceType {
  std::string kind;         // "Pod"
  std::string api_version;  // "v1", "networking.k8s.io/v1"
  std::string collection;   // "/api/v1/pods": all namespaces
  bool namespaced = true;
  // Status conditions are ours to write (our CRDs only).
  bool owns_status = false;
};

const ResourceType& PodsResource();
const ResourceType& NamespacesResource();
const ResourceType& NetworkPoliciesResource();
const ResourceType& SegmentPoliciesResource();
const ResourceType& ClusterSegmentPoliciesResource();
const std::vector<ResourceType>& WatchedResources();

// The path of one object: /apis/<group>/<version>/namespaces/<ns>/<plural>/<name>.
std::string ObjectPath(const ResourceType& type, const std::string& namespace_name, const std::string& name);

}  // namespace microseg::kube
