// Early-return helpers for absl::Status / StatusOr, so error paths stay one
// line each instead of hiding the logic.
#pragma once

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define MS_STATUS_CONCAT_INNER(a, b) a##b
#define MS_STATUS_CONCAT(a, b) MS_STATUS_CONCAT_INNER(a, b)

#define MS_RETURN_IF_ERROR(expr)                  \
  do {                                            \
    if (absl::Status ms_status_ = (expr); !ms_status_.ok()) return ms_status_; \
  } while (0)

#define MS_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                             \
  if (!tmp.ok()) return std::move(tmp).status(); \
  lhs = std::move(tmp).value()

#define MS_ASSIGN_OR_RETURN(lhs, expr) \
  MS_ASSIGN_OR_RETURN_IMPL(MS_STATUS_CONCAT(ms_statusor_, __LINE__), lhs, expr)
