#include "qemu_lio/teardown.h"

#include <unistd.h>

#include "qemu_lio/error.h"
#include "qemu_lio/log.h"

namespace qemu_lio {

TeardownResult teardown_journal_file(ConfigFs& fs, const std::string& file, const RetryPolicy& retry,
                                     const ForgetJournal& forget) noexcept {
  try {
    JournalLock lock(file);
    if (!lock.still_current()) return {};
    return teardown_journal(fs, read_journal(file), retry, forget);
  } catch (const std::exception& e) {
    if (::access(file.c_str(), F_OK) != 0) return {};  // torn down by another process
    log_error(e.what());
    return {0, 1};
  }
}

bool object_present(ConfigFs& fs, const Undo& u) {
  if (u.kind == Undo::Kind::kWrite) {
    try {
      return fs.read(u.path).find("naa.") != std::string::npos;
    } catch (const SysError&) {
      return false;
    }
  }
  return fs.exists(u.path);
}

void unlink_journal(const std::string& journal_file) {
  ::unlink(journal_file.c_str());
}

TeardownResult teardown_journal(ConfigFs& fs, const JournalContents& j, const RetryPolicy& retry,
                                const ForgetJournal& forget) noexcept {
  TeardownResult r;
  try {
    for (const Undo& u : j.undo)
      if (object_present(fs, u)) ++r.present;
    run_undo(fs, j.undo, retry);
    // The kernel's word, not run_undo's count: an object someone else removed is gone too,
    // and one that a dry run only printed is still there.
    for (const Undo& u : j.undo)
      if (object_present(fs, u)) ++r.failed;
    if (r.failed == 0) {
      // A -pidfile qemu-lio added for -daemonize, and the control socket, live beside the
      // journal; anything the journal names elsewhere is not ours to delete.
      const std::string dir = j.file.substr(0, j.file.rfind('/') + 1);
      for (const std::string* beside : {&j.pidfile, &j.control_socket})
        if (!beside->empty() && beside->rfind(dir, 0) == 0 &&
            beside->find('/', dir.size()) == std::string::npos)
          forget(*beside);
      forget(j.file);
    }
  } catch (const std::exception& e) {
    log_error(j.file + ": " + e.what());
    if (r.failed == 0) r.failed = 1;
  }
  return r;
}

}  // namespace qemu_lio
