#include "qemu_lio/qmp_client.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <fmt/core.h>

#include <cerrno>
#include <cstring>

#include "qemu_lio/control_socket.h"
#include "qemu_lio/error.h"

namespace qemu_lio {

QmpClient::QmpClient(const std::string& socket_path, const std::string& object, std::chrono::milliseconds timeout)
    : object_(object), timeout_(timeout) {
  const std::optional<sockaddr_un> address = unix_address(socket_path);
  if (!address) throw Error(socket_path, "control socket path too long");
  const sockaddr_un addr = *address;
  // Non-blocking: a unix connect to a listener whose queue is full would sleep until QEMU
  // accepts, and a stuck QEMU never does. Everything after it polls with a deadline.
  fd_ = UniqueFd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (fd_.get() < 0) throw Error(socket_path, "cannot create a socket: " + errno_string(errno));
  const auto deadline = std::chrono::steady_clock::now() + timeout_;
  while (::connect(fd_.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    if (errno == EINTR) continue;
    if (errno != EAGAIN || std::chrono::steady_clock::now() >= deadline)
      throw Error(socket_path, fmt::format("cannot reach QEMU's control socket of VM {}: {}", object_,
                                           errno == EAGAIN ? "QEMU does not accept connections" : errno_string(errno)));
    ::usleep(50 * 1000);
  }
  std::optional<Json> greeting = read_message(deadline);
  if (!greeting) throw Error(object_, fmt::format("QEMU did not greet within {} ms", timeout_.count()));
  if (!greeting->contains("QMP")) throw Error(object_, "control socket " + socket_path + " does not speak QMP");
  execute("qmp_capabilities");
}

std::optional<QmpClient::Json> QmpClient::read_message(std::chrono::steady_clock::time_point deadline) {
  for (;;) {
    const size_t nl = buffer_.find('\n');
    if (nl != std::string::npos) {
      std::string line = buffer_.substr(0, nl);
      buffer_.erase(0, nl + 1);
      if (line.find_first_not_of(" \r\t") == std::string::npos) continue;
      Json msg = Json::parse(line, nullptr, false);
      if (msg.is_discarded()) throw Error(object_, "QEMU sent a message that is not JSON: " + line);
      return msg;
    }
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline) return std::nullopt;
    // Rounded up: a wait of 0.4 ms must not become a busy poll(0).
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now) + std::chrono::milliseconds(1);
    pollfd p{fd_.get(), POLLIN, 0};
    int r = ::poll(&p, 1, static_cast<int>(left.count()));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) throw Error(object_, "cannot wait for QEMU: " + errno_string(errno));
    if (r == 0) continue;  // the deadline check above ends it
    char buf[65536];
    ssize_t n = ::read(fd_.get(), buf, sizeof buf);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n <= 0) throw Error(object_, "QEMU closed its control socket (the VM exited)");
    buffer_.append(buf, static_cast<size_t>(n));
  }
}

QmpClient::Json QmpClient::execute(const std::string& command, const Json& arguments) {
  Json req = {{"execute", command}};
  if (!arguments.empty()) req["arguments"] = arguments;
  const std::string text = req.dump() + "\n";
  const auto deadline = std::chrono::steady_clock::now() + timeout_;
  for (size_t done = 0; done < text.size();) {
    ssize_t n = ::send(fd_.get(), text.data() + done, text.size() - done, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN && std::chrono::steady_clock::now() < deadline) {
      pollfd p{fd_.get(), POLLOUT, 0};
      ::poll(&p, 1, 50);
      continue;
    }
    if (n < 0) throw Error(object_, "cannot send to QEMU: " + errno_string(errno));
    done += static_cast<size_t>(n);
  }
  for (;;) {
    std::optional<Json> next = read_message(deadline);
    if (!next) throw Error(object_, fmt::format("QEMU did not answer {} within {} ms", command, timeout_.count()));
    Json& msg = *next;
    if (msg.contains("event")) {
      events_.push_back(std::move(msg));
      continue;
    }
    if (msg.contains("error")) {
      const Json& e = msg["error"];
      const std::string desc = e.value("desc", e.dump());
      throw QmpRefused(object_, fmt::format("QEMU refused {}: {}", command, desc), desc);
    }
    if (msg.contains("return")) return msg["return"];
  }
}

bool QmpClient::wait_event(const std::function<bool(const Json&)>& match, std::chrono::milliseconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  for (;;) {
    while (!events_.empty()) {
      Json e = std::move(events_.front());
      events_.pop_front();
      if (match(e)) return true;
    }
    std::optional<Json> msg = read_message(deadline);
    if (!msg) return false;
    if (msg->contains("event")) events_.push_back(std::move(*msg));
  }
}

}  // namespace qemu_lio
