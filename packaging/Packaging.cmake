# Install layout (beyond the binary, installed by CMakeLists.txt) and the
# Debian package. Included from CMakeLists.txt, between the packaging markers.
#
#   cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo
#   make -C build
#   (cd build && cpack -G DEB)     # -> build/pgslotd_<version>_<arch>.deb
#
# Building the package needs, beyond the build dependencies of pgslotd
# itself: dpkg-dev (dpkg-shlibdeps computes Depends from the libraries the
# binary links) and gzip (man pages and changelog), plus file and binutils
# (strip, objcopy) for the stripped binary.
#
# Paths relative to the prefix are under /usr in the package
# (CPACK_PACKAGING_INSTALL_PREFIX); /etc paths are absolute so that they
# stay in /etc whatever the prefix.

set(PGSLOTD_PACKAGING_DIR ${CMAKE_CURRENT_LIST_DIR})
set(PGSLOTD_PACKAGING_OUT ${CMAKE_BINARY_DIR}/packaging)
file(MAKE_DIRECTORY ${PGSLOTD_PACKAGING_OUT})

set(PGSLOTD_DEB_MAINTAINER
    "pgslotd maintainers <maintainers@users.noreply.r-seed-858071b2.example>"
    CACHE STRING "Maintainer field of the Debian package: Name <address>")

# --- files installed as they are ---------------------------------------------

install(FILES ${CMAKE_BINARY_DIR}/systemd/pgslotd.service ${CMAKE_BINARY_DIR}/systemd/pgslotd@.service
        DESTINATION lib/systemd/system)
install(FILES ${PGSLOTD_PACKAGING_DIR}/pgslotd.sysusers.conf
        DESTINATION lib/sysusers.d RENAME pgslotd.conf)
install(FILES ${PGSLOTD_PACKAGING_DIR}/pgslotd.tmpfiles.conf
        DESTINATION lib/tmpfiles.d RENAME pgslotd.conf)
# Configuration: conffiles of the package (packaging/debian/conffiles).
install(FILES ${PROJECT_SOURCE_DIR}/config/pgslotd.yaml
        DESTINATION /etc/pgslotd)
install(FILES ${PGSLOTD_PACKAGING_DIR}/pgslotd.logrotate
        DESTINATION /etc/logrotate.d RENAME pgslotd)

file(GLOB PGSLOTD_DOC_PAGES CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/docs/*.md)
install(FILES ${PROJECT_SOURCE_DIR}/README.md ${PGSLOTD_DOC_PAGES}
              ${PGSLOTD_PACKAGING_DIR}/copyright
        DESTINATION share/doc/pgslotd)

# --- files compressed at build time (gzip -9n: no name, no timestamp) --------

find_program(PGSLOTD_GZIP gzip REQUIRED)

# A reproducible date for the changelog: SOURCE_DATE_EPOCH when set.
string(TIMESTAMP PGSLOTD_DEB_DATE "%a, %d %b %Y %H:%M:%S +0000" UTC)
set(PGSLOTD_DEB_VERSION ${PROJECT_VERSION})
configure_file(${PGSLOTD_PACKAGING_DIR}/changelog.in
               ${PGSLOTD_PACKAGING_OUT}/changelog @ONLY)

set(PGSLOTD_GZIPPED)
# pgslotd_gzip(<source> <name in the build dir, without .gz>)
function(pgslotd_gzip source name)
  set(plain ${PGSLOTD_PACKAGING_OUT}/${name})
  add_custom_command(
    OUTPUT ${plain}.gz
    COMMAND ${CMAKE_COMMAND} -E copy ${source} ${plain}
    COMMAND ${PGSLOTD_GZIP} -9nf ${plain}
    DEPENDS ${source}
    COMMENT "Compressing ${name}"
    VERBATIM)
  set(PGSLOTD_GZIPPED ${PGSLOTD_GZIPPED} ${plain}.gz PARENT_SCOPE)
endfunction()

pgslotd_gzip(${PROJECT_SOURCE_DIR}/docs/pgslotd.8 pgslotd.8)
pgslotd_gzip(${PROJECT_SOURCE_DIR}/docs/pgslotd.yaml.5 pgslotd.yaml.5)
pgslotd_gzip(${PGSLOTD_PACKAGING_OUT}/changelog changelog)
add_custom_target(pgslotd_packaging_files ALL DEPENDS ${PGSLOTD_GZIPPED})

install(FILES ${PGSLOTD_PACKAGING_OUT}/pgslotd.8.gz DESTINATION share/man/man8)
install(FILES ${PGSLOTD_PACKAGING_OUT}/pgslotd.yaml.5.gz DESTINATION share/man/man5)
install(FILES ${PGSLOTD_PACKAGING_OUT}/changelog.gz DESTINATION share/doc/pgslotd)

# --- CPack: the Debian package -------------------------------------------------

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME pgslotd)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT ${PGSLOTD_DEB_MAINTAINER})
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)  # pgslotd_<version>_<arch>.deb
set(CPACK_DEBIAN_PACKAGE_MAINTAINER ${PGSLOTD_DEB_MAINTAINER})
set(CPACK_DEBIAN_PACKAGE_SECTION database)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_DESCRIPTION
"PostgreSQL logical replication slots into files, pipes or stdout
pgslotd is a change-data-capture daemon for PostgreSQL. It streams logical
replication slots, decoded by an output plugin such as test_decoding,
pgoutput or wal2json, into append-only files, named pipes or its standard
output, one thread and one connection per slot.

A position is acknowledged to the server only once the sink has made it
durable, so no committed change is lost across crashes. Files get every
committed transaction exactly once, whole and in commit order, with a state
record next to each file (for the output of test_decoding, wal2json and
pgoutput, whose transaction boundaries pgslotd sees); standard output and
named pipes are at-least-once. The package runs it as a sandboxed systemd
service.")
# Depends: the libraries (dpkg-shlibdeps, from dpkg-dev) plus what the
# maintainer scripts call.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "systemd | systemd-sysusers, systemd | systemd-tmpfiles")
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS logrotate)
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${PGSLOTD_PACKAGING_DIR}/debian/conffiles
    ${PGSLOTD_PACKAGING_DIR}/debian/postinst
    ${PGSLOTD_PACKAGING_DIR}/debian/prerm
    ${PGSLOTD_PACKAGING_DIR}/debian/postrm)
# 0755 for the scripts, 0644 for conffiles, whatever the checkout gave them.
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION TRUE)
# The binary in the package is stripped. Its debug symbols stay in the build
# tree (build/pgslotd has the same build id: `gdb -e /usr/bin/pgslotd -s
# build/pgslotd`). With -DPGSLOTD_DEB_DBGSYM=ON, CPack splits them off into
# pgslotd-dbgsym_<version>_<arch>.ddeb instead; off by default because the
# md5sums file CMake 3.25 writes into that .ddeb names absolute build-tree
# paths (lintian: md5sums-lists-nonexistent-file), so `dpkg --verify` fails
# on it. The main package is correct either way.
option(PGSLOTD_DEB_DBGSYM "Also build a pgslotd-dbgsym .ddeb (CPack)" OFF)
if(PGSLOTD_DEB_DBGSYM)
  set(CPACK_DEBIAN_DEBUGINFO_PACKAGE ON)  # strips the binary itself
else()
  set(CPACK_STRIP_FILES TRUE)
endif()

include(CPack)
