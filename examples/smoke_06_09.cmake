# Smoke versions of examples 06-09: tiny seeded settings (a few seconds each) with small targets.
tapegrad_example_test(06_recursive_nn --steps 400 --test 500 --target 0.9 --seed 1)
tapegrad_example_test(07_lstm_adding --quick --T 20 --steps 300 --skip-rnn --skip-continual --skip-flow --target 0.03 --seed 1)
tapegrad_example_test(08_gru_adding --T 20 --steps 200 --target 0.03 --seed 1)
tapegrad_example_test(09_bidirectional --T 8 --steps 60 --target 0.95 --seed 1)
