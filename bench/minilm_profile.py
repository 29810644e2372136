"""Where the time of one ``fz.pretrained.minilm().encode`` goes, part by part.

    python bench/minilm_profile.py [--repeat R] [--sentences N] [--batch-size B]
                                   (threads: FROMZERO_BENCH_THREADS, default 2)

A stopwatch is put around each call encode makes into the model's layers
(the way fz.profiler does it: an instance attribute shadowing the method for
the duration, removed afterwards), grouped by what the layer does in BERT,
plus the tokenizer and the attention kernel itself. The encode with the
smallest total of R repeats is printed; "other" is the Python between the
calls (batching, the graph executor).
"""

import argparse
import os
import sys
import time

import fromzero as fz
from fromzero import ops
from threads import bench_threads, pin_threads

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
from test_pretrained import corpus_sentences  # noqa: E402 — the sentences the tests use


def part_of(name):
    """The part of BERT a layer named by bert_encoder belongs to."""
    for key, part in (("ffn_in", "FFN in: Dense 384→1536 + GELU"),
                      ("ffn_out", "FFN out: Dense 1536→384"),
                      ("_add", "residual Add"), ("layer_norm", "LayerNorm"),
                      ("embedding", "embeddings"), ("mean_pooling", "pooling + normalize"),
                      ("normalize", "pooling + normalize")):
        if key in name:
            return part
    return "other layers"


class Clock:
    def __init__(self):
        self.seconds = {}

    def wrap(self, part, fn):
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[part] = self.seconds.get(part, 0.0) + time.perf_counter() - start
        return timed


def profile_once(encoder, sentences, batch_size):
    clock, undo = Clock(), []

    def patch(obj, attr, part):
        undo.append((obj, attr, attr in vars(obj), vars(obj).get(attr)))
        setattr(obj, attr, clock.wrap(part, getattr(obj, attr)))

    for layer in encoder.model.layers:
        if isinstance(layer, fz.layers.MultiHeadAttention):
            for dense in layer.sublayers:
                patch(dense, "forward", "attention projections: 4 Dense 384→384")
        elif not isinstance(layer, fz.layers.InputLayer):
            patch(layer, "forward", part_of(layer.name))
    for kernel in ("attention_forward", "attention_forward_packed"):  # graph, encode
        patch(ops, kernel, "attention: softmax(QKᵀ/√d)·V")
    patch(encoder, "tokenize", "tokenize (Hugging Face tokenizers)")
    try:
        start = time.perf_counter()
        encoder.encode(sentences, batch_size=batch_size)
        total = time.perf_counter() - start
    finally:
        for obj, attr, had, old in reversed(undo):
            setattr(obj, attr, old) if had else delattr(obj, attr)
    return total, clock.seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--sentences", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    threads = pin_threads(bench_threads())
    encoder = fz.pretrained.minilm()
    sentences = corpus_sentences(args.sentences)
    encoder.encode(sentences, batch_size=args.batch_size)  # warm-up: buffers, pages
    total, parts = min((profile_once(encoder, sentences, args.batch_size)
                        for _ in range(args.repeat)), key=lambda r: r[0])
    parts["other (Python between the calls)"] = max(0.0, total - sum(parts.values()))
    print(f"encode of {len(sentences)} sentences, batch {args.batch_size}, threads {threads}, "
          f"{fz.ops.simd_path()} GEMM: {total * 1e3:.1f} ms ({len(sentences) / total:.1f} "
          f"sentences/s)")
    print("| part | ms | share |\n|---|---:|---:|")
    for part, seconds in sorted(parts.items(), key=lambda p: -p[1]):
        print(f"| {part} | {seconds * 1e3:.1f} | {seconds / total:.1%} |")


if __name__ == "__main__":
    main()
