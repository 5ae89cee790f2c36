# tapegrad::dist (nn/distributed/dist.{hpp,cpp}): data-parallel training over MPI, an optional library of its own so
# that the core never needs MPI. Built when TAPEGRAD_WITH_MPI is on (the default) and MPI is found
# (Debian: libopenmpi-dev openmpi-bin); the MPI tests, the example 15_data_parallel and bench_dist follow it.
option(TAPEGRAD_WITH_MPI "Build tapegrad::dist (data-parallel training) when MPI is found" ON)
set(TAPEGRAD_HAVE_MPI OFF)
if(TAPEGRAD_WITH_MPI)
  set(MPI_CXX_SKIP_MPICXX ON)  # the C API only: no deprecated C++ bindings (libmpi_cxx)
  find_package(MPI COMPONENTS CXX)
  if(MPI_CXX_FOUND)
    set(TAPEGRAD_HAVE_MPI ON)
  else()
    message(STATUS "MPI not found (Debian: apt-get install libopenmpi-dev openmpi-bin): tapegrad::dist, its tests, "
                   "example 15 and bench_dist are skipped")
  endif()
endif()

if(TAPEGRAD_HAVE_MPI)
  message(STATUS "MPI ${MPI_CXX_VERSION} found (${MPIEXEC_EXECUTABLE}): building tapegrad::dist")
  add_library(tapegrad_dist ${CMAKE_CURRENT_SOURCE_DIR}/nn/distributed/dist.cpp)
  add_library(tapegrad::dist ALIAS tapegrad_dist)
  set_target_properties(tapegrad_dist PROPERTIES EXPORT_NAME dist POSITION_INDEPENDENT_CODE ON)
  # mpi.h stays private: nn/distributed/dist.hpp does not include it.
  target_link_libraries(tapegrad_dist PUBLIC tapegrad PRIVATE MPI::MPI_CXX $<BUILD_INTERFACE:tapegrad_warnings>)

  # The launcher line the tests use: as root (CI, containers) Open MPI wants --allow-run-as-root; a 2-core
  # machine needs --oversubscribe for 2 ranks beside other work; shared memory (vader) and self only, so
  # no network interface is needed (single copy off: CMA is often refused inside containers).
  set(TAPEGRAD_MPIEXEC ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} 2 --oversubscribe --mca btl self,vader)
  set(TAPEGRAD_MPIEXEC_ENV "OMPI_ALLOW_RUN_AS_ROOT=1;OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1;OMPI_MCA_btl_vader_single_copy_mechanism=none;OPENBLAS_NUM_THREADS=1")

  install(TARGETS tapegrad_dist EXPORT tapegradDistTargets
    ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
    LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})
  install(EXPORT tapegradDistTargets NAMESPACE tapegrad:: DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/tapegrad)
endif()
