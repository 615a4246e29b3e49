#pragma once
// --dry-run: the plan printed as a POSIX sh script that does what `run` does, with an
// "up" part that provisions and a "down" part that tears down.

#include <string>
#include <vector>

#include "qemu_lio/plan.h"

namespace qemu_lio {

/// Quotes `s` for sh with single quotes ('it'\''s').
std::string shell_quote(const std::string& s);

/// `text` as sh comment lines: every line, including those after a newline inside it,
/// starts with `indent` + "# ", and the result ends with a newline. Nothing in it can run.
std::string shell_comment(const std::string& text, const std::string& indent = "");

/// Quotes `s` for a command line shown in a comment: shell_quote() unless it holds a control
/// character, then bash's $'...' form with \n, \t, \r and \xHH escapes, so the line stays
/// one line.
std::string display_quote(const std::string& s);

/// Renders the plan as a script for `configfs_root`, ending with QEMU's final argv as a
/// comment. `sh SCRIPT` (or `sh SCRIPT up`) provisions; `sh SCRIPT down` removes.
std::string render_shell_script(const Plan& plan, const std::string& configfs_root,
                                const std::vector<std::string>& qemu_argv);

}  // namespace qemu_lio
