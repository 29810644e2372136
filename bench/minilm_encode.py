"""all-MiniLM-L6-v2 on fromzero against sentence-transformers on PyTorch:
the same 100 sentences from the bundled corpora, the agreement of the
embeddings (cosine per sentence) and the encoding throughput, side by side
with both engines pinned to the same thread count.

    pip install ".[pretrained]"
    python bench/minilm_encode.py [--repeat R] [--sentences N]
                                  (threads: FROMZERO_BENCH_THREADS, default 2)
"""

import argparse
import os
import sys
import tempfile
import time
import zipfile

import numpy as np

import fromzero as fz
from threads import bench_threads, pin_threads

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
from test_pretrained import corpus_sentences  # noqa: E402 — the sentences the tests use


def best(call, repeat):
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return min(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--sentences", type=int, default=100)
    args = parser.parse_args()
    threads = pin_threads(bench_threads())
    print(f"threads: {threads}", file=sys.stderr)
    from sentence_transformers import SentenceTransformer
    sentences = corpus_sentences(args.sentences)
    encoder = fz.pretrained.minilm()
    folder = tempfile.mkdtemp()
    with zipfile.ZipFile(fz.pretrained._model_zip()) as z:
        z.extractall(folder)
    reference = SentenceTransformer(folder, device="cpu")
    ours = encoder.encode(sentences)
    theirs = reference.encode(sentences)
    cos = np.sum(ours * theirs, 1) / np.linalg.norm(theirs, axis=1)
    t_ours = best(lambda: encoder.encode(sentences), args.repeat)
    t_theirs = best(lambda: reference.encode(sentences), args.repeat)
    n = len(sentences)
    print(f"| sentences | min cosine | fromzero (sent/s) | sentence-transformers (sent/s) | ratio |")
    print("|---|---|---|---|---|")
    print(f"| {n} | {cos.min():.6f} | {n / t_ours:.1f} | {n / t_theirs:.1f} | "
          f"{t_theirs / t_ours:.2f} |")


if __name__ == "__main__":
    main()
