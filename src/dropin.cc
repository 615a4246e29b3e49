#include "qemu_lio/dropin.h"

#include <sys/stat.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "qemu_lio/error.h"
#include "qemu_lio/plan_builder.h"
#include "qemu_lio/qemu_drive.h"

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

bool read_text(const std::string& path, std::string& out) {
  std::ifstream in(path);
  if (!in) return false;
  std::stringstream ss;
  ss << in.rdbuf();
  out = ss.str();
  return true;
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

DropinRequest scan_qemu_argv(const std::vector<std::string>& in) {
  DropinRequest r;
  if (in.empty()) return r;
  r.argv.push_back(in[0]);
  for (size_t i = 1; i < in.size(); ++i) {
    const std::string& a = in[i];
    const bool has_value = i + 1 < in.size();
    if (has_value && is_opt(a, "drive")) {
      if (auto img = drive_to_image(in[i + 1])) {
        r.slots.push_back(r.argv.size());
        r.images.push_back(*img);
        ++i;
        continue;
      }
    } else if (has_value && is_opt(a, "lio-image")) {
      r.images.push_back(parse_image_spec(in[i + 1]));
      r.slots.push_back(r.argv.size());
      ++i;
      continue;
    } else if (has_value && is_opt(a, "readconfig")) {
      std::string text;
      if (read_text(in[i + 1], text)) {
        ReadConfig rc = parse_readconfig(text);
        if (!r.smp_cpus) r.smp_cpus = smp_from_readconfig(text);
        if (!rc.images().empty()) {
          ReadConfigUse use;
          use.arg_index = r.argv.size() + 1;
          use.first_image = r.images.size();
          use.count = rc.images().size();
          for (const ImageSpec& s : rc.images()) {
            r.images.push_back(s);
            r.slots.push_back(std::nullopt);
          }
          use.parsed = std::move(rc);
          r.readconfigs.push_back(std::move(use));
        }
      }
    } else if (is_opt(a, "daemonize")) {
      r.daemonize = true;
    } else if (has_value && is_opt(a, "pidfile")) {
      r.pidfile = in[i + 1];
    } else if (has_value && is_opt(a, "smp")) {
      r.smp_cpus = parse_smp(in[i + 1]);
    }
    r.argv.push_back(a);
    if (has_value && (is_opt(a, "readconfig") || is_opt(a, "pidfile") || is_opt(a, "smp") ||
                      is_opt(a, "drive"))) {
      r.argv.push_back(in[++i]);
    }
  }
  return r;
}

void prepend_images(DropinRequest& req, const std::vector<ImageSpec>& specs) {
  req.images.insert(req.images.begin(), specs.begin(), specs.end());
  req.slots.insert(req.slots.begin(), specs.size(), req.argv.size());
  for (ReadConfigUse& use : req.readconfigs) use.first_image += specs.size();
}

std::vector<std::string> finalize_argv(const DropinRequest& req, const Plan& plan,
                                       const std::vector<std::string>& copies) {
  std::vector<std::string> out;
  auto emit_devices_at = [&](size_t pos) {
    for (size_t k = 0; k < req.slots.size(); ++k)
      if (req.slots[k] && *req.slots[k] == pos) {
        out.push_back("-device");
        out.push_back(device_option(plan.disks.at(k)));
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
    const char* path = std::getenv("PATH");
    std::istringstream dirs(path ? path : "/usr/local/bin:/usr/bin:/bin");
    std::string dir;
    while (std::getline(dirs, dir, ':')) {
      std::string cand = (dir.empty() ? "." : dir) + "/" + name;
      struct stat st;
      if (::stat(cand.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
      if (st.st_dev == self.st_dev && st.st_ino == self.st_ino) continue;  // that is us
      return cand;
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
