# Cross build for 64-bit ARM Linux (Raspberry Pi 4/5, Jetson-class boards)
# with Debian's cross toolchain (crossbuild-essential-arm64) and multiarch
# :arm64 -dev packages, which install their libraries under
# /usr/lib/aarch64-linux-gnu and their headers under /usr/include. Build
# tools (protoc, grpc_cpp_plugin) are the native ones in /usr/bin.
#   cmake -S . -B build-arm64 -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake -DTALLY_SDK_ONLY=ON
# scripts/edge_test.sh installs the packages and runs the result under
# qemu-user.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)
set(CMAKE_LIBRARY_ARCHITECTURE aarch64-linux-gnu)
# Programs (protoc, the gRPC plugin) from the host; libraries, headers and
# CMake package configs from the target's multiarch directories only.
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_IGNORE_PREFIX_PATH /usr/lib/x86_64-linux-gnu)
set(CMAKE_IGNORE_PATH /usr/lib/x86_64-linux-gnu /usr/lib/x86_64-linux-gnu/cmake)
# pkg-config (gRPC's config finds RE2 with it) reads the arm64 .pc files.
set(ENV{PKG_CONFIG_LIBDIR} /usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig)
# try_run and ctest run target binaries through qemu-user (the arm64
# loader and libraries are where multiarch put them, so no -L is needed).
set(CMAKE_CROSSCOMPILING_EMULATOR qemu-aarch64)
