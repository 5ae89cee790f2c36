// Sequence to sequence (encoder-decoder) models, composed from nn/models/rnn cells, Embedding, Linear and
// nn/models/attention. Token ids are time-major Index (T, B), as nn::pad_batch makes them; masks are (T, B)
// constants with 1 for real tokens, 0 for padding.
//
//   Encoder:  h^enc_t = cell(E_src[x_t], h^enc_(t-1)),  the thought vector (思考ベクトル) h = h^enc_last
//             (the whole state: h, and c for LSTM). reverse_input reads x_(S-1) .. x_0 (Sutskever et al.).
//             With a mask, padded steps leave the state unchanged, so h is the state after each
//             sequence's last real token.
//   Decoder:  s_0 = h;  s_t = cell(E_tgt[y_(t-1)] (+ h if peeky), s_(t-1));  logits_t = [s_t (, h if peeky)] W + b
//   Peeky:    the thought vector's h is concatenated to every decoder input and to the output layer's input.
//   AttentionDecoder (Luong): a_t = attention(hs, s_t), c_t = sum_s a_t,s hs_s,
//             logits_t = [c_t, s_t (, h if peeky)] W + b.
//   Loss (teacher forcing): tgt = <bos> y_1 .. y_n <eos> <pad>..; inputs tgt[0 .. T-2], targets tgt[1 .. T-1];
//             L = mean over non-<pad> targets of -log softmax(logits_t)[y_t].
#pragma once

#include <memory>
#include <vector>

#include "tapegrad/nn/models/attention.hpp"
#include "tapegrad/nn/models/linear.hpp"
#include "tapegrad/nn/models/rnn.hpp"
#include "tapegrad/nn/data/tokenizer.hpp"

namespace tapegrad::nn {

enum class CellType { rnn, lstm, gru };
enum class AttentionKind { none, dot, general, additive };

// A cell of the given kind with its default initialisation (RNN: tanh).
std::unique_ptr<RecurrentCell> make_cell(CellType type, std::size_t input, std::size_t hidden, Generator& gen,
                                         DType dtype = default_dtype());

// Throws unless ids is a non-empty Index of the given rank ((T, B) by default) with every id in [0, vocab);
// `who` names the caller in the message.
void check_ids(const char* who, const Index& ids, std::size_t vocab, std::size_t rank = 2);

// What a decoder is conditioned on.
struct EncoderOutput {
  Tensor states;  // hs (B, S, H): every encoder state, batch-major for attention (undefined in HRED)
  State thought;  // the thought vector: the decoder's initial state
  Tensor mask;    // (B, S) source mask for attention, or undefined
};

class Encoder : public Module {
 public:
  Encoder(std::size_t vocab, std::size_t embed, std::size_t hidden, Generator& gen, CellType cell = CellType::lstm,
          bool reverse_input = false, DType dtype = default_dtype());
  // src (S, B) ids; mask (S, B) or undefined (no padding).
  EncoderOutput operator()(const Index& src, const Tensor& mask = Tensor()) const;
  std::size_t vocab_size() const { return embed.weight.size(0); }
  std::size_t hidden_size() const { return cell->hidden_size(); }

  Embedding embed;
  std::unique_ptr<RecurrentCell> cell;
  bool reverse_input;
};

struct GenerateOptions {
  std::size_t max_length = 20;  // tokens generated at most (the <eos> included)
  bool sample = false;          // false: greedy (argmax); true: sample from softmax(logits / temperature)
  double temperature = 1.0;
  std::int64_t bos_id = Tokenizer::bos_id;
  std::int64_t eos_id = Tokenizer::eos_id;
};

struct Generated {
  std::vector<std::vector<std::int64_t>> ids;  // per batch element, without <bos>, up to (not with) <eos>
  Tensor attention;                            // (T_out, B, S) for an AttentionDecoder, else undefined
};

// The attention weights of batch element b as a (T_out, S) matrix, for plotting.
Tensor attention_map(const Tensor& attention, std::size_t b);

class Decoder : public Module {
 public:
  // The thought vector (the initial state) must fit the cell: h (B, hidden), and c for LSTM.
  Decoder(std::size_t vocab, std::size_t embed, std::size_t hidden, Generator& gen, CellType cell = CellType::lstm,
          bool peeky = false, DType dtype = default_dtype());

  struct Result {
    Tensor logits;     // (T, B, V)
    Tensor attention;  // (T, B, S), AttentionDecoder only
  };
  struct Step {
    Tensor logits;   // (B, V)
    State state;
    Tensor weights;  // (B, S), AttentionDecoder only
  };
  // Teacher forcing over inputs (T, B).
  virtual Result forward(const Index& inputs, const EncoderOutput& enc) const;
  // One step from the previous tokens y (B ids).
  virtual Step step(const Index& y, const State& s, const EncoderOutput& enc) const;
  // tgt (T, B) = <bos> y_1 .. <eos> (padded with pad_id): mean cross-entropy over non-pad targets.
  // tokens_out, when given, receives the number of targets counted.
  Tensor loss(const Index& tgt, const EncoderOutput& enc, std::size_t* tokens_out = nullptr,
              std::int64_t pad_id = Tokenizer::pad_id) const;
  // The same with decoder inputs that may differ from the shifted targets (word drop: inputs has some
  // tokens replaced by <unk>); inputs and tgt have one shape.
  Tensor loss(const Index& inputs, const Index& tgt, const EncoderOutput& enc, std::size_t* tokens_out,
              std::int64_t pad_id) const;
  // Greedy or sampled decoding, off the tape, until every row has produced <eos> or max_length tokens.
  Generated generate(const EncoderOutput& enc, const GenerateOptions& options = {}, Generator* gen = nullptr) const;

  std::size_t vocab_size() const { return embed.weight.size(0); }
  std::size_t hidden_size() const { return cell->hidden_size(); }

  Embedding embed;
  std::unique_ptr<RecurrentCell> cell;
  Linear out;
  bool peeky;

 protected:
  // For AttentionDecoder: the output layer reads extra_out more features (the context).
  Decoder(std::size_t vocab, std::size_t embed, std::size_t hidden, std::size_t extra_out, Generator& gen,
          CellType cell, bool peeky, DType dtype);
  void check_thought(const char* who, const EncoderOutput& enc, std::size_t batch) const;
  Tensor cell_inputs(const Tensor& emb, const EncoderOutput& enc) const;  // emb (T, B, E) or (B, E)
  Tensor with_peek(const Tensor& feats, const EncoderOutput& enc) const;   // feats (T, B, F) or (B, F)
};

// Decoder with attention over the encoder states at every step (Luong: attention after the cell).
class AttentionDecoder : public Decoder {
 public:
  AttentionDecoder(std::size_t vocab, std::size_t embed, std::size_t hidden, std::size_t enc_hidden, Generator& gen,
                   AttentionKind kind = AttentionKind::dot, CellType cell = CellType::lstm, bool peeky = false,
                   DType dtype = default_dtype());
  Result forward(const Index& inputs, const EncoderOutput& enc) const override;
  Step step(const Index& y, const State& s, const EncoderOutput& enc) const override;

  std::unique_ptr<Attention> attention;
};

struct Seq2SeqConfig {
  std::size_t src_vocab = 0, tgt_vocab = 0, embed = 16, hidden = 32;
  CellType cell = CellType::lstm;
  bool peeky = false;          // thought vector into every decoder step
  bool reverse_input = false;  // encoder reads the source backwards
  AttentionKind attention = AttentionKind::none;
};

class Seq2Seq : public Module {
 public:
  Seq2Seq(const Seq2SeqConfig& config, Generator& gen, DType dtype = default_dtype());
  EncoderOutput encode(const Index& src, const Tensor& src_mask = Tensor()) const;
  // Teacher-forcing loss; tgt (T, B) starts with <bos> (see Decoder::loss).
  Tensor loss(const Index& src, const Index& tgt, const Tensor& src_mask = Tensor()) const;
  Generated generate(const Index& src, const GenerateOptions& options = {}, const Tensor& src_mask = Tensor(),
                     Generator* gen = nullptr) const;

  Seq2SeqConfig config;
  Encoder encoder;
  std::unique_ptr<Decoder> decoder;
};

}  // namespace tapegrad::nn
