#include "core/build_info.h"

#include "absl/strings/str_cat.h"

// Compile definitions of this file only (CMakeLists.txt, tally_build_info),
// so a new commit recompiles one file.
#ifndef TALLY_VERSION
#error "TALLY_VERSION, TALLY_GIT_COMMIT and TALLY_BUILD_TYPE come from CMake"
#endif

namespace tally {

const BuildInfo& GetBuildInfo() {
  static const BuildInfo info = {TALLY_VERSION, TALLY_GIT_COMMIT,
                                 TALLY_BUILD_TYPE[0] != '\0' ? TALLY_BUILD_TYPE : "unknown"};
  return info;
}

std::string VersionString(const char* program) {
  const BuildInfo& info = GetBuildInfo();
  return absl::StrCat(program, " ", info.version, " (commit ", info.commit, ", ",
                      info.build_type, " build)");
}

}  // namespace tally
