#include "qemu_lio/plan_builder.h"

#include <fmt/core.h>

#include <cctype>
#include <set>

#include "qemu_lio/configfs_layout.h"
#include "qemu_lio/error.h"
#include "qemu_lio/identity.h"

namespace qemu_lio {
namespace {

Op make(Op::Kind k, std::string path, std::string value, std::string why,
        std::string undo_value = "") {
  Op op;
  op.kind = k;
  op.path = std::move(path);
  op.value = std::move(value);
  op.why = std::move(why);
  op.undo_value = std::move(undo_value);
  return op;
}

void add_backstore_ops(const DiskPlan& d, std::vector<Op>& ops) {
  const bool file = d.plugin == "fileio";
  const std::string so = layout::storage_object("$" + d.hba_var, d.so_name);
  const std::string& p = d.info.canonical_path;

  Op claim = make(Op::Kind::kClaimHba, layout::kCore, d.plugin,
                  "mkdir is the only atomic claim: take the first free " + d.plugin + "_N");
  claim.var = d.hba_var;
  ops.push_back(claim);
  ops.push_back(make(Op::Kind::kMkdir, so, "", "one storage object per HBA, as targetcli does"));

  if (file) {
    std::string control = fmt::format("fd_dev_name={},fd_dev_size={}", p, d.info.size);
    if (d.spec.cache == CacheMode::kWriteback) control += ",fd_buffered_io=1";
    if (d.spec.cache == CacheMode::kNone) control += ",fd_async_io=1";
    ops.push_back(make(Op::Kind::kWrite, so + "/control", control,
                       std::string("cache=") + to_string(d.spec.cache)));
  } else {
    // iblock's readonly=1 only sets the bit the guest sees; the ACL below enforces it.
    ops.push_back(make(Op::Kind::kWrite, so + "/control",
                       "udev_path=" + p + (d.spec.readonly ? ",readonly=1" : ""), "block device"));
  }
  ops.push_back(make(Op::Kind::kWrite, so + "/udev_path", p,
                     "lets targetcli and 'qemu-lio list' see which image this serves"));
  ops.push_back(make(Op::Kind::kWrite, so + "/enable", "1",
                     "the image was checked to exist: enable would O_CREAT a wrong path"));
  if (!d.info.file_id.empty())
    // enable makes the kernel open the path by name, as root: a swap of the file (or of a
    // directory on its path) after the checks would serve another file. Catch it here.
    ops.push_back(make(Op::Kind::kExpectSameFile, p, d.info.file_id,
                       "the kernel opened the file that was checked"));
  const std::string bs = std::to_string(d.spec.block_size);
  ops.push_back(make(Op::Kind::kWrite, so + "/attrib/block_size", bs,
                     "block_size must follow enable: enable resets it to hw_block_size"));
  ops.push_back(make(Op::Kind::kExpect, so + "/attrib/block_size", bs, "block size took effect"));
  if (file && d.spec.cache == CacheMode::kNone)
    ops.push_back(make(Op::Kind::kWrite, so + "/attrib/emulate_write_cache", "1",
                       "async I/O bypasses O_DSYNC: advertise a cache so the guest flushes"));
  ops.push_back(make(Op::Kind::kWrite, so + "/wwn/vpd_unit_serial", d.identity.serial,
                     "stable serial: wwn/* is read-only once a LUN links the device"));
  if (d.spec.discard && d.info.discard_supported)
    ops.push_back(make(Op::Kind::kWrite, so + "/attrib/emulate_tpu", "1",
                       "discard; only after enable: before it the kernel oopses"));
  if (file) {
    // Unknown control keys are ignored silently, so read back what the kernel really did.
    ops.push_back(make(Op::Kind::kExpect, so + "/info",
                       d.spec.cache == CacheMode::kWriteback ? "Mode: Buffered-WCE"
                                                             : "Mode: O_DSYNC",
                       "the kernel honoured the cache mode"));
    ops.push_back(make(Op::Kind::kExpect, so + "/info",
                       d.spec.cache == CacheMode::kNone ? "Async: 1" : "Async: 0",
                       "the kernel honoured the async setting"));
  }
}

void add_vhost_ops(const DiskPlan& d, std::vector<Op>& ops) {
  // TPG 1 (QEMU's boot_tpgt) and LUN 0, mapped as LUN 0 of the read-only ACL.
  const std::string& w = d.identity.wwn;
  const std::string wwn = layout::vhost_target(w);
  const std::string tpg = layout::tpg(w, 1);
  const std::string lun = layout::lun(w, 1, 0);
  const std::string acl = layout::acl(w, 1, d.identity.nexus);
  const std::string acl_lun = layout::acl_lun(w, 1, d.identity.nexus, 0);
  ops.push_back(make(Op::Kind::kEnsureDir, layout::kVhost, "",
                     "the fabric directory appears only when first made; shared, never removed"));
  ops.push_back(make(Op::Kind::kMkdir, wwn, "", "vhost target (QEMU's wwpn)"));
  ops.push_back(make(Op::Kind::kMkdir, tpg, "", "target portal group 1 (boot_tpgt=1)"));
  if (d.spec.readonly)
    // vhost's demo-mode ACL ignores iblock's readonly=1; an explicit ACL named like the
    // nexus, made before it, carries the write_protect the target enforces.
    ops.push_back(make(Op::Kind::kMkdir, acl, "", "explicit ACL for the nexus (read-only disk)"));
  ops.push_back(make(Op::Kind::kWrite, layout::nexus(w, 1), d.identity.nexus,
                     "QEMU cannot bind a TPG without a nexus", "NULL"));
  ops.push_back(make(Op::Kind::kMkdir, lun, "", "LUN 0"));
  ops.push_back(make(Op::Kind::kSymlink, layout::lun_link(w, 1, 0, d.so_name),
                     layout::storage_object("$" + d.hba_var, d.so_name), "export the backstore"));
  if (d.spec.readonly) {
    // Created after the nexus so that teardown, in reverse, clears the nexus only once the
    // LUNs are gone and removes the ACL only after that: removing an ACL under a live
    // session blocks in the kernel for minutes.
    ops.push_back(make(Op::Kind::kMkdir, acl_lun, "", "map LUN 0 into the ACL"));
    ops.push_back(make(Op::Kind::kSymlink, layout::acl_lun_link(w, 1, d.identity.nexus, 0, "lun_0"),
                       lun, "mapped LUN -> TPG LUN 0"));
    ops.push_back(make(Op::Kind::kWrite, acl_lun + "/write_protect", "1",
                       "the target refuses the guest's writes"));
    ops.push_back(make(Op::Kind::kExpect, acl_lun + "/write_protect", "1", "write protection took effect"));
  }
}

}  // namespace

std::string sanitize_vm_name(const std::string& raw) {
  // QEMU accepts "-name NAME,debug-threads=on" as well as "-name guest=NAME,..." (the last
  // guest= wins), with ",," for a literal comma: "guest=a,,b" is the name "a,b".
  std::vector<std::string> parts = split_qemu_opts(raw);
  std::string name = parts[0].find('=') == std::string::npos ? parts[0] : "";
  for (const std::string& p : parts)
    if (p.rfind("guest=", 0) == 0) name = p.substr(6);
  std::string out;
  for (unsigned char c : name) {
    if (out.size() >= 64) break;
    out += (std::isalnum(c) || c == '-' || c == '_' || c == '.') ? static_cast<char>(c) : '_';
  }
  return out;
}

Plan build_plan(const std::string& vm_name, const std::vector<CheckedImage>& images, int first_disk) {
  Plan plan;
  plan.vm_name = vm_name;
  for (size_t i = 0; i < images.size(); ++i) {
    DiskPlan d;
    d.spec = images[i].spec;
    d.info = images[i].info;
    // A block device named through /dev/disk/by-* (and the like) keeps its identity when
    // its kernel name changes; everything else is known by its canonical path.
    const std::string& known_as =
        d.info.identity_name.empty() ? d.info.canonical_path : d.info.identity_name;
    // A read-only image may be shared by several VMs, and a wwn serves one QEMU only: its
    // target names include the VM name. The serial stays the image's own.
    d.identity = derive_identity(known_as);
    if (d.spec.readonly) {
      Identity per_vm = derive_identity(known_as + "\n" + vm_name);
      d.identity.wwn = per_vm.wwn;
      d.identity.nexus = per_vm.nexus;
    }
    if (d.spec.wwn) d.identity.wwn = *d.spec.wwn;
    if (d.spec.serial) d.identity.serial = *d.spec.serial;
    if (d.identity.nexus == d.identity.wwn)  // only possible with a user-given wwn
      d.identity.nexus = fmt::format("naa.6{:015x}", fnv1a64(d.identity.wwn) & 0xfffffffffffffffULL);
    // "-ro" marks a read-only export: the only kind another read-only run may share.
    d.so_name = fmt::format("{}-disk{}{}", vm_name, first_disk + static_cast<int>(i), d.spec.readonly ? "-ro" : "");
    d.hba_var = fmt::format("HBA{}", i);
    d.plugin = d.info.kind == ImageKind::kFile ? "fileio" : "iblock";
    plan.disks.push_back(d);
  }
  for (size_t i = 0; i < plan.disks.size(); ++i) {
    const size_t first = plan.ops.size();
    add_backstore_ops(plan.disks[i], plan.ops);
    add_vhost_ops(plan.disks[i], plan.ops);
    for (size_t k = first; k < plan.ops.size(); ++k) plan.ops[k].disk = i;
  }
  return plan;
}

bool is_read_only_export(const Backstore& b) {
  return b.name.size() > 3 && b.name.compare(b.name.size() - 3, 3, "-ro") == 0;
}

void check_conflicts(const Plan& plan, const Inventory& inv) {
  // Each file is stat'ed once: this runs under the state lock, for every disk against every
  // backstore on the host.
  std::vector<FileKey> disk_keys;
  for (const DiskPlan& d : plan.disks) disk_keys.push_back(file_key(d.info.canonical_path));
  std::vector<FileKey> backstore_keys;
  for (const Backstore& b : inv.backstores) backstore_keys.push_back(file_key(b.file));
  std::set<std::string> wwns;
  for (size_t i = 0; i < plan.disks.size(); ++i) {
    const DiskPlan& d = plan.disks[i];
    const std::string& obj = d.spec.path;
    for (size_t j = 0; j < i; ++j)
      if (disk_keys[j] == disk_keys[i])
        throw Error(obj, fmt::format("the same image is given twice (disk {} and disk {})", j, i));
    if (!wwns.insert(d.identity.wwn).second)
      throw Error(obj, "wwn " + d.identity.wwn + " is used by two disks of this run");
    for (size_t k = 0; k < inv.backstores.size(); ++k) {
      const Backstore& b = inv.backstores[k];
      if (backstore_keys[k] == disk_keys[i] && !(d.spec.readonly && is_read_only_export(b)))
        throw Error(obj, fmt::format("already exported by LIO backstore {} (two writers would "
                                     "corrupt it)", b.path()));
    }
    for (const std::string& w : inv.vhost_wwns)
      if (w == d.identity.wwn)
        throw Error(obj, "wwn " + w + " already exists in " + layout::kVhost + " (another VM or tool "
                         "uses it)");
  }
}

}  // namespace qemu_lio
