#include "test_support.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <vector>

#include "qemu_lio/qemu_cmdline.h"
#include "qemu_lio/image_spec.h"

namespace qemu_lio {

TempDir::TempDir(const std::string& base) {
  std::string root = base;
  if (root.empty()) {
    const char* t = std::getenv("TMPDIR");
    root = t && *t ? t : "/tmp";
  }
  std::string tmpl = root + "/qemu-lio-test.XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  if (!::mkdtemp(buf.data())) throw std::runtime_error("mkdtemp " + tmpl + " failed");
  path_ = std::filesystem::canonical(buf.data()).string();
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

void write_file(const std::string& path, uint64_t size, const std::string& header) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw std::runtime_error("cannot create " + path);
  bool ok = header.empty() || ::write(fd, header.data(), header.size()) ==
                                  static_cast<ssize_t>(header.size());
  ok = ok && ::ftruncate(fd, static_cast<off_t>(size)) == 0;
  ::close(fd);
  if (!ok) throw std::runtime_error("cannot write " + path);
}

std::string provision_journalled(ConfigFs& fs, const std::string& state_dir, const std::string& vm,
                                 const std::string& image, const ProcessId& wrapper,
                                 std::optional<ProcessId> owner, std::optional<ProcessId> backstop,
                                 const std::function<void(JournalWriter&)>& first, const RetryPolicy& retry) {
  Plan plan = build_plan(vm, {checked_image(image)});
  JournalWriter journal(state_dir, vm, wrapper);
  if (first) first(journal);
  for (const DiskPlan& d : plan.disks) journal.image(d.info.canonical_path, d.identity.wwn);
  Provisioner prov(fs, retry);
  prov.set_observer([&](const Undo& u, bool cancelled) { journal.object(u, cancelled); });
  prov.apply(plan);
  prov.release();
  journal.ready();
  if (owner) journal.owner(*owner);
  if (backstop) append_journal_record(journal.path(), backstop_record(*backstop));
  return journal.path();
}

CheckedImage checked_image(const std::string& spec, uint64_t size, ImageKind kind) {
  CheckedImage img;
  img.spec = parse_image_spec(spec);
  img.info.canonical_path = img.spec.path;
  img.info.kind = kind;
  img.info.size = size;
  return img;
}

std::vector<std::string> qemu_argv_for(const Plan& plan, const std::vector<std::string>& user) {
  QemuCommandLine req = scan_qemu_argv(user);
  std::vector<ImageSpec> specs;
  for (const DiskPlan& d : plan.disks) specs.push_back(d.spec);
  prepend_images(req, specs);
  return finalize_argv(req, plan, {});
}

std::string usage_error_of(const std::function<void()>& f, const std::string& context) {
  const std::string about = context.empty() ? "" : " for " + context;
  try {
    f();
  } catch (const UsageError& e) {
    EXPECT_EQ(e.exit_code(), exit_code::kUsage) << e.what();
    return e.what();
  } catch (const Error& e) {
    ADD_FAILURE() << "not a UsageError" << about << ": " << e.what() << " (exit code "
                  << e.exit_code() << ")";
    return e.what();
  }
  ADD_FAILURE() << "no UsageError" << about;
  return "";
}

}  // namespace qemu_lio
