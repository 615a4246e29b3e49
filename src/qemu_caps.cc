#include "qemu_lio/qemu_caps.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include <cerrno>
#include <fstream>
#include <sstream>
#include <vector>

#include "qemu_lio/error.h"
#include "qemu_lio/identity.h"
#include "qemu_lio/state_lock.h"
#include "qemu_lio/unique_fd.h"

namespace qemu_lio {
namespace {

// One probe run: stdout into a memfd, stdin and stderr on /dev/null, a clean signal mask
// (a launch blocks signals), killed if it does not finish in time. "" when it did not exit 0.
std::string run_probe(const std::string& exe, const std::vector<std::string>& args, int timeout_seconds) {
  UniqueFd out(::memfd_create("qemu-lio-probe", MFD_CLOEXEC));
  if (out.get() < 0) return "";
  std::vector<std::string> argv_s{exe};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = ::fork();
  if (pid < 0) return "";
  if (pid == 0) {
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    int null = ::open("/dev/null", O_RDWR);
    ::dup2(null, 0);
    ::dup2(out.get(), 1);
    ::dup2(null, 2);
    ::execv(exe.c_str(), argv.data());
    _exit(127);
  }
  UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  int status = 0;
  bool done = false, reaped = false;
  if (pidfd.get() >= 0) {
    struct pollfd pf = {pidfd.get(), POLLIN, 0};
    int r;
    while ((r = ::poll(&pf, 1, timeout_seconds * 1000)) < 0 && errno == EINTR) {
    }
    done = r > 0;
  } else {  // no pidfd (before 5.3): poll waitpid
    for (int i = 0; i < timeout_seconds * 10 && !done; ++i) {
      done = reaped = ::waitpid(pid, &status, WNOHANG) == pid;
      if (!done) ::usleep(100000);
    }
  }
  if (!done) ::kill(pid, SIGKILL);
  while (!reaped && ::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!done || !WIFEXITED(status) || WEXITSTATUS(status) != 0) return "";
  std::string text;
  ::lseek(out.get(), 0, SEEK_SET);
  char buf[8192];
  ssize_t n;
  while ((n = ::read(out.get(), buf, sizeof buf)) > 0) text.append(buf, static_cast<size_t>(n));
  return text;
}

}  // namespace

QemuCaps parse_qemu_caps(const std::string& device_help, const std::string& vhost_help) {
  QemuCaps c;
  // QEMU lists each device as `name "DRIVER", bus ...`.
  c.is_qemu = device_help.find("name \"") != std::string::npos;
  c.vhost_scsi_pci = device_help.find("name \"vhost-scsi-pci\"") != std::string::npos;
  std::istringstream in(vhost_help);
  for (std::string line; std::getline(in, line);) {
    const auto b = line.find_first_not_of(' ');
    if (b != std::string::npos && line.compare(b, 21, "worker_per_virtqueue=") == 0)
      c.worker_per_virtqueue = true;
  }
  return c;
}

QemuCaps probe_qemu_caps(const std::string& exe, int timeout_seconds) {
  const std::vector<std::string> base{"-nodefaults", "-machine", "none"};
  auto with = [&](const char* dev) {
    std::vector<std::string> a = base;
    a.push_back("-device");
    a.push_back(dev);
    return a;
  };
  const std::string devices = run_probe(exe, with("help"), timeout_seconds);
  QemuCaps c = parse_qemu_caps(devices, "");
  if (c.vhost_scsi_pci)
    c = parse_qemu_caps(devices, run_probe(exe, with("vhost-scsi-pci,help"), timeout_seconds));
  return c;
}

QemuCaps cached_qemu_caps(const std::string& exe, const std::string& state_dir) {
  struct stat st;
  if (::stat(exe.c_str(), &st) != 0) return probe_qemu_caps(exe);
  const std::string key = fmt::format("{} {} {} {} {}.{}", exe, st.st_dev, st.st_ino, st.st_size,
                                      st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
  const std::string dir = state_dir + "/caps";
  const std::string file = fmt::format("{}/{:016x}.json", dir, fnv1a64(exe));
  try {
    std::ifstream in(file);
    if (in) {
      nlohmann::json j = nlohmann::json::parse(in);
      if (j.at("key").get<std::string>() == key) {
        QemuCaps c;
        c.is_qemu = j.at("is_qemu").get<bool>();
        c.vhost_scsi_pci = j.at("vhost_scsi_pci").get<bool>();
        c.worker_per_virtqueue = j.at("worker_per_virtqueue").get<bool>();
        return c;
      }
    }
  } catch (const std::exception&) {
    // unreadable or from another version: probe again and overwrite it
  }
  QemuCaps c = probe_qemu_caps(exe);
  // Only a yes is kept: a refusal is asked again next time, because the key cannot see
  // through a wrapper script (Debian's kvm) whose QEMU changed while the script did not.
  if (!c.vhost_scsi_pci) return c;
  try {
    ensure_state_dir(state_dir);
    ::mkdir(dir.c_str(), 0700);
    nlohmann::json j = {{"key", key},
                        {"is_qemu", c.is_qemu},
                        {"vhost_scsi_pci", c.vhost_scsi_pci},
                        {"worker_per_virtqueue", c.worker_per_virtqueue}};
    const std::string tmp = fmt::format("{}.{}.tmp", file, ::getpid());
    {
      std::ofstream o(tmp);
      o << j.dump() << "\n";
      if (!o.flush()) throw Error(tmp, "cannot write");
    }
    if (::rename(tmp.c_str(), file.c_str()) != 0) ::unlink(tmp.c_str());
  } catch (const std::exception&) {
  }
  return c;
}

void require_vhost_scsi(const QemuCaps& caps, const std::string& exe) {
  if (caps.is_qemu && !caps.vhost_scsi_pci)
    throw Error(exe, "this QEMU has no vhost-scsi-pci device (its '-device help' does not list it); "
                     "use a QEMU built with vhost-scsi");
}

}  // namespace qemu_lio
