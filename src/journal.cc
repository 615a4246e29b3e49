#include "qemu_lio/journal.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/core.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdint>
#include <fstream>
#include <map>
#include <sstream>

#include "qemu_lio/configfs_layout.h"
#include "qemu_lio/error.h"
#include "qemu_lio/state_lock.h"
#include "qemu_lio/unique_fd.h"

namespace qemu_lio {

std::string journal_escape(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (c == '%' || c == ' ' || c < 0x20 || c == 0x7f) out += fmt::format("%{:02X}", c);
    else out += static_cast<char>(c);
  }
  return out.empty() ? "%" : out;  // a lone '%' stands for the empty string
}

std::string journal_unescape(const std::string& s) {
  if (s == "%") return "";
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && std::isxdigit(static_cast<unsigned char>(s[i + 1])) &&
        std::isxdigit(static_cast<unsigned char>(s[i + 2]))) {
      out += static_cast<char>(std::stoi(s.substr(i + 1, 2), nullptr, 16));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

namespace {

// One write per record: a torn record can only be the last one, and the reader drops it.
// O_APPEND makes records of several writers (wrapper, QEMU's child side, backstop) whole.
void write_all(int fd, const std::string& rec, const std::string& path) {
  ssize_t n = ::write(fd, rec.data(), rec.size());
  if (n != static_cast<ssize_t>(rec.size()))
    throw Error(path, "cannot write journal: " + errno_string(n < 0 ? errno : EIO));
  if (::fdatasync(fd) != 0) throw Error(path, "cannot sync journal: " + errno_string(errno));
}

const char* undo_kind_name(const Undo& u) {
  switch (u.kind) {
    case Undo::Kind::kRmdir: return "rmdir";
    case Undo::Kind::kUnlink: return "unlink";
    case Undo::Kind::kWrite: return "write";
  }
  return "?";
}

std::optional<Undo::Kind> undo_kind_from(const std::string& s) {
  // "release": the shared rmdir of builds before the share mark (never released).
  if (s == "rmdir" || s == "release") return Undo::Kind::kRmdir;
  if (s == "unlink") return Undo::Kind::kUnlink;
  if (s == "write") return Undo::Kind::kWrite;
  return std::nullopt;
}

// N of a storage object named "<vm>-disk<N>" or "<vm>-disk<N>-ro".
std::optional<int> disk_index_of(std::string name) {
  if (name.size() > 3 && name.compare(name.size() - 3, 3, "-ro") == 0) name.resize(name.size() - 3);
  const size_t at = name.rfind("-disk");
  if (at == std::string::npos || at + 5 >= name.size() || name.size() - at - 5 > 6) return std::nullopt;
  const std::string digits = name.substr(at + 5);
  if (digits.find_first_not_of("0123456789") != std::string::npos) return std::nullopt;
  return std::stoi(digits);
}

}  // namespace

JournalWriter::JournalWriter(const std::string& state_dir, const std::string& vm_name,
                             const ProcessId& self) {
  ensure_state_dir(state_dir);
  path_ = fmt::format("{}/{}.{}.journal", state_dir, vm_name, self.pid);
  const std::string header = fmt::format("qemu-lio-journal {}\nvm {}\nwrapper {} {}\n", kJournalVersion,
                                         journal_escape(vm_name), self.pid, self.start_time);
  // An unnamed file, filled, then linked into place: nobody ever sees a journal without
  // its owner (a gc that read "wrapper 0" would take a live run for stale).
  UniqueFd fd(::open(state_dir.c_str(), O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600));
  if (fd.get() >= 0) {
    write_all(fd.get(), header, path_);
    const std::string proc = fmt::format("/proc/self/fd/{}", fd.get());
    if (::linkat(AT_FDCWD, proc.c_str(), AT_FDCWD, path_.c_str(), AT_SYMLINK_FOLLOW) != 0)
      throw Error(path_, "cannot create journal: " + errno_string(errno));
    // Re-open for appending: the O_TMPFILE descriptor was opened without O_APPEND.
    fd_ = UniqueFd(::open(path_.c_str(), O_WRONLY | O_APPEND | O_NOFOLLOW | O_CLOEXEC));
    if (fd_.get() < 0) throw Error(path_, "cannot open journal: " + errno_string(errno));
    return;
  }
  if (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL)
    throw Error(state_dir, "cannot create journal: " + errno_string(errno));
  // A file system without O_TMPFILE: the header is the first single write, so a reader
  // sees either an empty file (skipped as unreadable) or the whole header.
  fd_ = UniqueFd(::open(path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (fd_.get() < 0) throw Error(path_, "cannot create journal: " + errno_string(errno));
  write_all(fd_.get(), header, path_);
}

JournalWriter::JournalWriter(const std::string& file) : path_(file) {
  fd_ = UniqueFd(::open(file.c_str(), O_WRONLY | O_APPEND | O_NOFOLLOW | O_CLOEXEC));
  if (fd_.get() < 0) throw Error(file, "cannot open journal: " + errno_string(errno));
}

JournalWriter::~JournalWriter() = default;

void JournalWriter::append(const std::string& line) {
  // O_APPEND alone keeps records whole; the lock also keeps each record's fdatasync with
  // it, and fd_ alive while remove() may run.
  std::lock_guard<std::mutex> lock(mu_);
  if (fd_.get() < 0) return;
  write_all(fd_.get(), line + "\n", path_);
}

namespace {
// A further LUN of a controller adds its number to a disk's records; a disk with a target
// of its own (LUN 0) writes them as before, so version 1 journals read the same.
std::string lun_field(int lun) { return lun == 0 ? "" : fmt::format(" {}", lun); }
}  // namespace

void JournalWriter::image(const std::string& path, const std::string& wwn, int lun) {
  append(fmt::format("image {} {}{}", journal_escape(path), journal_escape(wwn), lun_field(lun)));
}

void JournalWriter::object(const Undo& u, bool cancelled) {
  append(fmt::format("{} {} {} {}", cancelled ? "cancel" : "make", undo_kind_name(u),
                     journal_escape(u.path), journal_escape(u.value)));
  // A share=on disk's object (or its HBA) is marked by a record of its own after the plain
  // one: a reader that does not know the mark, or a crash between the two, sees a private
  // rmdir, which fails while another VM uses the object and keeps the journal. Nothing is
  // ever removed from under another VM, and nothing is forgotten.
  // A failed attempt (a claim that met EEXIST) takes its mark back: the marks of a path are
  // counted, so another record's mark on the same path stands.
  if (u.shared)
    append(fmt::format("{} {} {}", cancelled ? "unshare" : "share", undo_kind_name(u), journal_escape(u.path)));
}

void JournalWriter::owner(const ProcessId& q) { append(owner_record(q)); }

void JournalWriter::pidfile(const std::string& path) {
  append("pidfile " + journal_escape(path));
}

std::string owner_record(const ProcessId& p) { return fmt::format("owner {} {}", p.pid, p.start_time); }

std::string backstop_record(const ProcessId& p) {
  return fmt::format("backstop {} {}", p.pid, p.start_time);
}

void append_journal_record(const std::string& file, const std::string& line) {
  UniqueFd fd(::open(file.c_str(), O_WRONLY | O_APPEND | O_NOFOLLOW | O_CLOEXEC));
  if (fd.get() < 0) throw Error(file, "cannot open journal: " + errno_string(errno));
  write_all(fd.get(), line + "\n", file);
}

void JournalWriter::shared_disk(const std::string& object, const std::string& serial) {
  append(fmt::format("shared {} {}", journal_escape(object), journal_escape(serial)));
}

void JournalWriter::ready() { append("ready"); }

void JournalWriter::storage_daemon(const JournalContents::Served& s) {
  append(fmt::format("serve {} {} {} {}", journal_escape(s.pidfile), journal_escape(s.qmp_socket),
                     journal_escape(s.nbd_socket), journal_escape(s.log)));
}

void JournalWriter::storage_daemon_started(const ProcessId& p) {
  append(fmt::format("daemon {} {}", p.pid, p.start_time));
}

void JournalWriter::nbd(const std::string& id, bool cancelled) {
  append(fmt::format("{} {}", cancelled ? "nbd-cancel" : "nbd", journal_escape(id)));
}

void JournalWriter::control_socket(const std::string& path) { append("control " + journal_escape(path)); }

void JournalWriter::device(const std::string& wwn, const std::string& id, int lun) {
  append(fmt::format("device {} {}{}", journal_escape(wwn), journal_escape(id), lun_field(lun)));
}

void JournalWriter::detach(const std::string& wwn, int lun) {
  append("detach " + journal_escape(wwn) + lun_field(lun));
}

JournalLock::JournalLock(const std::string& file, bool wait) : file_(file) {
  fd_ = UniqueFd(::open(file.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (fd_.get() < 0) throw Error(file, "cannot open journal: " + errno_string(errno));
  while (::flock(fd_.get(), LOCK_EX | (wait ? 0 : LOCK_NB)) != 0) {
    if (!wait && errno == EWOULDBLOCK) return;
    if (errno != EINTR) throw Error(file, "cannot lock journal: " + errno_string(errno));
  }
  held_ = true;
}

bool JournalLock::still_current() const {
  struct stat st{};
  return ::fstat(fd_.get(), &st) == 0 && st.st_nlink > 0;
}

void JournalWriter::libvirt_domain(const std::string& uuid) { append("libvirt " + journal_escape(uuid)); }

void JournalWriter::await_qemu(int seconds) { append(fmt::format("await {}", seconds)); }

void JournalWriter::remove() {
  std::lock_guard<std::mutex> lock(mu_);
  fd_ = UniqueFd();
  ::unlink(path_.c_str());
}

JournalContents read_journal(const std::string& file) {
  // O_NOFOLLOW: a journal that is a symlink was not written by qemu-lio.
  UniqueFd fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (fd.get() < 0) throw Error(file, "cannot read journal: " + errno_string(errno));
  std::string text;
  if (!read_all(fd.get(), text)) throw Error(file, "cannot read journal: " + errno_string(errno));
  std::istringstream in(text);
  JournalContents j;
  j.file = file;
  std::string line;
  bool first = true;
  int record = 0;
  std::map<std::string, int> record_count;
  std::map<std::string, int> shares;  // a path's share marks less its unshare marks
  while (std::getline(in, line)) {
    if (in.eof()) break;  // no trailing newline: a torn last record
    ++record;
    std::istringstream f(line);
    std::string tag;
    f >> tag;
    if (first) {
      f >> j.version;
      if (tag != "qemu-lio-journal" || j.version < 1 || j.version > kJournalVersion)
        throw Error(file, "not a qemu-lio journal of version 1 to " + std::to_string(kJournalVersion));
      first = false;
      continue;
    }
    if (tag == "vm") {
      std::string v;
      f >> v;
      j.vm_name = journal_unescape(v);
    } else if (tag == "wrapper") {
      f >> j.wrapper.pid >> j.wrapper.start_time;
    } else if (tag == "owner" || tag == "backstop") {
      ProcessId p;
      f >> p.pid >> p.start_time;
      (tag == "owner" ? j.owner : j.backstop) = p;
    } else if (tag == "pidfile") {
      std::string p;
      f >> p;
      j.pidfile = journal_unescape(p);
    } else if (tag == "image") {
      std::string p, w;
      int lun = 0;
      f >> p >> w;
      if (!(f >> lun)) lun = 0;
      j.images.push_back({journal_unescape(p), journal_unescape(w), "", "", j.disks_ever, lun});
      ++j.disks_ever;
    } else if (tag == "make" || tag == "cancel") {
      std::string kind, path, value;
      f >> kind >> path >> value;
      auto k = undo_kind_from(kind);
      if (!k) continue;
      Undo u{*k, journal_unescape(path), journal_unescape(value)};
      if (kind == "release") shares[u.path] += tag == "make" ? 1 : -1;
      // gc runs these steps as root: a record naming anything but an object qemu-lio makes
      // ("..", a file outside configfs, an attribute) means the journal is not ours.
      if (!layout::is_qemu_lio_undo(u))
        throw Error(file, fmt::format("record {}: {} {} is not a LIO object qemu-lio makes",
                                      record, kind, path));
      // A claim attempt repeats an HBA we already own when the next disk's claim starts
      // at fileio_0 again, and its "cancel" (EEXIST) must not drop our own record: count
      // the records per object; the object is ours while the count is above zero.
      int& refs = record_count[std::to_string(static_cast<int>(u.kind)) + " " + u.path];
      if (tag == "make") {
        if (refs++ > 0) continue;
        j.undo.push_back(u);
        // A storage object is named "<vm>-disk<N>[-ro]": it is the backstore of the N-th
        // image record (an attach that died before making its object leaves an image
        // without one, and must not take the next disk's).
        const layout::Parsed parsed = layout::parse(u.path);
        if (u.kind == Undo::Kind::kRmdir && parsed.kind == layout::Parsed::Kind::kStorageObject) {
          const std::string backstore = "core/" + parsed.hba + "/" + parsed.object;
          if (auto n = disk_index_of(parsed.object)) {
            for (auto& img : j.images)
              if (img.ordinal == *n) img.backstore = backstore;
          } else if (parsed.object.rfind(layout::kSharedObjectPrefix, 0) != 0) {
            // Not named by qemu-lio's rule: the first image without one. (A shared object
            // is found through its LUN link below.)
            for (auto& img : j.images)
              if (img.backstore.empty()) {
                img.backstore = backstore;
                break;
              }
          }
        }
      } else if (refs > 0 && --refs == 0) {
        for (auto it = j.undo.rbegin(); it != j.undo.rend(); ++it)
          if (it->kind == u.kind && it->path == u.path) {
            j.undo.erase(std::next(it).base());
            break;
          }
      }
    } else if (tag == "share" || tag == "unshare") {
      // The object recorded before is a share=on disk's ("unshare": its creation failed).
      // Its HBA may also carry one of our private disks' claim attempts (make, then cancel
      // on EEXIST) whose records interleave with it: the marks are counted per path and
      // applied to the one kept entry at the end, whichever record made it.
      std::string kind, path;
      f >> kind >> path;
      auto k = undo_kind_from(kind);
      if (!k) continue;
      const Undo mark{*k, journal_unescape(path), "", true};
      if (!layout::is_qemu_lio_undo(mark))
        throw Error(file, fmt::format("record {}: {} {} {} is not a shared disk's object", record, tag, kind, path));
      shares[mark.path] += tag == "share" ? 1 : -1;
    } else if (tag == "control") {
      std::string p;
      f >> p;
      j.control_socket = journal_unescape(p);
    } else if (tag == "device" || tag == "detach") {
      std::string w, id;
      int lun = 0;
      f >> w;
      if (tag == "device") f >> id;
      if (!(f >> lun)) lun = 0;
      w = journal_unescape(w);
      auto img = std::find_if(j.images.begin(), j.images.end(),
                              [&](const auto& i) { return i.wwn == w && i.lun == lun; });
      if (img == j.images.end()) continue;
      if (tag == "device") img->device_id = journal_unescape(id);
      else j.images.erase(img);
    } else if (tag == "libvirt") {
      std::string u;
      f >> u;
      j.libvirt_uuid = journal_unescape(u);
    } else if (tag == "await") {
      f >> j.await_seconds;
    } else if (tag == "shared") {
      std::string o, serial;
      f >> o >> serial;
      j.shared_disks.emplace_back(journal_unescape(o), journal_unescape(serial));
    } else if (tag == "ready") {
      j.complete = true;
    } else if (tag == "serve") {
      // gc signals the daemon these name and deletes the files: they are this journal's
      // own names, rebuilt from the path it is read by (whatever its directory is called);
      // a record naming anything else is not ours.
      const JournalContents::Served own = served_files(file);
      const std::string* expected[] = {&own.pidfile, &own.qmp_socket, &own.nbd_socket, &own.log};
      for (const std::string* want : expected) {
        std::string raw;
        f >> raw;
        const std::string v = journal_unescape(raw);
        const std::string name = v.substr(v.rfind('/') + 1);
        if (name != want->substr(want->rfind('/') + 1))
          throw Error(file, fmt::format("record {}: {} is not a file of this journal's storage daemon", record, v));
      }
      j.served = own;
    } else if (tag == "daemon" && j.served) {
      ProcessId p;
      f >> p.pid >> p.start_time;
      j.served->daemon = p;
    } else if ((tag == "nbd" || tag == "nbd-cancel") && j.served) {
      std::string raw;
      f >> raw;
      const std::string id = journal_unescape(raw);
      if (id.rfind(nbd_backend_prefix(file), 0) != 0)
        throw Error(file, fmt::format("record {}: {} is not an NBD device of this journal", record, id));
      auto& ids = j.served->nbd;
      if (tag == "nbd") ids.push_back(id);
      else ids.erase(std::remove(ids.begin(), ids.end(), id), ids.end());
    }
  }
  if (first) throw Error(file, "empty journal");
  for (Undo& u : j.undo) u.shared = u.kind == Undo::Kind::kRmdir && shares[u.path] > 0;
  // A share=on disk's object is named after its image, not after this VM's disk: the disk
  // whose LUN links it (by the link's name) is the one it serves.
  for (auto& img : j.images) {
    if (!img.backstore.empty()) continue;
    for (const Undo& link : j.undo) {
      const layout::Parsed l = layout::parse(link.path);
      if (l.kind != layout::Parsed::Kind::kLunLink || l.wwn != img.wwn || l.lun != img.lun) continue;
      for (const Undo& so : j.undo) {
        const layout::Parsed o = layout::parse(so.path);
        if (o.kind == layout::Parsed::Kind::kStorageObject && o.object == l.link &&
            o.object.rfind(layout::kSharedObjectPrefix, 0) == 0)
          img.backstore = "core/" + o.hba + "/" + o.object;
      }
    }
  }
  return j;
}

std::string nbd_backend_prefix(const std::string& journal_file) {
  return "qemu-lio:" + journal_file.substr(journal_file.rfind('/') + 1) + ":";
}

JournalContents::Served served_files(const std::string& journal_file) {
  JournalContents::Served s;
  s.pidfile = journal_file + ".daemon.pid";
  s.qmp_socket = journal_file + ".qmp.sock";
  s.nbd_socket = journal_file + ".nbd.sock";
  s.log = journal_file + ".daemon.log";
  return s;
}

std::vector<std::string> list_journals(const std::string& state_dir) {
  std::vector<std::string> out;
  DIR* d = ::opendir(state_dir.c_str());
  if (!d) return out;
  while (struct dirent* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n.size() > 8 && n.compare(n.size() - 8, 8, ".journal") == 0) out.push_back(state_dir + "/" + n);
  }
  ::closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace qemu_lio
