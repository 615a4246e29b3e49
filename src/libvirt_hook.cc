#include "qemu_lio/libvirt_hook.h"

#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <fmt/core.h>

#include <cstdio>

#include "qemu_lio/backstop.h"
#include "qemu_lio/config_file.h"
#include "qemu_lio/error.h"
#include "qemu_lio/gc.h"
#include "qemu_lio/image_check.h"
#include "qemu_lio/journal.h"
#include "qemu_lio/launch.h"
#include "qemu_lio/log.h"
#include "qemu_lio/plan_builder.h"
#include "qemu_lio/state_lock.h"
#include "qemu_lio/teardown.h"
#include "qemu_lio/unique_fd.h"

namespace qemu_lio {
namespace {

std::vector<JournalContents> domain_journals(const std::string& state_dir, const std::string& uuid) {
  std::vector<JournalContents> out;
  for (const std::string& file : list_journals(state_dir)) {
    try {
      JournalContents j = read_journal(file);
      if (!j.libvirt_uuid.empty() && j.libvirt_uuid == uuid) out.push_back(std::move(j));
    } catch (const Error&) {
      // gone as we read it, or not ours to judge here (list and gc report it)
    }
  }
  return out;
}

// SIGKILL through a pidfd checked against the identity, so a recycled pid is never hit;
// without pidfds (before 5.3, or refused by seccomp) a plain kill right after the same check.
void stop_process(const ProcessId& p) {
  UniqueFd fd(static_cast<int>(::syscall(SYS_pidfd_open, p.pid, 0)));
  if (!process_alive(p)) return;
  if (fd.get() < 0 || ::syscall(SYS_pidfd_send_signal, fd.get(), SIGKILL, nullptr, 0) != 0)
    ::kill(p.pid, SIGKILL);
  wait_until_gone(p);
}

int prepare_domain(const RunOptions& opts, const LibvirtDomain& d, ConfigFs& fs) {
  // The domain is starting, so a set of it whose QEMU is gone is left over (a start that
  // libvirtd never released: it died, or the host's libvirtd was replaced). Its disks are
  // this start's: remove it now rather than refuse the start until its backstop gives up.
  if (int left = release_libvirt_domain(fs, opts.state_dir, d.uuid); left > 0)
    throw Error("domain " + d.name, fmt::format("{} LIO object(s) of an earlier start could not be removed", left));
  LaunchRequest req;
  req.config = load_config();
  req.configfs = opts.configfs;
  req.state_dir = opts.state_dir;
  req.qemu.name = d.name;  // the VM name, made safe for object names
  req.qemu.images = d.disks;
  req.libvirt = LaunchRequest::LibvirtDomain{
      d.uuid, fmt::format("{}/{}.pid", kLibvirtRunDir, d.name), kLibvirtAwaitSeconds};
  provision_for_libvirt(req, fs);
  return 0;
}

}  // namespace

int release_libvirt_domain(ConfigFs& fs, const std::string& state_dir, const std::string& uuid) {
  int left = 0;
  if (domain_journals(state_dir, uuid).empty()) return 0;
  // Serialised with gc and provisioning: once its backstop is stopped the set looks stale.
  StateLock lock(state_dir);
  for (const JournalContents& j : domain_journals(state_dir, uuid)) {
    if (journal_qemu_alive(j)) {
      log_warning(fmt::format("{}: its QEMU still runs; its disks stay", j.file));
      continue;
    }
    if (j.backstop) stop_process(*j.backstop);
    // Re-read: the backstop may have removed objects, or the whole set, before it stopped.
    if (::access(j.file.c_str(), F_OK) != 0) continue;
    left += teardown_journal_file(fs, j.file, RetryPolicy{}).failed;
  }
  return left;
}

void rearm_libvirt_domain(const std::string& configfs_root, const std::string& state_dir,
                          const std::string& uuid) {
  for (const JournalContents& j : domain_journals(state_dir, uuid)) {
    if (j.backstop && process_alive(*j.backstop)) continue;
    // A new backstop watches us (gone in a moment), then the QEMU the journal names.
    const ProcessId self = identify_process(::getpid()).value_or(ProcessId{::getpid(), 0});
    spawn_backstop(j.file, configfs_root, self);
    log_verbose(fmt::format("{}: a new backstop watches the domain's QEMU", j.file));
  }
}

int libvirt_hook(const RunOptions& opts, const std::string& xml, ConfigFs& fs) {
  if (opts.args.size() < 3)
    throw UsageError("libvirt-hook", "expects DOMAIN OPERATION SUB-OPERATION [EXTRA], as libvirt passes them");
  const std::string& op = opts.args[1];
  const std::string& sub = opts.args[2];
  const std::string& domain = opts.args[0];
  // migrate and restore may rewrite the XML through stdout; an empty output keeps it.
  if (op == "prepare" && sub == "begin") {
    std::optional<LibvirtDomain> d = parse_libvirt_domain(xml);
    return d ? prepare_domain(opts, *d, fs) : 0;
  }
  const bool release = op == "release" && sub == "end";
  const bool reconnect = op == "reconnect" && sub == "begin";
  if (!release && !reconnect) return 0;
  // Only prepare may fail: libvirt kills a running domain whose reconnect hook fails, and a
  // release that failed would change nothing libvirt can act on. Whatever goes wrong here is
  // logged, and the backstop (or gc) finishes the job.
  try {
    const std::string uuid = libvirt_domain_uuid(xml);
    if (uuid.empty()) return 0;
    if (reconnect) {
      rearm_libvirt_domain(opts.configfs, opts.state_dir, uuid);
    } else if (int left = release_libvirt_domain(fs, opts.state_dir, uuid); left > 0) {
      log_error(fmt::format("domain {}: {} LIO object(s) could not be removed; 'qemu-lio gc' retries",
                            domain, left));
    }
  } catch (const std::exception& e) {
    log_error(fmt::format("domain {}: {} {}: {}", domain, op, sub, e.what()));
  }
  return 0;
}

int libvirt_xml_command(const RunOptions& opts) {
  if (opts.args.size() != 1) throw UsageError("libvirt-xml", "expects one image SPEC");
  ImageSpec spec = parse_image_spec(opts.args[0]);
  if (spec.wwn) throw UsageError("image key wwn", "libvirt-xml derives the wwpn; drop wwn=");
  const std::string name = sanitize_vm_name(opts.name.value_or(""));
  if (opts.name && name.empty()) throw UsageError("--name", "has no character usable in an object name");
  // Every domain that shares a read-only image needs its own target, so its wwpn mixes in
  // the domain's name, as the hook's object names do.
  if (spec.readonly && name.empty())
    throw UsageError("image key readonly", "give --name DOMAIN: each domain sharing a read-only image "
                                           "gets its own wwpn");
  CheckedImage img{spec, inspect_image(spec)};
  if (img.info.served())
    throw UsageError("image " + spec.path, fmt::format("format {} is not offered through libvirt's hook; convert "
                                                       "it to raw (qemu-img convert -O raw)",
                                                       img.info.format));
  Plan plan = build_plan(name.empty() ? "libvirt" : name, {img});
  const std::string text = libvirt_xml_for(img.info.canonical_path, spec, plan.disks.at(0).identity.wwn);
  std::fwrite(text.data(), 1, text.size(), stdout);
  return 0;
}

}  // namespace qemu_lio
