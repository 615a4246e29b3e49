#include "qemu_lio/qemu_args.h"

namespace qemu_lio {

std::optional<std::string> qemu_option_value(const std::vector<std::string>& argv,
                                             const std::string& opt) {
  std::optional<std::string> value;
  for (size_t i = 1; i + 1 < argv.size(); ++i)
    if (argv[i] == opt || argv[i] == "-" + opt) value = argv[++i];
  return value;
}

}  // namespace qemu_lio
