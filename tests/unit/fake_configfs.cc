#include "fake_configfs.h"

#include <fmt/core.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <set>
#include <thread>

#include "qemu_lio/error.h"

namespace qemu_lio {
namespace {

std::string parent_of(const std::string& p) {
  auto s = p.rfind('/');
  return s == std::string::npos ? "" : p.substr(0, s);
}

std::string base_of(const std::string& p) {
  auto s = p.rfind('/');
  return s == std::string::npos ? p : p.substr(s + 1);
}

bool starts_with(const std::string& s, const std::string& prefix) {
  return s.compare(0, prefix.size(), prefix) == 0;
}

std::string normalize(std::string p) {
  while (!p.empty() && p.back() == '/') p.pop_back();
  return p;
}

// Most store functions accept the newline echo adds.
std::string strip_nl(std::string v) {
  if (!v.empty() && v.back() == '\n') v.pop_back();
  return v;
}

// kstrtoull(): the whole string, one trailing newline allowed, no sign, no spaces.
bool parse_ull(const std::string& raw, int base, unsigned long long& out) {
  std::string s = strip_nl(raw);
  if (s.empty() || !std::isxdigit(static_cast<unsigned char>(s[0]))) return false;
  char* end = nullptr;
  errno = 0;
  out = std::strtoull(s.c_str(), &end, base);
  return errno == 0 && *end == '\0';
}

bool parse_u32(const std::string& raw, unsigned& out) {
  unsigned long long v = 0;
  if (!parse_ull(raw, 0, v) || v > UINT_MAX) return false;
  out = static_cast<unsigned>(v);
  return true;
}

// kstrtobool(): 1/y/t/on and 0/n/f/off.
bool parse_bool(const std::string& raw, bool& out) {
  std::string s = strip_nl(raw);
  if (s.empty()) return false;
  switch (s[0]) {
    case '1': case 'y': case 'Y': case 't': case 'T': out = true; return true;
    case '0': case 'n': case 'N': case 'f': case 'F': out = false; return true;
    case 'o': case 'O':
      if (s.size() >= 2 && (s[1] == 'n' || s[1] == 'N')) return out = true, true;
      if (s.size() >= 2 && (s[1] == 'f' || s[1] == 'F')) return out = false, true;
      return false;
  }
  return false;
}

// match_token()'s %d: the whole rest must be an integer, else the token does not match.
bool parse_int_token(const std::string& s, long& out) {
  if (s.empty()) return false;
  char* end = nullptr;
  out = std::strtol(s.c_str(), &end, 0);
  return end != s.c_str() && *end == '\0';
}

std::string escape(const std::string& v) {
  std::string out;
  for (char c : v) out += c == '\n' ? std::string("\\n") : std::string(1, c);
  return out;
}

// The attributes the kernel creates in a storage object's attrib/ group, with the values
// target_alloc_device() gives them before enable. Those marked read-only have no store.
struct AttribDefault {
  const char* name;
  const char* value;
  bool writable;
};
const AttribDefault kAttribDefaults[] = {
    {"block_size", "0", true},          {"emulate_3pc", "1", true},
    {"emulate_caw", "1", true},         {"emulate_dpo", "1", true},
    {"emulate_fua_read", "1", true},    {"emulate_fua_write", "1", true},
    {"emulate_model_alias", "0", true}, {"emulate_pr", "1", true},
    {"emulate_rest_reord", "0", true},  {"emulate_tas", "1", true},
    {"emulate_tpu", "0", true},         {"emulate_tpws", "0", true},
    {"emulate_ua_intlck_ctrl", "0", true}, {"emulate_write_cache", "0", true},
    {"enforce_pr_isids", "1", true},    {"force_pr_aptpl", "0", true},
    {"hw_block_size", "0", false},      {"hw_max_sectors", "0", false},
    {"hw_pi_prot_type", "0", false},    {"hw_queue_depth", "0", false},
    {"is_nonrot", "0", true},           {"max_unmap_block_desc_count", "0", true},
    {"max_unmap_lba_count", "0", true}, {"max_write_same_len", "0", true},
    {"optimal_sectors", "0", true},     {"pi_prot_format", "0", true},
    {"pi_prot_type", "0", true},        {"pi_prot_verify", "0", true},
    {"queue_depth", "0", true},         {"unmap_granularity", "0", true},
    {"unmap_granularity_alignment", "0", true}, {"unmap_zeroes_data", "0", true},
};

// attrib/ entries the kernel refuses to change while a LUN exports the device.
const std::set<std::string> kFrozenWhileExported = {
    "block_size", "queue_depth", "optimal_sectors", "emulate_model_alias", "emulate_tas",
    "unmap_zeroes_data", "pi_prot_type", "pi_prot_format", "pi_prot_verify"};

bool is_bool_attrib(const std::string& name) {
  return starts_with(name, "emulate_") || name == "enforce_pr_isids" ||
         name == "force_pr_aptpl" || name == "is_nonrot" || name == "unmap_zeroes_data" ||
         name == "pi_prot_verify";
}

}  // namespace

const char* to_string(FsOp op) {
  switch (op) {
    case FsOp::kAny: return "any";
    case FsOp::kMkdir: return "mkdir";
    case FsOp::kRmdir: return "rmdir";
    case FsOp::kWrite: return "write";
    case FsOp::kRead: return "read";
    case FsOp::kSymlink: return "symlink";
    case FsOp::kUnlink: return "unlink";
  }
  return "?";
}

FakeConfigFs::FakeConfigFs() {
  add_dir("", Role::kRoot, true);
  add_dir("target", Role::kTarget, true);
  add_attr("target/version", "Target Engine Core ConfigFS Infrastructure v5.0 on Linux/x86_64 "
                             "on 6.1.0",
           false);
  // The kernel's default; a real host may have /etc/target instead (docs/shared-disk-facts.md A1).
  add_attr("target/dbroot", "/var/target", true);
  add_dir("target/core", Role::kCore, true);
  add_group("target/core/alua");
  add_group("target/core/alua/lu_gps");
  add_group("target/core/alua/lu_gps/default_lu_gp", {"lu_gp_id", "members"});
}

// ---------------------------------------------------------------------------------------
// Public calls: count, inject, then behave like the kernel.

void FakeConfigFs::begin(FsOp op, const std::string& path, const std::string& action) {
  ++ops_;
  calls_.push_back(std::string(to_string(op)) + " " + path);
  for (Fault& f : faults_) {
    if (f.remaining == 0) continue;
    if (f.op != FsOp::kAny && f.op != op) continue;
    if (f.at > 0 && (f.from ? ops_ < f.at : ops_ != f.at)) continue;
    if (f.at == 0 && (f.exact ? path != f.path : path.find(f.path) == std::string::npos))
      continue;
    if (f.remaining > 0) --f.remaining;
    throw SysError(f.err, action, absolute(path));
  }
  for (auto it = hooks_.begin(); it != hooks_.end(); ++it)
    if (it->op == op && it->path == path) {
      auto fn = std::move(it->fn);
      hooks_.erase(it);
      fn();
      break;
    }
}

FakeConfigFs::Wait::Wait(FakeConfigFs& fs) : fs_(fs) {
  const int now = ++fs_.in_flight_;
  int seen = fs_.max_in_flight_;
  while (now > seen && !fs_.max_in_flight_.compare_exchange_weak(seen, now)) {
  }
  if (fs_.latency_.count() > 0) std::this_thread::sleep_for(fs_.latency_);
}

FakeConfigFs::Wait::~Wait() { --fs_.in_flight_; }

void FakeConfigFs::before(FsOp op, const std::string& path, std::function<void()> hook) {
  std::lock_guard<std::recursive_mutex> lock(mu_);
  hooks_.push_back({op, normalize(path), std::move(hook)});
}

std::string FakeConfigFs::absolute(const std::string& path) const {
  return std::string(kRoot) + "/" + path;
}

// The kernel model throws with paths relative to the tree; the ConfigFs contract wants the
// absolute path in every error, as the real configfs reports it.
template <typename F>
auto FakeConfigFs::absolute_errors(F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const SysError& e) {
    if (!e.path().empty() && e.path()[0] == '/') throw;
    throw SysError(e.err(), e.action(), absolute(e.path()));
  }
}

void FakeConfigFs::crash(const std::string& reason, const std::string& path) {
  crashed_ = true;
  if (!crash_reason_.empty()) crash_reason_ += "; ";
  crash_reason_ += reason;
  // A real oops kills the writer; ENODEV keeps the test running so it can report it.
  throw SysError(ENODEV, "kernel crashed (" + reason + ")", path);
}

void FakeConfigFs::mkdir(const std::string& path) {
  Wait wait(*this);
  std::lock_guard<std::recursive_mutex> lock(mu_);
  std::string p = normalize(path);
  begin(FsOp::kMkdir, p, "cannot create");
  absolute_errors([&] { do_mkdir(p); });
  log_.push_back("mkdir " + p);
}

void FakeConfigFs::rmdir(const std::string& path) {
  Wait wait(*this);
  std::lock_guard<std::recursive_mutex> lock(mu_);
  std::string p = normalize(path);
  begin(FsOp::kRmdir, p, "cannot remove");
  absolute_errors([&] { do_rmdir(p); });
  log_.push_back("rmdir " + p);
}

void FakeConfigFs::write(const std::string& path, const std::string& value) {
  Wait wait(*this);
  std::lock_guard<std::recursive_mutex> lock(mu_);
  std::string p = normalize(path);
  begin(FsOp::kWrite, p, "cannot write '" + value + "'");
  absolute_errors([&] { do_write(p, value); });
  log_.push_back("write " + p + "=" + value);
}

std::string FakeConfigFs::read(const std::string& path) {
  std::lock_guard<std::recursive_mutex> lock(mu_);
  std::string p = normalize(path);
  begin(FsOp::kRead, p, "cannot read");
  return absolute_errors([&] { return show(p); });
}

void FakeConfigFs::symlink(const std::string& target, const std::string& link) {
  Wait wait(*this);
  std::lock_guard<std::recursive_mutex> lock(mu_);
  std::string l = normalize(link), t = normalize(target);
  begin(FsOp::kSymlink, l, "cannot link");
  absolute_errors([&] { do_symlink(t, l); });
  log_.push_back("symlink " + l + " -> " + t);
}

void FakeConfigFs::unlink(const std::string& path) {
  Wait wait(*this);
  std::lock_guard<std::recursive_mutex> lock(mu_);
  std::string p = normalize(path);
  begin(FsOp::kUnlink, p, "cannot unlink");
  absolute_errors([&] { do_unlink(p); });
  log_.push_back("unlink " + p);
}

std::string FakeConfigFs::link_target(const std::string& path) const {
  std::lock_guard<std::recursive_mutex> lock(mu_);
  std::string p = normalize(path);
  const Entry* e = find(p);
  if (!e) throw SysError(ENOENT, "cannot read link", absolute(p));
  if (e->kind != Kind::kLink) throw SysError(EINVAL, "cannot read link", absolute(p));
  return e->value;
}

bool FakeConfigFs::exists(const std::string& path) {
  if (lookup_latency_.count() > 0) {
    const int now = ++lookups_in_flight_;
    int seen = max_lookups_in_flight_;
    while (now > seen && !max_lookups_in_flight_.compare_exchange_weak(seen, now)) {
    }
    std::this_thread::sleep_for(lookup_latency_);
    --lookups_in_flight_;
  }
  std::lock_guard<std::recursive_mutex> lock(mu_);
  return find(normalize(path)) != nullptr;
}

std::vector<std::string> FakeConfigFs::list(const std::string& dir) {
  std::lock_guard<std::recursive_mutex> lock(mu_);
  std::string p = normalize(dir);
  const Entry* e = find(p);
  if (!e || e->kind != Kind::kDir) return {};
  return children(p);
}

bool FakeConfigFs::is_link(const std::string& path) const {
  std::lock_guard<std::recursive_mutex> lock(mu_);
  const Entry* e = find(normalize(path));
  return e && e->kind == Kind::kLink;
}

void FakeConfigFs::fail_on(FsOp op, const std::string& path_part, int err, int count) {
  std::lock_guard<std::recursive_mutex> lock(mu_);
  Fault f;
  f.op = op;
  f.path = path_part;
  f.err = err;
  f.remaining = count;
  faults_.push_back(f);
}

void FakeConfigFs::fail_on_exact(FsOp op, const std::string& path, int err, int count) {
  std::lock_guard<std::recursive_mutex> lock(mu_);
  Fault f;
  f.op = op;
  f.path = normalize(path);
  f.exact = true;
  f.err = err;
  f.remaining = count;
  faults_.push_back(f);
}

void FakeConfigFs::fail_at_op(long n, int err) {
  std::lock_guard<std::recursive_mutex> lock(mu_);
  Fault f;
  f.at = n;
  f.err = err;
  f.remaining = 1;
  faults_.push_back(f);
}

void FakeConfigFs::fail_from_op(long n, int err) {
  std::lock_guard<std::recursive_mutex> lock(mu_);
  Fault f;
  f.at = n;
  f.from = true;
  f.err = err;
  faults_.push_back(f);
}

// ---------------------------------------------------------------------------------------
// mkdir: what a directory may hold is decided by what its parent is.

void FakeConfigFs::do_mkdir(const std::string& p) {
  if (find(p)) throw SysError(EEXIST, "cannot create", p);
  const std::string parent = parent_of(p), name = base_of(p);
  const Entry* par = find(parent);
  if (!par) throw SysError(ENOENT, "cannot create", p);
  if (par->kind != Kind::kDir) throw SysError(ENOTDIR, "cannot create", p);
  switch (par->role) {
    case Role::kTarget:
      // Only vhost is modelled; target_core_register_fabric() fails for unknown modules.
      if (name != "vhost") throw SysError(EINVAL, "cannot create", p);
      make_fabric(p);
      break;
    case Role::kCore: make_hba(p, name); break;
    case Role::kHba: make_device(p, base_of(parent)); break;
    case Role::kFabric: make_wwn(p, name); break;
    case Role::kWwn: make_tpg(p, name); break;
    case Role::kTpgLuns: make_lun(p, name, Role::kTpgLun); break;
    case Role::kAcls: make_acl(p); break;
    case Role::kAcl: make_lun(p, name, Role::kMappedLun); break;
    case Role::kNps: throw SysError(EINVAL, "cannot create", p);  // vhost has no portals
    default:
      // configfs: a group without make_group/make_item.
      throw SysError(EPERM, "cannot create", p);
  }
}

// target_core_call_addhbatotarget(): "<plugin>_<N>", N parsed with base 0.
void FakeConfigFs::make_hba(const std::string& p, const std::string& name) {
  if (name.size() >= 64) throw SysError(ENAMETOOLONG, "cannot create", p);
  auto us = name.find('_');
  if (us == std::string::npos) throw SysError(EINVAL, "cannot create", p);
  const std::string plugin = name.substr(0, us), id = name.substr(us + 1);
  unsigned long long n = 0;
  if (!parse_ull(id, 0, n) || id.find('\n') != std::string::npos)
    throw SysError(EINVAL, "cannot create", p);
  if (plugin != "fileio" && plugin != "iblock") throw SysError(EINVAL, "cannot create", p);
  add_dir(p, Role::kHba, false);
  add_attr(p + "/hba_info",
           fmt::format("HBA Index: {} plugin: {} version: v5.0", next_hba_index_++, plugin),
           false);
  add_attr(p + "/hba_mode", "0");
}

// target_core_make_subdev(): the device with its default groups and attributes.
void FakeConfigFs::make_device(const std::string& p, const std::string& hba) {
  Device dev;
  dev.plugin = hba.substr(0, hba.find('_'));
  add_dir(p, Role::kDevice, false);
  add_attr(p + "/alias", "");
  add_attr(p + "/alua_lu_gp", "");
  add_attr(p + "/control", "", true, false);  // write-only
  add_attr(p + "/enable", "0");
  add_attr(p + "/info", "", false);
  add_attr(p + "/lba_map", "");
  add_attr(p + "/udev_path", "");
  add_group(p + "/attrib");
  for (const AttribDefault& a : kAttribDefaults)
    add_attr(p + "/attrib/" + a.name, a.value, a.writable);
  add_group(p + "/wwn");
  add_attr(p + "/wwn/vendor_id", "LIO-ORG");
  add_attr(p + "/wwn/product_id", dev.plugin == "fileio" ? "FILEIO" : "IBLOCK");
  add_attr(p + "/wwn/revision", "4.0");
  add_attr(p + "/wwn/vpd_unit_serial", "");
  add_attr(p + "/wwn/vpd_protocol_identifier", "", false);
  add_attr(p + "/wwn/vpd_assoc_logical_unit", "", false);
  add_group(p + "/pr");
  add_attr(p + "/pr/res_holder", "No SPC-3 Reservation holder", false);
  add_attr(p + "/pr/res_type", "SPC_PASSTHROUGH", false);
  add_group(p + "/statistics");
  add_group(p + "/statistics/scsi_dev");
  add_group(p + "/statistics/scsi_lu");
  add_group(p + "/statistics/scsi_tgt_dev");
  add_group(p + "/alua");
  add_group(p + "/alua/default_tg_pt_gp", {"alua_access_state"});
  add_attr(p + "/alua/default_tg_pt_gp/alua_access_type", "Implicit and Explicit");
  devices_[p] = dev;
}

// target_core_register_fabric() for vhost_scsi.
void FakeConfigFs::make_fabric(const std::string& p) {
  add_dir(p, Role::kFabric, false);
  add_group(p + "/discovery_auth", {"enforce_discovery_auth"});
  add_attr(p + "/version", "TCM_VHOST fabric module v0.1 on Linux/x86_64 on 6.1.0", false);
}

// vhost_scsi_make_tport(): the name must hold a protocol prefix, under 256 bytes.
void FakeConfigFs::make_wwn(const std::string& p, const std::string& name) {
  if (name.size() >= 256) throw SysError(EINVAL, "cannot create", p);
  if (name.find("naa.") == std::string::npos && name.find("fc.") == std::string::npos &&
      name.find("iqn.") == std::string::npos)
    throw SysError(EINVAL, "cannot create", p);
  add_dir(p, Role::kWwn, false);
  add_group(p + "/fabric_statistics");
  add_group(p + "/param");
  add_attr(p + "/param/cmd_completion_affinity", "-1");
}

// vhost_scsi_make_tpg(): "tpgt_<T>", T decimal below VHOST_SCSI_MAX_TARGET (256).
void FakeConfigFs::make_tpg(const std::string& p, const std::string& name) {
  if (!starts_with(name, "tpgt_")) throw SysError(EINVAL, "cannot create", p);
  const std::string t = name.substr(5);
  unsigned long long n = 0;
  if (t.empty() || !std::all_of(t.begin(), t.end(), [](char c) { return c >= '0' && c <= '9'; }) || !parse_ull(t, 10, n) || n >= 256)
    throw SysError(EINVAL, "cannot create", p);
  add_dir(p, Role::kTpg, false);
  add_dir(p + "/lun", Role::kTpgLuns, true);
  add_dir(p + "/np", Role::kNps, true);
  add_dir(p + "/acls", Role::kAcls, true);
  add_group(p + "/attrib", {"fabric_prot_type"});
  add_group(p + "/param");
  add_group(p + "/auth");
  add_attr(p + "/nexus", "");
}

// target_fabric_make_lun() and target_fabric_make_mappedlun(): "lun_<M>", base 0.
void FakeConfigFs::make_lun(const std::string& p, const std::string& name, Role role) {
  unsigned long long n = 0;
  if (!starts_with(name, "lun_") || !parse_ull(name.substr(4), 0, n) || n > UINT_MAX ||
      name.find('\n') != std::string::npos)
    throw SysError(EINVAL, "cannot create", p);
  add_dir(p, role, false);
  add_group(p + "/statistics");
  if (role == Role::kTpgLun) {
    add_attr(p + "/alua_tg_pt_offline", "0");
    add_attr(p + "/alua_tg_pt_status", "0");
    add_attr(p + "/alua_tg_pt_write_md", "0");
  } else {
    add_attr(p + "/write_protect", "0");
  }
}

// target_fabric_make_nodeacl(): an explicit ACL named by the initiator.
void FakeConfigFs::make_acl(const std::string& p) {
  add_dir(p, Role::kAcl, false);
  add_group(p + "/attrib");
  add_group(p + "/auth");
  add_group(p + "/param");
  add_group(p + "/fabric_statistics");
  add_attr(p + "/cmdsn_depth", "1");
  add_attr(p + "/tag", "");
}

// ---------------------------------------------------------------------------------------
// rmdir, symlink, unlink: configfs's own rules plus LIO's pins.

void FakeConfigFs::do_rmdir(const std::string& p) {
  const Entry* e = find(p);
  if (!e) throw SysError(ENOENT, "cannot remove", p);
  if (e->kind != Kind::kDir) throw SysError(ENOTDIR, "cannot remove", p);
  if (e->builtin) throw SysError(EPERM, "cannot remove", p);  // a default group
  if (has_user_descendants(p)) throw SysError(ENOTEMPTY, "cannot remove", p);
  if (is_link_target(p)) throw SysError(EBUSY, "cannot remove", p);
  if ((e->role == Role::kTpg || e->role == Role::kWwn) && vhost_attached(p))
    throw SysError(EBUSY, "cannot remove", p);
  if (e->role == Role::kAcl && attr(tpg_of(p) + "/nexus") == base_of(p))
    crash("rmdir of an ACL whose nexus session is alive blocks in the kernel for minutes", p);
  if (e->role == Role::kWwn)
    attached_wwns_.erase(std::remove(attached_wwns_.begin(), attached_wwns_.end(), base_of(p)),
                         attached_wwns_.end());
  // A TPG going away drops its nexus (vhost_scsi_drop_tpg); the entries go with it.
  tree_.erase(p);
  tree_.erase(tree_.lower_bound(p + "/"), tree_.lower_bound(p + "0"));  // '0' follows '/'
  devices_.erase(p);
}

void FakeConfigFs::do_symlink(const std::string& target, const std::string& link) {
  if (find(link)) throw SysError(EEXIST, "cannot link", link);
  const Entry* par = find(parent_of(link));
  if (!par) throw SysError(ENOENT, "cannot link", link);
  if (par->kind != Kind::kDir) throw SysError(ENOTDIR, "cannot link", link);
  const Entry* t = find(target);
  if (!t) throw SysError(ENOENT, "cannot link", link);
  if (t->kind != Kind::kDir) throw SysError(EPERM, "cannot link", link);
  auto has_link = [&](const std::string& dir) {
    for (const std::string& c : children(dir))
      if (find(dir + "/" + c)->kind == Kind::kLink) return true;
    return false;
  };
  const std::string dir = parent_of(link);
  switch (par->role) {
    case Role::kTpgLun:  // target_fabric_port_link()
      if (t->role != Role::kDevice) throw SysError(EFAULT, "cannot link", link);
      if (!devices_.at(target).enabled) throw SysError(ENODEV, "cannot link", link);
      if (has_link(dir)) throw SysError(EEXIST, "cannot link", link);
      break;
    case Role::kMappedLun:  // target_fabric_mappedlun_link()
      if (t->role != Role::kTpgLun) throw SysError(EFAULT, "cannot link", link);
      if (tpg_of(target) != tpg_of(link)) throw SysError(EINVAL, "cannot link", link);
      if (has_link(dir)) throw SysError(EEXIST, "cannot link", link);
      set_attr(dir + "/write_protect", "0");  // vhost: no production-mode write protect
      break;
    default: throw SysError(EPERM, "cannot link", link);  // no allow_link here
  }
  Entry e;
  e.kind = Kind::kLink;
  e.value = target;
  tree_[link] = e;
}

void FakeConfigFs::do_unlink(const std::string& p) {
  const Entry* e = find(p);
  if (!e) throw SysError(ENOENT, "cannot unlink", p);
  if (e->kind == Kind::kDir) throw SysError(EISDIR, "cannot unlink", p);
  if (e->kind != Kind::kLink) throw SysError(EPERM, "cannot unlink", p);
  tree_.erase(p);
}

// ---------------------------------------------------------------------------------------
// Attribute stores.

void FakeConfigFs::do_write(const std::string& p, const std::string& value) {
  const std::string action = "cannot write '" + value + "'";
  Entry* e = find(p);
  if (!e) throw SysError(ENOENT, action, p);  // configfs never creates a file
  if (e->kind != Kind::kAttr) throw SysError(EISDIR, action, p);
  if (!e->writable) throw SysError(EACCES, action, p);
  const std::string dev_path = device_path_of(p);
  if (!dev_path.empty()) {
    store_device_attr(p, devices_.at(dev_path), dev_path, p.substr(dev_path.size() + 1), value);
    return;
  }
  const Entry* par = find(parent_of(p));
  const std::string name = base_of(p);
  if (par->role == Role::kHba && name == "hba_mode")
    throw SysError(EINVAL, action, p);  // only pscsi has pmode_enable_hba
  if (par->role == Role::kTpg && name == "nexus") {
    store_nexus(p, parent_of(p), value);
    return;
  }
  if (par->role == Role::kMappedLun && name == "write_protect") {
    unsigned long long wp = 0;
    if (!parse_ull(value, 0, wp) || wp > 1) throw SysError(EINVAL, action, p);
    // core_update_device_list_access() finds no deve before the link: nothing changes.
    bool mapped = false;
    for (const std::string& c : children(parent_of(p)))
      if (find(parent_of(p) + "/" + c)->kind == Kind::kLink) mapped = true;
    if (mapped) e->value = wp ? "1" : "0";
    return;
  }
  e->value = strip_nl(value);
}

void FakeConfigFs::store_device_attr(const std::string& p, Device& dev,
                                     const std::string& dev_path, const std::string& rel,
                                     const std::string& value) {
  const std::string action = "cannot write '" + value + "'";
  const bool exported = export_count(dev_path) > 0;
  Entry* e = find(p);
  if (rel == "control") return store_control(p, dev, value);
  if (rel == "enable") {
    // target_dev_enable_store(): anything containing "1".
    if (value.find('1') == std::string::npos) throw SysError(EINVAL, action, p);
    return enable_device(p, dev, dev_path);
  }
  if (rel == "udev_path" || rel == "alias") {
    if (value.size() > 511) throw SysError(EINVAL, action, p);
    e->value = strip_nl(value);
    return;
  }
  if (starts_with(rel, "attrib/")) {
    const std::string name = rel.substr(7);
    unsigned n = 0;
    bool flag = false;
    if (is_bool_attrib(name) ? !parse_bool(value, flag) : !parse_u32(value, n))
      throw SysError(EINVAL, action, p);
    if (kFrozenWhileExported.count(name) && exported) throw SysError(EINVAL, action, p);
    if (name == "block_size" && n != 512 && n != 1024 && n != 2048 && n != 4096)
      throw SysError(EINVAL, action, p);
    if (name == "emulate_tpu" || name == "emulate_tpws") {
      // emulate_tpu_store() calls configure_unmap(), which dereferences the file that
      // only enable opens: a NULL dereference in fd_configure_unmap (seen on 6.1).
      if (flag && attr(dev_path + "/attrib/max_unmap_block_desc_count") == "0") {
        if (!dev.enabled) crash(name + "=1 written before enable (fd_configure_unmap oops)", p);
        set_attr(dev_path + "/attrib/max_unmap_block_desc_count", "1");
      }
    }
    if (name == "emulate_write_cache" && flag && dev.plugin == "iblock")
      throw SysError(EINVAL, action, p);  // iblock reports the device's own cache
    if (name == "queue_depth" && (n == 0 || (dev.enabled && n > std::stoul(attr(dev_path + "/attrib/hw_queue_depth")))))
      throw SysError(EINVAL, action, p);
    if (name == "optimal_sectors" && n > std::stoul(attr(dev_path + "/attrib/hw_max_sectors")))
      throw SysError(EINVAL, action, p);
    e->value = is_bool_attrib(name) ? (flag ? "1" : "0") : std::to_string(n);
    return;
  }
  if (starts_with(rel, "wwn/")) {
    const std::string name = rel.substr(4);
    const std::string v = strip_nl(value);
    if (exported) throw SysError(EINVAL, action, p);
    if ((name == "vpd_unit_serial" && v.size() >= 254) || (name == "vendor_id" && v.size() > 8) ||
        (name == "product_id" && v.size() > 16) || (name == "revision" && v.size() > 4))
      throw SysError(EOVERFLOW, action, p);
    e->value = v;
    return;
  }
  e->value = strip_nl(value);
}

// fd_set_configfs_dev_params() / iblock_set_configfs_dev_params(): split on ',' and '\n';
// unknown keys are ignored; a token applied before an error stays applied.
void FakeConfigFs::store_control(const std::string& p, Device& dev, const std::string& value) {
  const std::string action = "cannot write '" + value + "'";
  size_t start = 0;
  while (start <= value.size()) {
    size_t end = value.find_first_of(",\n", start);
    if (end == std::string::npos) end = value.size();
    const std::string tok = value.substr(start, end - start);
    start = end + 1;
    if (tok.empty()) continue;
    auto eq = tok.find('=');
    const std::string key = tok.substr(0, eq == std::string::npos ? tok.size() : eq + 1);
    const std::string arg = eq == std::string::npos ? "" : tok.substr(eq + 1);
    long num = 0;
    if (std::find(ignored_keys_.begin(), ignored_keys_.end(), key) != ignored_keys_.end()) continue;
    if (dev.plugin == "fileio") {
      if (key == "fd_dev_name=" && !arg.empty()) {
        dev.dev_name = arg.substr(0, 255);  // FD_MAX_DEV_NAME, truncated silently
        dev.has_path = true;
      } else if (key == "fd_dev_size=" && !arg.empty()) {
        if (!parse_ull(arg, 0, dev.dev_size)) throw SysError(EINVAL, action, p);
        dev.has_size = true;
      } else if (key == "fd_buffered_io=" && parse_int_token(arg, num)) {
        if (num != 1) throw SysError(EINVAL, action, p);
        dev.buffered = true;
      } else if (key == "fd_async_io=" && parse_int_token(arg, num)) {
        if (num != 1) throw SysError(EINVAL, action, p);
        dev.async = true;
      }
    } else {
      if (key == "udev_path=" && !arg.empty()) {
        if (dev.enabled) throw SysError(EEXIST, action, p);
        dev.iblock_udev_path = arg.substr(0, 511);
      } else if (key == "readonly=" && parse_int_token(arg, num)) {
        dev.readonly = num ? 1 : 0;
      }
    }
  }
}

// target_configure_device() with fd_configure_device() / iblock_configure_device().
void FakeConfigFs::enable_device(const std::string& p, Device& dev, const std::string& dev_path) {
  const std::string action = "cannot write '1'";
  if (dev.enabled) throw SysError(EEXIST, action, p);
  const std::string a = dev_path + "/attrib/";
  if (dev.plugin == "fileio") {
    if (!dev.has_path) throw SysError(EINVAL, action, p);
    // Every file of the fake is a regular file: those need fd_dev_size.
    if (!dev.has_size) throw SysError(EINVAL, action, p);
    set_attr(a + "hw_max_sectors", "16384");  // FD_MAX_BYTES / 512
    set_attr(a + "max_unmap_lba_count", "8192");
    set_attr(a + "max_unmap_block_desc_count", "1");
    set_attr(a + "unmap_granularity", "1");
    set_attr(a + "max_write_same_len", "4096");
    // fd_buffered_io forces a write cache, so the guest flushes.
    if (dev.buffered) set_attr(a + "emulate_write_cache", "1");
  } else {
    if (dev.iblock_udev_path.empty()) throw SysError(EINVAL, action, p);
    set_attr(a + "hw_max_sectors", "2048");
    set_attr(a + "max_unmap_block_desc_count", "1");
    set_attr(a + "max_write_same_len", "65535");
  }
  set_attr(a + "hw_block_size", "512");
  set_attr(a + "hw_queue_depth", "128");
  // The reset that makes block_size written before enable useless.
  set_attr(a + "block_size", attr(a + "hw_block_size"));
  set_attr(a + "optimal_sectors", attr(a + "hw_max_sectors"));
  set_attr(a + "queue_depth", attr(a + "hw_queue_depth"));
  set_attr(dev_path + "/enable", "1");
  dev.enabled = true;
}

// vhost_scsi_tpg_nexus_store().
void FakeConfigFs::store_nexus(const std::string& p, const std::string& tpg,
                               const std::string& value) {
  const std::string action = "cannot write '" + value + "'";
  Entry* e = find(p);
  if (starts_with(value, "NULL")) {
    if (e->value.empty()) throw SysError(ENODEV, action, p);
    if (tpg_port_count(tpg) > 0 || vhost_attached(tpg)) throw SysError(EBUSY, action, p);
    e->value.clear();
    return;
  }
  if (value.size() >= 256) throw SysError(EINVAL, action, p);
  const std::string wwn = base_of(parent_of(tpg));
  auto proto = [](const std::string& s) {
    for (const char* pre : {"naa.", "fc.", "iqn."})
      if (s.find(pre) != std::string::npos) return std::string(pre);
    return std::string();
  };
  if (proto(value).empty() || proto(value) != proto(wwn)) throw SysError(EINVAL, action, p);
  if (!e->value.empty()) throw SysError(EEXIST, action, p);
  e->value = strip_nl(value);
}

// ---------------------------------------------------------------------------------------
// Attribute shows.

std::string FakeConfigFs::show(const std::string& p) const {
  const Entry* e = find(p);
  if (!e) throw SysError(ENOENT, "cannot open", p);
  if (e->kind != Kind::kAttr) throw SysError(EISDIR, "cannot read", p);
  if (!e->readable) throw SysError(EACCES, "cannot open", p);
  const std::string name = base_of(p), parent = parent_of(p);
  const Entry* par = find(parent);
  auto line = [](const std::string& v) { return v.empty() ? std::string() : v + "\n"; };

  if (par->role == Role::kDevice && name == "info") {
    const Device& d = devices_.at(parent);
    const std::string a = parent + "/attrib/";
    // transport_dump_dev_state(): ACTIVATED only while a LUN exports the device.
    std::string s = fmt::format("Status: {}  Max Queue Depth: {}  SectorSize: {}  HwMaxSectors: {}\n        ",
                                export_count(parent) ? "ACTIVATED" : "DEACTIVATED",
                                attr(a + "queue_depth"), attr(a + "block_size"),
                                attr(a + "hw_max_sectors"));
    if (d.plugin == "fileio")  // fd_show_configfs_dev_params()
      s += fmt::format("TCM FILEIO ID: {}        File: {}  Size: {}  Mode: {} Async: {}\n",
                       d.dev_id, d.dev_name, d.dev_size, d.buffered ? "Buffered-WCE" : "O_DSYNC",
                       d.async ? 1 : 0);
    else
      s += fmt::format("  UDEV PATH: {}  readonly: {}\n        Major: 0 Minor: 0\n",
                       d.iblock_udev_path, d.readonly);
    return s;
  }
  if (par->role == Role::kDevice && (name == "udev_path" || name == "alias")) return line(e->value);
  if (base_of(parent) == "wwn" && name == "vpd_unit_serial" && !device_path_of(p).empty())
    return "T10 VPD Unit Serial Number: " + e->value + "\n";
  if (par->role == Role::kTpg && name == "nexus") {
    if (e->value.empty()) throw SysError(ENODEV, "cannot read", p);
    return e->value + "\n";
  }
  if (par->role == Role::kMappedLun && name == "write_protect") {
    for (const std::string& c : children(parent))
      if (find(parent + "/" + c)->kind == Kind::kLink) return e->value + "\n";
    return "";  // no deve before the link
  }
  return line(e->value);
}

// ---------------------------------------------------------------------------------------
// Inspection and scaffolding.

std::string FakeConfigFs::snapshot() const {
  std::lock_guard<std::recursive_mutex> lock(mu_);
  std::string s;
  for (const auto& [path, e] : tree_) {
    if (path.empty()) continue;
    switch (e.kind) {
      case Kind::kDir: s += "d " + path + "\n"; break;
      case Kind::kLink: s += "l " + path + " -> " + e.value + "\n"; break;
      case Kind::kAttr:
        if (!e.readable) {
          s += "a " + path + " (write-only)\n";
          break;
        }
        try {
          s += "a " + path + " = " + escape(show(path)) + "\n";
        } catch (const SysError& err) {
          s += "a " + path + " ! " + errno_string(err.err()) + "\n";
        }
        break;
    }
  }
  // The device state that no attribute shows (control is write-only).
  for (const auto& [path, d] : devices_)
    s += fmt::format("# {} enabled={} path={} size={} buffered={} async={} udev={} ro={}\n",
                     path, d.enabled, d.dev_name, d.dev_size, d.buffered, d.async,
                     d.iblock_udev_path, d.readonly);
  return s;
}

void FakeConfigFs::attach_vhost(const std::string& wwn) {
  std::lock_guard<std::recursive_mutex> lock(mu_); attached_wwns_.push_back(wwn); }

void FakeConfigFs::detach_vhost(const std::string& wwn) {
  std::lock_guard<std::recursive_mutex> lock(mu_);
  attached_wwns_.erase(std::remove(attached_wwns_.begin(), attached_wwns_.end(), wwn),
                       attached_wwns_.end());
}

void FakeConfigFs::clear_all() {
  std::lock_guard<std::recursive_mutex> lock(mu_);
  attached_wwns_.clear();
  auto unlink_all = [&](const std::string& dir) {
    for (const std::string& c : children(dir))
      if (find(dir + "/" + c)->kind == Kind::kLink) do_unlink(dir + "/" + c);
  };
  auto user_dirs = [&](const std::string& dir, Role role) {
    std::vector<std::string> out;
    for (const std::string& c : children(dir)) {
      const Entry* e = find(dir + "/" + c);
      if (e->kind == Kind::kDir && e->role == role) out.push_back(dir + "/" + c);
    }
    return out;
  };
  for (const std::string& wwn : user_dirs("target/vhost", Role::kWwn)) {
    for (const std::string& tpg : user_dirs(wwn, Role::kTpg)) {
      for (const std::string& acl : user_dirs(tpg + "/acls", Role::kAcl))
        for (const std::string& ml : user_dirs(acl, Role::kMappedLun)) {
          unlink_all(ml);
          do_rmdir(ml);
        }
      for (const std::string& lun : user_dirs(tpg + "/lun", Role::kTpgLun)) {
        unlink_all(lun);
        do_rmdir(lun);
      }
      find(tpg + "/nexus")->value.clear();
      for (const std::string& acl : user_dirs(tpg + "/acls", Role::kAcl)) do_rmdir(acl);
      do_rmdir(tpg);
    }
    do_rmdir(wwn);
  }
  for (const std::string& hba : user_dirs("target/core", Role::kHba)) {
    for (const std::string& dev : user_dirs(hba, Role::kDevice)) do_rmdir(dev);
    do_rmdir(hba);
  }
}

// ---------------------------------------------------------------------------------------
// Tree helpers.

void FakeConfigFs::add_dir(const std::string& p, Role role, bool builtin) {
  Entry e;
  e.kind = Kind::kDir;
  e.role = role;
  e.builtin = builtin;
  tree_[p] = e;
}

void FakeConfigFs::add_attr(const std::string& p, const std::string& value, bool writable,
                            bool readable) {
  Entry e;
  e.kind = Kind::kAttr;
  e.builtin = true;
  e.value = value;
  e.writable = writable;
  e.readable = readable;
  tree_[p] = e;
}

void FakeConfigFs::add_group(const std::string& p, const std::vector<std::string>& attrs) {
  add_dir(p, Role::kPlain, true);
  for (const std::string& a : attrs) add_attr(p + "/" + a, "0");
}

const FakeConfigFs::Entry* FakeConfigFs::find(const std::string& p) const {
  auto it = tree_.find(p);
  return it == tree_.end() ? nullptr : &it->second;
}

FakeConfigFs::Entry* FakeConfigFs::find(const std::string& p) {
  auto it = tree_.find(p);
  return it == tree_.end() ? nullptr : &it->second;
}

std::vector<std::string> FakeConfigFs::children(const std::string& p) const {
  const std::string prefix = p.empty() ? "" : p + "/";
  std::vector<std::string> out;
  for (auto it = tree_.lower_bound(prefix); it != tree_.end() && starts_with(it->first, prefix);
       ++it) {
    const std::string rest = it->first.substr(prefix.size());
    if (!rest.empty() && rest.find('/') == std::string::npos) out.push_back(rest);
  }
  return out;  // std::map order: sorted
}

// configfs_detach_prep(): anything user-made below, through default groups, blocks rmdir.
bool FakeConfigFs::has_user_descendants(const std::string& p) const {
  const std::string prefix = p + "/";
  for (auto it = tree_.lower_bound(prefix); it != tree_.end() && starts_with(it->first, prefix);
       ++it)
    if (!it->second.builtin) return true;
  return false;
}

bool FakeConfigFs::is_link_target(const std::string& p) const {
  for (const auto& [path, e] : tree_)
    if (e.kind == Kind::kLink && e.value == p) return true;
  return false;
}

int FakeConfigFs::export_count(const std::string& dev_path) const {
  int n = 0;
  for (const auto& [path, e] : tree_) {
    if (e.kind != Kind::kLink || e.value != dev_path) continue;
    const Entry* par = find(parent_of(path));
    if (par && par->role == Role::kTpgLun) ++n;
  }
  return n;
}

int FakeConfigFs::tpg_port_count(const std::string& tpg) const {
  int n = 0;
  const std::string prefix = tpg + "/lun/";
  for (auto it = tree_.lower_bound(prefix); it != tree_.end() && starts_with(it->first, prefix);
       ++it)
    if (it->second.kind == Kind::kLink) ++n;
  return n;
}

std::string FakeConfigFs::device_path_of(const std::string& p) const {
  for (std::string q = parent_of(p); !q.empty(); q = parent_of(q))
    if (devices_.count(q)) return q;
  return "";
}

std::string FakeConfigFs::tpg_of(const std::string& p) const {
  for (std::string q = p; !q.empty(); q = parent_of(q)) {
    const Entry* e = find(q);
    if (e && e->role == Role::kTpg) return q;
  }
  return "";
}

bool FakeConfigFs::vhost_attached(const std::string& p) const {
  const std::string prefix = "target/vhost/";
  if (!starts_with(p, prefix)) return false;
  std::string wwn = p.substr(prefix.size());
  wwn = wwn.substr(0, wwn.find('/'));
  return std::find(attached_wwns_.begin(), attached_wwns_.end(), wwn) != attached_wwns_.end();
}

std::string FakeConfigFs::attr(const std::string& p) const {
  const Entry* e = find(p);
  return e ? e->value : "";
}

void FakeConfigFs::set_attr(const std::string& p, const std::string& v) {
  if (Entry* e = find(p)) e->value = v;
}

}  // namespace qemu_lio
