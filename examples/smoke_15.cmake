# Smoke version of example 15 under mpirun -np 2 (cmake/dist.cmake's launcher line): two processes reach the
# small target of the other adding-problem smokes. Only with MPI.
if(TAPEGRAD_HAVE_MPI AND TAPEGRAD_BUILD_TESTS)
  add_test(NAME example_15_data_parallel_np2
    COMMAND ${TAPEGRAD_MPIEXEC} $<TARGET_FILE:15_data_parallel> --T 20 --train 3200 --epochs 6 --target 0.03 --seed 1
            --out ${CMAKE_CURRENT_BINARY_DIR}/smoke_out)
  set_tests_properties(example_15_data_parallel_np2 PROPERTIES ENVIRONMENT "${TAPEGRAD_MPIEXEC_ENV}" TIMEOUT 180)
endif()
