#include "qemu_lio/config_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <sstream>

#include "qemu_lio/error.h"
#include "qemu_lio/unique_fd.h"

namespace qemu_lio {
namespace {

std::string strip(const std::string& s) {
  size_t b = s.find_first_not_of(" \t\r");
  if (b == std::string::npos) return "";
  size_t e = s.find_last_not_of(" \t\r");
  return s.substr(b, e - b + 1);
}

}  // namespace

std::string config_path() {
  // secure_getenv: in a set-user-ID or file-capability run the caller must not choose the
  // policy file.
  const char* env = ::secure_getenv("QEMU_LIO_CONFIG");
  return env && *env ? env : "/etc/qemu-lio.conf";
}

Config parse_config(const std::string& text, const std::string& source) {
  Config c;
  c.source = source;
  std::istringstream in(text);
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    std::string where = source + ":" + std::to_string(n);
    auto hash = line.find('#');
    if (hash != std::string::npos) line.resize(hash);
    line = strip(line);
    if (line.empty()) continue;
    auto eq = line.find('=');
    if (eq == std::string::npos) throw UsageError(where, "expected 'key = value'");
    std::string key = strip(line.substr(0, eq)), value = strip(line.substr(eq + 1));
    if (value.empty()) throw UsageError(where, "'" + key + "' has no value");
    if (key == "qemu") {
      if (value[0] != '/') throw UsageError(where, "qemu must be an absolute path");
      c.qemu = value;
    } else if (key == "mode") {
      if (value == "supervise") c.mode = LaunchMode::kSupervise;
      else if (value == "exec") c.mode = LaunchMode::kExec;
      else throw UsageError(where, "mode must be supervise or exec, not '" + value + "'");
    } else if (key == "allow") {
      if (value[0] != '/') throw UsageError(where, "allow must be an absolute directory");
      while (value.size() > 1 && value.back() == '/') value.pop_back();
      c.allow.push_back(value);
    } else if (key == "hotplug_ports") {
      if (value.find_first_not_of("0123456789") != std::string::npos || value.size() > 2 || std::stoi(value) > 16)
        throw UsageError(where, "hotplug_ports must be 0 to 16, not '" + value + "'");
      c.hotplug_ports = std::stoi(value);
    } else if (key == "worker_per_virtqueue") {
      if (value == "auto") c.worker_per_virtqueue = WorkerSetting::kAuto;
      else if (value == "on") c.worker_per_virtqueue = WorkerSetting::kOn;
      else if (value == "off") c.worker_per_virtqueue = WorkerSetting::kOff;
      else throw UsageError(where, "worker_per_virtqueue must be auto, on or off, not '" + value + "'");
    } else {
      throw UsageError(where, "unknown key '" + key +
                                  "' (known: qemu, mode, allow, hotplug_ports, worker_per_virtqueue)");
    }
  }
  return c;
}

Config load_config() {
  std::string path = config_path();
  // Only a missing file means "no config": one that exists but cannot be read (EACCES, a
  // directory) would otherwise drop its allow = rules silently.
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) {
    if (errno == ENOENT) return Config{};
    throw UsageError(path, "cannot read: " + errno_string(errno));
  }
  std::string text;
  // EISDIR for a directory.
  if (!read_all(fd.get(), text)) throw UsageError(path, "cannot read: " + errno_string(errno));
  return parse_config(text, path);
}

}  // namespace qemu_lio
