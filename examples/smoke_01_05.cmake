# Smoke versions of examples 01-05: tiny, seeded settings (a few seconds each) with small targets.

# 01: the 5x5/3x3/s2/p1 check and a 3-epoch CNN on the digits (>= 90% held out; the full target is 95%).
# The digits are fetched by scripts/fetch-digits.sh (not in git): the learning test is registered only
# when data/digits.csv.gz exists at configure time; the missing-file message is tested in any case.
set(tapegrad_digits ${CMAKE_CURRENT_LIST_DIR}/../data/digits.csv.gz)
if(EXISTS ${tapegrad_digits})
  tapegrad_example_test(01_convolution --epochs 3 --target 0.9 --seed 1 --data ${tapegrad_digits})
endif()
if(TAPEGRAD_BUILD_TESTS)
  add_test(NAME example_01_convolution_without_data
           COMMAND 01_convolution --data ${CMAKE_CURRENT_BINARY_DIR}/no-such-file.csv.gz
                   --out ${CMAKE_CURRENT_BINARY_DIR}/smoke_out)
  set_tests_properties(example_01_convolution_without_data PROPERTIES PASS_REGULAR_EXPRESSION "scripts/fetch-digits.sh" TIMEOUT 60)
endif()

# 02: binary addition, 6000 sequences (seed 1 reaches 100% from 5000 on; 3000 gives about 91%).
tapegrad_example_test(02_binary_addition --iters 6000 --seed 1)

# 03: the 3 x 3 grid at lr 0.5 only, 2000 sequences, one seed, no hidden-size sweep: the table must be
# complete and at least one configuration must reach 99% (sigmoid at lr 0.5 does after about 900).
tapegrad_example_test(03_rnn_experiments --iters 2000 --seeds 1 --lrs 0.5 --no-sweep --seed 1)

# 04: 1000 sequences side by side; the float64 hand-vs-tape check must hold (<= 1e-12).
tapegrad_example_test(04_bptt_by_hand --iters 1000 --probe-bits 12 --seed 1)

# 05: 300 epochs of full-batch descent; the one-step held-out MSE must be below 1e-3 (met at epoch 96).
tapegrad_example_test(05_sine_prediction --epochs 300 --seed 1)
