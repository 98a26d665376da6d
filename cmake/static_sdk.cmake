# TALLY_STATIC_GRPC: tally_sdk_static, an INTERFACE target that links the
# client SDK and everything under it statically: the SDK's own objects and
# Debian's static archives of gRPC, protobuf, Abseil, OpenSSL, c-ares, RE2,
# upb, zlib and zstd (the -dev packages ship them), plus libstdc++ and
# libgcc. A program linked with it needs only glibc on the device. Used by
# examples/ (edge_train_static); included from the top-level CMakeLists.txt
# after client/.
set(_tally_static_archives grpc++ grpc upb address_sorting re2 cares gpr protobuf ssl crypto z
                           zstd)
set(_tally_static_paths)
foreach(name IN LISTS _tally_static_archives)
  string(MAKE_C_IDENTIFIER "TALLY_STATIC_LIB_${name}" var)
  find_library(${var} NAMES lib${name}.a REQUIRED)
  list(APPEND _tally_static_paths ${${var}})
endforeach()
# Abseil's ~60 archives depend on each other: one linker group.
get_filename_component(_tally_static_dir ${TALLY_STATIC_LIB_grpc} DIRECTORY)
file(GLOB _tally_absl_archives ${_tally_static_dir}/libabsl_*.a)

add_library(tally_sdk_static INTERFACE)
target_include_directories(tally_sdk_static INTERFACE ${PROJECT_SOURCE_DIR}/client/include)
# Raw files rather than the targets: the targets' usage requirements would
# bring back the shared Abseil and gRPC libraries.
target_link_libraries(tally_sdk_static INTERFACE
  $<TARGET_OBJECTS:tally_client> $<TARGET_OBJECTS:tally_proto>
  $<TARGET_FILE:tally_wire> $<TARGET_FILE:tally_compress> $<TARGET_FILE:tally_privacy>
  $<TARGET_FILE:tally_core>
  ${_tally_static_paths}
  -Wl,--start-group ${_tally_absl_archives} -Wl,--end-group
  -static-libstdc++ -static-libgcc Threads::Threads)
add_dependencies(tally_sdk_static tally_client tally_proto tally_wire tally_compress
                 tally_privacy tally_core)
