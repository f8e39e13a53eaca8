# xf_rt_support: self-contained runtime modules the core loop calls: metrics
# (per-core counters, Prometheus text), the admin HTTP listener (libmicrohttpd)
# with the admin API and the Control Panel, the per-partner runtime status and
# the RCU-swapped partner table snapshot.
find_package(Threads REQUIRED)

# The Control Panel's files, embedded as C arrays (core/panel/embed.cmake).
set(XF_PANEL_FILES index.html panel.css panel.js favicon.svg)
list(TRANSFORM XF_PANEL_FILES PREPEND ${CMAKE_CURRENT_SOURCE_DIR}/panel/ OUTPUT_VARIABLE
     XF_PANEL_SOURCES)
string(REPLACE ";" "," XF_PANEL_LIST "${XF_PANEL_FILES}")
add_custom_command(
  OUTPUT ${CMAKE_CURRENT_BINARY_DIR}/panel_assets.c
  COMMAND ${CMAKE_COMMAND} -DDIR=${CMAKE_CURRENT_SOURCE_DIR}/panel -DFILES=${XF_PANEL_LIST}
          -DOUT=${CMAKE_CURRENT_BINARY_DIR}/panel_assets.c -P
          ${CMAKE_CURRENT_SOURCE_DIR}/panel/embed.cmake
  DEPENDS ${XF_PANEL_SOURCES} ${CMAKE_CURRENT_SOURCE_DIR}/panel/embed.cmake
  COMMENT "Embedding the Control Panel (core/panel/)"
  VERBATIM)

add_library(xf_rt_support STATIC metrics.c admin.c admin_api.c pstatus.c snapshot.c
                                 ${CMAKE_CURRENT_BINARY_DIR}/panel_assets.c)
target_include_directories(xf_rt_support PUBLIC ${CMAKE_CURRENT_SOURCE_DIR})
target_compile_definitions(xf_rt_support PRIVATE XFED_VERSION="${PROJECT_VERSION}")
target_link_libraries(xf_rt_support PUBLIC xf_conf PkgConfig::MHD Threads::Threads)
