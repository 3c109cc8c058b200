# One ct library: ct::<alias>, public headers from include/, position-independent, versioned,
# warnings on, installed. Usage:
#   ct_library(ct-sqlite ALIAS sqlite SOURCES sqlite.c LINK ct PkgConfig::SQLITE3)
function(ct_library name)
  cmake_parse_arguments(ARG "" "ALIAS" "SOURCES;LINK" ${ARGN})
  add_library(${name} ${ARG_SOURCES})
  add_library(ct::${ARG_ALIAS} ALIAS ${name})
  target_include_directories(${name} PUBLIC
    $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/include>
    $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
  target_link_libraries(${name} PUBLIC ${ARG_LINK})
  set_target_properties(${name} PROPERTIES VERSION ${PROJECT_VERSION}
    SOVERSION ${PROJECT_VERSION_MAJOR} C_VISIBILITY_PRESET default POSITION_INDEPENDENT_CODE ON
    EXPORT_NAME ${ARG_ALIAS})
  ct_warnings(${name})
  install(TARGETS ${name} EXPORT ctTargets ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
    LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})
endfunction()
