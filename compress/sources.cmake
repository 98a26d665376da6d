# The codec library's sources, relative to compress/: shared by
# compress/CMakeLists.txt and the clang fuzz build (tests/fuzz/).
set(TALLY_COMPRESS_SOURCES
  codec.cc
  dense_codecs.cc
  int8_codec.cc
  qsgd_codec.cc
  sign_codec.cc
  topk_codec.cc
  randk_codec.cc
  spsa_codec.cc
  kernels.cc
  error_feedback.cc
  dgc.cc)
