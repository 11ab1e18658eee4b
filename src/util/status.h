// Errors as values. Every module boundary returns a Status (or a Result<T>);
// libpq, yaml-cpp and errno failures are converted where they enter.
#pragma once

#include <string>
#include <utility>
#include <variant>

namespace pgslotd {

class [[nodiscard]] Status {
 public:
  // The outcome of an operation, and so how the caller should react: the
  // slot worker retries with backoff, stops the slot, or stops the process.
  // Only outcomes: control flow is not a Status. A sink that cannot take
  // bytes now says so by taking fewer (sink/sink.h); a stop request is a
  // flag its owner checks (an operation it interrupts fails retryable); a
  // session's end is the read loop's StreamEnd.
  enum class Code {
    kOk,
    kInvalidArgument,  // bad input (config, LSN text, protocol value)
    kRetryable,        // transient: lost connection, server restart, disk full
    kSlotFatal,        // this slot cannot go on: missing, no permission, bad options
    kSlotInvalidated,  // the server invalidated the slot: its changes are lost
    kProcessFatal,     // the process must exit: e.g. fsync failed (EIO)
  };

  Status() = default;
  static Status Ok() { return Status(); }
  static Status Invalid(std::string msg) { return Status(Code::kInvalidArgument, std::move(msg)); }
  static Status Retryable(std::string msg) { return Status(Code::kRetryable, std::move(msg)); }
  static Status SlotFatal(std::string msg) { return Status(Code::kSlotFatal, std::move(msg)); }
  static Status SlotInvalidated(std::string msg) {
    return Status(Code::kSlotInvalidated, std::move(msg));
  }
  static Status ProcessFatal(std::string msg) {
    return Status(Code::kProcessFatal, std::move(msg));
  }
  // An operation a stop request interrupted (retryable: it did not fail).
  static Status Interrupted() { return Status(Code::kRetryable, "interrupted by a stop request"); }

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }

  // Returns a copy whose message is "<prefix>: <message>".
  Status Prefixed(const std::string& prefix) const {
    if (ok()) return *this;
    return Status(code_, prefix + ": " + message_);
  }

 private:
  Status(Code code, std::string msg) : code_(code), message_(std::move(msg)) {}
  Code code_ = Code::kOk;
  std::string message_;
};

// Returns "<what>: <strerror(err)>".
std::string ErrnoMessage(const std::string& what, int err);

// A value or an error.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}         // NOLINT: implicit by design
  Result(Status status) : v_(std::move(status)) {}  // NOLINT: must not be Ok
  bool ok() const { return std::holds_alternative<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T& value() & { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  Status status() const { return ok() ? Status::Ok() : std::get<Status>(v_); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace pgslotd
