#include "qemu_lio/qemu_cmdline.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <boost/process/environment.hpp>
#include <boost/process/search_path.hpp>
#include <fmt/core.h>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include <cerrno>
#include <algorithm>
#include <cstdlib>
#include <map>
#include <sstream>

#include "qemu_lio/error.h"
#include "qemu_lio/plan_builder.h"
#include "qemu_lio/qemu_drive.h"
#include "qemu_lio/unique_fd.h"

namespace qemu_lio {
namespace {

std::string base_name(const std::string& p) {
  auto slash = p.rfind('/');
  return slash == std::string::npos ? p : p.substr(slash + 1);
}

// QEMU accepts both -opt and --opt.
bool is_opt(const std::string& arg, const char* name) {
  return arg == std::string("-") + name || arg == std::string("--") + name;
}

struct ConfigText {
  std::string text;
  bool stream = false;  // not a regular file: what was read here is gone for QEMU
};

// Reads a -readconfig argument exactly once: a pipe or /dev/stdin cannot be read twice.
std::optional<ConfigText> read_config_text(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) return std::nullopt;
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return std::nullopt;
  ConfigText c;
  c.stream = !S_ISREG(st.st_mode);
  if (!read_all(fd.get(), c.text)) return std::nullopt;
  return c;
}

// The value of `key` in QEMU option parts (the last one wins, as in QEMU).
std::optional<std::string> opt_value(const std::vector<std::string>& parts, const std::string& key) {
  std::optional<std::string> v;
  for (const std::string& p : parts)
    if (p.size() > key.size() && p.compare(0, key.size(), key) == 0 && p[key.size()] == '=')
      v = p.substr(key.size() + 1);
  return v;
}

// The -device options whose drive= names a vhost drive of the command line, by argv index
// of the option's value, with the drive id they use. QEMU would refuse them ("drive not
// found"); either may come first on the command line.
struct DeviceUses {
  std::map<size_t, std::string> dropped;             // -device value index -> drive id
  std::map<std::string, ReplacedDevice> by_drive;    // drive id -> first device using it
};

DeviceUses find_vhost_device_uses(const std::vector<std::string>& in) {
  std::map<std::string, bool> vhost_ids;
  for (size_t i = 1; i + 1 < in.size(); ++i) {
    if (!is_opt(in[i], "drive")) continue;
    std::vector<std::string> parts = split_qemu_opts(in[i + 1]);
    auto id = opt_value(parts, "id");
    if (id && !id->empty() && opt_value(parts, "if") == std::string(kVhostScsiInterface))
      vhost_ids[*id] = true;
    ++i;
  }
  DeviceUses uses;
  if (vhost_ids.empty()) return uses;
  for (size_t i = 1; i + 1 < in.size(); ++i) {
    if (!is_opt(in[i], "device")) continue;
    const std::string& v = in[++i];
    if (v.empty() || v[0] == '{') continue;  // JSON -device: QEMU's to parse
    std::vector<std::string> parts = split_qemu_opts(v);
    auto drive = opt_value(parts, "drive");
    if (!drive || !vhost_ids.count(*drive)) continue;
    ReplacedDevice dev;
    dev.name = "-device " + v;
    dev.driver = parts[0].find('=') == std::string::npos ? parts[0]
                                                         : opt_value(parts, "driver").value_or("");
    dev.bootindex = opt_value(parts, "bootindex");
    dev.bus = opt_value(parts, "bus");
    dev.addr = opt_value(parts, "addr");
    dev.share_rw = opt_value(parts, "share-rw");
    uses.dropped.emplace(i, *drive);
    uses.by_drive.emplace(*drive, std::move(dev));  // the first one wins, as in a readconfig
  }
  return uses;
}

// [smp-opts] cpus = "N" in a readconfig file (libvirt and EVE style).
std::optional<int> smp_from_readconfig(const std::string& text) {
  std::istringstream in(text);
  std::string line;
  bool in_smp = false;
  while (std::getline(in, line)) {
    auto b = line.find_first_not_of(" \t");
    if (b == std::string::npos) continue;
    line = line.substr(b);
    if (line[0] == '[') {
      in_smp = line.rfind("[smp-opts]", 0) == 0;
      continue;
    }
    if (!in_smp || line.rfind("cpus", 0) != 0) continue;
    auto q = line.find('"');
    if (q == std::string::npos) continue;
    int n = std::atoi(line.c_str() + q + 1);
    if (n > 0) return n;
  }
  return std::nullopt;
}

bool same_inode(const struct stat& a, const std::string& path) {
  struct stat b;
  return ::stat(path.c_str(), &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

}  // namespace

bool is_dropin_name(const std::string& argv0) {
  return base_name(argv0).rfind("qemu-system-", 0) == 0;
}

std::optional<int> parse_smp(const std::string& value) {
  std::vector<std::string> parts = split_qemu_opts(value);
  int product = 1;
  bool any_topology = false;
  for (size_t i = 0; i < parts.size(); ++i) {
    const std::string& p = parts[i];
    auto eq = p.find('=');
    if (eq == std::string::npos) {
      if (i == 0 && !p.empty()) return std::atoi(p.c_str());  // "-smp 4" is cpus=4
      continue;
    }
    std::string k = p.substr(0, eq);
    int v = std::atoi(p.c_str() + eq + 1);
    if (k == "cpus" && v > 0) return v;
    if ((k == "sockets" || k == "dies" || k == "clusters" || k == "cores" || k == "threads") && v > 0) {
      product *= v;
      any_topology = true;
    }
  }
  if (any_topology) return product;
  return std::nullopt;
}

QemuCommandLine scan_qemu_argv(const std::vector<std::string>& in) {
  QemuCommandLine r;
  if (in.empty()) return r;
  const DeviceUses device_uses = find_vhost_device_uses(in);
  r.argv.push_back(in[0]);
  for (size_t i = 1; i < in.size(); ++i) {
    const std::string& a = in[i];
    const bool has_value = i + 1 < in.size();
    if (has_value && is_opt(a, "drive")) {
      std::vector<std::string> parts = split_qemu_opts(in[i + 1]);
      std::optional<ReplacedDevice> dev;
      if (auto id = opt_value(parts, "id"); id && device_uses.by_drive.count(*id))
        dev = device_uses.by_drive.at(*id);
      if (auto img = drive_to_image(in[i + 1], dev ? replaced_device_options(*dev) : DriveOptions{})) {
        if (dev) take_pci_slot(*img, *dev);
        r.slots.push_back(r.argv.size());
        r.images.push_back(*img);
        ++i;
        continue;
      }
    } else if (has_value && is_opt(a, "device") && device_uses.dropped.count(i + 1)) {
      ++i;  // its drive is a vhost-scsi LUN now; the vhost-scsi device takes its place
      continue;
    } else if (has_value && is_opt(a, "lio-image")) {
      r.images.push_back(parse_image_spec(in[i + 1]));
      r.slots.push_back(r.argv.size());
      ++i;
      continue;
    } else if (has_value && is_opt(a, "readconfig")) {
      if (std::optional<ConfigText> cfg = read_config_text(in[i + 1])) {
        ReadConfig rc = parse_readconfig(cfg->text);
        if (!r.smp_cpus) r.smp_cpus = smp_from_readconfig(cfg->text);
        // A regular file without vhost drives stays QEMU's to read; a stream was consumed
        // here and QEMU gets its copy.
        if (!rc.images().empty() || cfg->stream) {
          ReadConfigUse use;
          use.arg_index = r.argv.size() + 1;
          use.first_image = r.images.size();
          use.count = rc.images().size();
          use.stream = cfg->stream;
          for (const ImageSpec& s : rc.images()) {
            r.images.push_back(s);
            r.slots.push_back(std::nullopt);
          }
          use.parsed = std::move(rc);
          r.readconfigs.push_back(std::move(use));
        }
      }
    } else if (has_value && is_opt(a, "device")) {
      const std::string& v = in[i + 1];
      auto b = v.find_first_not_of(" \t\n");
      if (b != std::string::npos && v[b] == '{') r.json_devices = true;
    } else if (is_opt(a, "daemonize")) {
      r.daemonize = true;
    } else if (has_value && is_opt(a, "pidfile")) {
      r.pidfile = in[i + 1];
    } else if (has_value && is_opt(a, "smp")) {
      r.smp_cpus = parse_smp(in[i + 1]);
    } else if (has_value && is_opt(a, "name")) {
      r.name = in[i + 1];  // the last one wins, as in QEMU
    } else if (has_value && (is_opt(a, "machine") || is_opt(a, "M"))) {
      // "-machine q35,accel=kvm" or "-machine type=q35"; the last type wins.
      for (const std::string& part : split_qemu_opts(in[i + 1])) {
        if (part.rfind("type=", 0) == 0) r.machine = part.substr(5);
        else if (part.find('=') == std::string::npos && !part.empty()) r.machine = part;
      }
    }
    r.argv.push_back(a);
    if (has_value && (is_opt(a, "readconfig") || is_opt(a, "pidfile") || is_opt(a, "smp") ||
                      is_opt(a, "name") || is_opt(a, "drive") || is_opt(a, "device") ||
                      is_opt(a, "machine") || is_opt(a, "M"))) {
      r.argv.push_back(in[++i]);
    }
  }
  return r;
}

void prepend_images(QemuCommandLine& req, const std::vector<ImageSpec>& specs) {
  req.images.insert(req.images.begin(), specs.begin(), specs.end());
  req.slots.insert(req.slots.begin(), specs.size(), req.argv.size());
  for (ReadConfigUse& use : req.readconfigs) use.first_image += specs.size();
}

std::vector<std::pair<std::string, std::string>> device_properties(const DiskPlan& d) {
  std::vector<std::pair<std::string, std::string>> p = {
      {"driver", "vhost-scsi-pci"},
      {"wwpn", d.identity.wwn},
      {"max_sectors", std::to_string(d.spec.max_sectors)}};
  if (d.spec.num_queues) p.emplace_back("num_queues", std::to_string(*d.spec.num_queues));
  if (d.worker_per_virtqueue) p.emplace_back("worker_per_virtqueue", "on");
  if (d.spec.bootindex) {
    p.emplace_back("bootindex", std::to_string(*d.spec.bootindex));
    p.emplace_back("boot_tpgt", "1");  // the TPG qemu-lio creates
  }
  if (d.spec.id) p.emplace_back("id", *d.spec.id);
  if (d.spec.bus) p.emplace_back("bus", *d.spec.bus);
  if (d.spec.addr) p.emplace_back("addr", *d.spec.addr);
  return p;
}

std::string device_option(const DiskPlan& d) {
  std::string s;
  for (const auto& [k, v] : device_properties(d))
    s += k == "driver" ? v : "," + k + "=" + v;
  return s;
}

bool is_q35(const std::string& machine) {
  return machine == "q35" || machine.rfind("pc-q35-", 0) == 0;
}

std::vector<std::string> hotplug_port_options(int count, bool json) {
  std::vector<std::string> out;
  for (int k = 0; k < count; ++k) {
    // Chassis numbers from the top of the range: libvirt and hand-written command lines
    // number their own root ports from 0 or 1, and QEMU refuses a repeated chassis/slot.
    const int chassis = 255 - k;
    out.push_back("-device");
    out.push_back(json ? fmt::format(R"({{"driver":"pcie-root-port","id":"{}{}","chassis":{}}})", kHotplugPortPrefix, k, chassis)
                       : fmt::format("pcie-root-port,id={}{},chassis={}", kHotplugPortPrefix, k, chassis));
  }
  return out;
}

std::string device_json(const DiskPlan& d) {
  nlohmann::ordered_json j = nlohmann::ordered_json::object();
  for (const auto& [k, v] : device_properties(d)) {
    // QEMU reads a JSON -device with a strict visitor: an integer property must be a JSON
    // number ("max_sectors":"2048" is refused), while bus and addr stay strings.
    if (k == "max_sectors" || k == "num_queues" || k == "bootindex" || k == "boot_tpgt")
      j[k] = std::stoll(v);
    else if (k == "worker_per_virtqueue")
      j[k] = v == "on";  // a bool property takes a JSON boolean
    else
      j[k] = v;
  }
  return j.dump();
}

std::vector<std::string> finalize_argv(const QemuCommandLine& req, const Plan& plan,
                                       const std::vector<std::string>& copies) {
  std::vector<std::string> out;
  // QEMU creates every key=value -device before any JSON one, each kind in argv order. A
  // caller that writes JSON (libvirt) gives each of its devices an explicit address; ours,
  // placed by QEMU, must come after all of them, or it takes a slot one of them names. So
  // with a JSON caller ours are JSON too and go last; otherwise each keeps its drive's place
  // (an existing guest keeps its PCI layout).
  const size_t end = req.argv.size();
  auto emit_devices_at = [&](size_t pos) {
    for (size_t k = 0; k < req.slots.size(); ++k) {
      if (!req.slots[k] || (req.json_devices ? end : *req.slots[k]) != pos) continue;
      if (plan.disks.at(k).lun != 0) continue;  // its controller's device is in its first disk's place
      out.push_back("-device");
      out.push_back(req.json_devices ? device_json(plan.disks.at(k)) : device_option(plan.disks.at(k)));
    }
  };
  for (size_t i = 0; i < req.argv.size(); ++i) {
    emit_devices_at(i);
    std::string arg = req.argv[i];
    for (size_t c = 0; c < req.readconfigs.size(); ++c)
      if (req.readconfigs[c].arg_index == i) arg = copies.at(c);
    out.push_back(arg);
  }
  emit_devices_at(req.argv.size());
  return out;
}

std::string find_real_qemu(const std::string& argv0, const Config& cfg) {
  struct stat self;
  if (::stat("/proc/self/exe", &self) != 0)
    throw Error("/proc/self/exe", "cannot identify qemu-lio's own file");
  std::string choice, source;
  if (const char* env = ::secure_getenv("QEMU_LIO_QEMU"); env && *env) {
    choice = env;
    source = "QEMU_LIO_QEMU";
  } else if (cfg.qemu) {
    choice = *cfg.qemu;
    source = cfg.source + " (qemu =)";
  } else {
    const std::string name = base_name(argv0);
    // Boost.Process searches PATH as execvp would; a hit that is qemu-lio itself (by inode)
    // drops its directory from the search, and the search goes on.
    std::vector<boost::filesystem::path> dirs = boost::this_process::path();
    for (;;) {
      boost::filesystem::path hit = boost::process::search_path(name, dirs);
      if (hit.empty()) break;
      if (!same_inode(self, hit.string())) return hit.string();
      dirs.erase(std::remove(dirs.begin(), dirs.end(), hit.parent_path()), dirs.end());
    }
    throw Error(name, "no real QEMU found on PATH besides qemu-lio itself; set QEMU_LIO_QEMU "
                      "or 'qemu = PATH' in " + config_path(),
                exit_code::kNotFound);
  }
  if (same_inode(self, choice))
    throw Error(choice, "is qemu-lio itself (from " + source + "); point it at the real QEMU",
                exit_code::kNotFound);
  return choice;
}

}  // namespace qemu_lio
