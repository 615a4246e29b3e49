#include "qemu_lio/gc.h"

#include <unistd.h>

#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <set>
#include <thread>

#include "qemu_lio/backstop.h"
#include "qemu_lio/error.h"
#include "qemu_lio/log.h"
#include "qemu_lio/state_lock.h"
#include "qemu_lio/teardown.h"

namespace qemu_lio {

bool journal_qemu_alive(const JournalContents& j) {
  if (j.owner && process_alive(*j.owner)) return true;
  return !j.pidfile.empty() && find_daemon(j.pidfile, j.wrapper.start_time).has_value();
}

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
    s.owner_alive = journal_qemu_alive(s.journal);  // never collect disks under a live QEMU
    s.backstop_alive = s.journal.backstop && process_alive(*s.journal.backstop);
    for (const Undo& u : s.journal.undo) (object_present(fs, u) ? s.objects_present : s.objects_missing)++;
    if (!s.wrapper_alive && !s.owner_alive && !s.backstop_alive) s.state = "stale";
    else if (!s.journal.complete || s.objects_missing > 0) s.state = "partial";
    else s.state = "active";
    out.push_back(std::move(s));
  }
  return out;
}

GcReport collect_garbage(const GcEffects& fx, const std::string& state_dir, const RetryPolicy& retry) {
  GcReport r;
  // Serialised with provisioning and other gc runs, so two of them never race over one set.
  // No journal, no lock: a gc of an unused state directory must not create it.
  std::optional<StateLock> lock;
  if (!list_journals(state_dir).empty()) lock.emplace(state_dir);
  const std::vector<VmStatus> all = vm_statuses(fx.fs, state_dir);
  // A journal kept after a failed teardown can name objects that are gone, and a restart of
  // the same VM (or another VM of a shared disk) makes them again under the same names: what
  // a live set records is that set's now, never the stale one's to remove.
  std::set<std::string> live;
  for (const VmStatus& s : all)
    if (s.state != "stale")
      for (const Undo& u : s.journal.undo) live.insert(u.path);
  for (const VmStatus& s : all) {
    if (s.state != "stale") continue;
    ++r.sets;
    const JournalContents& j = s.journal;
    TeardownResult t = teardown_journal_file(fx.fs, j.file, retry, fx.forget, live, fx.served);
    r.failures += t.failed;
    r.objects_removed += t.present - t.failed;
    r.lines.push_back(fmt::format("{} VM {}: removed {} object(s){}", t.failed ? "partly cleaned" : "cleaned",
                                  j.vm_name, t.present - t.failed,
                                  t.failed ? fmt::format(", {} left (journal kept)", t.failed) : ""));
  }
  return r;
}

std::vector<std::string> wait_for_leaving_runs(const std::string& state_dir,
                                               const std::vector<std::string>& images,
                                               std::chrono::milliseconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  bool announced = false;
  for (;;) {
    std::vector<std::string> held;
    for (const std::string& file : list_journals(state_dir)) {
      JournalContents j;
      try {
        j = read_journal(file);
      } catch (const Error&) {
        continue;  // deleted as we read it: that run is done
      }
      // A set that still awaits its first QEMU (libvirt's hook made it) is arriving, not
      // leaving: its image is taken, and the conflict check says so at once.
      const bool arriving = j.await_seconds > 0 && !j.owner;
      const bool leaving = !arriving && !process_alive(j.wrapper) &&
                           !(j.owner && process_alive(*j.owner)) && j.backstop &&
                           process_alive(*j.backstop);
      if (!leaving) continue;
      for (const auto& img : j.images)
        if (std::find(images.begin(), images.end(), img.path) != images.end()) held.push_back(img.path);
    }
    if (held.empty() || std::chrono::steady_clock::now() >= deadline) return held;
    if (!announced) {
      log_verbose(fmt::format("{}: waiting for its previous run's teardown", held.front()));
      announced = true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

std::string render_statuses(const std::vector<VmStatus>& vms, bool json) {
  std::string out;
  if (json) {
    nlohmann::ordered_json list = nlohmann::ordered_json::array();
    auto pid_or_null = [](const std::optional<ProcessId>& p) {
      return p ? nlohmann::ordered_json(p->pid) : nlohmann::ordered_json(nullptr);
    };
    for (const VmStatus& s : vms) {
      const JournalContents& j = s.journal;
      nlohmann::ordered_json disks = nlohmann::ordered_json::array();
      for (const auto& img : j.images)
        disks.push_back({{"image", img.path},
                         {"backstore", img.backstore},
                         {"wwn", img.wwn},
                         {"device_id", img.device_id.empty() ? nlohmann::ordered_json(nullptr)
                                                             : nlohmann::ordered_json(img.device_id)}});
      list.push_back({{"name", j.vm_name},
                      {"state", s.state},
                      {"wrapper_pid", j.wrapper.pid},
                      {"wrapper_alive", s.wrapper_alive},
                      {"owner_pid", pid_or_null(j.owner)},
                      {"owner_alive", s.owner_alive},
                      {"backstop_pid", pid_or_null(j.backstop)},
                      {"backstop_alive", s.backstop_alive},
                      {"objects_present", s.objects_present},
                      {"objects_missing", s.objects_missing},
                      {"libvirt_uuid", j.libvirt_uuid.empty() ? nlohmann::ordered_json(nullptr)
                                                              : nlohmann::ordered_json(j.libvirt_uuid)},
                      {"journal", j.file},
                      {"control_socket", j.control_socket.empty() ? nlohmann::ordered_json(nullptr)
                                                                  : nlohmann::ordered_json(j.control_socket)},
                      {"disks", disks}});
    }
    // Journal fields come from files: a name that is not UTF-8 is replaced, never fatal.
    return list.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace) + "\n";
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
