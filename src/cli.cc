#include "qemu_lio/cli.h"

#include <boost/program_options.hpp>
#include <sstream>

#include "qemu_lio/error.h"

namespace po = boost::program_options;

namespace qemu_lio {
namespace {

struct Flags {
  bool help = false, version = false, verbose = false, quiet = false;
};

po::options_description run_options(RunOptions& o) {
  po::options_description d("run options");
  d.add_options()
      ("image", po::value(&o.images)->composing()->value_name("SPEC"),
       "disk to export over vhost-scsi; repeatable. SPEC = PATH[,key=value]... "
       "(\",,\" is a literal comma). Keys: wwn, serial, block-size, cache, discard, "
       "readonly, format (raw: skips the header check; qcow2, vmdk, ...: served by "
       "qemu-storage-daemon over NBD), bootindex, num-queues, "
       "max-sectors, id, bus, addr, controller (disks naming one controller share one "
       "vhost-scsi-pci device as LUNs 0..N), share (several VMs write one image, with "
       "SCSI-3 persistent reservations between them)")
      ("name", po::value<std::string>()->value_name("NAME"),
       "VM name for object names and logs (default: QEMU's -name, else qemu-lio-<pid>)")
      ("hotplug-ports", po::value<int>()->value_name("N"),
       "on a q35 machine, add N empty pcie-root-ports that 'qemu-lio attach' can plug "
       "disks into (0-16; default: hotplug_ports in /etc/qemu-lio.conf, else 0)")
      ("exec", po::bool_switch(&o.exec_mode),
       "exec QEMU in place so it keeps this pid (as libvirt expects); the run's backstop "
       "tears down when it exits. Same as 'mode = exec' in /etc/qemu-lio.conf");
  return d;
}

po::options_description common_options(RunOptions& o, Flags& f) {
  po::options_description d("common options");
  d.add_options()
      ("dry-run", po::bool_switch(&o.dry_run),
       "run: print what would be done as a POSIX sh script plus the QEMU command line; "
       "gc: list what would be removed. Touch nothing")
      ("json", po::bool_switch(&o.json), "list: print JSON")
      ("id", po::value<std::string>()->value_name("ID"),
       "attach: QEMU's id for the new device (default qemu-lio-disk<N>); detach takes it")
      ("timeout", po::value(&o.timeout)->value_name("SECONDS"),
       "attach, detach: how long to wait for QEMU, and for the guest to release a disk "
       "(default 30)")
      ("qemu", po::value(&o.qemu)->value_name("PATH"),
       "check: the QEMU binary to check (default qemu-system-x86_64)")
      ("configfs", po::value(&o.configfs)->value_name("DIR"),
       "configfs mount point (default /sys/kernel/config)")
      ("state-dir", po::value(&o.state_dir)->value_name("DIR"),
       "journals and lock (default /run/qemu-lio)")
      ("verbose,v", po::bool_switch(&f.verbose), "log every kernel step")
      ("quiet,q", po::bool_switch(&f.quiet), "print errors only")
      ("help,h", po::bool_switch(&f.help), "show this help")
      ("version", po::bool_switch(&f.version), "show the version");
  return d;
}

}  // namespace

std::string help_text() {
  RunOptions o;
  Flags f;
  std::ostringstream s;
  s << "Usage: qemu-lio [run] [OPTIONS] -- QEMU [QEMU-ARGS...]\n"
       "       qemu-lio gc [--dry-run] [OPTIONS]\n"
       "       qemu-lio list [--json] [OPTIONS]\n"
       "       qemu-lio check [--qemu PATH] [OPTIONS]\n"
       "       qemu-lio libvirt-xml SPEC [--name DOMAIN]\n"
       "       qemu-lio attach VM SPEC [--id ID] [--timeout SECONDS] [OPTIONS]\n"
       "       qemu-lio detach VM ID|IMAGE [--timeout SECONDS] [OPTIONS]\n"
       "       qemu-lio [OPTIONS] libvirt-hook DOMAIN OPERATION SUB-OPERATION [EXTRA]\n\n"
       "run:   exports each --image as a kernel vhost-scsi disk through LIO (configfs), runs\n"
       "       QEMU with a matching -device vhost-scsi-pci, and removes every LIO object when\n"
       "       QEMU exits, however it exits.\n"
       "gc:    removes the LIO objects of runs whose wrapper, QEMU and backstop are all gone.\n"
       "list:  shows each VM's LIO objects from the journals in the state directory.\n"
       "check: tests and explains what run needs (root, configfs, modules, vhost, QEMU).\n"
       "libvirt-xml:  prints the <hostdev> and <metadata> element that give a libvirt domain\n"
       "       the image SPEC as a vhost-scsi disk (its wwpn is derived as for run).\n"
       "attach: adds the image SPEC to the running VM (named as in 'list') as a hot-plugged\n"
       "       vhost-scsi disk with a device of its own (no controller=), through the VM's\n"
       "       private QMP socket.\n"
       "detach: unplugs a disk (by device id or image) and removes its LIO objects; one LUN\n"
       "       of a controller with other disks: removes that LUN only, no device_del.\n"
       "libvirt-hook: libvirt's qemu hook (installed as /etc/libvirt/hooks/qemu.d/qemu-lio):\n"
       "       provisions a domain's <lio:disk>s on prepare, tears them down on release.\n\n"
    << run_options(o) << "\n" << common_options(o, f)
    << "\nExit status: run passes on QEMU's own (128+N if killed by signal N); 1 provisioning\n"
       "failed (rolled back) or check/gc found a problem; 2 usage error; 3 teardown left\n"
       "objects; 126/127 QEMU not executable/not found. See qemu-lio(8).\n";
  return s.str();
}

Command parse_command_line(const std::vector<std::string>& given) {
  Command cmd;
  std::vector<std::string> all = given;
  std::vector<std::string> ours;
  // The subcommand is the first word that is neither an option nor an option's value, so
  // "qemu-lio --state-dir D gc" works as well as "qemu-lio gc --state-dir D".
  static const char* const kTakesValue[] = {"--image", "--name", "--configfs", "--state-dir", "--qemu",
                                            "--id", "--timeout", "--hotplug-ports"};
  std::optional<size_t> command_at;
  for (size_t k = 0; k < all.size() && all[k] != "--"; ++k) {
    const std::string& w = all[k];
    if (!w.empty() && w[0] == '-') {
      for (const char* opt : kTakesValue)
        if (w == opt) ++k;  // skip its value
      continue;
    }
    if (w == "run" || w == "gc" || w == "list" || w == "check" || w == "libvirt-hook" ||
        w == "libvirt-xml" || w == "attach" || w == "detach")
      command_at = k;
    break;
  }
  if (command_at) {
    const std::string& w = all[*command_at];
    if (w == "gc") cmd.kind = Command::Kind::kGc;
    else if (w == "list") cmd.kind = Command::Kind::kList;
    else if (w == "check") cmd.kind = Command::Kind::kCheck;
    else if (w == "libvirt-hook") cmd.kind = Command::Kind::kLibvirtHook;
    else if (w == "libvirt-xml") cmd.kind = Command::Kind::kLibvirtXml;
    else if (w == "attach") cmd.kind = Command::Kind::kAttach;
    else if (w == "detach") cmd.kind = Command::Kind::kDetach;
  }
  // libvirt passes its words verbatim (EXTRA is often "-"): everything after the command
  // word is theirs, so none of it can be mistaken for an option of ours.
  if (cmd.kind == Command::Kind::kLibvirtHook) {
    cmd.run.args.assign(all.begin() + static_cast<long>(*command_at) + 1, all.end());
    all.resize(*command_at + 1);
  }
  const bool is_run = cmd.kind == Command::Kind::kRun;
  bool saw_dashdash = false;
  for (size_t i = 0; i < all.size(); ++i) {
    if (command_at && i == *command_at) continue;
    if (all[i] == "--" && is_run) {
      cmd.run.qemu_argv.assign(all.begin() + static_cast<long>(i) + 1, all.end());
      saw_dashdash = true;
      break;
    }
    ours.push_back(all[i]);
  }

  Flags f;
  po::options_description desc;
  desc.add(common_options(cmd.run, f));
  if (is_run) desc.add(run_options(cmd.run));
  // libvirt-xml takes one SPEC word and --name (the domain, for a read-only image's wwpn).
  po::positional_options_description words;
  if (cmd.kind == Command::Kind::kLibvirtXml) {
    desc.add_options()("name", po::value<std::string>())("spec", po::value(&cmd.run.args));
    words.add("spec", -1);
  }
  // attach VM SPEC, detach VM ID|IMAGE: two words.
  const bool hotplug = cmd.kind == Command::Kind::kAttach || cmd.kind == Command::Kind::kDetach;
  if (hotplug) {
    desc.add_options()("words", po::value(&cmd.run.args));
    words.add("words", 2);
  }
  po::variables_map vm;
  try {
    // An empty positional description makes a stray word an error: "qemu-lio a.img -- q"
    // (a forgotten --image) must not start the VM without its disk.
    po::store(po::command_line_parser(ours).options(desc).positional(words).run(), vm);
    po::notify(vm);
  } catch (const po::too_many_positional_options_error&) {
    std::string stray;
    for (size_t k = 0; k < ours.size() && stray.empty(); ++k) {
      if (!ours[k].empty() && ours[k][0] == '-') {
        for (const char* opt : kTakesValue)
          if (ours[k] == opt) ++k;
        continue;
      }
      stray = ours[k];
    }
    throw UsageError("command line", "unexpected argument '" + stray +
                                         "' (images need --image; QEMU's command goes after '--')");
  } catch (const po::error& e) {
    throw UsageError("command line", std::string(e.what()) + " (see --help)");
  }
  if (vm.count("name")) cmd.run.name = vm["name"].as<std::string>();
  if (vm.count("id")) cmd.run.device_id = vm["id"].as<std::string>();
  if (vm.count("hotplug-ports")) cmd.run.hotplug_ports = vm["hotplug-ports"].as<int>();
  if (f.help) {
    cmd.kind = Command::Kind::kHelp;
    return cmd;
  }
  if (f.version) {
    cmd.kind = Command::Kind::kVersion;
    return cmd;
  }
  if (f.verbose && f.quiet) throw UsageError("command line", "--verbose and --quiet exclude each other");
  cmd.run.verbosity = f.verbose ? Verbosity::kVerbose : f.quiet ? Verbosity::kQuiet : Verbosity::kNormal;
  if (hotplug && cmd.run.args.size() != 2)
    throw UsageError("command line", cmd.kind == Command::Kind::kAttach ? "attach needs VM and SPEC (see --help)"
                                                                       : "detach needs VM and ID or IMAGE (see --help)");
  if (cmd.run.device_id && cmd.kind != Command::Kind::kAttach) throw UsageError("--id", "only attach takes it");
  if (cmd.run.timeout < 1 || cmd.run.timeout > 3600) throw UsageError("--timeout", "must be 1 to 3600 seconds");
  if (cmd.run.hotplug_ports && (*cmd.run.hotplug_ports < 0 || *cmd.run.hotplug_ports > 16))
    throw UsageError("--hotplug-ports", "must be 0 to 16");
  if (is_run && (!saw_dashdash || cmd.run.qemu_argv.empty()))
    throw UsageError("command line", "no QEMU command: put it after '--' (see --help)");
  for (std::string* dir : {&cmd.run.configfs, &cmd.run.state_dir}) {
    if (dir->empty() || (*dir)[0] != '/')
      throw UsageError(dir == &cmd.run.configfs ? "--configfs" : "--state-dir", "must be an absolute path");
    while (dir->size() > 1 && dir->back() == '/') dir->pop_back();
  }
  return cmd;
}

}  // namespace qemu_lio
