#include "qemu_lio/provisioner.h"

#include <fmt/core.h>

#include <algorithm>
#include <cerrno>
#include <exception>
#include <map>
#include <mutex>
#include <thread>

#include "qemu_lio/configfs_layout.h"
#include "qemu_lio/error.h"
#include "qemu_lio/image_check.h"
#include "qemu_lio/image_spec.h"
#include "qemu_lio/log.h"
#include "qemu_lio/parallel.h"

namespace qemu_lio {
namespace {

// Claims are tried in order; this bounds the loop if something keeps failing with EEXIST.
constexpr int kMaxHbaIndex = 100000;

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

// The field of an attribute's text that `expected` ("Mode: O_DSYNC") is about: "Mode:
// Buffered-WCE" out of fileio's multi-line info. The whole text for a plain value.
std::string field_of(const std::string& text, const std::string& expected) {
  const size_t colon = expected.find(": ");
  if (colon == std::string::npos) return text;
  const size_t at = text.find(expected.substr(0, colon + 2));
  if (at == std::string::npos) return text;
  const size_t end = text.find_first_of(" \n", text.find_first_not_of(' ', at + colon + 2));
  return text.substr(at, end == std::string::npos ? std::string::npos : end - at);
}

bool is_hba_path(const std::string& p) {
  return layout::parse(p).kind == layout::Parsed::Kind::kHba;
}

// `group`: the steps undone with `u`; a link among them that could not be removed is ours,
// not another VM's.
bool undo_step(ConfigFs& fs, const Undo& u, const RetryPolicy& retry, const std::vector<Undo>& group) noexcept {
  auto delay = retry.first_delay;
  auto deadline = std::chrono::steady_clock::now() + retry.deadline;
  for (;;) {
    try {
      switch (u.kind) {
        case Undo::Kind::kRmdir: fs.rmdir(u.path); break;
        case Undo::Kind::kUnlink: fs.unlink(u.path); break;
        case Undo::Kind::kWrite: fs.write(u.path, u.value); break;
      }
      log_verbose("removed " + u.path);
      return true;
    } catch (const SysError& e) {
      // ENOENT: somebody (targetctl clear, an operator) already removed it. ENODEV on a
      // nexus write: there is no nexus left to clear.
      if (e.err() == ENOENT || (u.kind == Undo::Kind::kWrite && e.err() == ENODEV)) return true;
      // An HBA that still holds a storage object we did not record is another tool's: a
      // journalled claim attempt may have lost the race to it. Our own objects inside an
      // HBA are undone (and counted if they fail) before it.
      if (u.kind == Undo::Kind::kRmdir && e.err() == ENOTEMPTY && is_hba_path(u.path)) {
        log_verbose(u.path + ": still holds a storage object; left for its owner (failures inside are counted on their own)");
        return true;
      }
      // A shared disk's object that another VM's LUN still links (EBUSY), or its HBA that
      // still holds the object (ENOTEMPTY): the last VM to leave removes them. An EBUSY with
      // no link left is the kernel holding the object for a moment: retried below.
      if (u.shared && u.kind == Undo::Kind::kRmdir &&
          ((e.err() == ENOTEMPTY && is_hba_path(u.path)) || (e.err() == EBUSY && linked_by_a_lun(fs, u.path, group)))) {
        log_verbose(u.path + ": still used by another VM's shared disk; left for the last one");
        return true;
      }
      // EBUSY: the kernel still holds the object (a vhost endpoint being released).
      if (e.err() == EBUSY && std::chrono::steady_clock::now() + delay < deadline) {
        std::this_thread::sleep_for(delay);
        delay = std::min(delay * 2, retry.max_delay);
        continue;
      }
      log_error(e.what());
      return false;
    } catch (const std::exception& e) {
      log_error(fs.absolute(u.path) + ": " + e.what());
      return false;
    }
  }
}

}  // namespace

int undo_in_order(ConfigFs& fs, const std::vector<Undo>& steps, const RetryPolicy& retry) noexcept {
  int failed = 0;
  // TPGs whose nexus could not be cleared: removing an ACL under a live nexus blocks the
  // caller in the kernel for minutes, so their ACLs stay (and count as failures).
  std::vector<std::string> live_nexus_tpgs;
  using K = layout::Parsed::Kind;
  for (auto it = steps.rbegin(); it != steps.rend(); ++it) {
    const Undo& u = *it;
    const layout::Parsed p = layout::parse(u.path);
    const bool in_acl = p.kind == K::kAcl || p.kind == K::kAclLun || p.kind == K::kAclLunLink;
    if (in_acl && std::find(live_nexus_tpgs.begin(), live_nexus_tpgs.end(),
                            layout::tpg(p.wwn, p.tpgt)) != live_nexus_tpgs.end()) {
      log_error(fs.absolute(u.path) + ": left in place: its nexus is still set");
      ++failed;
      continue;
    }
    if (undo_step(fs, u, retry, steps)) continue;
    ++failed;
    if (u.kind == Undo::Kind::kWrite && p.kind == K::kNexus)
      live_nexus_tpgs.push_back(layout::tpg(p.wwn, p.tpgt));
  }
  return failed;
}

std::vector<std::vector<Undo>> undo_groups(const std::vector<Undo>& steps) {
  using K = layout::Parsed::Kind;
  // Union-find over the steps: two steps are in one group when they name the same HBA,
  // the same storage object (directly or as a LUN link's name) or the same vhost target.
  std::vector<size_t> parent(steps.size());
  for (size_t i = 0; i < parent.size(); ++i) parent[i] = i;
  auto root = [&](size_t i) {
    while (parent[i] != i) i = parent[i] = parent[parent[i]];
    return i;
  };
  std::map<std::string, size_t> holder;  // key -> a step that has it
  auto join = [&](size_t i, const std::string& key) {
    auto [it, fresh] = holder.emplace(key, i);
    if (!fresh) parent[root(i)] = root(it->second);
  };
  for (size_t i = 0; i < steps.size(); ++i) {
    const layout::Parsed p = layout::parse(steps[i].path);
    switch (p.kind) {
      case K::kNone: return {steps};
      case K::kHba: join(i, "hba " + p.hba); break;
      case K::kStorageObject:
        join(i, "hba " + p.hba);
        join(i, "object " + p.object);
        break;
      case K::kLunLink:  // the link is named after the storage object it exports
        join(i, "wwn " + p.wwn);
        join(i, "object " + p.link);
        break;
      default: join(i, "wwn " + p.wwn); break;
    }
  }
  // Walking from the newest step, a group is numbered when its newest step is met.
  std::map<size_t, size_t> group_of_root;
  for (size_t i = steps.size(); i-- > 0;) group_of_root.emplace(root(i), group_of_root.size());
  std::vector<std::vector<Undo>> groups(group_of_root.size());
  for (size_t i = 0; i < steps.size(); ++i) groups[group_of_root[root(i)]].push_back(steps[i]);
  return groups;
}

void for_each_undo_group(ConfigFs& fs, const std::vector<Undo>& steps,
                         const std::function<void(const std::vector<Undo>& group)>& each) noexcept {
  if (!fs.concurrent()) return each(steps);
  std::vector<std::vector<Undo>> groups;
  try {
    groups = undo_groups(steps);
  } catch (const std::exception&) {
    return each(steps);  // out of memory: the serial path needs none
  }
  if (groups.size() <= 1) return each(steps);
  // Each disk's kernel waits (unlink of the LUN link, rmdir of the TPG, closing the image)
  // overlap with the others'; within a disk the order is the serial one.
  run_parallel(groups.size(), kMaxParallelDisks, [&](size_t i) { each(groups[i]); });
}

int run_undo(ConfigFs& fs, const std::vector<Undo>& steps, const RetryPolicy& retry) noexcept {
  std::atomic<int> failed{0};
  for_each_undo_group(fs, steps, [&](const std::vector<Undo>& group) { failed += undo_in_order(fs, group, retry); });
  return failed;
}

Provisioner::Provisioner(ConfigFs& fs, RetryPolicy retry) : fs_(fs), retry_(retry) {}

Provisioner::~Provisioner() { teardown(); }

namespace {

// The plan's ops per disk, each disk's in plan order; disks in the order of their first op.
std::vector<std::vector<const Op*>> ops_by_disk(const Plan& plan) {
  std::vector<std::vector<const Op*>> disks;
  std::map<size_t, size_t> index;
  for (const Op& op : plan.ops) {
    auto [it, fresh] = index.emplace(op.disk, disks.size());
    if (fresh) disks.emplace_back();
    disks[it->second].push_back(&op);
  }
  return disks;
}

}  // namespace

void Provisioner::apply(const Plan& plan) {
  try {
    run_disks(ops_by_disk(plan));
  } catch (const SysError& e) {
    teardown();
    // The object first, as an absolute path, then what was done and the kernel's cause.
    throw Error(e.path(), e.action() + ": " + errno_string(e.err()));
  } catch (...) {
    teardown();
    throw;
  }
}

void Provisioner::run_disks(const std::vector<std::vector<const Op*>>& disks) {
  std::atomic<bool> stop{false};
  if (disks.size() <= 1 || !fs_.concurrent()) {
    for (const auto& ops : disks) run_disk(ops, stop);
    return;
  }
  std::mutex m;
  std::exception_ptr first;
  run_parallel(disks.size(), kMaxParallelDisks, [&](size_t i) {
    try {
      run_disk(disks[i], stop);
    } catch (const std::exception& e) {
      std::lock_guard<std::mutex> lock(m);
      if (first) {
        log_verbose(std::string("also failed: ") + e.what());
        return;
      }
      first = std::current_exception();
      stop = true;
    } catch (...) {
      std::lock_guard<std::mutex> lock(m);
      if (!first) first = std::current_exception();
      stop = true;
    }
  });
  // Every thread has returned: what the disks made is all in undo_ for apply's rollback.
  if (first) std::rethrow_exception(first);
}

void Provisioner::run_disk(const std::vector<const Op*>& ops, const std::atomic<bool>& stop) {
  Bindings own = preset_;  // and this disk's HBA: its later steps name it
  for (const Op* op : ops) {
    if (stop) return;  // another disk failed: the whole run is about to be rolled back
    run_op(*op, own);
  }
}

void Provisioner::announce(const Undo& u, bool cancelled) {
  if (observer_) observer_(u, cancelled);
}

void Provisioner::created(const Undo& u) {
  std::lock_guard<std::mutex> lock(mu_);
  undo_.push_back(u);
}

void Provisioner::run_op(const Op& raw, Bindings& own) {
  if (raw.kind == Op::Kind::kClaimHba) {
    claim_hba(raw, own);
    return;
  }
  Op op = raw;
  op.path = bind_vars(raw.path, own);
  op.value = bind_vars(raw.value, own);
  std::optional<Undo> undo = undo_of(op);
  // Recorded before the object exists, so a crash right after creating it cannot hide it.
  if (undo) announce(*undo, false);
  try {
    switch (op.kind) {
      case Op::Kind::kClaimHba: break;  // handled above
      case Op::Kind::kEnsureDir:
        try {
          fs_.mkdir(op.path);
        } catch (const SysError& e) {
          if (e.err() != EEXIST) throw;
        }
        break;
      case Op::Kind::kMkdir: fs_.mkdir(op.path); break;
      case Op::Kind::kJoin:
        // Checked under the state lock a moment ago; only a teardown of the shared disk's
        // last other VM can have removed it since (it takes no state lock).
        if (!fs_.exists(op.path))
          throw SharedDiskGone(fs_.absolute(op.path), "the shared disk's object is gone (its last other VM left "
                                                      "meanwhile); start again");
        break;
      case Op::Kind::kWrite: fs_.write(op.path, op.value); break;
      case Op::Kind::kExpect: {
        std::string got = trim(fs_.read(op.path));
        // Another VM's setting must be the same value, not one that contains it ("1" in "16").
        const bool same = op.shared ? field_of(got, op.value) == op.value ||
                                          (got.size() > op.value.size() + 2 &&
                                           got.compare(got.size() - op.value.size() - 2, std::string::npos,
                                                       ": " + op.value) == 0)
                                    : got.find(op.value) != std::string::npos;
        if (!same) {
          // On a shared disk's object the reading is what another VM set up, not a setting
          // this run wrote.
          if (op.shared)
            throw Error(fs_.absolute(op.path), fmt::format("{} (expected '{}', it has '{}')", op.why, op.value,
                                                           field_of(got, op.value)));
          throw Error(fs_.absolute(op.path), fmt::format("kernel did not take the setting: expected '{}', "
                                           "read '{}'",
                                           op.value, got));
        }
        break;
      }
      case Op::Kind::kSymlink: fs_.symlink(op.value, op.path); break;
      case Op::Kind::kExpectSameFile: {
        std::string now = file_identity(op.path);
        if (now != op.value)
          throw Error(op.path, fmt::format("changed between the check and enable (checked {}, "
                                           "now {}); not serving it",
                                           op.value, now.empty() ? "gone" : now));
        break;
      }
    }
  } catch (const SysError& e) {
    if (undo) announce(*undo, true);
    // The object this run joined went between its check and this step (a read-back or the
    // LUN's link got ENOENT).
    if (e.err() == ENOENT)
      for (const std::string* p : {&op.path, &op.value}) {
        const size_t at = p->find("/" + layout::kSharedObjectPrefix);
        if (at == std::string::npos || p->rfind(layout::kCore + "/", 0) != 0) continue;  // a LUN's link is named so too
        const std::string so = p->substr(0, p->find('/', at + 1));
        if (!fs_.exists(so))
          throw SharedDiskGone(fs_.absolute(so), "the shared disk's object is gone (its last other VM left "
                                                 "meanwhile); start again");
      }
    throw;
  } catch (...) {
    if (undo) announce(*undo, true);
    throw;
  }
  switch (op.kind) {
    case Op::Kind::kWrite: log_verbose(fmt::format("wrote {} = {}", op.path, op.value)); break;
    case Op::Kind::kExpect: log_verbose(fmt::format("checked {} holds '{}'", op.path, op.value)); break;
    case Op::Kind::kExpectSameFile: log_verbose(fmt::format("checked {} is still {}", op.path, op.value)); break;
    case Op::Kind::kSymlink: log_verbose(fmt::format("linked {} -> {}", op.path, op.value)); break;
    case Op::Kind::kJoin: log_verbose("joined " + op.path); break;
    default: log_verbose("made " + op.path); break;
  }
  // The object exists from here on: its undo step goes on the stack before anything else.
  if (undo) created(*undo);
}

void Provisioner::claim_hba(const Op& op, Bindings& own) {
  // Each attempt takes the next index of this run under the lock, so the disks' claims never
  // try one name twice; the mkdir itself, outside the lock, stays the claim against other
  // tools. Indexes below the last one tried are taken (by us or by others): probing them
  // again made claims quadratic in the number of disks.
  for (;;) {
    int n;
    {
      std::lock_guard<std::mutex> lock(mu_);
      n = next_hba_[op.path + "/" + op.value]++;
    }
    if (n >= kMaxHbaIndex) break;
    std::string name = layout::hba_name(op.value, n);
    Undo undo{Undo::Kind::kRmdir, op.path + "/" + name, "", op.shared};
    announce(undo, false);
    try {
      fs_.mkdir(undo.path);
    } catch (const SysError& e) {
      announce(undo, true);
      if (e.err() == EEXIST) continue;  // another tool holds it; try the next
      throw;
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      undo_.push_back(undo);
      vars_.emplace_back(op.var, name);
    }
    own.emplace_back(op.var, name);
    log_verbose("claimed " + undo.path);
    return;
  }
  throw Error(fs_.absolute(op.path), "no free " + op.value + " HBA index");
}

int Provisioner::teardown() noexcept {
  int failed = run_undo(fs_, undo_, retry_);
  // What is gone (or handed on to another VM of a shared disk) is no longer the journal's:
  // a start that plans again (a shared disk's join race) records its objects anew, in
  // their own order. After a failure, only what the kernel no longer has.
  for (const Undo& u : undo_) {
    try {
      if (failed == 0 || !object_present(fs_, u)) announce(u, true);
    } catch (const std::exception& e) {
      log_verbose(fs_.absolute(u.path) + ": " + e.what());
    }
  }
  undo_.clear();
  return failed;
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

bool linked_by_a_lun(ConfigFs& fs, const std::string& path, const std::vector<Undo>& ours) {
  const std::string name = layout::parse(path).object;
  if (name.empty()) return false;
  auto our_link = [&](const std::string& link) {
    return std::any_of(ours.begin(), ours.end(),
                       [&](const Undo& u) { return u.kind == Undo::Kind::kUnlink && u.path == link; });
  };
  for (const std::string& w : fs.list(layout::kVhost)) {
    if (!is_valid_naa(w)) continue;
    for (const std::string& t : fs.list(layout::vhost_target(w))) {
      if (t.rfind("tpgt_", 0) != 0) continue;
      const std::string luns = layout::vhost_target(w) + "/" + t + "/lun";
      for (const std::string& l : fs.list(luns)) {
        const std::vector<std::string> in = fs.list(luns + "/" + l);
        if (std::find(in.begin(), in.end(), name) != in.end() && !our_link(luns + "/" + l + "/" + name)) return true;
      }
    }
  }
  return false;
}

}  // namespace qemu_lio
