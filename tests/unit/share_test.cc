// share=on: several VMs write one image through one LIO storage object, each through its own
// vhost target and nexus (so persistent reservations work between them). The kernel's link
// count decides who removes the object: every VM's teardown tries, and the last one succeeds.

#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "fake_configfs.h"
#include "qemu_lio/configfs_layout.h"
#include "qemu_lio/hotplug.h"
#include "qemu_lio/journal.h"
#include "qemu_lio/lio_inventory.h"
#include "qemu_lio/lio_setup.h"
#include "qemu_lio/plan_builder.h"
#include "qemu_lio/provisioner.h"
#include "qemu_lio/qemu_cmdline.h"
#include "qemu_lio/teardown.h"
#include "test_support.h"

namespace qemu_lio {
namespace {

Plan plan_for(const std::vector<std::string>& specs, const std::string& vm) {
  std::vector<CheckedImage> images;
  for (const std::string& s : specs) {
    images.push_back(checked_image(s));
    images.back().info.discard_supported = true;  // a file system that punches holes
  }
  return build_plan(vm, images);
}

// What ProvisionedRun::provision does under the state lock, with a journal of VM `vm`.
// Returns the journal's path; throws what apply throws.
std::string start_vm(FakeConfigFs& fs, const TempDir& dir, const std::string& vm,
                     const std::vector<std::string>& specs, int pid) {
  Plan plan = plan_for(specs, vm);
  const Inventory inv = scan_inventory(fs);
  check_conflicts(plan, inv);
  join_shared(plan, inv);
  JournalWriter journal(dir / "state", vm, ProcessId{pid, 1});
  for (const DiskPlan& d : plan.disks) {
    journal.image(d.info.canonical_path, d.identity.wwn, d.lun);
    if (d.spec.share) journal.shared_disk(d.so_name, d.identity.serial);
  }
  Provisioner prov(fs);
  prov.set_observer([&](const Undo& u, bool cancelled) { journal.object(u, cancelled); });
  try {
    prov.apply(plan);
  } catch (...) {
    journal.remove();
    throw;
  }
  prov.release();
  journal.ready();
  return journal.path();
}

std::vector<std::string> shared_objects(FakeConfigFs& fs) {
  std::vector<std::string> out;
  for (const Backstore& b : scan_inventory(fs).backstores)
    if (is_shared_export(b)) out.push_back(b.path());
  return out;
}

class ShareTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fs_.mkdir("target/vhost");
    fresh_.mkdir("target/vhost");
  }
  void expect_clean() {
    EXPECT_EQ(fs_.list("target/vhost"), fresh_.list("target/vhost"));
    EXPECT_EQ(fs_.list("target/core"), fresh_.list("target/core"));
    EXPECT_FALSE(fs_.kernel_crashed());
  }
  TempDir dir_;
  FakeConfigFs fs_, fresh_;
};

TEST(SharePlan, OneObjectNameForEveryVmAndATargetPerVm) {
  Plan a = plan_for({"/img/s.raw,share=on"}, "a");
  Plan b = plan_for({"/img/s.raw,share=on"}, "b");
  EXPECT_EQ(a.disks[0].so_name, b.disks[0].so_name);
  EXPECT_EQ(a.disks[0].so_name.rfind(kSharedObjectPrefix, 0), 0u);
  EXPECT_NE(a.disks[0].identity.wwn, b.disks[0].identity.wwn);
  EXPECT_NE(a.disks[0].identity.nexus, b.disks[0].identity.nexus);
  EXPECT_EQ(a.disks[0].identity.serial, b.disks[0].identity.serial);
  EXPECT_NE(plan_for({"/img/t.raw,share=on"}, "a").disks[0].so_name, a.disks[0].so_name);
  // The object and its HBA are the shared kind: their removal is "if unused".
  for (const Op& op : a.ops) {
    std::optional<Undo> u = undo_of(op);
    if (!u || u->kind != Undo::Kind::kRmdir) continue;
    const auto k = layout::parse(bind_vars(u->path, {{"HBA0", "fileio_0"}})).kind;
    EXPECT_EQ(u->shared, k == layout::Parsed::Kind::kHba || k == layout::Parsed::Kind::kStorageObject) << u->path;
  }
}

TEST(SharePlan, KeysAndTheDropInsSpelling) {
  EXPECT_TRUE(parse_image_spec("/img/s.raw,share=on").share);
  EXPECT_FALSE(parse_image_spec("/img/s.raw").share);
  EXPECT_NE(usage_error_of([] { parse_image_spec("/img/s.raw,share=on,readonly=on"); }).find("share=on and readonly=on"),
            std::string::npos);
  QemuCommandLine q = scan_qemu_argv({"qemu-system-x86_64", "-drive", "file=/img/s.raw,if=vhost-scsi,id=d0,format=raw",
                                      "-device", "scsi-hd,drive=d0,share-rw=on"});
  ASSERT_EQ(q.images.size(), 1u);
  EXPECT_TRUE(q.images[0].share);
  QemuCommandLine off = scan_qemu_argv({"qemu-system-x86_64", "-drive", "file=/img/s.raw,if=vhost-scsi,id=d0,format=raw",
                                        "-device", "virtio-blk-pci,drive=d0,share-rw=off"});
  EXPECT_FALSE(off.images.at(0).share);
}

TEST_F(ShareTest, TwoVmsLinkOneObjectAndTheLastToLeaveRemovesIt) {
  for (bool first_leaves_first : {true, false}) {
    SCOPED_TRACE(first_leaves_first ? "creator leaves first" : "joiner leaves first");
    const std::string img = dir_ / "s.raw";
    write_file(img, 1 << 20);
    const std::string ja = start_vm(fs_, dir_, "a", {img + ",share=on"}, 11);
    const std::string jb = start_vm(fs_, dir_, "b", {img + ",share=on"}, 12);
    ASSERT_EQ(shared_objects(fs_).size(), 1u);
    const std::string so = shared_objects(fs_)[0];
    // Two targets, each with its LUN linking the one object.
    const Plan pa = plan_for({img + ",share=on"}, "a"), pb = plan_for({img + ",share=on"}, "b");
    for (const Plan* p : {&pa, &pb}) {
      const std::string link = layout::lun_link(p->disks[0].identity.wwn, 1, 0, p->disks[0].so_name);
      ASSERT_TRUE(fs_.is_link(link)) << link;
      EXPECT_EQ(fs_.link_target(link), so);
    }
    // The journals name the shared object as each VM's backstore.
    EXPECT_EQ("target/" + read_journal(ja).images.at(0).backstore, so);
    EXPECT_EQ("target/" + read_journal(jb).images.at(0).backstore, so);

    // The kernel's reservation file, as a guest's REGISTER leaves it.
    fs_.write("target/dbroot", dir_ / "db");
    ensure_pr_directory(fs_);
    const std::string aptpl = dir_ / ("db/pr/aptpl_" + pa.disks[0].identity.serial);
    write_file(aptpl, 10);
    const std::string first = first_leaves_first ? ja : jb, second = first_leaves_first ? jb : ja;
    TeardownResult r1 = teardown_journal(fs_, read_journal(first), RetryPolicy{});
    EXPECT_EQ(::access(aptpl.c_str(), F_OK), 0) << "the other VM's reservations live on";
    EXPECT_EQ(r1.failed, 0) << "the object another VM uses is not a leftover";
    EXPECT_NE(::access(first.c_str(), F_OK), 0) << "the journal of the VM that left is gone";
    EXPECT_TRUE(fs_.exists(so)) << "the other VM still uses it";
    const Plan& still = first_leaves_first ? pb : pa;
    EXPECT_TRUE(fs_.is_link(layout::lun_link(still.disks[0].identity.wwn, 1, 0, still.disks[0].so_name)));
    TeardownResult r2 = teardown_journal(fs_, read_journal(second), RetryPolicy{});
    EXPECT_EQ(r2.failed, 0);
    EXPECT_NE(::access(aptpl.c_str(), F_OK), 0) << "the last VM's teardown removes the stale reservation file";
    expect_clean();
  }
}

TEST_F(ShareTest, OurOwnStuckLinkOrAStuckHbaIsNotAnotherVmsAndKeepsTheJournal) {
  const std::string img = dir_ / "s.raw";
  write_file(img, 1 << 20);
  // The last VM's LUN link will not go: the object's EBUSY is our own link, not a user.
  std::string ja = start_vm(fs_, dir_, "a", {img + ",share=on"}, 11);
  const std::string so = shared_objects(fs_).at(0);
  const Plan pa = plan_for({img + ",share=on"}, "a");
  fs_.fail_on_exact(FsOp::kUnlink, layout::lun_link(pa.disks[0].identity.wwn, 1, 0, pa.disks[0].so_name), EIO);
  const RetryPolicy quick{std::chrono::milliseconds(1), std::chrono::milliseconds(2), std::chrono::milliseconds(20)};
  EXPECT_GE(teardown_journal(fs_, read_journal(ja), quick).failed, 2) << "the link, the object and its HBA";
  ASSERT_EQ(::access(ja.c_str(), F_OK), 0) << "kept for gc";
  const std::vector<Undo> kept = read_journal(ja).undo;
  EXPECT_NE(std::find_if(kept.begin(), kept.end(), [&](const Undo& u) { return u.path == so; }), kept.end());
  fs_.clear_faults();
  EXPECT_EQ(teardown_journal(fs_, read_journal(ja), quick).failed, 0);
  expect_clean();
  // The object goes, its HBA does not (EIO): the HBA is nobody else's either.
  ja = start_vm(fs_, dir_, "a", {img + ",share=on"}, 11);
  const std::string hba = shared_objects(fs_).at(0).substr(0, shared_objects(fs_).at(0).rfind('/'));
  fs_.fail_on_exact(FsOp::kRmdir, hba, EIO, 1);
  EXPECT_EQ(teardown_journal(fs_, read_journal(ja), quick).failed, 1);
  ASSERT_EQ(::access(ja.c_str(), F_OK), 0) << "kept for gc";
  EXPECT_EQ(teardown_journal(fs_, read_journal(ja), quick).failed, 0);
  expect_clean();
}

TEST_F(ShareTest, ADryRunGcOnlySaysItWouldDeleteTheStaleReservationFile) {
  const std::string img = dir_ / "s.raw";
  write_file(img, 1 << 20);
  const std::string ja = start_vm(fs_, dir_, "a", {img + ",share=on"}, 11);
  fs_.write("target/dbroot", dir_ / "db");
  ensure_pr_directory(fs_);
  const std::string aptpl = dir_ / ("db/pr/aptpl_" + plan_for({img + ",share=on"}, "a").disks[0].identity.serial);
  write_file(aptpl, 10);
  // The wrapper died after its objects went and before the file did.
  ASSERT_EQ(teardown_journal(fs_, read_journal(ja), RetryPolicy{}, [](const std::string&) {}).failed, 0);
  write_file(aptpl, 10);
  std::vector<std::string> said;
  auto dry = make_dry_run_configfs(fs_, [&](const std::string& l) { said.push_back(l); });
  EXPECT_EQ(teardown_journal(*dry, read_journal(ja), RetryPolicy{},
                             [&](const std::string& f) { said.push_back("would delete " + f); })
                .failed,
            0);
  EXPECT_EQ(::access(aptpl.c_str(), F_OK), 0) << "a dry run deletes nothing";
  EXPECT_NE(std::find(said.begin(), said.end(), "would delete " + aptpl), said.end());
  EXPECT_EQ(teardown_journal(fs_, read_journal(ja), RetryPolicy{}).failed, 0);
  EXPECT_NE(::access(aptpl.c_str(), F_OK), 0);
  expect_clean();
}

TEST_F(ShareTest, MixingSharedAndExclusiveUseIsRefusedInOneLine) {
  const std::string img = dir_ / "s.raw";
  write_file(img, 1 << 20);
  const std::string ja = start_vm(fs_, dir_, "a", {img + ",share=on"}, 11);
  const auto snapshot = fs_.list("target/vhost");
  EXPECT_NE(error_of([&] { start_vm(fs_, dir_, "b", {img}, 12); }).find("(share=on); give share=on too"),
            std::string::npos);
  EXPECT_EQ(fs_.list("target/vhost"), snapshot);
  teardown_journal(fs_, read_journal(ja), RetryPolicy{});
  const std::string jx = start_vm(fs_, dir_, "x", {img}, 13);
  EXPECT_NE(error_of([&] { start_vm(fs_, dir_, "y", {img + ",share=on"}, 14); })
                .find("for one VM; every VM of a shared disk must give share=on"),
            std::string::npos);
  teardown_journal(fs_, read_journal(jx), RetryPolicy{});
  expect_clean();
}

TEST_F(ShareTest, AJoinerWithOtherSettingsIsRefusedAndLeavesTheFirstVmWhole) {
  const std::string img = dir_ / "s.raw";
  write_file(img, 1 << 20);
  const std::string ja = start_vm(fs_, dir_, "a", {img + ",share=on"}, 11);
  const auto vhost = fs_.list("target/vhost");
  const std::string so = shared_objects(fs_).at(0);
  for (const char* keys : {",cache=writethrough", ",block-size=4096", ",serial=other", ",discard=off"}) {
    SCOPED_TRACE(keys);
    std::string err = error_of([&] { start_vm(fs_, dir_, "b", {img + ",share=on" + keys}, 12); });
    EXPECT_NE(err.find("the shared disk was made with other settings by another VM"), std::string::npos) << err;
    EXPECT_NE(err.find(so), std::string::npos) << "names the object's attribute: " << err;
    EXPECT_EQ(fs_.list("target/vhost"), vhost);
    EXPECT_TRUE(fs_.exists(so));
  }
  EXPECT_EQ(teardown_journal(fs_, read_journal(ja), RetryPolicy{}).failed, 0);
  expect_clean();
}

TEST_F(ShareTest, AJoinersSettingMustBeTheSameValueNotAPartOfIt) {
  const std::string img = dir_ / "s.raw";
  write_file(img, 1 << 20);
  const std::string ja = start_vm(fs_, dir_, "a", {img + ",share=on,serial=abc123"}, 11);
  const std::string err = error_of([&] { start_vm(fs_, dir_, "b", {img + ",share=on,serial=abc12"}, 12); });
  EXPECT_NE(err.find("(expected 'abc12', it has"), std::string::npos) << err;
  const std::string jb = start_vm(fs_, dir_, "b", {img + ",share=on,serial=abc123"}, 12);
  EXPECT_EQ(teardown_journal(fs_, read_journal(jb), RetryPolicy{}).failed, 0);
  EXPECT_EQ(teardown_journal(fs_, read_journal(ja), RetryPolicy{}).failed, 0);
  expect_clean();
}

TEST_F(ShareTest, TheSameImageSharedUnderAnotherNameIsRefusedNamingTheCause) {
  // Another VM gave the block device by its /dev/disk/by-* name (the object is named after
  // that), this one by another path: joining would need the same name.
  const std::string img = dir_ / "s.raw";
  write_file(img, 1 << 20);
  Inventory inv;
  inv.backstores.push_back({"iblock_0", std::string(kSharedObjectPrefix) + "0000000000000000", img});
  const std::string err = error_of([&] { check_conflicts(plan_for({img + ",share=on"}, "b"), inv); });
  EXPECT_NE(err.find("under another name of the image; give the image by the same path in every VM"),
            std::string::npos)
      << err;
}

TEST_F(ShareTest, DetachOfOneVmsSharedDiskKeepsTheObjectForTheOther) {
  const std::string img = dir_ / "s.raw";
  write_file(img, 1 << 20);
  const std::string ja = start_vm(fs_, dir_, "a", {img + ",share=on"}, 11);
  const std::string jb = start_vm(fs_, dir_, "b", {img + ",share=on"}, 12);
  const std::string so = shared_objects(fs_).at(0);
  JournalContents b = read_journal(jb);
  const std::vector<Undo> steps = disk_undo_steps(b, b.images.at(0).wwn);
  EXPECT_TRUE(std::any_of(steps.begin(), steps.end(), [&](const Undo& u) { return u.shared && u.path == so; }))
      << "detach releases the shared object too (the kernel keeps it while a LUN links it)";
  EXPECT_EQ(run_undo(fs_, steps, RetryPolicy{}), 0);
  EXPECT_TRUE(fs_.exists(so));
  EXPECT_EQ(count_present(fs_, steps), 0) << "what stays is the other VM's";
  teardown_journal(fs_, read_journal(ja), RetryPolicy{});
  ::unlink(jb.c_str());
  expect_clean();
}

TEST(ShareJournal, ShareMarksReadBackAsSharedAndAreForObjectsAndHbasOnly) {
  TempDir dir;
  std::string file;
  {
    JournalWriter w(dir / "state", "vm", ProcessId{1, 1});
    file = w.path();
    w.object({Undo::Kind::kRmdir, "target/core/fileio_0", "", true}, false);
    w.object({Undo::Kind::kRmdir, "target/core/fileio_0/qlshared-0123456789abcdef", "", true}, false);
    w.object({Undo::Kind::kRmdir, "target/core/fileio_1", "", false}, false);
  }
  JournalContents j = read_journal(file);
  ASSERT_EQ(j.undo.size(), 3u);
  EXPECT_TRUE(j.undo[0].shared);
  EXPECT_TRUE(j.undo[1].shared);
  EXPECT_FALSE(j.undo[2].shared);
  // An older reader (or a crash before the mark) sees the plain record: a private rmdir,
  // which fails while another VM uses the object and never removes it from under that VM.
  std::ifstream in(file);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("make rmdir target/core/fileio_0 %\nshare rmdir target/core/fileio_0\n"),
            std::string::npos);
  // The mark is for an HBA or a storage object only.
  EXPECT_FALSE(layout::is_qemu_lio_undo({Undo::Kind::kRmdir, "target/vhost/naa.5001405123456789", "", true}));
  EXPECT_TRUE(layout::is_qemu_lio_undo({Undo::Kind::kRmdir, "target/core/iblock_3", "", true}));
  append_journal_record(file, "share rmdir target/vhost/naa.5001405123456789");
  EXPECT_NE(error_of([&] { read_journal(file); }).find("not a shared disk's object"), std::string::npos);
}

TEST(ShareJournal, AFailedSharedClaimTakesItsMarkBackAndOldReleaseRecordsStillRead) {
  TempDir dir;
  std::string file;
  {
    JournalWriter w(dir / "state", "vm", ProcessId{1, 1});
    file = w.path();
    // A private disk's HBA; then a new shared disk's claim tries it first (EEXIST).
    w.object({Undo::Kind::kRmdir, "target/core/fileio_0", "", false}, false);
    w.object({Undo::Kind::kRmdir, "target/core/fileio_0", "", true}, false);
    w.object({Undo::Kind::kRmdir, "target/core/fileio_0", "", true}, true);
  }
  append_journal_record(file, "make release target/core/fileio_4 %");
  JournalContents j = read_journal(file);
  ASSERT_EQ(j.undo.size(), 2u);
  EXPECT_FALSE(j.undo[0].shared) << "the private disk's HBA stays private";
  EXPECT_EQ(j.undo[1].path, "target/core/fileio_4");
  EXPECT_TRUE(j.undo[1].shared);
}

TEST(ShareJournal, AClaimAttemptInterleavedWithAJoinKeepsTheHbaShared) {
  // One of the VM's private disks tries fileio_0 (make, then cancel on EEXIST) while its
  // shared disk joins the object in fileio_0: the records interleave, and the one kept entry
  // must stay shared, or the VM's teardown fails on the other VM's HBA and keeps its journal.
  for (int order = 0; order < 2; ++order) {
    TempDir dir;
    std::string file;
    {
      JournalWriter w(dir / "state", "vm", ProcessId{1, 1});
      file = w.path();
      const Undo claim{Undo::Kind::kRmdir, "target/core/fileio_0", "", false};
      const Undo join{Undo::Kind::kRmdir, "target/core/fileio_0", "", true};
      if (order == 0) {
        w.object(claim, false);
        w.object(join, false);
      } else {
        w.object(join, false);
        w.object(claim, false);
      }
      w.object(claim, true);
    }
    JournalContents j = read_journal(file);
    ASSERT_EQ(j.undo.size(), 1u) << order;
    EXPECT_TRUE(j.undo[0].shared) << order;
  }
}

TEST(SharePrDirectory, MadeUnderDbrootWithMode0700) {
  TempDir dir;
  FakeConfigFs fs;
  fs.write("target/dbroot", dir / "dbroot");
  ensure_pr_directory(fs);
  struct stat st;
  ASSERT_EQ(::stat((dir / "dbroot/pr").c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0700u);
  ensure_pr_directory(fs);  // and again: it exists
  write_file(dir / "file", 1);
  fs.write("target/dbroot", dir / "file");
  EXPECT_NE(error_of([&] { ensure_pr_directory(fs); }).find("not a directory"), std::string::npos);
}

TEST_F(ShareTest, TheLastVmRetriesATransientEbusyAndKeepsItsJournalIfTheObjectStays) {
  const std::string img = dir_ / "s.raw";
  write_file(img, 1 << 20);
  // An EBUSY with no LUN linking the object is the kernel holding it for a moment (an
  // EXTENDED COPY pins the device): not "another VM uses it".
  std::string ja = start_vm(fs_, dir_, "a", {img + ",share=on"}, 11);
  const std::string so = shared_objects(fs_).at(0);
  fs_.fail_on(FsOp::kRmdir, so, EBUSY, 2);
  EXPECT_EQ(teardown_journal(fs_, read_journal(ja), RetryPolicy{}).failed, 0);
  expect_clean();
  // A removal that fails outright leaves the object for nobody: the journal keeps it.
  ja = start_vm(fs_, dir_, "a", {img + ",share=on"}, 11);
  const std::string so2 = shared_objects(fs_).at(0);
  fs_.fail_on(FsOp::kRmdir, so2, EIO, 1);
  const TeardownResult stuck = teardown_journal(fs_, read_journal(ja), RetryPolicy{});
  EXPECT_EQ(stuck.failed, 2) << "the object, and the HBA that holds it";
  EXPECT_GE(stuck.present, stuck.failed) << "gc reports present - failed as removed";
  EXPECT_EQ(::access(ja.c_str(), F_OK), 0) << "kept for gc";
  EXPECT_EQ(teardown_journal(fs_, read_journal(ja), RetryPolicy{}).failed, 0);
  expect_clean();
}

}  // namespace
}  // namespace qemu_lio
