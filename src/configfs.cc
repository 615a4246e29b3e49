#include "qemu_lio/configfs.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "qemu_lio/error.h"
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

}  // namespace

std::unique_ptr<ConfigFs> make_real_configfs(const std::string& root) {
  return std::make_unique<RealConfigFs>(root);
}

}  // namespace qemu_lio
