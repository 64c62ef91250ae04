"""Write the benchmark model: a 7 B llama in Q4_0 with random weights, in seconds.

32 layers, n_embd 4096, FFN 11008, 32 heads, vocab 32000: 3.79 GB, the shape of
Llama-2-7B. Weights are written directly as Q4_0 blocks (no F16 file, no quantizer), so
the only dependency is the PyPI `gguf` package (and numpy).

usage: [BENCH_MODEL=tiny] python3 model.py OUT.gguf      prints one JSON line: path, bytes, weights read per token
"""
import json
import os
import sys

import gguf
import numpy as np

N_EMBD, N_FF, N_LAYER, N_HEAD, N_VOCAB, CTX = 4096, 11008, 32, 32, 32000, 4096
if os.environ.get("BENCH_MODEL") == "tiny":  # for trying the scripts on a CPU (lavapipe)
    N_EMBD, N_FF, N_LAYER, N_HEAD = 256, 512, 2, 4
Q4 = gguf.GGMLQuantizationType.Q4_0


def q4_bytes(rows, cols):
    return rows * cols // 32 * 18


def write(out, seed=17):
    rng = np.random.default_rng(seed)
    words = [f"\u2581w{i:05d}" for i in range(N_VOCAB - 259)]
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + words
    types = [2, 3, 3] + [6] * 256 + [1] * len(words)
    scores = [0.0] * 259 + [-float(i) for i in range(len(words))]
    w = gguf.GGUFWriter(out, "llama")
    w.add_name("ollama-vulkan-bench-7b-random")
    w.add_context_length(CTX); w.add_embedding_length(N_EMBD); w.add_block_count(N_LAYER)
    w.add_feed_forward_length(N_FF); w.add_head_count(N_HEAD); w.add_head_count_kv(N_HEAD)
    w.add_rope_dimension_count(N_EMBD // N_HEAD); w.add_layer_norm_rms_eps(1e-5)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q4_0)
    w.add_tokenizer_model("llama"); w.add_token_list(tokens); w.add_token_scores(scores)
    w.add_token_types(types); w.add_bos_token_id(1); w.add_eos_token_id(2); w.add_unk_token_id(0)
    w.add_add_bos_token(True); w.add_add_eos_token(False)
    # Q4_0 dequantises to d * (q - 8), q uniform in 0..15: mean -0.5 d. With one sign of d
    # every matrix has a common mode that makes greedy decoding repeat one token (Ollama
    # aborts a generation after 30 repeats); a random sign per block makes the mean zero.
    scales = np.frombuffer(np.array([0.004, -0.004], dtype=np.float16).tobytes(), dtype=np.uint8).reshape(2, 2)

    def q4(rows, cols, zero_rows=0):
        blk = np.frombuffer(bytearray(rng.bytes(q4_bytes(rows, cols))), dtype=np.uint8).reshape(rows, cols // 32, 18)
        blk[:, :, 0:2] = scales[blk[:, :, 2] & 1]  # fp16 +-0.004, sign from a random bit
        blk[:zero_rows] = 0                        # scale 0: the row is all zeros
        return blk.reshape(rows, cols // 32 * 18)

    ones = np.ones(N_EMBD, dtype=np.float32)
    w.add_tensor("token_embd.weight", q4(N_VOCAB, N_EMBD), raw_dtype=Q4)
    for i in range(N_LAYER):
        p = f"blk.{i}."
        w.add_tensor(p + "attn_norm.weight", ones)
        for t in ("attn_q", "attn_k", "attn_v", "attn_output"):
            w.add_tensor(p + t + ".weight", q4(N_EMBD, N_EMBD), raw_dtype=Q4)
        w.add_tensor(p + "ffn_norm.weight", ones)
        w.add_tensor(p + "ffn_gate.weight", q4(N_FF, N_EMBD), raw_dtype=Q4)
        w.add_tensor(p + "ffn_up.weight", q4(N_FF, N_EMBD), raw_dtype=Q4)
        w.add_tensor(p + "ffn_down.weight", q4(N_EMBD, N_FF), raw_dtype=Q4)
    w.add_tensor("output_norm.weight", ones)
    # EOS, control and byte tokens: zero output rows (logit 0; some word's logit beats it).
    w.add_tensor("output.weight", q4(N_VOCAB, N_EMBD, zero_rows=259), raw_dtype=Q4)
    w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()


def weights_per_token():
    """Bytes of weights one generated token reads: every matrix and norm, except the
    embedding table, of which it reads a single row."""
    layer = 4 * q4_bytes(N_EMBD, N_EMBD) + 3 * q4_bytes(N_FF, N_EMBD) + 2 * 4 * N_EMBD
    return N_LAYER * layer + 4 * N_EMBD + q4_bytes(N_VOCAB, N_EMBD) + q4_bytes(1, N_EMBD)


if __name__ == "__main__":
    out = sys.argv[1]
    write(out)
    print(json.dumps({"model": out, "bytes": os.path.getsize(out), "weights_per_token": weights_per_token(),
                      "shape": f"llama {N_LAYER}x{N_EMBD}, ffn {N_FF}, vocab {N_VOCAB}, Q4_0"}))
