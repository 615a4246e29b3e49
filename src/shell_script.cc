#include "qemu_lio/shell_script.h"

#include <fmt/core.h>

namespace qemu_lio {

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') out += "'\\''";
    else out += c;
  }
  return out + "'";
}

std::string shell_comment(const std::string& text, const std::string& indent) {
  // sh ends a comment at a newline only; every other byte, '\r' included, stays inside it.
  std::string out = indent + "# ";
  for (char c : text) {
    out += c;
    if (c == '\n') out += indent + "# ";
  }
  return out + "\n";
}

std::string display_quote(const std::string& s) {
  bool control = false;
  for (unsigned char c : s)
    if (c < 0x20 || c == 0x7f) control = true;
  if (!control) return shell_quote(s);
  std::string out = "$'";
  for (unsigned char c : s) {
    if (c == '\\' || c == '\'') out += std::string("\\") + static_cast<char>(c);
    else if (c == '\n') out += "\\n";
    else if (c == '\t') out += "\\t";
    else if (c == '\r') out += "\\r";
    else if (c < 0x20 || c == 0x7f) out += fmt::format("\\x{:02x}", c);
    else out += static_cast<char>(c);
  }
  return out + "'";
}

namespace {

// "$CFS/target/core/$HBA0/x": variables stay live for sh, the rest is literal.
// Paths hold only safe tokens (names and wwns are validated), so double quotes suffice.
std::string cfs(const std::string& path) { return "\"$CFS/" + path + "\""; }

std::string render_op(const Op& op) {
  std::string s = shell_comment(op.why, "  ");
  switch (op.kind) {
    case Op::Kind::kClaimHba:
      s += fmt::format(
          "  n=0\n"
          "  until mkdir \"$CFS/{0}/{1}_$n\" 2>/dev/null; do\n"
          "    [ -e \"$CFS/{0}/{1}_$n\" ] || {{ echo \"qemu-lio: error: $CFS/{0}/{1}_$n: cannot create\" >&2; exit 1; }}\n"
          "    n=$((n + 1))\n"
          "  done\n"
          "  {2}={1}_$n\n",
          op.path, op.value, op.var);
      break;
    case Op::Kind::kEnsureDir:
      s += fmt::format("  [ -d {0} ] || mkdir {0}\n", cfs(op.path));
      break;
    case Op::Kind::kMkdir:
      s += fmt::format("  mkdir {}\n", cfs(op.path));
      break;
    case Op::Kind::kWrite:
      s += fmt::format("  printf '%s' {} > {}\n", shell_quote(op.value), cfs(op.path));
      break;
    case Op::Kind::kExpect:
      if (op.shared) {
        // Another VM's setting must be the same value, compared as the provisioner does: the
        // whole text, its "Key: value" field, or the text after its last ": ". The value
        // reaches awk through the environment: -v would interpret backslashes in it.
        s += fmt::format(
            "  QL_E={0} awk '{{ t = t (NR > 1 ? \"\\n\" : \"\") $0 }} END {{ e = ENVIRON[\"QL_E\"]; "
            "sub(/[ \\n]+$/, \"\", t); c = index(e, \": \"); ok = t == e || "
            "(length(t) > length(e) + 2 && substr(t, length(t) - length(e) - 1) == \": \" e); "
            "if (!ok && c) {{ a = index(t, substr(e, 1, c + 1)); if (a) {{ r = substr(t, a + c + 1); "
            "match(r, /^ */); v = substr(r, RLENGTH + 1); sub(/[ \\n].*$/, \"\", v); "
            "ok = substr(t, a, c + 1 + RLENGTH) v == e }} }} exit !ok }}' {1} || "
            "{{ echo \"qemu-lio: error: $CFS/{2}: the shared disk was made with other settings by another VM "
            "(expected \"{0} >&2; exit 1; }}\n",
            shell_quote(op.value), cfs(op.path), op.path);
        break;
      }
      s += fmt::format(
          "  grep -qF -- {0} {1} || {{ echo \"qemu-lio: error: $CFS/{2}: kernel did not take the "
          "setting \"{0} >&2; exit 1; }}\n",
          shell_quote(op.value), cfs(op.path), op.path);
      break;
    case Op::Kind::kSymlink:
      s += fmt::format("  ln -s {} {}\n", cfs(op.value), cfs(op.path));
      break;
    case Op::Kind::kJoin:
      s += fmt::format("  [ -d {0} ] || {{ echo \"qemu-lio: error: $CFS/{1}: the shared disk is gone\" >&2; exit 1; }}\n",
                       cfs(op.path), op.path);
      break;
    case Op::Kind::kExpectSameFile: {
      // The image path is the user's: quoted for sh, and printed with printf, not echo.
      const bool blk = op.value.rfind("b:", 0) == 0;
      s += fmt::format(
          "  [ \"$(stat -L -c {0} {1} 2>/dev/null)\" = {2} ] || {{ printf '%s\\n' {3} >&2; exit 1; }}\n",
          shell_quote(blk ? "b:%t:%T" : "%d:%i"), shell_quote(op.path), shell_quote(op.value),
          shell_quote("qemu-lio: error: " + op.path + ": changed between the check and enable"));
      break;
    }
  }
  return s;
}

std::string render_undo(const Undo& u) {
  switch (u.kind) {
    case Undo::Kind::kRmdir:
      // A shared disk's object stays while another VM's LUN links it (rmdir: EBUSY).
      if (u.shared) return fmt::format("  [ ! -d {0} ] || rmdir {0} 2>/dev/null || :  # kept while another VM uses it\n", cfs(u.path));
      return fmt::format("  [ ! -d {0} ] || rmdir {0}\n", cfs(u.path));
    case Undo::Kind::kUnlink: return fmt::format("  [ ! -L {0} ] || rm {0}\n", cfs(u.path));
    case Undo::Kind::kWrite:
      // ENODEV when there is nothing to clear is fine.
      return fmt::format("  {{ printf '%s' {} > {}; }} 2>/dev/null || true\n", shell_quote(u.value),
                         cfs(u.path));
  }
  return "";
}

}  // namespace

std::string render_shell_script(const Plan& plan, const std::string& configfs_root,
                                const std::vector<std::string>& qemu_argv) {
  std::string s;
  s += "#!/bin/sh\n";
  s += shell_comment(fmt::format("qemu-lio dry run for VM '{}': {} disk(s).", plan.vm_name,
                                 plan.disks.size()));
  s += "# sh THIS-SCRIPT [up|down]: up provisions (the default), down removes.\n";
  s += "set -eu\n";
  s += "CFS=" + shell_quote(configfs_root) + "\n\n";

  // ':' keeps a plan without disks valid sh: "up() { }" is a syntax error.
  s += "up() {\n  :\n";
  for (const DiskPlan& d : plan.disks)
    s += shell_comment(fmt::format("disk {}: {} ({}, {}, block-size {}, wwn {})",
                                   d.hba_var.substr(3), d.info.canonical_path, d.plugin,
                                   to_string(d.spec.cache), d.spec.block_size, d.identity.wwn),
                       "  ");
  for (const DiskPlan& d : plan.disks) {
    if (d.nbd_var.empty()) continue;
    // qemu-lio starts qemu-storage-daemon for these and connects each export as an NBD
    // device over the kernel's netlink interface, which sh has no tool for.
    s += shell_comment(fmt::format("{} is {}: qemu-lio serves it through qemu-storage-daemon and an NBD device "
                                   "connected over netlink; here that device is given as {}.",
                                   d.info.canonical_path, d.info.format, d.nbd_var),
                       "  ");
    s += fmt::format("  : \"${{{0}:?set {0} to the NBD device named above}}\"\n", d.nbd_var);
  }
  for (const Op& op : plan.ops) s += render_op(op);
  s += "}\n\n";

  // down() cannot know which N up() claimed, so it finds each HBA by the storage object it
  // holds and the image that object serves.
  s += "find_hba() {  # PLUGIN OBJECT IMAGE\n"
       "  for d in \"$CFS\"/target/core/\"$1\"_*; do\n"
       "    if [ -d \"$d/$2\" ] && [ \"$(cat \"$d/$2/udev_path\")\" = \"$3\" ]; then\n"
       "      basename \"$d\"; return 0\n"
       "    fi\n"
       "  done\n"
       "  echo none\n"
       "}\n\n";
  s += "down() {\n  :\n";
  for (const DiskPlan& d : plan.disks)
    s += fmt::format("  {}=$(find_hba {} {} {})\n", d.hba_var, d.plugin, d.so_name,
                     shell_quote(d.info.canonical_path));
  for (auto it = plan.ops.rbegin(); it != plan.ops.rend(); ++it)
    if (auto u = undo_of(*it)) s += render_undo(*u);
  s += "}\n\n";
  s += "case \"${1:-up}\" in\n"
       "  up) up ;;\n"
       "  down) down ;;\n"
       "  *) echo \"usage: $0 [up|down]\" >&2; exit 2 ;;\n"
       "esac\n\n";
  s += "# QEMU command line, run between up and down:\n";
  std::string line;
  for (const std::string& a : qemu_argv) line += " " + display_quote(a);
  // display_quote leaves no newline; shell_comment would keep one a comment all the same.
  s += shell_comment(line.empty() ? line : line.substr(1));
  return s;
}

}  // namespace qemu_lio
