#pragma once
// One qemu-storage-daemon per VM: QEMU's own block layer reads the image formats LIO cannot
// (qcow2, vmdk, ...), and exports each image over NBD on a private unix socket for the
// kernel's NBD client (docs/nbd-facts.md QS1-QS16). This unit builds its command line and
// owns the process: start, readiness, stop. Issue 12 wires it into a run.

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "qemu_lio/image_spec.h"

namespace qemu_lio {

/// One image the daemon serves, as the spec asked for it.
struct DaemonImage {
  std::string path;    ///< canonical path
  std::string format;  ///< QEMU's driver name: qcow2, vmdk, raw, ...
  CacheMode cache = CacheMode::kWriteback;
  bool readonly = false;
  bool discard = true;
};

/// Where the daemon's files live: beside the VM's journal, in the 0700 state directory.
struct DaemonFiles {
  std::string qmp_socket;
  std::string nbd_socket;
  std::string pidfile;
  std::string log;  ///< its stderr: the first line is the reason when it fails to start
};

/// The NBD export name of the `i`-th image ("e<i>").
std::string daemon_export_name(size_t i);

/// qemu-storage-daemon's arguments (without argv[0]) for `images`: per image a file node and
/// a format node with every option written out (QS5), one NBD export each, one NBD server on
/// the unix socket, QMP, and the pidfile that says it is ready (QS2).
std::vector<std::string> storage_daemon_args(const std::vector<DaemonImage>& images, const DaemonFiles& files);

/// A running qemu-storage-daemon, our child, in a session of its own (a terminal's Ctrl-C
/// must not take the disks from under a guest). The destructor stops it.
class StorageDaemon {
 public:
  /// Starts `exe` with storage_daemon_args and waits up to `timeout` for its pidfile. If it
  /// exits first, or the time passes, it is gone again and Error names `object` with the
  /// daemon's first line of stderr (its own reason, e.g. "Could not open backing file").
  /// Its stderr goes to `files.log`, a file: a pipe nobody reads would stall it.
  /// `started` is called with its pid as soon as it exists (before it is ready), so that a
  /// journal can name it before anything else can go wrong; if it throws, the daemon is
  /// stopped and the error passes on.
  StorageDaemon(const std::string& exe, const std::vector<DaemonImage>& images, const DaemonFiles& files,
                const std::string& object, std::chrono::milliseconds timeout,
                const std::function<void(pid_t)>& started = {});
  ~StorageDaemon();
  StorageDaemon(const StorageDaemon&) = delete;
  StorageDaemon& operator=(const StorageDaemon&) = delete;

  pid_t pid() const { return pid_; }

  /// Hands the daemon on (a journal records it; the teardown stops it): the destructor
  /// leaves it running.
  void release() { pid_ = -1; }

  /// SIGTERM (the daemon then closes its exports, flushes and syncs every image, QS3), and
  /// after `grace` SIGKILL; waits for the exit. Returns true if it ended on SIGTERM with
  /// status 0. Idempotent; never throws.
  bool stop(std::chrono::milliseconds grace) noexcept;

 private:
  pid_t pid_ = -1;
};

}  // namespace qemu_lio
