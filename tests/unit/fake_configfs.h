#pragma once
// An in-memory LIO configfs tree for the unit tests. It follows the kernel rules of
// docs/lio-kernel-facts.md (target_core_configfs.c, target_core_file.c,
// target_core_fabric_configfs.c, drivers/vhost/scsi.c, fs/configfs/dir.c) closely enough
// that an operation in the wrong order fails here as it would in the kernel, and it can
// fail any operation on cue.
//
// What would crash or hang the real kernel (emulate_tpu before enable, removing an ACL
// under a live nexus) sets kernel_crashed() and throws ENODEV: tests assert it never happens.

#include <atomic>
#include <cerrno>
#include <chrono>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "qemu_lio/configfs.h"

namespace qemu_lio {

/// The ConfigFs calls that can fail (exists and list cannot: they neither throw nor count).
enum class FsOp { kAny, kMkdir, kRmdir, kWrite, kRead, kSymlink, kUnlink };

/// "mkdir", "rmdir", ... ("any" for kAny).
const char* to_string(FsOp op);

/// The fake kernel. Starts as a freshly loaded target_core_mod: target/core (with alua),
/// target/version; target/vhost appears only once made (mkdir target/vhost).
class FakeConfigFs : public ConfigFs {
 public:
  /// Where the fake pretends to be mounted: its errors name absolute paths under it.
  static constexpr const char* kRoot = "/sys/kernel/config";

  FakeConfigFs();

  // ConfigFs. Every call below counts as one operation and may be failed by a fault.
  void mkdir(const std::string& path) override;
  void rmdir(const std::string& path) override;
  void write(const std::string& path, const std::string& value) override;
  std::string read(const std::string& path) override;
  void symlink(const std::string& target, const std::string& link) override;
  void unlink(const std::string& path) override;
  // Not counted, never failed.
  bool exists(const std::string& path) override;
  std::vector<std::string> list(const std::string& dir) override;
  /// kRoot + "/" + path.
  std::string absolute(const std::string& path) const override;
  /// Every call is safe from several threads at once (one lock around each call, hooks
  /// included), but the fake says so only after set_concurrent(true): most tests count and
  /// fail operations by number, which needs the serial order.
  bool concurrent() const override { return concurrent_; }
  /// Lets the Provisioner and run_undo work on several disks at once.
  void set_concurrent(bool on) { concurrent_ = on; }
  /// Every mkdir, rmdir, write, symlink and unlink first waits `wait` outside the lock, as
  /// the kernel makes its caller wait (docs/benchmarks.md): calls from several threads
  /// then overlap, and max_in_flight() shows whether they did.
  void set_latency(std::chrono::microseconds wait) { latency_ = wait; }
  /// The most changing calls (see set_latency) that were ever under way at once.
  int max_in_flight() const { return max_in_flight_; }
  /// The same for exists(): each lookup first waits `wait` outside the lock (a configfs
  /// lookup costs a path walk in the kernel), and max_lookups_in_flight() shows overlap.
  void set_lookup_latency(std::chrono::microseconds wait) { lookup_latency_ = wait; }
  int max_lookups_in_flight() const { return max_lookups_in_flight_; }

  /// Test-only, neither counted nor failed: whether `path` is a symlink.
  bool is_link(const std::string& path) const;
  /// Test-only: the configfs path (relative) a symlink points at; SysError ENOENT if it is
  /// missing, EINVAL if it is not a link.
  std::string link_target(const std::string& path) const;

  /// Test-only: runs `hook` (once) just before the operation `op` on exactly `path`, after
  /// it was counted and passed the fault checks: lets a test change the world mid-plan.
  void before(FsOp op, const std::string& path, std::function<void()> hook);

  /// Makes `op` (kAny: every kind) fail with `err` when its path contains `path_part`,
  /// `count` times (-1: forever). For symlink the path is the link's.
  void fail_on(FsOp op, const std::string& path_part, int err, int count = -1);
  /// As fail_on, but the path must equal `path`.
  void fail_on_exact(FsOp op, const std::string& path, int err, int count = -1);
  /// Makes operation number `n` (1-based, as ops_count() numbers them) fail with `err`.
  void fail_at_op(long n, int err);
  /// Makes every operation from number `n` on fail with `err`.
  void fail_from_op(long n, int err);
  /// rmdir of `path` says EBUSY for its first `tries` attempts (a vhost endpoint closing).
  void busy(const std::string& path, int tries) { fail_on_exact(FsOp::kRmdir, path, EBUSY, tries); }
  /// Removes every pending fault.
  void clear_faults() { faults_.clear(); }

  /// Operations performed so far (failed ones included).
  long ops_count() const { return ops_; }
  /// The operations that succeeded, in order: "mkdir P", "rmdir P", "write P=V",
  /// "symlink L -> T", "unlink P".
  const std::vector<std::string>& log() const { return log_; }
  /// Every counted call, failed ones included: calls()[n - 1] is operation number n
  /// ("read P", "mkdir P", ...).
  const std::vector<std::string>& calls() const { return calls_; }

  /// Models an older kernel: the control key `key` ("fd_async_io") is ignored like any
  /// unknown key.
  void ignore_control_key(const std::string& key) { ignored_keys_.push_back(key + "="); }

  /// True once something was done that oopses or hangs the real kernel.
  bool kernel_crashed() const { return crashed_; }
  /// What crashed it ("" if nothing).
  const std::string& crash_reason() const { return crash_reason_; }

  /// The whole tree, one line per entry in path order: "d PATH", "l PATH -> TARGET",
  /// "a PATH = VALUE" (what a read shows, newlines as \n). Equal snapshots mean equal
  /// kernel state as far as configfs can tell.
  std::string snapshot() const;

  /// Test scaffolding, neither counted nor failed: QEMU binds (or releases) every TPG of
  /// `wwn` (VHOST_SCSI_SET_ENDPOINT). While bound, clearing a nexus and rmdir of the
  /// TPG or WWN give EBUSY.
  void attach_vhost(const std::string& wwn);
  void detach_vhost(const std::string& wwn);
  /// Test scaffolding: what `targetctl clear` does, removing every object in kernel order
  /// (target/vhost itself stays).
  void clear_all();

 private:
  enum class Kind { kDir, kAttr, kLink };
  // What a directory is, which decides what mkdir and symlink may do inside it.
  enum class Role {
    kPlain, kRoot, kTarget, kCore, kHba, kDevice, kFabric, kWwn, kTpg, kTpgLuns, kTpgLun,
    kAcls, kAcl, kMappedLun, kNps
  };
  struct Entry {
    Kind kind = Kind::kDir;
    bool builtin = false;  // made by the kernel: default groups and attributes
    Role role = Role::kPlain;
    std::string value;     // an attribute's stored value, or a link's target
    bool readable = true;
    bool writable = true;
  };
  // The state of a storage object that is not an attribute value of its own.
  struct Device {
    std::string plugin;
    bool enabled = false;
    bool has_path = false, has_size = false, buffered = false, async = false;
    std::string dev_name;
    unsigned long long dev_size = 0;
    std::string iblock_udev_path;
    int readonly = 0;
    unsigned dev_id = 0;
  };
  struct Fault {
    FsOp op = FsOp::kAny;
    std::string path;
    bool exact = false;
    long at = 0;          // >0: only operation number `at`
    bool from = false;    // with at: every operation from `at` on
    int err = 0;
    int remaining = -1;
  };

  // The kernel's wait of a changing call, outside the lock; counts calls under way.
  class Wait {
   public:
    explicit Wait(FakeConfigFs& fs);
    ~Wait();
   private:
    FakeConfigFs& fs_;
  };
  // Counting and fault injection around each public call.
  void begin(FsOp op, const std::string& path, const std::string& action);
  // Runs `f`, turning the relative path of a SysError into an absolute one.
  template <typename F>
  auto absolute_errors(F&& f) -> decltype(f());
  [[noreturn]] void crash(const std::string& reason, const std::string& path);

  // The kernel's behaviour, without counting or faults.
  void do_mkdir(const std::string& p);
  void do_rmdir(const std::string& p);
  void do_write(const std::string& p, const std::string& value);
  std::string show(const std::string& p) const;  // throws SysError like read()
  void do_symlink(const std::string& target, const std::string& link);
  void do_unlink(const std::string& p);

  void make_hba(const std::string& p, const std::string& name);
  void make_device(const std::string& p, const std::string& hba);
  void make_fabric(const std::string& p);
  void make_wwn(const std::string& p, const std::string& name);
  void make_tpg(const std::string& p, const std::string& name);
  void make_lun(const std::string& p, const std::string& name, Role role);
  void make_acl(const std::string& p);

  void store_device_attr(const std::string& p, Device& dev, const std::string& dev_path,
                         const std::string& rel, const std::string& value);
  void store_control(const std::string& p, Device& dev, const std::string& value);
  void enable_device(const std::string& p, Device& dev, const std::string& dev_path);
  void store_nexus(const std::string& p, const std::string& tpg, const std::string& value);

  // Tree helpers.
  void add_dir(const std::string& p, Role role, bool builtin);
  void add_attr(const std::string& p, const std::string& value, bool writable = true,
                bool readable = true);
  void add_group(const std::string& p, const std::vector<std::string>& attrs = {});
  const Entry* find(const std::string& p) const;
  Entry* find(const std::string& p);
  std::vector<std::string> children(const std::string& p) const;
  bool has_user_descendants(const std::string& p) const;
  bool is_link_target(const std::string& p) const;
  int export_count(const std::string& dev_path) const;
  int tpg_port_count(const std::string& tpg) const;
  std::string device_path_of(const std::string& p) const;  // "" if not in a device
  std::string tpg_of(const std::string& p) const;          // "" if not in a TPG
  bool vhost_attached(const std::string& p) const;
  std::string attr(const std::string& p) const;
  void set_attr(const std::string& p, const std::string& v);

  std::map<std::string, Entry> tree_;
  std::map<std::string, Device> devices_;
  std::vector<std::string> attached_wwns_;
  struct Hook {
    FsOp op;
    std::string path;
    std::function<void()> fn;
  };
  std::vector<Fault> faults_;
  std::vector<Hook> hooks_;
  std::vector<std::string> log_;
  std::vector<std::string> calls_;
  std::vector<std::string> ignored_keys_;
  long ops_ = 0;
  bool concurrent_ = false;
  std::chrono::microseconds latency_{0};
  std::atomic<int> in_flight_{0};
  std::atomic<int> max_in_flight_{0};
  std::chrono::microseconds lookup_latency_{0};
  std::atomic<int> lookups_in_flight_{0};
  std::atomic<int> max_lookups_in_flight_{0};
  // Recursive: a hook (see before) runs inside a call and may make calls of its own.
  mutable std::recursive_mutex mu_;
  unsigned next_hba_index_ = 1;
  bool crashed_ = false;
  std::string crash_reason_;
};

}  // namespace qemu_lio
