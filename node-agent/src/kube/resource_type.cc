#include "kube/resource_type.h"

#include "absl/strings/str_cat.h"

namespace microseg::kube {

const ResourceType& PodsResource() {
  static const ResourceType type{"Pod", "v1", "/api/v1/pods", true, false};
  return type;
}
const ResourceType& NamespacesResource() {
  static const ResourceType type{"Namespace", "v1", "/api/v1/namespaces", false, false};
  return type;
}
const ResourceType& NetworkPoliciesResource() {
  static const ResourceType type{"NetworkPolicy", "networking.k8s.io/v1",
                                 "/apis/networking.k8s.io/v1/networkpolicies", true, false};
  return type;
}
const ResourceType& SegmentPoliciesResource() {
  static const ResourceType type{"SegmentPolicy", "microseg.io/v1alpha1", "/apis/microseg.io/v1alpha1/segmentpolicies",
                                 true, true};
  return type;
}
const ResourceType& ClusterSegmentPoliciesResource() {
  static const ResourceType type{"ClusterSegmentPolicy", "microseg.io/v1alpha1",
                                 "/apis/microseg.io/v1alpha1/clustersegmentpolicies", false, true};
  return type;
}

const std::vector<ResourceType>& WatchedResources() {
  static const std::vector<ResourceType> all{NamespacesResource(), PodsResource(), NetworkPoliciesResource(),
                                             SegmentPoliciesResource(), ClusterSegmentPoliciesResource()};
  return all;
}

std::string ObjectPath(const ResourceType& type, const std::string& namespace_name, const std::string& name) {
  // collection = <prefix>/<plural>
  const size_t slash = type.collection.rfind('/');
  const std::string prefix = type.collection.substr(0, slash);
  const std::string plural = type.collection.substr(slash + 1);
  if (!type.namespaced) return absl::StrCat(type.collection, "/", name);
  return absl::StrCat(prefix, "/namespaces/", namespace_name, "/", plural, "/", name);
}

}  // namespace microseg::kube
