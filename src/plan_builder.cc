#include "qemu_lio/plan_builder.h"

#include <fmt/core.h>

#include <algorithm>
#include <cctype>
#include <map>
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
  // A served image's bytes come from its NBD device; the image's own path stays what the
  // object is known by (udev_path), so conflicts, list and gc see the image.
  const std::string device = d.nbd_var.empty() ? p : "$" + d.nbd_var;

  Op claim = make(Op::Kind::kClaimHba, layout::kCore, d.plugin,
                  "mkdir is the only atomic claim: take the first free " + d.plugin + "_N");
  claim.var = d.hba_var;
  // A share=on disk's object outlives this VM while another VM's LUN links it.
  claim.shared = d.spec.share;
  ops.push_back(claim);
  ops.push_back(make(Op::Kind::kMkdir, so, "", "one storage object per HBA, as targetcli does"));
  ops.back().shared = d.spec.share;

  if (file) {
    std::string control = fmt::format("fd_dev_name={},fd_dev_size={}", p, d.info.size);
    if (d.spec.cache == CacheMode::kWriteback) control += ",fd_buffered_io=1";
    if (d.spec.cache == CacheMode::kNone) control += ",fd_async_io=1";
    ops.push_back(make(Op::Kind::kWrite, so + "/control", control,
                       std::string("cache=") + to_string(d.spec.cache)));
  } else {
    // iblock's readonly=1 only sets the bit the guest sees; the ACL below enforces it.
    ops.push_back(make(Op::Kind::kWrite, so + "/control",
                       "udev_path=" + device + (d.spec.readonly ? ",readonly=1" : ""),
                       d.nbd_var.empty() ? "block device" : d.info.format + " image, read by qemu-storage-daemon"));
  }
  ops.push_back(make(Op::Kind::kWrite, so + "/udev_path", p,
                     "lets targetcli and 'qemu-lio list' see which image this serves"));
  ops.push_back(make(Op::Kind::kWrite, so + "/enable", "1",
                     "the image was checked to exist: enable would O_CREAT a wrong path"));
  if (!d.info.file_id.empty() && d.nbd_var.empty())
    // enable makes the kernel open the path by name, as root: a swap of the file (or of a
    // directory on its path) after the checks would serve another file. Catch it here.
    ops.push_back(make(Op::Kind::kExpectSameFile, p, d.info.file_id,
                       "the kernel opened the file that was checked"));
  if (d.spec.share)
    // Every VM's LUN joins the object's default port group, which allows explicit ALUA: one
    // guest's SET TARGET PORT GROUPS would change the access state the other VMs see.
    ops.push_back(make(Op::Kind::kWrite, so + "/alua/default_tg_pt_gp/alua_access_type", "1",
                       "implicit ALUA only: no guest of a shared disk changes the others' access state"));
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

// The target, TPG 1 (QEMU's boot_tpgt) and its nexus, once per target; `d` is its first disk.
void add_target_ops(const DiskPlan& d, bool acl, std::vector<Op>& ops) {
  const std::string& w = d.identity.wwn;
  ops.push_back(make(Op::Kind::kEnsureDir, layout::kVhost, "",
                     "the fabric directory appears only when first made; shared, never removed"));
  ops.push_back(make(Op::Kind::kMkdir, layout::vhost_target(w), "", "vhost target (QEMU's wwpn)"));
  ops.push_back(make(Op::Kind::kMkdir, layout::tpg(w, 1), "", "target portal group 1 (boot_tpgt=1)"));
  if (acl)
    // vhost's demo-mode ACL ignores iblock's readonly=1; an explicit ACL named like the
    // nexus, made before it, carries the write_protect the target enforces. With it the
    // initiator sees only the LUNs mapped into it, so a controller maps every LUN.
    ops.push_back(make(Op::Kind::kMkdir, layout::acl(w, 1, d.identity.nexus), "",
                       "explicit ACL for the nexus (read-only disk)"));
  ops.push_back(make(Op::Kind::kWrite, layout::nexus(w, 1), d.identity.nexus,
                     "QEMU cannot bind a TPG without a nexus", "NULL"));
}

// One disk's LUN in its target, and with an ACL its mapping there (LUN L as mapped LUN L).
void add_lun_ops(const DiskPlan& d, bool acl, std::vector<Op>& ops) {
  const std::string& w = d.identity.wwn;
  const int l = d.lun;
  const std::string lun = layout::lun(w, 1, l);
  const std::string acl_lun = layout::acl_lun(w, 1, d.identity.nexus, l);
  ops.push_back(make(Op::Kind::kMkdir, lun, "", fmt::format("LUN {}", l)));
  ops.push_back(make(Op::Kind::kSymlink, layout::lun_link(w, 1, l, d.so_name),
                     layout::storage_object("$" + d.hba_var, d.so_name), "export the backstore"));
  if (!acl) return;
  // Created after the nexus so that teardown, in reverse, clears the nexus only once the
  // LUNs are gone and removes the ACL only after that: removing an ACL under a live
  // session blocks in the kernel for minutes.
  const std::string wp = d.spec.readonly ? "1" : "0";
  ops.push_back(make(Op::Kind::kMkdir, acl_lun, "", fmt::format("map LUN {} into the ACL", l)));
  ops.push_back(make(Op::Kind::kSymlink, layout::acl_lun_link(w, 1, d.identity.nexus, l, fmt::format("lun_{}", l)),
                     lun, fmt::format("mapped LUN -> TPG LUN {}", l)));
  if (d.spec.readonly)
    ops.push_back(make(Op::Kind::kWrite, acl_lun + "/write_protect", "1",
                       "the target refuses the guest's writes"));
  ops.push_back(make(Op::Kind::kExpect, acl_lun + "/write_protect", wp,
                     d.spec.readonly ? "write protection took effect"
                                     : "a writable LUN beside a read-only one stays writable"));
}

// The device keys of a controller's disks become its one -device: they go to its first
// disk (LUN 0, which emits the device). Disks that disagree are refused.
void merge_device_keys(DiskPlan& first, const DiskPlan& d) {
  const std::string obj = "image " + d.spec.path;
  const std::string ctl = "controller " + d.controller;
  if (d.spec.bootindex)
    throw UsageError(obj, fmt::format("bootindex: only the first disk of {} (its LUN 0) can boot: QEMU's "
                                      "boot path names LUN 0 of the boot TPG",
                                      ctl));
  // A key that one disk gives applies to the controller; two that differ are refused.
  auto merge = [&](const char* key, auto& have, const auto& want) {
    if (!want) return;
    if (have && *have != *want)
      throw UsageError(obj, fmt::format("{} '{}' differs from '{}' of an earlier disk of {}: a controller is "
                                        "one device",
                                        key, *want, *have, ctl));
    have = want;
  };
  merge("num-queues", first.spec.num_queues, d.spec.num_queues);
  merge("bus", first.spec.bus, d.spec.bus);
  merge("addr", first.spec.addr, d.spec.addr);
  if (d.spec.max_sectors != first.spec.max_sectors)
    throw UsageError(obj, fmt::format("max-sectors {} differs from {} of the first disk of {}: a controller is "
                                      "one device",
                                      d.spec.max_sectors, first.spec.max_sectors, ctl));
  if (d.spec.wwn && first.spec.wwn && *d.spec.wwn != *first.spec.wwn)
    throw UsageError(obj, fmt::format("wwn '{}' differs from '{}' of an earlier disk of {}: a controller has "
                                      "one wwn",
                                      *d.spec.wwn, *first.spec.wwn, ctl));
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
    // A share=on disk is used by several VMs at once in the same way.
    if (d.spec.readonly || d.spec.share) {
      Identity per_vm = derive_identity(known_as + "\n" + vm_name);
      d.identity.wwn = per_vm.wwn;
      d.identity.nexus = per_vm.nexus;
    }
    if (d.spec.controller) {
      // A controller belongs to its VM: its target is named after both.
      d.controller = *d.spec.controller;
      Identity ctl = derive_identity("controller\n" + vm_name + "\n" + d.controller);
      d.identity.wwn = ctl.wwn;
      d.identity.nexus = ctl.nexus;
    }
    if (d.spec.wwn) d.identity.wwn = *d.spec.wwn;
    if (d.spec.serial) d.identity.serial = *d.spec.serial;
    if (d.identity.nexus == d.identity.wwn)  // only possible with a user-given wwn
      d.identity.nexus = fmt::format("naa.6{:015x}", fnv1a64(d.identity.wwn) & 0xfffffffffffffffULL);
    // "-ro" marks a read-only export: the only kind another read-only run may share. A
    // share=on disk's one object is named after its image, so that every VM finds it.
    d.so_name = d.spec.share ? shared_object_name(known_as)
                             : fmt::format("{}-disk{}{}", vm_name, first_disk + static_cast<int>(i),
                                           d.spec.readonly ? "-ro" : "");
    d.hba_var = fmt::format("HBA{}", i);
    d.plugin = d.info.kind == ImageKind::kFile && !d.info.served() ? "fileio" : "iblock";
    if (d.info.served()) {
      d.nbd_var = fmt::format("NBD{}", i);
      // One object serves every VM of a shared disk; a served image's device is one VM's.
      if (d.spec.share)
        throw UsageError("image " + d.spec.path, fmt::format("share=on serves raw images only, not {}", d.info.format));
    }
    plan.disks.push_back(d);
  }
  // The disks of each vhost target, by index: a disk of its own, or every disk of a
  // controller in plan order. Each disk of a controller takes the next LUN and the
  // controller's identity (a wwn= on any of them names the whole controller); its device
  // keys go to the first.
  std::vector<std::vector<size_t>> targets;
  std::map<std::string, size_t> target_of;  // controller name -> index in targets
  std::map<std::string, size_t> disk_of_id;  // id= -> disk: detach finds a disk by it
  for (size_t i = 0; i < plan.disks.size(); ++i) {
    DiskPlan& d = plan.disks[i];
    if (d.spec.id) {
      auto [at, fresh] = disk_of_id.emplace(*d.spec.id, i);
      if (!fresh)
        throw UsageError("id " + *d.spec.id, fmt::format("is given to two disks (disk {} and disk {})", at->second, i));
    }
    if (d.controller.empty()) {
      targets.push_back({i});
      continue;
    }
    auto [it, fresh] = target_of.emplace(d.controller, targets.size());
    if (fresh) {
      targets.push_back({i});
      continue;
    }
    std::vector<size_t>& t = targets[it->second];
    DiskPlan& first = plan.disks[t.front()];
    merge_device_keys(first, d);
    if (d.spec.wwn && !first.spec.wwn) {
      first.spec.wwn = d.spec.wwn;
      for (size_t k : t) plan.disks[k].identity.wwn = *d.spec.wwn;
    }
    d.identity.wwn = first.identity.wwn;
    d.identity.nexus = first.identity.nexus;
    d.lun = static_cast<int>(t.size());
    t.push_back(i);
  }
  for (const std::vector<size_t>& t : targets) {
    // A controller is one job: its LUNs link objects that its own disks make, in order.
    const size_t from = plan.ops.size();
    const bool acl = std::any_of(t.begin(), t.end(), [&](size_t k) { return plan.disks[k].spec.readonly; });
    for (size_t k : t) add_backstore_ops(plan.disks[k], plan.ops);
    add_target_ops(plan.disks[t.front()], acl, plan.ops);
    for (size_t k : t) add_lun_ops(plan.disks[k], acl, plan.ops);
    for (size_t k = from; k < plan.ops.size(); ++k) plan.ops[k].disk = t.front();
  }
  return plan;
}

std::string shared_object_name(const std::string& image_name) {
  return fmt::format("{}{:016x}", kSharedObjectPrefix, fnv1a64(image_name));
}

bool is_shared_export(const Backstore& b) { return b.name.rfind(kSharedObjectPrefix, 0) == 0; }

void join_shared(Plan& plan, const Inventory& inv) {
  for (size_t i = 0; i < plan.disks.size(); ++i) {
    const DiskPlan& d = plan.disks[i];
    if (!d.spec.share) continue;
    auto b = std::find_if(inv.backstores.begin(), inv.backstores.end(),
                          [&](const Backstore& x) { return x.name == d.so_name; });
    if (b == inv.backstores.end()) continue;  // the first VM: it makes the object
    const std::string var = "$" + d.hba_var;
    const std::string so = layout::storage_object(var, d.so_name);
    const std::string why = "the shared disk was made with other settings by another VM; give the keys its other VMs give";
    std::vector<Op> out;
    for (Op op : plan.ops) {
      const bool mine = op.var == d.hba_var || op.path == so || op.path.rfind(so + "/", 0) == 0;
      if (mine) {
        if (op.kind == Op::Kind::kClaimHba) {
          Op join;
          join.kind = Op::Kind::kJoin;
          join.path = layout::hba(b->hba);
          join.why = "the shared disk's HBA";
          join.disk = op.disk;
          op = std::move(join);
        } else if (op.kind == Op::Kind::kMkdir) {
          op.kind = Op::Kind::kJoin;
          op.why = "the shared disk's object, made by another VM";
        } else if (op.kind == Op::Kind::kWrite) {
          // What the first VM wrote must be what this one would: read it back instead.
          const std::string attr = op.path.substr(so.size() + 1);
          // control is write-only and block_size has its own kExpect; the ALUA type is no
          // key of the user's, and reads back as text ("Implicit").
          if (attr == "control" || attr == "attrib/block_size" || attr.rfind("alua/", 0) == 0) continue;
          op.kind = Op::Kind::kExpect;
          op.why = why;
          op.shared = true;
        } else if (op.kind == Op::Kind::kExpect) {
          op.why = why;
          op.shared = true;
        }
      }
      op.path = bind_vars(op.path, {{d.hba_var, b->hba}});
      op.value = bind_vars(op.value, {{d.hba_var, b->hba}});
      out.push_back(std::move(op));
      // A joiner with discard off must not find it on (the first VM writes it only for on).
      const std::string serial_attr = layout::storage_object(b->hba, d.so_name) + "/wwn/vpd_unit_serial";
      if (mine && out.back().kind == Op::Kind::kExpect && out.back().path == serial_attr &&
          !(d.spec.discard && d.info.discard_supported)) {
        Op tpu = out.back();
        tpu.path = layout::storage_object(b->hba, d.so_name) + "/attrib/emulate_tpu";
        tpu.value = "0";
        out.push_back(std::move(tpu));
      }
    }
    plan.ops = std::move(out);
  }
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
    if (d.lun == 0 && !wwns.insert(d.identity.wwn).second)
      throw Error(obj, "wwn " + d.identity.wwn + " is used by two disks of this run");
    for (size_t k = 0; k < inv.backstores.size(); ++k) {
      const Backstore& b = inv.backstores[k];
      if (!(backstore_keys[k] == disk_keys[i])) continue;
      if (d.spec.share) {
        if (is_shared_export(b) && b.name != d.so_name)
          // A block device's object is named after its /dev/disk/by-* name when it is given
          // by one: another VM named the same device another way.
          throw Error(obj, fmt::format("is shared by other VMs through LIO backstore {} under another name of the "
                                       "image; give the image by the same path in every VM",
                                       b.path()));
        if (b.name != d.so_name)
          throw Error(obj, fmt::format("already exported by LIO backstore {} for one VM; every VM of a shared "
                                       "disk must give share=on",
                                       b.path()));
      } else if (is_shared_export(b)) {
        throw Error(obj, fmt::format("is shared by other VMs through LIO backstore {} (share=on); give "
                                     "share=on too",
                                     b.path()));
      } else if (!(d.spec.readonly && is_read_only_export(b))) {
        throw Error(obj, fmt::format("already exported by LIO backstore {} (two writers would "
                                     "corrupt it)", b.path()));
      }
    }
    for (const std::string& w : inv.vhost_wwns)
      if (w == d.identity.wwn)
        throw Error(obj, "wwn " + w + " already exists in " + layout::kVhost + " (another VM or tool "
                         "uses it)");
  }
}

}  // namespace qemu_lio
