#pragma once
// The per-VM journal under the state dir: every kernel object is recorded (as the step that
// removes it) before it is created, so that `qemu-lio gc` can finish the job of a wrapper
// that was SIGKILLed. Append-only, fsync'd, versioned; removed only after a clean teardown.

#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "qemu_lio/plan.h"
#include "qemu_lio/process_identity.h"
#include "qemu_lio/unique_fd.h"

namespace qemu_lio {

/// The journal format version this build writes and reads.
/// Version 2 adds the storage daemon and NBD devices of served images: a build that knows
/// only version 1 refuses such a journal rather than tear down half of it. Version 1
/// journals (no served images) read the same.
constexpr int kJournalVersion = 2;

/// A journal as read back from disk.
struct JournalContents {
  std::string file;
  int version = 0;
  std::string vm_name;
  ProcessId wrapper;               ///< the qemu-lio process (in exec mode, QEMU itself)
  std::optional<ProcessId> owner;  ///< QEMU, once started (the last owner record wins)
  std::optional<ProcessId> backstop;  ///< the detached process that heals the set
  std::string pidfile;             ///< QEMU's -pidfile when it daemonizes, else ""
  /// The private QMP socket qemu-lio gave QEMU ("" if none): attach and detach use it.
  std::string control_socket;
  struct Image {
    std::string path;
    std::string wwn;
    std::string backstore;  ///< "core/fileio_N/NAME" once claimed, else ""
    std::string device_id;  ///< QEMU's id of its vhost-scsi-pci device, when known
    int ordinal = 0;        ///< its place among the image records (the N of "-disk<N>")
    int lun = 0;            ///< its LUN in the target of `wwn` (above 0 only on a controller)
  };
  std::vector<Image> images;  ///< the disks the VM has now (detached ones are dropped)
  /// Image records ever written, detached disks included: the next disk's index, so a
  /// storage object name is never reused within one VM.
  int disks_ever = 0;
  /// libvirt's hook made this set for the domain with this UUID ("" otherwise).
  std::string libvirt_uuid;
  /// How long the backstop waits for a QEMU to appear in `pidfile` once the wrapper is gone
  /// (0: it tears down at once). The libvirt hook provisions before libvirt starts QEMU.
  int await_seconds = 0;
  /// The share=on disks: their storage object's name and unit serial.
  std::vector<std::pair<std::string, std::string>> shared_disks;
  std::vector<Undo> undo;  ///< steps for objects that may exist, oldest first
  /// The qemu-storage-daemon that reads the VM's non-raw images, and their NBD devices
  /// (served_disks.h). Torn down after every LIO object, devices before the daemon.
  struct Served {
    std::string pidfile, qmp_socket, nbd_socket, log;  ///< beside the journal
    std::optional<ProcessId> daemon;  ///< once started
    std::vector<std::string> nbd;     ///< backend identifiers of devices that may exist
  };
  std::optional<Served> served;
  bool complete = false;   ///< provisioning finished ("ready" record)
};

/// Writes one journal. Each record is one line, written with a single write(2) and fsync'd.
/// Records may be appended from several threads at once (the disks of a run are provisioned
/// in parallel): each is whole, and a record is on disk when its call returns.
class JournalWriter {
 public:
  /// Creates `<state_dir>/<vm_name>.<pid>.journal` (0600; state dir 0700, made if missing).
  /// The file appears with its header (version, VM, wrapper) already in it: a gc that finds
  /// it always learns who owns it.
  JournalWriter(const std::string& state_dir, const std::string& vm_name, const ProcessId& self);
  /// Appends to the existing journal `file` (attach and detach add to a running VM's).
  explicit JournalWriter(const std::string& file);
  ~JournalWriter();
  JournalWriter(const JournalWriter&) = delete;
  JournalWriter& operator=(const JournalWriter&) = delete;

  /// Records an image, its wwn and its LUN there.
  void image(const std::string& path, const std::string& wwn, int lun = 0);
  /// Records an object about to be created (cancelled=false) or that was not (true).
  void object(const Undo& undo, bool cancelled);
  /// Records QEMU's identity once it runs.
  void owner(const ProcessId& qemu);
  /// Records the -pidfile through which a daemonized QEMU names itself.
  void pidfile(const std::string& path);
  /// Records the libvirt domain (by UUID) this set belongs to.
  void libvirt_domain(const std::string& uuid);
  /// Records that a QEMU will name itself in the pidfile up to `seconds` after we exit.
  void await_qemu(int seconds);
  /// Records the private QMP socket, before it is bound.
  void control_socket(const std::string& path);
  /// Records the id of the disk at (`wwn`, `lun`): QEMU's id of its device for LUN 0, the
  /// disk's own name for detach on a controller's further LUN.
  void device(const std::string& wwn, const std::string& id, int lun = 0);
  /// Records that the disk at (`wwn`, `lun`) left the VM: its objects were removed (each with
  /// a "cancel" record first) and it no longer counts as one of the VM's images.
  void detach(const std::string& wwn, int lun = 0);
  /// Records that this set uses the share=on disk whose storage object is `object` (a
  /// name, unique on the host) with unit serial `serial`: once no object has that serial any
  /// more, the teardown deletes the file the kernel keeps its reservations in.
  void shared_disk(const std::string& object, const std::string& serial);
  /// Records the storage daemon's files, before it is started (with `daemon` unset), and
  /// the daemon itself once it runs.
  void storage_daemon(const JournalContents::Served& files);
  void storage_daemon_started(const ProcessId& daemon);
  /// Records an NBD device about to be connected with backend identifier `id`
  /// (cancelled=false), or that was not connected (true).
  void nbd(const std::string& id, bool cancelled);
  /// Records that provisioning completed.
  void ready();
  /// Deletes the journal: call only once the kernel is clean.
  void remove();
  /// The journal's path.
  const std::string& path() const { return path_; }

 private:
  void append(const std::string& line);
  std::string path_;
  std::mutex mu_;  ///< one record and its sync at a time; guards fd_ against remove()
  UniqueFd fd_;
};

/// Appends one record to an existing journal from another process (the backstop names
/// itself, or the daemon it adopted). Throws Error if it cannot.
void append_journal_record(const std::string& file, const std::string& line);

/// The record that names a process as a journal's owner ("owner PID START").
std::string owner_record(const ProcessId& p);
/// The record that names the backstop.
std::string backstop_record(const ProcessId& p);

/// An exclusive flock on a journal file. Attach, detach and every teardown of the set hold
/// it, so a disk being attached is either in the journal the teardown reads or not made.
class JournalLock {
 public:
  /// Blocks until the lock is held (`wait`), or only tries (then see held()). Throws Error
  /// if the file cannot be opened.
  explicit JournalLock(const std::string& file, bool wait = true);
  /// False if a try found the lock taken.
  bool held() const { return held_; }
  const std::string& file() const { return file_; }
  /// False once the journal was deleted (its set torn down) while we waited for the lock.
  bool still_current() const;

 private:
  std::string file_;
  UniqueFd fd_;
  bool held_ = false;
};

/// Reads a journal; throws Error if it is unreadable or of an unknown version.
JournalContents read_journal(const std::string& file);

/// The start of the backend identifier ("qemu-lio:<journal file name>:") of every NBD device
/// the journal's run connects: the kernel shows it in /sys/block/nbdN/backend, and it alone
/// says a device is ours (the kernel checks no owner on disconnect).
std::string nbd_backend_prefix(const std::string& journal_file);

/// The storage daemon's files of the journal `journal_file`: beside it, named after it
/// (".daemon.pid", ".qmp.sock", ".nbd.sock", ".daemon.log").
JournalContents::Served served_files(const std::string& journal_file);

/// Journal files in `state_dir`, sorted; empty if the directory does not exist.
std::vector<std::string> list_journals(const std::string& state_dir);

/// Escapes ' ', '%' and control characters so a value is one journal field.
std::string journal_escape(const std::string& s);
/// Reverses journal_escape.
std::string journal_unescape(const std::string& s);

}  // namespace qemu_lio
