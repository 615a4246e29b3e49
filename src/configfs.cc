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

  void mkdir(const std::string& path) override {
    if (::mkdir(abs(path).c_str(), 0755) != 0) throw SysError(errno, "cannot create", path);
  }

  void rmdir(const std::string& path) override {
    if (::rmdir(abs(path).c_str()) != 0) throw SysError(errno, "cannot remove", path);
  }

  void write(const std::string& path, const std::string& value) override {
    // Never O_CREAT: configfs attributes exist or the path is wrong, and a wrong path
    // must fail here rather than land somewhere else.
    UniqueFd fd(::open(abs(path).c_str(), O_WRONLY | O_CLOEXEC));
    if (fd.get() < 0) throw SysError(errno, "cannot open", path);
    // configfs parses the buffer of one write(2) call; a split write is two commands.
    ssize_t n = ::write(fd.get(), value.data(), value.size());
    if (n < 0) throw SysError(errno, "cannot write '" + printable(value) + "' to", path);
    if (static_cast<size_t>(n) != value.size()) throw SysError(EIO, "short write to", path);
  }

  std::string read(const std::string& path) override {
    UniqueFd fd(::open(abs(path).c_str(), O_RDONLY | O_CLOEXEC));
    if (fd.get() < 0) throw SysError(errno, "cannot open", path);
    std::string out;
    char buf[4096];
    for (;;) {
      ssize_t n = ::read(fd.get(), buf, sizeof buf);
      if (n < 0) {
        if (errno == EINTR) continue;
        throw SysError(errno, "cannot read", path);
      }
      if (n == 0) break;
      out.append(buf, static_cast<size_t>(n));
    }
    return out;
  }

  void symlink(const std::string& target, const std::string& link) override {
    // configfs resolves the link target itself; an absolute path is the least ambiguous.
    if (::symlink(abs(target).c_str(), abs(link).c_str()) != 0)
      throw SysError(errno, "cannot link", link);
  }

  void unlink(const std::string& path) override {
    if (::unlink(abs(path).c_str()) != 0) throw SysError(errno, "cannot unlink", path);
  }

  bool exists(const std::string& path) override {
    struct stat st;
    return ::lstat(abs(path).c_str(), &st) == 0;
  }

  std::vector<std::string> list(const std::string& dir) override {
    std::vector<std::string> names;
    DIR* d = ::opendir(abs(dir).c_str());
    if (!d) return names;
    while (struct dirent* e = ::readdir(d)) {
      std::string n = e->d_name;
      if (n != "." && n != "..") names.push_back(n);
    }
    ::closedir(d);
    std::sort(names.begin(), names.end());
    return names;
  }

  std::string readlink(const std::string& path) override {
    char buf[4096];
    ssize_t n = ::readlink(abs(path).c_str(), buf, sizeof buf - 1);
    if (n < 0) throw SysError(errno, "cannot read link", path);
    std::string target(buf, static_cast<size_t>(n));
    // configfs reports links as relative paths ("../../../../../../target/core/x/y");
    // keep only what follows the last "target/" component's start, relative to the root.
    auto pos = target.rfind("target/core/");
    if (pos != std::string::npos) return target.substr(pos);
    if (target.rfind(root_ + "/", 0) == 0) return target.substr(root_.size() + 1);
    return target;
  }

  bool is_symlink(const std::string& path) override {
    struct stat st;
    return ::lstat(abs(path).c_str(), &st) == 0 && S_ISLNK(st.st_mode);
  }

 private:
  std::string abs(const std::string& rel) const { return root_ + "/" + rel; }

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
  DryRunConfigFs(ConfigFs& inner, std::string root, std::function<void(const std::string&)> say)
      : inner_(inner), root_(std::move(root)), say_(std::move(say)) {}

  void mkdir(const std::string& p) override { say_("would create " + abs(p)); }
  void rmdir(const std::string& p) override { gone(p, "would remove "); }
  void unlink(const std::string& p) override { gone(p, "would remove "); }
  void symlink(const std::string& t, const std::string& l) override {
    say_("would link " + abs(l) + " -> " + abs(t));
  }
  void write(const std::string& p, const std::string& v) override {
    if (!exists(p)) throw SysError(ENOENT, "cannot open", p);
    say_("would write '" + v + "' to " + abs(p));
    written_.emplace_back(p, v);
  }
  std::string read(const std::string& p) override {
    if (removed(p)) throw SysError(ENOENT, "cannot open", p);
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
  std::string readlink(const std::string& p) override { return inner_.readlink(p); }
  bool is_symlink(const std::string& p) override { return !removed(p) && inner_.is_symlink(p); }

 private:
  void gone(const std::string& p, const char* verb) {
    if (!exists(p)) throw SysError(ENOENT, "cannot remove", p);
    say_(verb + abs(p));
    removed_.push_back(p);
  }
  bool removed(const std::string& p) const {
    for (const std::string& r : removed_)
      if (p == r || p.rfind(r + "/", 0) == 0) return true;
    return false;
  }
  std::string abs(const std::string& p) const { return root_ + "/" + p; }

  ConfigFs& inner_;
  std::string root_;
  std::function<void(const std::string&)> say_;
  std::vector<std::string> removed_;
  std::vector<std::pair<std::string, std::string>> written_;
};

}  // namespace

std::unique_ptr<ConfigFs> make_real_configfs(const std::string& root) {
  return std::make_unique<RealConfigFs>(root);
}

std::unique_ptr<ConfigFs> make_dry_run_configfs(ConfigFs& inner, const std::string& root,
                                                std::function<void(const std::string&)> say) {
  return std::make_unique<DryRunConfigFs>(inner, root, std::move(say));
}

std::unique_ptr<ConfigFs> make_configfs(const std::string& root) {
#ifdef QEMU_LIO_FAULT_INJECTION
  return wrap_for_fault_injection(make_real_configfs(root));
#else
  return make_real_configfs(root);
#endif
}

}  // namespace qemu_lio
