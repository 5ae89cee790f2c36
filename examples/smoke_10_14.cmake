# Smoke tests of examples 10-14: tiny seeded settings, a few seconds each, that must reach their targets.
# 13 reads data/digits.csv.gz (scripts/fetch-digits.sh); without it the example exits 77 and ctest skips it.
tapegrad_example_test(13_vae_digits --epochs 100 --seed 1 --data ${PROJECT_SOURCE_DIR}/data/digits.csv.gz)
if(TAPEGRAD_BUILD_TESTS)
  set_tests_properties(example_13_vae_digits PROPERTIES SKIP_RETURN_CODE 77)
endif()
tapegrad_example_test(14_word2vec --sentences 600 --epochs 2 --no-wordnet --seed 1)
# 14 on WordNet's noun glosses (wordnet-base, scripts/install-deps.sh), when installed at configure time: 6,000
# glosses, one epoch, agreement@10 >= 1.5x the untrained vectors' (seed 1: 0.141 against 0.067; --quick 0.22).
if(TAPEGRAD_BUILD_TESTS AND EXISTS /usr/share/wordnet/data.noun AND EXISTS /usr/share/wordnet/index.noun)
  add_test(NAME example_14_word2vec_wordnet
           COMMAND 14_word2vec --sentences 600 --epochs 2 --glosses 6000 --wn-epochs 1 --wn-target 1.5 --seed 1
                   --out ${CMAKE_CURRENT_BINARY_DIR}/smoke_out)
  set_tests_properties(example_14_word2vec_wordnet PROPERTIES ENVIRONMENT "OPENBLAS_NUM_THREADS=1" TIMEOUT 120)
endif()
tapegrad_example_test(10_seq2seq_addition --quick --train 4000 --test 300 --models reversed+peeky --epochs 7 --target 0.8 --seed 1)
tapegrad_example_test(11_attention_dates --quick --train 4000 --test 200 --epochs 1 --batch 32 --target 0.7 --seed 1)
tapegrad_example_test(12_hred_vhred --steps 300 --vsteps 300 --hred-target 0.5 --seed 1)
# --data FILE, stopped by --max-steps and resumed with --resume in three processes: the resumed log equals
# the uninterrupted one (examples/resume_check.cmake; a small addition corpus in the classic format).
if(TAPEGRAD_BUILD_TESTS)
  foreach(ex 10_seq2seq_addition 11_attention_dates)
    set(extra --epochs 2 --hidden 16 --embed 8 --batch 32)
    if(ex STREQUAL 10_seq2seq_addition)
      list(APPEND extra --models reversed+peeky)
    endif()
    add_test(NAME example_${ex}_data_resume
             COMMAND ${CMAKE_COMMAND} -DEXE=$<TARGET_FILE:${ex}> -DNAME=${ex} -DWORK_DIR=${CMAKE_CURRENT_BINARY_DIR}/resume_${ex}
                     "-DARGS=${extra}" -P ${CMAKE_CURRENT_SOURCE_DIR}/resume_check.cmake)
    set_tests_properties(example_${ex}_data_resume PROPERTIES ENVIRONMENT "OPENBLAS_NUM_THREADS=1" TIMEOUT 180)
  endforeach()
endif()
