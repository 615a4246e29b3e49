#pragma once
// The private QMP socket of a VM qemu-lio starts: what `attach` and `detach` talk to. It is
// made by qemu-lio, not by QEMU, and handed over as an inherited listening descriptor
// (`-chardev socket,fd=N,server=on`): its mode is 0600 whatever QEMU's umask, -runas or
// sandbox, and the argv that names it is fixed before anything is touched (a dry run shows
// it, binds nothing).

#include <sys/un.h>

#include <optional>
#include <string>
#include <vector>

#include "qemu_lio/unique_fd.h"

namespace qemu_lio {

/// The unix socket address of `path` for bind or connect; nullopt if the path does not fit
/// (sun_path holds 107 bytes and the terminating NUL).
std::optional<sockaddr_un> unix_address(const std::string& path);

/// The chardev id qemu-lio's monitor uses in QEMU.
inline const std::string kControlChardevId = "qemu-lio-qmp";

class ControlSocket {
 public:
  /// No socket (nothing is added to QEMU's argv).
  ControlSocket() = default;
  /// A socket to be bound at `path`. Throws Error if no socket can be created. A path too
  /// long for a unix socket gives a disabled one (the VM starts; attach says why not).
  explicit ControlSocket(const std::string& path);

  bool enabled() const { return fd_.get() >= 0; }
  const std::string& path() const { return path_; }
  /// Why there is none, for attach's error ("" when enabled or never asked for).
  const std::string& why_not() const { return why_not_; }

  /// QEMU's options for it: -chardev socket,...,fd=N plus a -mon in control (QMP) mode.
  std::vector<std::string> qemu_options() const;

  /// Binds it at path() with mode 0600 and listens, replacing a dead socket of a recycled
  /// pid. Throws Error naming the path.
  void bind_and_listen();

  /// Lets the descriptor survive the exec of QEMU (it is close-on-exec until then, so no
  /// other program qemu-lio runs gets it). Async-signal-safe: called between fork and exec.
  void inherit_in_exec() const;

  /// QEMU has its own copy: ours goes, so a client never queues on a socket no QEMU serves.
  void close_ours() { fd_ = UniqueFd(); }

 private:
  UniqueFd fd_;
  std::string path_;
  std::string why_not_;
};

}  // namespace qemu_lio
