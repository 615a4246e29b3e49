#include "qemu_lio/gc.h"

#include <unistd.h>

#include <fmt/core.h>

#include "qemu_lio/error.h"
#include "qemu_lio/log.h"
#include "qemu_lio/state_lock.h"

namespace qemu_lio {
namespace {

bool object_present(ConfigFs& fs, const Undo& u) {
  if (u.kind == Undo::Kind::kWrite) {
    // A nexus: present while it names an initiator.
    try {
      std::string v = fs.read(u.path);
      return v.find("naa.") != std::string::npos;
    } catch (const SysError&) {
      return false;
    }
  }
  return fs.exists(u.path);
}

std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      default:
        if (c < 0x20) out += fmt::format("\\u{:04x}", c);
        else out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

}  // namespace

std::vector<VmStatus> vm_statuses(ConfigFs& fs, const std::string& state_dir) {
  std::vector<VmStatus> out;
  for (const std::string& file : list_journals(state_dir)) {
    VmStatus s;
    try {
      s.journal = read_journal(file);
    } catch (const Error& e) {
      log_warning(e.what());
      continue;
    }
    s.wrapper_alive = process_alive(s.journal.wrapper);
    s.owner_alive = s.journal.owner && process_alive(*s.journal.owner);
    for (const Undo& u : s.journal.undo) (object_present(fs, u) ? s.objects_present : s.objects_missing)++;
    if (!s.wrapper_alive && !s.owner_alive) s.state = "stale";
    else if (!s.journal.complete || s.objects_missing > 0) s.state = "partial";
    else s.state = "active";
    out.push_back(std::move(s));
  }
  return out;
}

GcReport collect_garbage(ConfigFs& fs, const std::string& state_dir, bool dry_run,
                         const RetryPolicy& retry) {
  GcReport r;
  // Serialised with provisioning: a journal being written is owned by a live process
  // anyway, but two gc runs must not race over the same stale set.
  std::optional<StateLock> lock;
  if (!dry_run && !list_journals(state_dir).empty()) lock.emplace(state_dir);
  for (const VmStatus& s : vm_statuses(fs, state_dir)) {
    if (s.state != "stale") continue;
    ++r.sets;
    const JournalContents& j = s.journal;
    if (dry_run) {
      r.lines.push_back(fmt::format("would remove {} object(s) of VM {} (wrapper pid {}, QEMU pid {}: gone)",
                                    s.objects_present, j.vm_name, j.wrapper.pid,
                                    j.owner ? std::to_string(j.owner->pid) : "-"));
      for (auto it = j.undo.rbegin(); it != j.undo.rend(); ++it)
        if (object_present(fs, *it))
          r.lines.push_back(fmt::format("  {} {}", it->kind == Undo::Kind::kWrite ? "clear" : "remove", it->path));
      continue;
    }
    int failed = run_undo(fs, j.undo, retry);
    r.failures += failed;
    r.objects_removed += s.objects_present - failed;
    if (failed == 0) ::unlink(j.file.c_str());
    r.lines.push_back(fmt::format("{} VM {}: removed {} object(s){}", failed ? "partly cleaned" : "cleaned",
                                  j.vm_name, s.objects_present - failed,
                                  failed ? fmt::format(", {} left (journal kept)", failed) : ""));
  }
  return r;
}

std::string render_statuses(const std::vector<VmStatus>& vms, bool json) {
  std::string out;
  if (json) {
    out += "[";
    for (size_t i = 0; i < vms.size(); ++i) {
      const VmStatus& s = vms[i];
      const JournalContents& j = s.journal;
      out += i ? ",\n " : "\n ";
      out += fmt::format("{{\"name\": {}, \"state\": {}, \"wrapper_pid\": {}, \"wrapper_alive\": {}, "
                         "\"owner_pid\": {}, \"owner_alive\": {}, \"objects_present\": {}, "
                         "\"objects_missing\": {}, \"journal\": {}, \"disks\": [",
                         json_string(j.vm_name), json_string(s.state), j.wrapper.pid,
                         s.wrapper_alive ? "true" : "false",
                         j.owner ? std::to_string(j.owner->pid) : "null",
                         s.owner_alive ? "true" : "false", s.objects_present, s.objects_missing,
                         json_string(j.file));
      for (size_t k = 0; k < j.images.size(); ++k)
        out += fmt::format("{}{{\"image\": {}, \"backstore\": {}, \"wwn\": {}}}", k ? ", " : "",
                           json_string(j.images[k].path), json_string(j.images[k].backstore),
                           json_string(j.images[k].wwn));
      out += "]}";
    }
    out += vms.empty() ? "]\n" : "\n]\n";
    return out;
  }
  for (const VmStatus& s : vms) {
    const JournalContents& j = s.journal;
    out += fmt::format("{} {} qemu-pid {} ({}) wrapper-pid {} ({})\n", j.vm_name, s.state,
                       j.owner ? std::to_string(j.owner->pid) : "-", s.owner_alive ? "alive" : "gone",
                       j.wrapper.pid, s.wrapper_alive ? "alive" : "gone");
    for (const auto& img : j.images)
      out += fmt::format("  {} {} {}\n", img.wwn, img.backstore.empty() ? "-" : img.backstore, img.path);
  }
  return out;
}

}  // namespace qemu_lio
