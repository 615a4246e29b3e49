#pragma once
// Reading and extending QEMU's own command line.

#include <optional>
#include <string>
#include <vector>

namespace qemu_lio {

/// The value of QEMU option `opt` ("-name") in argv (argv[0] is QEMU itself), accepting
/// QEMU's "--opt" spelling too. The last occurrence wins, as in QEMU.
std::optional<std::string> qemu_option_value(const std::vector<std::string>& argv,
                                             const std::string& opt);

}  // namespace qemu_lio
