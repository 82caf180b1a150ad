#include "yaml_fields.h"

#include <charconv>
#include <regex>

#include "absl/strings/str_cat.h"

namespace microseg::yaml_fields {
namespace {

constexpr absl::string_view kStrTag = "tag:yaml.org,2002:str";
constexpr absl::string_view kIntTag = "tag:yaml.org,2002:int";

bool IsPlain(const YAML::Node& node) { return node.Tag() == "?"; }

// YAML 1.1 / 1.2 core-schema resolution of plain scalars to non-strings, as
// the Go YAML decoder behind kubectl and the API server does it.
bool PlainResolvesToNonString(const std::string& value) {
  static const std::regex kNonString(
      R"(^(|~|null|Null|NULL|true|True|TRUE|false|False|FALSE|yes|Yes|YES|no|No|NO|on|On|ON|off|Off|OFF)$)"
      R"(|^[-+]?[0-9]+$|^0x[0-9a-fA-F]+$|^0o[0-7]+$)"
      R"(|^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$)"
      R"(|^[-+]?\.(inf|Inf|INF)$|^\.(nan|NaN|NAN)$)");
  return std::regex_match(value, kNonString);
}

absl::string_view Describe(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Map:
      return "a map";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Null:
      return "null";
    case YAML::NodeType::Scalar:
      return "a scalar";
    case YAML::NodeType::Undefined:
      break;
  }
  return "missing";
}

}  // namespace

absl::Status FieldError(absl::string_view path, absl::string_view problem) {
  return absl::InvalidArgumentError(absl::StrCat(path, ": ", problem));
}

bool IsSet(const YAML::Node& node) { return node.IsDefined() && !node.IsNull(); }

YAML::Node Child(const YAML::Node& parent, absl::string_view key) {
  // Look the key up without operator[], which inserts into non-const nodes.
  for (auto it = parent.begin(); it != parent.end(); ++it) {
    if (it->first.IsScalar() && it->first.Scalar() == key) return it->second;
  }
  return YAML::Node(YAML::NodeType::Undefined);
}

absl::Status RequireMap(const YAML::Node& node, absl::string_view path) {
  if (node.IsMap()) return absl::OkStatus();
  return FieldError(path, absl::StrCat("must be a map, got ", Describe(node)));
}

absl::Status RequireSequence(const YAML::Node& node, absl::string_view path) {
  if (node.IsSequence()) return absl::OkStatus();
  return FieldError(path, absl::StrCat("must be a list, got ", Describe(node)));
}

absl::StatusOr<std::string> ReadString(const YAML::Node& node, absl::string_view path) {
  if (!node.IsScalar()) return FieldError(path, absl::StrCat("must be a string, got ", Describe(node)));
  const std::string& value = node.Scalar();
  const bool resolves_to_string =
      node.Tag() == "!" || node.Tag() == kStrTag || (IsPlain(node) && !PlainResolvesToNonString(value));
  if (!resolves_to_string) {
    return FieldError(path, absl::StrCat("must be a string, got ", value,
                                         " (quote it to make it a string)"));
  }
  return value;
}

bool IsIntegerScalar(const YAML::Node& node) {
  static const std::regex kDecimal(R"(^[-+]?[0-9]+$)");
  return node.IsScalar() && (IsPlain(node) || node.Tag() == kIntTag) &&
         std::regex_match(node.Scalar(), kDecimal);
}

absl::StatusOr<int64_t> ReadInteger(const YAML::Node& node, absl::string_view path) {
  if (!IsIntegerScalar(node)) {
    return FieldError(path, absl::StrCat("must be an integer, got ",
                                         node.IsScalar() ? node.Scalar() : std::string(Describe(node))));
  }
  absl::string_view text = node.Scalar();
  if (!text.empty() && text[0] == '+') text.remove_prefix(1);
  int64_t value = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || end != text.data() + text.size()) {
    return FieldError(path, absl::StrCat(node.Scalar(), " is not a representable integer"));
  }
  return value;
}

absl::StatusOr<std::optional<std::string>> ReadOptionalString(const YAML::Node& parent,
                                                              absl::string_view key,
                                                              absl::string_view path) {
  const YAML::Node child = Child(parent, key);
  if (!IsSet(child)) return std::optional<std::string>();
  absl::StatusOr<std::string> value = ReadString(child, path);
  if (!value.ok()) return value.status();
  return std::optional<std::string>(*std::move(value));
}

}  // namespace microseg::yaml_fields
