#include "qemu_lio/teardown.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <set>

#include "qemu_lio/configfs_layout.h"
#include "qemu_lio/error.h"
#include "qemu_lio/lio_setup.h"
#include "qemu_lio/log.h"

namespace qemu_lio {

TeardownResult teardown_journal_file(ConfigFs& fs, const std::string& file, const RetryPolicy& retry,
                                     const ForgetJournal& forget, const std::set<std::string>& others,
                                     const ServedEffects& served) noexcept {
  try {
    JournalLock lock(file);
    if (!lock.still_current()) return {};
    JournalContents j = read_journal(file);
    j.undo.erase(std::remove_if(j.undo.begin(), j.undo.end(),
                                [&](const Undo& u) {
                                  if (!others.count(u.path)) return false;
                                  log_verbose(fs.absolute(u.path) + ": a live run records it too: left to that run");
                                  return true;
                                }),
                 j.undo.end());
    return teardown_journal(fs, j, retry, forget, served);
  } catch (const std::exception& e) {
    if (::access(file.c_str(), F_OK) != 0) return {};  // torn down by another process
    log_error(e.what());
    return {0, 1};
  }
}

bool still_ours(ConfigFs& fs, const Undo& u) { return !u.shared && object_present(fs, u); }

std::vector<bool> left_behind(ConfigFs& fs, const std::vector<Undo>& steps) {
  using K = layout::Parsed::Kind;
  // A shared disk's object is handed on while another VM's LUN links it (a link of this set
  // that would not go does not count), and its HBA while it holds such an object. Anything
  // else still there is nobody else's: its removal failed, and it stays this set's.
  std::vector<bool> out(steps.size(), false);
  std::set<std::string> handed_on_hbas;
  for (size_t i = 0; i < steps.size(); ++i) {
    const Undo& u = steps[i];
    const layout::Parsed p = layout::parse(u.path);
    if (!u.shared || p.kind != K::kStorageObject || !object_present(fs, u)) continue;
    if (linked_by_a_lun(fs, u.path, steps)) handed_on_hbas.insert(p.hba);
    else out[i] = true;
  }
  for (size_t i = 0; i < steps.size(); ++i) {
    const Undo& u = steps[i];
    const layout::Parsed p = layout::parse(u.path);
    if (!u.shared) out[i] = object_present(fs, u);
    else if (p.kind == K::kHba) out[i] = !handed_on_hbas.count(p.hba) && object_present(fs, u);
  }
  return out;
}

int count_present(ConfigFs& fs, const std::vector<Undo>& steps) {
  return static_cast<int>(std::count_if(steps.begin(), steps.end(), [&](const Undo& u) { return still_ours(fs, u); }));
}

void remove_stale_pr_files(ConfigFs& fs, const JournalContents& j, const ForgetJournal& remove,
                           const std::string& backstore) {
  const std::string only = backstore.empty() ? "" : layout::parse("target/" + backstore).object;
  for (const auto& [object, serial] : j.shared_disks)
    if (backstore.empty() || object == only) remove_stale_pr_file(fs, object, serial, remove);
}

void unlink_journal(const std::string& journal_file) {
  ::unlink(journal_file.c_str());
}

TeardownResult teardown_journal(ConfigFs& fs, const JournalContents& j, const RetryPolicy& retry,
                                const ForgetJournal& forget, const ServedEffects& served) noexcept {
  std::atomic<int> present{0}, left{0};
  std::atomic<bool> broke{false};
  // The kernel's word, not undo_in_order's count, is the verdict: an object someone else
  // removed is gone too, and one that a dry run only printed is still there. Each disk is
  // asked before and after inside its own job, so the lookups overlap like the removals.
  for_each_undo_group(fs, j.undo, [&](const std::vector<Undo>& group) {
    try {
      present += count_present(fs, group);
      undo_in_order(fs, group, retry);
      // A shared object may rightly stay (another VM uses it), and then counts as handed on;
      // one whose own removal failed is still there for nobody: the journal keeps it (and it
      // counts as present before, so that "removed" stays present - left).
      const std::vector<bool> behind = left_behind(fs, group);
      const int now = static_cast<int>(std::count(behind.begin(), behind.end(), true));
      present += now - count_present(fs, group);
      left += now;
    } catch (const std::exception& e) {
      log_error(j.file + ": " + e.what());
      broke = true;
    }
  });
  // A share=on disk whose last VM this was leaves the kernel's reservation file behind.
  remove_stale_pr_files(fs, j, forget);
  TeardownResult r{present, left};
  if (broke && r.failed == 0) r.failed = 1;
  if (r.failed != 0) return r;
  // A served image's NBD device goes only once no LIO object uses it, and the daemon only
  // once no device reads from it.
  if (j.served) {
    try {
      const auto [was, still] = teardown_served(*j.served, served);
      r.present += was;
      r.failed += still;
    } catch (const std::exception& e) {
      log_error(j.file + ": " + e.what());
      r.failed += 1;
    }
    if (r.failed != 0) return r;
  }
  try {
    // A -pidfile qemu-lio added for -daemonize, and the control socket, live beside the
    // journal; anything the journal names elsewhere is not ours to delete.
    const std::string dir = j.file.substr(0, j.file.rfind('/') + 1);
    for (const std::string* beside : {&j.pidfile, &j.control_socket})
      if (!beside->empty() && beside->rfind(dir, 0) == 0 &&
          beside->find('/', dir.size()) == std::string::npos)
        forget(*beside);
    // The storage daemon's files (the reader checked they are this journal's).
    if (j.served)
      for (const std::string* f : {&j.served->pidfile, &j.served->qmp_socket, &j.served->nbd_socket, &j.served->log})
        if (::access(f->c_str(), F_OK) == 0) forget(*f);
    forget(j.file);
  } catch (const std::exception& e) {
    log_error(j.file + ": " + e.what());
    r.failed = 1;
  }
  return r;
}

}  // namespace qemu_lio
