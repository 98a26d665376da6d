// What this build of tally is: its version (the CMake project version), the
// git commit it was configured from and its build type. CMake takes them when
// it configures (scripts/build.sh configures on every build); a tree without
// git reports the commit "unknown" unless configured with
// -DTALLY_GIT_COMMIT=<commit>. tally-server prints them for --version, in
// Admin.GetStatus and as the tally_build_info metric. Thread-safe (constants).
#ifndef TALLY_CORE_BUILD_INFO_H_
#define TALLY_CORE_BUILD_INFO_H_

#include <string>

namespace tally {

struct BuildInfo {
  const char* version;     // "0.1.0"
  const char* commit;      // "b8e64ff", or "unknown"
  const char* build_type;  // "Release", "Debug", ... ("unknown" if none)
};
const BuildInfo& GetBuildInfo();

// "<program> <version> (commit <commit>, <build_type> build)".
std::string VersionString(const char* program);

}  // namespace tally

#endif  // TALLY_CORE_BUILD_INFO_H_
