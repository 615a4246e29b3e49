#include "qemu_lio/cli.h"

#include <boost/program_options.hpp>
#include <sstream>

#include "qemu_lio/error.h"

namespace po = boost::program_options;

namespace qemu_lio {
namespace {

po::options_description describe(RunOptions& o, bool& help, bool& version, bool& verbose,
                                 bool& quiet) {
  po::options_description d("Options");
  d.add_options()
      ("image", po::value(&o.images)->composing()->value_name("SPEC"),
       "disk to export over vhost-scsi; repeatable. SPEC = PATH[,key=value]... "
       "(\",,\" is a literal comma). Keys: wwn, serial, block-size, cache, discard, "
       "bootindex, num-queues, max-sectors, id, bus, addr")
      ("name", po::value<std::string>()->value_name("NAME"),
       "VM name for object names and logs (default: QEMU's -name, else qemu-lio-<pid>)")
      ("dry-run", po::bool_switch(&o.dry_run),
       "print what would be done as a POSIX sh script plus the QEMU command line; touch nothing")
      ("configfs", po::value(&o.configfs)->value_name("DIR"),
       "configfs mount point (default /sys/kernel/config)")
      ("state-dir", po::value(&o.state_dir)->value_name("DIR"),
       "state directory (default /run/qemu-lio)")
      ("verbose,v", po::bool_switch(&verbose), "log every kernel step")
      ("quiet,q", po::bool_switch(&quiet), "print errors only")
      ("help,h", po::bool_switch(&help), "show this help")
      ("version", po::bool_switch(&version), "show the version");
  return d;
}

}  // namespace

std::string help_text() {
  RunOptions o;
  bool a, b, c, d;
  std::ostringstream s;
  s << "Usage: qemu-lio [run] [OPTIONS] -- QEMU [QEMU-ARGS...]\n\n"
       "Exports each --image as a kernel vhost-scsi disk through LIO (configfs), runs QEMU\n"
       "with a matching -device vhost-scsi-pci, and removes every LIO object when QEMU\n"
       "exits, however it exits.\n\n"
    << describe(o, a, b, c, d)
    << "\nExit status: QEMU's own (128+N if killed by signal N); 1 provisioning failed (rolled\n"
       "back); 2 usage error; 3 teardown left objects; 126/127 QEMU not executable/not found.\n"
       "See qemu-lio(8).\n";
  return s.str();
}

Command parse_command_line(const std::vector<std::string>& all) {
  Command cmd;
  std::vector<std::string> ours;
  size_t i = 0;
  if (!all.empty() && all[0] == "run") i = 1;
  for (; i < all.size(); ++i) {
    if (all[i] == "--") {
      cmd.run.qemu_argv.assign(all.begin() + static_cast<long>(i) + 1, all.end());
      break;
    }
    ours.push_back(all[i]);
  }

  bool help = false, version = false, verbose = false, quiet = false;
  po::options_description desc = describe(cmd.run, help, version, verbose, quiet);
  po::variables_map vm;
  try {
    po::store(po::command_line_parser(ours).options(desc).run(), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    throw UsageError("command line", std::string(e.what()) + " (see --help)");
  }
  if (vm.count("name")) cmd.run.name = vm["name"].as<std::string>();
  if (help) {
    cmd.kind = Command::Kind::kHelp;
    return cmd;
  }
  if (version) {
    cmd.kind = Command::Kind::kVersion;
    return cmd;
  }
  if (verbose && quiet) throw UsageError("command line", "--verbose and --quiet exclude each other");
  cmd.run.verbosity = verbose ? Verbosity::kVerbose : quiet ? Verbosity::kQuiet : Verbosity::kNormal;
  if (cmd.run.qemu_argv.empty())
    throw UsageError("command line", "no QEMU command: put it after '--' (see --help)");
  if (cmd.run.configfs.empty() || cmd.run.configfs[0] != '/')
    throw UsageError("--configfs", "must be an absolute path");
  while (cmd.run.configfs.size() > 1 && cmd.run.configfs.back() == '/') cmd.run.configfs.pop_back();
  return cmd;
}

}  // namespace qemu_lio
