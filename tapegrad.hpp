// tapegrad: define-by-run, tape-based reverse-mode automatic differentiation.
// One include for everything: the engine, the ops and the nn building blocks.
#pragma once

#include "tapegrad/autograd/tensor.hpp"
#include "tapegrad/autograd/tape.hpp"
#include "tapegrad/autograd/gradcheck.hpp"
#include "tapegrad/ops/elementwise.hpp"
#include "tapegrad/ops/activation.hpp"
#include "tapegrad/ops/linalg.hpp"
#include "tapegrad/ops/reduce.hpp"
#include "tapegrad/ops/shape.hpp"
#include "tapegrad/ops/index.hpp"
#include "tapegrad/ops/loss.hpp"
#include "tapegrad/ops/conv.hpp"
