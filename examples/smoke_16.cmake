# Smoke tests of example 16 (the Transformer on example 11's dates): tiny seeded settings that must reach
# their small target, and --data FILE stopped by --max-steps and resumed with --resume (examples/resume_check.cmake).
tapegrad_example_test(16_transformer_dates --quick --train 3000 --test 200 --epochs 6 --target 0.5 --seed 1)
if(TAPEGRAD_BUILD_TESTS)
  add_test(NAME example_16_transformer_dates_data_resume
           COMMAND ${CMAKE_COMMAND} -DEXE=$<TARGET_FILE:16_transformer_dates> -DNAME=16_transformer_dates
                   -DWORK_DIR=${CMAKE_CURRENT_BINARY_DIR}/resume_16_transformer_dates
                   "-DARGS=--epochs;2;--d-model;16;--heads;2;--ff;32;--layers;1;--batch;32;--warmup;20" -P ${CMAKE_CURRENT_SOURCE_DIR}/resume_check.cmake)
  set_tests_properties(example_16_transformer_dates_data_resume PROPERTIES ENVIRONMENT "OPENBLAS_NUM_THREADS=1" TIMEOUT 180)
endif()
