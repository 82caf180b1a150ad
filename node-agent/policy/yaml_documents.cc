#include "yaml_documents.h"

#include <sstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "yaml-cpp/eventhandler.h"
#include "yaml-cpp/parser.h"

namespace microseg {
namespace {

// Sees only where each document starts. When the parser is stuck on a token
// it cannot consume, every "next document" starts at that same token: that
// is the loop LoadAll would never leave.
class DocumentStarts : public YAML::EventHandler {
 public:
  YAML::Mark last_start;

  void OnDocumentStart(const YAML::Mark& mark) override { last_start = mark; }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t, const std::string&) override {}
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {}
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {}
  void OnMapEnd() override {}
};

absl::Status CheckParserProgresses(const std::string& text) {
  std::istringstream stream(text);
  YAML::Parser parser(stream);
  DocumentStarts starts;
  int previous_start = -1;
  while (parser.HandleNextDocument(starts)) {
    if (starts.last_start.pos <= previous_start) {
      return absl::InvalidArgumentError(absl::StrCat("invalid YAML: unexpected token at line ",
                                                     starts.last_start.line + 1, ", column ",
                                                     starts.last_start.column + 1));
    }
    previous_start = starts.last_start.pos;
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::vector<YAML::Node>> LoadYamlDocuments(std::string_view text) {
  const std::string owned(text);
  try {
    // The same parser on the same text takes the same steps, so LoadAll
    // ends when this pass did.
    if (absl::Status progress = CheckParserProgresses(owned); !progress.ok()) return progress;
    return YAML::LoadAll(owned);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("invalid YAML: ", e.what()));
  }
}

}  // namespace microseg
