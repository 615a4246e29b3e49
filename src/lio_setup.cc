#include "qemu_lio/lio_setup.h"
#include "qemu_lio/qemu_caps.h"

#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <boost/process/io.hpp>
#include <boost/process/pipe.hpp>
#include <boost/process/search_path.hpp>
#include <boost/process/system.hpp>
#include <boost/process/child.hpp>
#include <boost/process/args.hpp>
#include <boost/process/exe.hpp>
#include <fmt/format.h>

#include <cerrno>
#include <cstdio>

#include "qemu_lio/error.h"
#include "qemu_lio/lio_inventory.h"
#include "qemu_lio/log.h"
#include "qemu_lio/supervisor.h"
#include "qemu_lio/vhost_caps.h"

namespace bp = boost::process;

namespace qemu_lio {

const std::vector<std::string> kLioModules = {"target_core_mod", "target_core_file",
                                              "target_core_iblock", "vhost_scsi"};

namespace {

constexpr const char* kStandardConfigfs = "/sys/kernel/config";
constexpr long kConfigfsMagic = 0x62656570;

bool is_configfs(const std::string& dir) {
  struct statfs s;
  return ::statfs(dir.c_str(), &s) == 0 && s.f_type == kConfigfsMagic;
}

bool exists(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0;
}

std::vector<std::string> missing_modules() {
  std::vector<std::string> out;
  for (const auto& m : kLioModules)
    if (!module_loaded(m)) out.push_back(m);
  return out;
}

// modprobe with `args`; its own messages go to our stderr.
bool run_modprobe(const std::vector<std::string>& args) {
  std::string exe = find_executable("modprobe");
  if (exe.empty() && exists("/sbin/modprobe")) exe = "/sbin/modprobe";
  if (exe.empty()) return false;
  try {
    return bp::system(bp::exe = exe, bp::args = args, bp::std_in < bp::null) == 0;
  } catch (const std::exception&) {
    return false;
  }
}

}  // namespace

// modprobe -a: one process for all modules.
static bool modprobe(const std::vector<std::string>& mods) {
  std::vector<std::string> args = {"-a"};
  args.insert(args.end(), mods.begin(), mods.end());
  return run_modprobe(args);
}

bool load_module(const std::string& name, const std::vector<std::string>& params) {
  if (module_loaded(name)) return true;
  std::vector<std::string> args = {name};
  args.insert(args.end(), params.begin(), params.end());
  return run_modprobe(args) && module_loaded(name);
}

bool module_loaded(const std::string& name) { return exists("/sys/module/" + name); }

void prepare_lio(const std::string& root) {
  if (root != kStandardConfigfs) return;  // a test tree or a custom mount: leave it alone
  if (!is_configfs(root)) {
    if (::mount("none", root.c_str(), "configfs", 0, nullptr) != 0)
      throw Error(root, "configfs is not mounted and mounting it failed: " + errno_string(errno));
    log_verbose("mounted configfs at " + root);
  }
  auto missing = missing_modules();
  if (!missing.empty() && !modprobe(missing))
    log_warning(fmt::format("modprobe of {} failed", fmt::join(missing, " ")));
}

std::vector<CheckItem> preflight(const std::string& root, const std::string& qemu) {
  std::vector<CheckItem> items;
  bool is_root = ::geteuid() == 0;
  items.push_back({"running as root", is_root,
                   "configfs is writable by root only: run qemu-lio as root (libvirt: "
                   "user = \"root\" in /etc/libvirt/qemu.conf)"});
  if (is_root) {
    try {
      prepare_lio(root);
    } catch (const Error& e) {
      items.push_back({"configfs mounted at " + root, false, e.what()});
    }
  }
  items.push_back({"configfs mounted at " + root, is_configfs(root) || root != kStandardConfigfs,
                   "mount -t configfs none " + root});
  for (const auto& m : kLioModules)
    items.push_back({"module " + m + " loaded", module_loaded(m),
                     "modprobe " + m + " (install your distribution's kernel modules package)"});
  items.push_back({root + "/target present", exists(root + "/target/core"),
                   "modprobe target_core_mod"});
  items.push_back({"/dev/vhost-scsi present", exists("/dev/vhost-scsi"),
                   "modprobe vhost_scsi; check that udev or devtmpfs created /dev/vhost-scsi"});
  struct utsname u;
  int major = 0, minor = 0;
  if (::uname(&u) == 0) std::sscanf(u.release, "%d.%d", &major, &minor);
  items.push_back({"kernel supports fd_async_io (cache=none)", major > 4 || (major == 4 && minor >= 18),
                   "kernel older than 4.18: use cache=writeback or writethrough"});
  std::string exe = find_executable(qemu);
  if (!exe.empty() && ::access(exe.c_str(), X_OK) != 0) exe.clear();
  const QemuCaps caps = exe.empty() ? QemuCaps{} : probe_qemu_caps(exe);
  items.push_back({qemu + " offers vhost-scsi-pci", caps.vhost_scsi_pci,
                   exe.empty() ? qemu + " not found: install qemu-system-x86 or pass --qemu PATH"
                               : qemu + " lacks vhost-scsi-pci: use a QEMU built with vhost-scsi"});
  if (caps.vhost_scsi_pci)
    items.push_back({fmt::format("{} vhost-scsi-pci worker_per_virtqueue: {}", qemu,
                                 caps.worker_per_virtqueue ? "yes" : "no (QEMU 9.0 and later)"),
                     true, "", true});
  // The other half of worker_per_virtqueue (auto uses it only when both say yes).
  const VhostWorkerSupport k = probe_vhost_workers();
  items.push_back({fmt::format("kernel vhost workers per virtqueue (VHOST_NEW_WORKER): {}",
                               k.answer == VhostWorkerSupport::Answer::kYes  ? "yes"
                               : k.answer == VhostWorkerSupport::Answer::kNo ? "no (Linux 6.5 and later)"
                                                                             : "unknown: " + k.why),
                   true, "", true});
  return items;
}

namespace {

std::string trim_right(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

// The directory the kernel keeps its reservation files under; throws SysError if unreadable.
std::string read_dbroot(ConfigFs& fs) { return trim_right(fs.read("target/dbroot")); }

}  // namespace

void ensure_pr_directory(ConfigFs& fs) {
  std::string dbroot;
  try {
    dbroot = read_dbroot(fs);
  } catch (const SysError& e) {
    throw Error(fs.absolute("target/dbroot"), "cannot read: " + errno_string(e.err()));
  }
  if (dbroot.empty() || dbroot[0] != '/') throw Error(fs.absolute("target/dbroot"), "names no absolute directory: '" + dbroot + "'");
  // The kernel's default (/var/target) is not checked to exist; a written value always is.
  for (const auto& [dir, mode] : {std::pair<std::string, mode_t>{dbroot, 0755}, {dbroot + "/pr", 0700}}) {
    if (::mkdir(dir.c_str(), mode) != 0 && errno != EEXIST)
      throw Error(dir, "cannot create the directory for persistent reservations: " + errno_string(errno));
    struct stat st;
    if (::lstat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
      throw Error(dir, "is not a directory: the kernel cannot keep persistent reservations there");
  }
}

void remove_stale_pr_file(ConfigFs& fs, const std::string& object, const std::string& serial,
                          const std::function<void(const std::string&)>& remove) noexcept {
  try {
    if (serial.empty() || serial.size() > 128 ||
        serial.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:") != std::string::npos)
      return;
    for (const Backstore& b : scan_inventory(fs).backstores) {
      if (b.name == object) return;  // another VM still uses the disk
      std::string s;
      try {
        s = fs.read(b.path() + "/wwn/vpd_unit_serial");
      } catch (const SysError&) {
        continue;
      }
      // "T10 VPD Unit Serial Number: <serial>"
      const size_t colon = s.rfind(": ");
      if (trim_right(colon == std::string::npos ? s : s.substr(colon + 2)) == serial)
        return;  // the file is that object's now
    }
    const std::string dbroot = read_dbroot(fs);
    if (dbroot.empty() || dbroot[0] != '/') return;
    const std::string file = dbroot + "/pr/aptpl_" + serial;
    if (::access(file.c_str(), F_OK) != 0) return;
    log_verbose(file + ": its shared disk's last VM is gone");
    if (remove) remove(file);
    else ::unlink(file.c_str());
  } catch (const std::exception& e) {
    log_verbose(std::string("persistent reservation file of ") + serial + " left: " + e.what());
  }
}

}  // namespace qemu_lio
