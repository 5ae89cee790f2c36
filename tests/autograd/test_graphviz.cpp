// Tape::to_dot: the tape of one LSTM step as a Graphviz picture. The DOT names the ops and shapes, and
// `dot -Tpng` turns it into a PNG (docs/ARCHITECTURE.md, Diagnostics). An LSTM step: fused it records two
// fused nodes, composed the gates, products and sums the course draws.
#include <boost/test/unit_test.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "support/xt.hpp"

using namespace tapegrad;

BOOST_AUTO_TEST_SUITE(graphviz)

BOOST_AUTO_TEST_CASE(lstm_step_as_a_picture) {
  Tape::Scope scope;
  Generator gen(2);
  nn::LSTMCell cell(3, 4, gen);
  Tensor x = randn({2, 3}, gen);
  // The fused step draws as its two fused nodes ...
  {
    Tape::Scope fused_scope;
    cell.step(x, cell.initial_state(2));
    const std::string dot = fused_scope.tape().to_dot();
    for (const char* op : {"addmm", "lstm_cell", "lstm_hidden"})
      BOOST_TEST(dot.find(std::string("label=\"") + op + "\"") != std::string::npos, "no " << op << " node (fused)");
    BOOST_TEST(dot.find("label=\"sigmoid\"") == std::string::npos);
  }
  // ... and the composed one as the course draws it: gates, products, sums.
  cell.fused = false;
  nn::State s = cell.step(x, cell.initial_state(2));
  const std::string dot = scope.tape().to_dot();
  for (const char* op : {"matmul", "sigmoid", "tanh", "mul", "add"})
    BOOST_TEST(dot.find(std::string("label=\"") + op + "\"") != std::string::npos, "no " << op << " node");
  BOOST_TEST(dot.find("(2, 4)") != std::string::npos);
  BOOST_TEST(dot.find("(3, 16)") != std::string::npos);  // W_x, fused gates
  (void)s;
  if (std::system("command -v dot >/dev/null 2>&1") != 0) {
    BOOST_TEST_MESSAGE("graphviz's dot not installed: the PNG step is not checked (apt-get install graphviz)");
    return;
  }
  const auto dir = std::filesystem::temp_directory_path() / "tapegrad_graphviz_test";
  std::filesystem::create_directories(dir);
  { std::ofstream(dir / "lstm_step.dot") << dot; }
  const std::string cmd = "dot -Tpng '" + (dir / "lstm_step.dot").string() + "' -o '" + (dir / "lstm_step.png").string() + "'";
  BOOST_TEST(std::system(cmd.c_str()) == 0);
  BOOST_TEST(std::filesystem::file_size(dir / "lstm_step.png") > 1000u);
}

BOOST_AUTO_TEST_SUITE_END()
