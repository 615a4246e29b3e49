#include "qemu_lio/served_disks.h"

#include <dirent.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/core.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <optional>
#include <thread>

#include "qemu_lio/error.h"
#include "qemu_lio/lio_setup.h"
#include "qemu_lio/log.h"
#include "qemu_lio/nbd_handshake.h"
#include "qemu_lio/nbd_netlink.h"
#include "qemu_lio/storage_daemon.h"
#include "qemu_lio/unique_fd.h"

namespace qemu_lio {
namespace {

std::string read_line(const std::string& path) {
  std::ifstream in(path);
  std::string s;
  std::getline(in, s);
  return s;
}

bool nbd_connected(int index) { return ::access(fmt::format("/sys/block/nbd{}/pid", index).c_str(), F_OK) == 0; }

}  // namespace

// The kernel negotiates nothing (NL3): the handshake is ours, then CONNECT hands it the
// socket, of which it keeps its own reference (NL4).
uint32_t connect_nbd_export(NbdNetlink& nl, const std::string& socket, const std::string& name,
                            const std::string& backend, uint32_t block_size, const std::string& object,
                            std::chrono::milliseconds timeout) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  if (socket.size() >= sizeof a.sun_path) throw Error(socket, "socket path too long (use a shorter --state-dir)");
  std::strcpy(a.sun_path, socket.c_str());
  if (fd.get() < 0 || ::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
    throw Error(object, "cannot reach the storage daemon's NBD socket: " + errno_string(errno));
  const NbdExport e = nbd_negotiate(fd.get(), name, object, timeout);
  NbdConnectRequest r;
  r.sock_fd = fd.get();
  r.size_bytes = e.size;
  r.block_size = block_size;
  // Only the flags the kernel acts on (docs/nbd-facts.md NH7).
  r.server_flags = e.flags & (nbd_flag::kHasFlags | nbd_flag::kReadOnly | nbd_flag::kSendFlush | nbd_flag::kSendFua |
                              nbd_flag::kSendTrim);
  r.backend = backend;
  return nl.connect(r);
}

namespace {

// nbd caps a request at 128 KiB (max_sectors_kb) whatever the server takes: a guest's 1 MiB
// I/O became eight round trips through the daemon. 1 MiB per request measured 51 -> 90 MB/s
// for 1M reads under TCG (docs/benchmarks.md, "Served qcow2"). A device the kernel hands out
// again keeps the last user's setting, so it is always written.
void set_request_size(uint32_t index) {
  const std::string q = fmt::format("/sys/block/nbd{}/queue/", index);
  long hw = 0;
  std::ifstream(q + "max_hw_sectors_kb") >> hw;
  const long kb = hw > 0 ? std::min<long>(hw, 1024) : 1024;
  std::ofstream out(q + "max_sectors_kb");
  out << kb << "\n";
  out.flush();
  if (!out) log_warning(fmt::format("/dev/nbd{}: cannot set max_sectors_kb to {}", index, kb));
}

// Waits up to `limit` for `p` to exit (a pidfd where the kernel has them); reaps it if it is
// our child. True if it is gone.
bool gone_within(const ProcessId& p, std::chrono::milliseconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, p.pid, 0)));
  for (;;) {
    int status = 0;
    ::waitpid(p.pid, &status, WNOHANG);  // our child (the wrapper started it): reap it
    if (!process_alive(p)) return true;
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    if (pidfd.get() >= 0) {
      struct pollfd pf = {pidfd.get(), POLLIN, 0};
      ::poll(&pf, 1, static_cast<int>(std::min<long>(left.count(), 100)));
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
}

// The daemon a record names: its recorded identity, or (a wrapper killed between start and
// record) the process its pidfile names. Either way only a process started with this set's
// pidfile on its command line: gc signals it as root.
std::optional<ProcessId> recorded_daemon(const JournalContents::Served& s) {
  std::optional<ProcessId> p = s.daemon;
  if (!p) {
    long pid = 0;
    std::ifstream in(s.pidfile);
    if (!(in >> pid) || pid <= 0) return std::nullopt;
    p = identify_process(static_cast<pid_t>(pid));
  }
  if (!p || !process_alive(*p)) return std::nullopt;
  std::ifstream cmd(fmt::format("/proc/{}/cmdline", p->pid));
  std::string args((std::istreambuf_iterator<char>(cmd)), std::istreambuf_iterator<char>());
  if (args.find(std::string("--pidfile") + '\0' + s.pidfile + '\0') == std::string::npos) return std::nullopt;
  return p;
}

std::pair<bool, bool> disconnect_for_real(const std::string& id) {
  const int index = find_nbd_device(id);
  if (index < 0) return {false, false};
  try {
    NbdNetlink().disconnect(static_cast<uint32_t>(index));
  } catch (const std::exception& e) {
    log_error(e.what());
  }
  // DISCONNECT returns before the device lets go of its socket (NL7): wait, bounded, for
  // the kernel to drop it. A device whose server is gone goes at once.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (find_nbd_device(id) == index) {
    if (std::chrono::steady_clock::now() >= deadline) {
      log_error(fmt::format("/dev/nbd{}: still connected 30 s after DISCONNECT", index));
      return {true, true};
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  log_verbose(fmt::format("disconnected /dev/nbd{} ({})", index, id));
  return {true, false};
}

std::pair<bool, bool> stop_for_real(const JournalContents::Served& s) {
  const std::optional<ProcessId> p = recorded_daemon(s);
  if (!p) return {false, false};
  // SIGTERM: the daemon closes its exports, flushes and syncs every image (QS3). A daemon
  // that does not go within the grace period (a hung file system) gets SIGKILL.
  UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, p->pid, 0)));
  auto signal = [&](int sig) {
    // Checked against the identity after the pidfd is open: a recycled pid is never hit.
    if (pidfd.get() >= 0) ::syscall(SYS_pidfd_send_signal, pidfd.get(), sig, nullptr, 0);
    else if (process_alive(*p)) ::kill(p->pid, sig);
  };
  if (!process_alive(*p)) return {false, false};
  signal(SIGTERM);
  if (gone_within(*p, std::chrono::seconds(30))) return {true, false};
  log_warning(fmt::format("storage daemon pid {} ignored SIGTERM for 30 s: SIGKILL", p->pid));
  signal(SIGKILL);
  return {true, !gone_within(*p, std::chrono::seconds(30))};
}

}  // namespace

std::vector<std::string> open_files(pid_t pid) {
  std::vector<std::string> out;
  const std::string dir = fmt::format("/proc/{}/fd", pid);
  DIR* d = ::opendir(dir.c_str());
  if (!d) throw Error(dir, "cannot list: " + errno_string(errno));
  while (struct dirent* e = ::readdir(d)) {
    if (e->d_name[0] == '.') continue;
    const std::string fd = dir + "/" + e->d_name;
    struct stat st{};
    char target[PATH_MAX];
    const ssize_t n = ::readlink(fd.c_str(), target, sizeof target - 1);
    if (n <= 0 || ::stat(fd.c_str(), &st) != 0 || !(S_ISREG(st.st_mode) || S_ISBLK(st.st_mode))) continue;
    out.emplace_back(target, static_cast<size_t>(n));
  }
  ::closedir(d);
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

std::vector<std::pair<std::string, std::string>> serve_images(
    const Plan& plan, JournalWriter& journal, const std::string& exe, std::chrono::milliseconds timeout,
    const std::function<void(const std::string& file)>& check_file) {
  std::vector<size_t> served;
  std::vector<DaemonImage> images;
  for (size_t i = 0; i < plan.disks.size(); ++i) {
    const DiskPlan& d = plan.disks[i];
    if (!d.info.served()) continue;
    served.push_back(i);
    images.push_back({d.info.canonical_path, d.info.format, d.spec.cache, d.spec.readonly, d.spec.discard});
  }
  if (served.empty()) return {};
  const std::string& first = plan.disks[served.front()].info.canonical_path;
  // nbd's defaults make 16 partitionable devices: a guest's partition table would show up as
  // host partitions that udev and LVM then probe. Loaded by us first, it has none (NM2).
  if (!load_module("nbd", {"max_part=0"}))
    throw Error(first, "the kernel's nbd module cannot be loaded (modprobe nbd max_part=0): formats other than "
                       "raw need it");
  const JournalContents::Served files = served_files(journal.path());
  journal.storage_daemon(files);
  // Named in the journal the moment it exists: a wrapper killed while the daemon starts up
  // leaves the backstop a pid to stop, not a daemon holding the image's lock for ever.
  StorageDaemon daemon(exe, images, {files.qmp_socket, files.nbd_socket, files.pidfile, files.log},
                       served.size() == 1 ? first : plan.vm_name, timeout, [&](pid_t pid) {
                         journal.storage_daemon_started(identify_process(pid).value_or(ProcessId{pid, 0}));
                       });
  const pid_t daemon_pid = daemon.pid();
  // From here the journal owns it: the teardown stops it after the devices above it.
  daemon.release();
  // The daemon opened every backing file the images name: a file the host's policy does not
  // allow is refused before any guest can read it. Its own log and pidfile are not images.
  if (check_file) {
    // Compared as the kernel names them: the state directory may be reached by a symlink.
    auto canonical = [](const std::string& p) {
      char buf[PATH_MAX];
      return ::realpath(p.c_str(), buf) ? std::string(buf) : p;
    };
    const std::string log = canonical(files.log), pidfile = canonical(files.pidfile);
    for (const std::string& f : open_files(daemon_pid))
      if (f != log && f != pidfile) check_file(f);
  }

  NbdNetlink nl(first);
  std::vector<std::pair<std::string, std::string>> bindings;
  for (size_t k = 0; k < served.size(); ++k) {
    const DiskPlan& d = plan.disks[served[k]];
    const std::string id = nbd_backend_prefix(journal.path()) + std::to_string(served[k]);
    journal.nbd(id, false);
    uint32_t index = 0;
    try {
      index = connect_nbd_export(nl, files.nbd_socket, daemon_export_name(k), id, d.spec.block_size,
                             d.info.canonical_path, timeout);
    } catch (...) {
      if (find_nbd_device(id) < 0) journal.nbd(id, true);
      throw;
    }
    log_verbose(fmt::format("{} -> /dev/nbd{}", d.info.canonical_path, index));
    set_request_size(index);
    bindings.emplace_back(d.nbd_var, fmt::format("/dev/nbd{}", index));
  }
  return bindings;
}

int find_nbd_device(const std::string& id) {
  DIR* dir = ::opendir("/sys/block");
  if (!dir) return -1;
  int found = -1;
  while (struct dirent* e = ::readdir(dir)) {
    int index = -1;
    if (std::sscanf(e->d_name, "nbd%d", &index) != 1 || fmt::format("nbd{}", index) != e->d_name) continue;
    if (nbd_connected(index) && read_line(fmt::format("/sys/block/nbd{}/backend", index)) == id) {
      found = index;
      break;
    }
  }
  ::closedir(dir);
  return found;
}

ServedEffects ServedEffects::real() { return {disconnect_for_real, stop_for_real}; }

ServedEffects ServedEffects::dry_run(std::function<void(const std::string&)> say) {
  return {[say](const std::string& id) -> std::pair<bool, bool> {
            const int index = find_nbd_device(id);
            if (index < 0) return {false, false};
            say(fmt::format("would disconnect /dev/nbd{} ({})", index, id));
            return {true, false};
          },
          [say](const JournalContents::Served& s) -> std::pair<bool, bool> {
            const std::optional<ProcessId> p = recorded_daemon(s);
            if (!p) return {false, false};
            say(fmt::format("would stop the storage daemon (pid {})", p->pid));
            return {true, false};
          }};
}

std::pair<int, int> teardown_served(const JournalContents::Served& s, const ServedEffects& fx) {
  int present = 0, left = 0;
  for (auto it = s.nbd.rbegin(); it != s.nbd.rend(); ++it) {
    const auto [was, is] = fx.disconnect(*it);
    present += was;
    left += is;
  }
  // A daemon under a device that would not let go keeps serving it: stopping it would leave
  // the device's I/O hanging on a dead socket.
  if (left > 0) return {present + 1, left + 1};
  const auto [ran, runs] = fx.stop_daemon(s);
  return {present + ran, left + runs};
}

}  // namespace qemu_lio
