#pragma once
// A QMP client for the VM's private control socket: one command at a time, every wait
// bounded, events kept while a command is pending (DEVICE_DELETED may come before
// device_del's own answer).

#include <chrono>
#include <deque>
#include <functional>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "qemu_lio/error.h"
#include "qemu_lio/unique_fd.h"

namespace qemu_lio {

/// QEMU answered a command with an error: the command did nothing. (Any other Error from a
/// command, a timeout or a closed socket, leaves its outcome unknown.)
class QmpRefused : public Error {
 public:
  QmpRefused(const std::string& object, const std::string& cause, std::string qemu_desc)
      : Error(object, cause), desc_(std::move(qemu_desc)) {}
  /// QEMU's own message.
  const std::string& desc() const { return desc_; }

 private:
  std::string desc_;
};

class QmpClient {
 public:
  using Json = nlohmann::json;
  /// Connects to `socket_path`, reads the greeting and enters command mode, each step within
  /// `timeout` (a QEMU whose accept queue is full is retried until then, never waited on
  /// without bound). Throws Error naming the socket, or `object` (the VM) once connected.
  QmpClient(const std::string& socket_path, const std::string& object, std::chrono::milliseconds timeout);

  /// Runs `command` and returns its "return" value. Throws QmpRefused with QEMU's own
  /// message if QEMU answers with an error, Error if it does not answer within the timeout.
  Json execute(const std::string& command, const Json& arguments = Json::object());

  /// Waits until an event for which `match` is true arrives, at most `limit`. Returns false
  /// on timeout. Throws Error if QEMU closes the connection (it exited).
  bool wait_event(const std::function<bool(const Json&)>& match, std::chrono::milliseconds limit);

 private:
  /// The next message, or none once `deadline` has passed; throws Error on EOF.
  std::optional<Json> read_message(std::chrono::steady_clock::time_point deadline);

  std::string object_;
  std::chrono::milliseconds timeout_;
  UniqueFd fd_;
  std::string buffer_;
  std::deque<Json> events_;
};

}  // namespace qemu_lio
