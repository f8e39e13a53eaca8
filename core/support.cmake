# xf_rt_support: self-contained runtime modules the core loop calls: metrics
# (per-core counters, Prometheus text), the admin HTTP listener (libmicrohttpd)
# and the RCU-swapped partner table snapshot.
find_package(Threads REQUIRED)
add_library(xf_rt_support STATIC metrics.c admin.c snapshot.c)
target_include_directories(xf_rt_support PUBLIC ${CMAKE_CURRENT_SOURCE_DIR})
target_compile_definitions(xf_rt_support PRIVATE XFED_VERSION="${PROJECT_VERSION}")
target_link_libraries(xf_rt_support PUBLIC xf_conf PkgConfig::MHD Threads::Threads)
