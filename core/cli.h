// The command-line start every tally binary shares: usage message, --help
// limited to the binary's own flags, --version with tally's build
// (core/build_info.h; link tally_build_info), and no stray positional
// arguments.
#ifndef TALLY_CORE_CLI_H_
#define TALLY_CORE_CLI_H_

#include <cstdio>
#include <vector>

#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/string_view.h"
#include "core/build_info.h"

namespace tally {

// Parses argv. `own_flags(file)` says whether flags defined in `file` are
// the binary's (listed by --help). False, having printed
// "<program>: unexpected argument ...", if a positional argument is left.
inline bool ParseFlags(int argc, char** argv, const char* program, const char* usage,
                       bool (*own_flags)(absl::string_view file)) {
  absl::FlagsUsageConfig usage_config;
  usage_config.contains_help_flags = own_flags;
  usage_config.contains_helpshort_flags = own_flags;
  usage_config.version_string = [program] { return VersionString(program) + "\n"; };
  absl::SetFlagsUsageConfig(usage_config);
  absl::SetProgramUsageMessage(usage);
  std::vector<char*> rest = absl::ParseCommandLine(argc, argv);
  if (rest.size() > 1) {
    std::fprintf(stderr, "%s: unexpected argument '%s' (see --help)\n", program, rest[1]);
    return false;
  }
  return true;
}

}  // namespace tally

#endif  // TALLY_CORE_CLI_H_
