#include "qemu_lio/configfs.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "qemu_lio/error.h"
#ifdef QEMU_LIO_FAULT_INJECTION
#include "qemu_lio/fault_injection.h"
#endif
#include "qemu_lio/unique_fd.h"

namespace qemu_lio {
namespace {


class RealConfigFs : public ConfigFs {
 public:
  explicit RealConfigFs(std::string root) : root_(std::move(root)) {}

  // Errors name the absolute path: "<path>: <action>: <strerror>" is what the user reads.
  void mkdir(const std::string& path) override {
    if (::mkdir(absolute(path).c_str(), 0755) != 0) throw SysError(errno, "cannot create", absolute(path));
  }

  void rmdir(const std::string& path) override {
    if (::rmdir(absolute(path).c_str()) != 0) throw SysError(errno, "cannot remove", absolute(path));
  }

  void write(const std::string& path, const std::string& value) override {
    const std::string a = absolute(path);
    // Never O_CREAT: configfs attributes exist or the path is wrong, and a wrong path
    // must fail here rather than land somewhere else.
    UniqueFd fd(::open(a.c_str(), O_WRONLY | O_CLOEXEC | O_NOFOLLOW));
    if (fd.get() < 0) throw SysError(errno, "cannot open", a);
    // configfs parses the buffer of one write(2) call; a split write is two commands.
    ssize_t n = ::write(fd.get(), value.data(), value.size());
    if (n < 0) throw SysError(errno, "cannot write '" + printable(value) + "'", a);
    if (static_cast<size_t>(n) != value.size()) throw SysError(EIO, "short write", a);
  }

  std::string read(const std::string& path) override {
    const std::string a = absolute(path);
    UniqueFd fd(::open(a.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    if (fd.get() < 0) throw SysError(errno, "cannot open", a);
    std::string out;
    if (!read_all(fd.get(), out)) throw SysError(errno, "cannot read", a);
    return out;
  }

  void symlink(const std::string& target, const std::string& link) override {
    // configfs resolves the link target itself; an absolute path is the least ambiguous.
    if (::symlink(absolute(target).c_str(), absolute(link).c_str()) != 0)
      throw SysError(errno, "cannot link to " + absolute(target), absolute(link));
  }

  void unlink(const std::string& path) override {
    if (::unlink(absolute(path).c_str()) != 0) throw SysError(errno, "cannot unlink", absolute(path));
  }

  bool exists(const std::string& path) override {
    struct stat st;
    return ::lstat(absolute(path).c_str(), &st) == 0;
  }

  std::vector<std::string> list(const std::string& dir) override {
    std::vector<std::string> names;
    DIR* d = ::opendir(absolute(dir).c_str());
    if (!d) return names;
    while (struct dirent* e = ::readdir(d)) {
      std::string n = e->d_name;
      if (n != "." && n != "..") names.push_back(n);
    }
    ::closedir(d);
    std::sort(names.begin(), names.end());
    return names;
  }

  std::string absolute(const std::string& rel) const override { return root_ + "/" + rel; }

  // Every call is one or two syscalls on its own descriptor; the kernel serialises what
  // must be (the parent directory's lock, configfs' own locks).
  bool concurrent() const override { return true; }

 private:
  static std::string printable(const std::string& v) {
    std::string s = v;
    std::replace(s.begin(), s.end(), '\n', ' ');
    return s;
  }

  std::string root_;
};

// Reads see the tree as the printed changes would leave it: a removed directory is gone
// with everything under it, a cleared nexus reads empty.
class DryRunConfigFs : public ConfigFs {
 public:
  DryRunConfigFs(ConfigFs& inner, std::function<void(const std::string&)> say)
      : inner_(inner), say_(std::move(say)) {}

  void mkdir(const std::string& p) override { say_("would create " + abs(p)); }
  void rmdir(const std::string& p) override { gone(p, "would remove "); }
  void unlink(const std::string& p) override { gone(p, "would remove "); }
  void symlink(const std::string& t, const std::string& l) override {
    say_("would link " + abs(l) + " -> " + abs(t));
  }
  void write(const std::string& p, const std::string& v) override {
    if (!exists(p)) throw SysError(ENOENT, "cannot open", abs(p));
    say_("would write '" + v + "' to " + abs(p));
    written_.emplace_back(p, v);
  }
  std::string read(const std::string& p) override {
    if (removed(p)) throw SysError(ENOENT, "cannot open", abs(p));
    for (auto it = written_.rbegin(); it != written_.rend(); ++it)
      if (it->first == p) return it->second == "NULL" ? "" : it->second;
    return inner_.read(p);
  }
  bool exists(const std::string& p) override { return !removed(p) && inner_.exists(p); }
  std::vector<std::string> list(const std::string& d) override {
    std::vector<std::string> out;
    for (const std::string& n : inner_.list(d))
      if (!removed(d + "/" + n)) out.push_back(n);
    return out;
  }
  std::string absolute(const std::string& p) const override { return inner_.absolute(p); }

 private:
  void gone(const std::string& p, const char* verb) {
    if (!exists(p)) throw SysError(ENOENT, "cannot remove", abs(p));
    say_(verb + abs(p));
    removed_.push_back(p);
  }
  bool removed(const std::string& p) const {
    for (const std::string& r : removed_)
      if (p == r || p.rfind(r + "/", 0) == 0) return true;
    return false;
  }
  std::string abs(const std::string& p) const { return inner_.absolute(p); }

  ConfigFs& inner_;
  std::function<void(const std::string&)> say_;
  std::vector<std::string> removed_;
  std::vector<std::pair<std::string, std::string>> written_;
};

}  // namespace

std::unique_ptr<ConfigFs> make_real_configfs(const std::string& root) {
  return std::make_unique<RealConfigFs>(root);
}

std::unique_ptr<ConfigFs> make_dry_run_configfs(ConfigFs& inner,
                                                std::function<void(const std::string&)> say) {
  return std::make_unique<DryRunConfigFs>(inner, std::move(say));
}

std::unique_ptr<ConfigFs> make_configfs(const std::string& root) {
#ifdef QEMU_LIO_FAULT_INJECTION
  return wrap_for_fault_injection(make_real_configfs(root));
#else
  return make_real_configfs(root);
#endif
}

}  // namespace qemu_lio
