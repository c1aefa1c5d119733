"""Write a tiny random-weight llama GGUF for end-to-end tests against a real llama.cpp server.

The model is useless as a language model but real as far as llama.cpp is concerned: a
llama-architecture graph (2 layers, 64-dim embeddings, F32 tensors, ~0.5 MB) with a
SentencePiece-style byte-fallback vocabulary, so any UTF-8 text tokenizes, and the chatml
markers ``<|im_start|>`` / ``<|im_end|>`` are single control tokens (``<|im_end|>`` is EOS).
The same seed writes a byte-identical file, and greedy decoding (temperature 0) is deterministic.

By default the output layer is shaped so that greedy answers are short printable ASCII that
end with ``<|im_end|>`` after a few tokens, and grammar-constrained JSON strings close quickly;
``--any-bytes`` keeps the plain random output layer (control characters, invalid UTF-8).

Usage::

    python tests/tinymodel.py OUT.gguf [--seed N] [--any-bytes]

Only numpy and gguf are imported (``pip install gguf`` brings numpy).
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import numpy as np
from gguf import GGUFWriter, TokenType

N_EMBD = 64
N_LAYER = 2
N_HEAD = 4
N_HEAD_KV = 2
N_FF = 128
N_CTX_TRAIN = 2048
# printable mode: value of the constant residual channel and logit biases (see _make_printable)
BIAS_CHANNEL = 8.0
# ~ the typical best random logit: greedy answers stop after a few tokens instead of looping
STOP_BIAS = 5.5
# makes '"' likely enough that grammar-constrained JSON strings close within a few tokens
QUOTE_BIAS = 4.0

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def _vocab() -> tuple[list[str], list[float], list[int], dict[str, int]]:
    """Tokens, scores and types of the byte-fallback vocabulary, plus the ids of the specials."""
    tokens: list[str] = ["<unk>", "<s>", "</s>"]
    types: list[int] = [TokenType.UNKNOWN, TokenType.CONTROL, TokenType.CONTROL]
    for b in range(256):
        tokens.append(f"<0x{b:02X}>")
        types.append(TokenType.BYTE)
    # the SentencePiece word boundary: a space tokenizes to it and it detokenizes to a space
    tokens.append("\u2581")
    types.append(TokenType.NORMAL)
    for special in ("<|im_start|>", "<|im_end|>"):
        tokens.append(special)
        types.append(TokenType.CONTROL)
    scores = [0.0] * len(tokens)
    ids = {tok: i for i, tok in enumerate(tokens) if not tok.startswith("<0x")}
    return tokens, scores, [int(t) for t in types], ids


def _make_printable(tensors: dict[str, np.ndarray], ids: dict[str, int]) -> None:
    """Restrict what greedy decoding can emit and add per-token logit biases, in place.

    Residual channel 0 becomes a constant "bias" channel: every token embeds the same value
    there, the layers neither read it (norm weight 0) nor write it (output rows 0), so after
    the final RMSNorm it is nearly constant and ``output.weight[:, 0]`` acts as a logit bias.
    """
    out = tensors["output.weight"]
    n_vocab = out.shape[0]
    keep = np.zeros(n_vocab, dtype=bool)
    keep[[ids["\u2581"], ids["<|im_end|>"]]] = True
    keep[[3 + b for b in range(0x20, 0x7F)]] = True
    out[~keep] = 0.0
    tensors["token_embd.weight"][:, 0] = BIAS_CHANNEL
    for name, data in tensors.items():
        if name.endswith(("attn_norm.weight", "ffn_norm.weight")):
            data[0] = 0.0
        elif name.endswith(("attn_output.weight", "ffn_down.weight")):
            data[0, :] = 0.0
    out[:, 0] = 0.0
    # after the final RMSNorm the bias channel is about N_EMBD**0.5 * BIAS_CHANNEL / |residual| ~ 5
    out[ids["<|im_end|>"], :] = 0.0
    out[ids["<|im_end|>"], 0] = STOP_BIAS / 5.0
    quote = 3 + ord('"')
    out[quote, 1:] *= 0.5
    out[quote, 0] = QUOTE_BIAS / 5.0


def write_tiny_gguf(path: pathlib.Path, seed: int = 0, *, printable: bool = True) -> pathlib.Path:
    """Write the tiny model to ``path`` (parents are created) and return the path.

    With ``printable`` (the default) the output rows of every token except printable ASCII, the
    space and ``<|im_end|>`` are zero, so their logits are exactly 0 while the others are random
    with a spread of several units: greedy decoding then only ever emits printable ASCII (or
    stops), which keeps streamed and non-streamed text byte-identical. ``<|im_end|>`` and ``"``
    also get a logit bias, so answers stop after a few tokens and JSON strings close. With
    ``printable=False`` every token is a candidate, so generations contain control characters
    and invalid UTF-8, and rarely stop.
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tokens, scores, types, ids = _vocab()
    n_vocab = len(tokens)
    head_dim = N_EMBD // N_HEAD
    rng = np.random.default_rng(seed)

    def dense(n_out: int, n_in: int, scale: float = 1.0) -> np.ndarray:
        # numpy shape (rows, cols) is stored as ggml ne = [cols, rows]: y = W @ x with x of size n_in
        return (rng.standard_normal((n_out, n_in)) * scale / np.sqrt(n_in)).astype(np.float32)

    writer = GGUFWriter(str(path), "llama")
    writer.add_name("streamshim-tiny-random")
    writer.add_context_length(N_CTX_TRAIN)
    writer.add_embedding_length(N_EMBD)
    writer.add_block_count(N_LAYER)
    writer.add_feed_forward_length(N_FF)
    writer.add_head_count(N_HEAD)
    writer.add_head_count_kv(N_HEAD_KV)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(10000.0)
    writer.add_vocab_size(n_vocab)
    writer.add_file_type(0)  # ALL_F32

    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_bos_token_id(ids["<s>"])
    writer.add_eos_token_id(ids["<|im_end|>"])
    writer.add_unk_token_id(ids["<unk>"])
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)
    writer.add_add_space_prefix(False)
    writer.add_chat_template(CHATML_TEMPLATE)

    tensors: dict[str, np.ndarray] = {"token_embd.weight": dense(n_vocab, N_EMBD, np.sqrt(N_EMBD))}
    for i in range(N_LAYER):
        tensors[f"blk.{i}.attn_norm.weight"] = np.ones(N_EMBD, dtype=np.float32)
        tensors[f"blk.{i}.attn_q.weight"] = dense(N_EMBD, N_EMBD)
        tensors[f"blk.{i}.attn_k.weight"] = dense(N_HEAD_KV * head_dim, N_EMBD)
        tensors[f"blk.{i}.attn_v.weight"] = dense(N_HEAD_KV * head_dim, N_EMBD)
        tensors[f"blk.{i}.attn_output.weight"] = dense(N_EMBD, N_EMBD)
        tensors[f"blk.{i}.ffn_norm.weight"] = np.ones(N_EMBD, dtype=np.float32)
        tensors[f"blk.{i}.ffn_gate.weight"] = dense(N_FF, N_EMBD)
        tensors[f"blk.{i}.ffn_up.weight"] = dense(N_FF, N_EMBD)
        tensors[f"blk.{i}.ffn_down.weight"] = dense(N_EMBD, N_FF)
    tensors["output_norm.weight"] = np.ones(N_EMBD, dtype=np.float32)
    tensors["output.weight"] = dense(n_vocab, N_EMBD, 4.0)
    if printable:
        _make_printable(tensors, ids)
    for name, data in tensors.items():
        writer.add_tensor(name, data)

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=pathlib.Path, help="where to write the .gguf file")
    parser.add_argument("--seed", type=int, default=0, help="numpy seed of the random weights")
    parser.add_argument(
        "--any-bytes",
        action="store_true",
        help="let every token be generated (control characters, invalid UTF-8), not only printable ASCII",
    )
    args = parser.parse_args(argv)
    out = write_tiny_gguf(args.out, seed=args.seed, printable=not args.any_bytes)
    print(f"{out} ({out.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
