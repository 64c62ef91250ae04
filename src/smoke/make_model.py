# Writes a tiny llama-architecture GGUF with random weights (no download): the smoke
# test's model. Only the 64 word tokens have non-zero rows in the output matrix; EOS,
# the control and the byte-fallback tokens have zero rows (logit 0), so greedy decoding
# picks a word whenever any word's logit is positive (all 64 negative: odds 2^-64). It
# never stops early at EOS and always emits valid UTF-8 text.
# Usage: python3 make_model.py OUT.gguf [SEED]
import sys

import numpy as np
import gguf

out = sys.argv[1]
rng = np.random.default_rng(int(sys.argv[2]) if len(sys.argv) > 2 else 7)
# head_dim 64: a size every ggml-vulkan attention shader (flash attention included) has.
n_embd, n_ff, n_layer, n_head, ctx = 256, 512, 2, 4, 512

# SentencePiece-style vocabulary: control tokens, byte fallback, a few words.
words = ["▁hello", "▁vulkan", "▁world", "▁gpu"] + [f"▁w{i:02d}" for i in range(60)]
tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + words
types = [2, 3, 3] + [6] * 256 + [1] * len(words)  # unknown, control, byte, normal
scores = [0.0, 0.0, 0.0] + [0.0] * 256 + [-float(i) for i in range(len(words))]
n_vocab = len(tokens)
eos = 2

w = gguf.GGUFWriter(out, "llama")
w.add_name("ollama-vulkan-smoke")
w.add_context_length(ctx)
w.add_embedding_length(n_embd)
w.add_block_count(n_layer)
w.add_feed_forward_length(n_ff)
w.add_head_count(n_head)
w.add_head_count_kv(n_head)
w.add_rope_dimension_count(n_embd // n_head)
w.add_layer_norm_rms_eps(1e-5)
w.add_file_type(gguf.LlamaFileType.ALL_F32)
w.add_tokenizer_model("llama")
w.add_token_list(tokens)
w.add_token_scores(scores)
w.add_token_types(types)
w.add_bos_token_id(1)
w.add_eos_token_id(eos)
w.add_unk_token_id(0)
w.add_add_bos_token(True)
w.add_add_eos_token(False)


def t(*shape):
    return (rng.standard_normal(shape) * 0.02).astype(np.float32)


w.add_tensor("token_embd.weight", t(n_vocab, n_embd))
for i in range(n_layer):
    p = f"blk.{i}."
    w.add_tensor(p + "attn_norm.weight", np.ones(n_embd, dtype=np.float32))
    w.add_tensor(p + "attn_q.weight", t(n_embd, n_embd))
    w.add_tensor(p + "attn_k.weight", t(n_embd, n_embd))
    w.add_tensor(p + "attn_v.weight", t(n_embd, n_embd))
    w.add_tensor(p + "attn_output.weight", t(n_embd, n_embd))
    w.add_tensor(p + "ffn_norm.weight", np.ones(n_embd, dtype=np.float32))
    w.add_tensor(p + "ffn_gate.weight", t(n_ff, n_embd))
    w.add_tensor(p + "ffn_up.weight", t(n_ff, n_embd))
    w.add_tensor(p + "ffn_down.weight", t(n_embd, n_ff))
w.add_tensor("output_norm.weight", np.ones(n_embd, dtype=np.float32))
output = t(n_vocab, n_embd)
output[: n_vocab - len(words), :] = 0.0  # EOS, control and byte tokens never win
w.add_tensor("output.weight", output)

w.write_header_to_file()
w.write_kv_data_to_file()
w.write_tensors_to_file()
w.close()
print(f"{out}: llama, {n_layer} layers, n_embd {n_embd}, vocab {n_vocab}, eos {eos} zeroed")
