#include "qemu_lio/teardown.h"

#include <unistd.h>

#include "qemu_lio/error.h"
#include "qemu_lio/log.h"

namespace qemu_lio {

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
      // A -pidfile qemu-lio added for -daemonize lives beside the journal.
      const std::string dir = j.file.substr(0, j.file.rfind('/') + 1);
      if (!j.pidfile.empty() && j.pidfile.rfind(dir, 0) == 0 &&
          j.pidfile.find('/', dir.size()) == std::string::npos)
        forget(j.pidfile);
      forget(j.file);
    }
  } catch (const std::exception& e) {
    log_error(j.file + ": " + e.what());
    if (r.failed == 0) r.failed = 1;
  }
  return r;
}

}  // namespace qemu_lio
