"""The command line: ``fromzero train`` trains the textbook's model on MNIST.

    Dense(128, relu) → Dense(10, softmax), Adam, batch 32, 5 epochs, pixels scaled to [0, 1]

``--model cnn`` trains Keras's mnist_convnet example instead (batch 128 by default):

    Conv2D(32, 3, relu) → MaxPool2D(2) → Conv2D(64, 3, relu) → MaxPool2D(2)
    → Flatten → Dropout(0.5) → Dense(10, softmax)

``mpiexec -n N fromzero train --distributed`` trains any of them on N
processes (data parallelism, fz.distributed; pip install fromzero[mpi]):
each computes its share of every batch, the same training as one process
with that batch size; rank 0 alone prints and saves.

``--model gpt`` trains a character-level GPT on tiny-shakespeare with
nanoGPT's CPU recipe (train_shakespeare_char, README's laptop settings):

    chars tokenizer, windows of 64, batch 12, 4 layers × 4 heads × 128 wide,
    no biases, dropout 0, tied embeddings, LayerNorm ε 1e-5, 2000 steps;
    AdamW lr 1e-3 (100 warm-up steps, cosine to 1e-4), β2 0.99, ε 1e-8,
    weight decay 0.1 on matrices only, gradients clipped to global norm 1.0;
    train/val loss on 20 random batches every 250 steps (nanoGPT's estimate),
    a sample, and last the loss on the whole validation split.

``fromzero generate --checkpoint FILE --prompt TEXT`` continues a prompt
with a model that ``train --model gpt --save FILE`` wrote.

``fromzero finetune --base FILE --dataset austen --lora-rank 8`` goes on
training such a model on another text (fz.finetuning.finetune_gpt): LoRA
adapters of rank 8 on the attention's query and value projections and the
MLP's first layer, everything else frozen; ``--lora-rank 0`` fine-tunes every weight. ``--save``
writes the adapters alone (LoRA) or the whole model; ``fromzero generate
--checkpoint BASE --adapters FILE`` samples from base + adapters.
"""

import argparse
import sys
import time

import numpy as np

import fromzero as fz
from fromzero.text.training import fit_on_windows, gpt_optimizer  # noqa: F401 (cli.gpt_optimizer)


# Each model's batch size when --batch-size is not given, as in its Keras example.
DEFAULT_BATCH_SIZE = {"mlp": 32, "cnn": 128}
IMAGE_DATASETS = ["mnist", "fashion_mnist"]
TEXT_DATASETS = ["tinyshakespeare", "austen", "tang300"]


def positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text}")
    return value


def build_model(name):
    if name == "mlp":
        return fz.Sequential([fz.layers.Dense(128, activation="relu"),
                              fz.layers.Dense(10, activation="softmax")])
    if name == "cnn":
        return fz.Sequential([fz.layers.Conv2D(32, 3, activation="relu"),
                              fz.layers.MaxPool2D(2),
                              fz.layers.Conv2D(64, 3, activation="relu"),
                              fz.layers.MaxPool2D(2),
                              fz.layers.Flatten(),
                              fz.layers.Dropout(0.5),
                              fz.layers.Dense(10, activation="softmax")])
    raise ValueError(f"unknown model {name!r}")


# nanoGPT's CPU recipe (fromzero train --model gpt with no other option).
GPT_RECIPE = dict(dataset="tinyshakespeare", tokenizer="chars", num_layers=4, num_heads=4,
                  hidden_dim=128, sequence_length=64, batch_size=12, steps=2000,
                  learning_rate=1e-3, dropout=0.0)
GPT_EVAL_INTERVAL, GPT_EVAL_BATCHES, GPT_SCORE_BATCH = 250, 20, 64
GPT_BPE_VOCAB = 512


def make_tokenizer(kind, text):
    if kind == "bytes":
        return fz.text.ByteTokenizer()
    if kind == "chars":
        return fz.text.CharTokenizer.fit(text)
    return fz.text.BPETokenizer.train(text, GPT_BPE_VOCAB)


def train_gpt(args, say=print, chief=True):
    """nanoGPT's recipe (GPT_RECIPE unless an option says otherwise); with
    --distributed every process trains its share of each batch and `say`
    prints on rank 0 only (`chief`: the process that saves)."""
    options = {k: (GPT_RECIPE[k] if getattr(args, k, None) is None else getattr(args, k))
               for k in GPT_RECIPE}
    if options["dataset"] not in TEXT_DATASETS:
        raise ValueError(f"--model gpt trains on a text: --dataset {' or '.join(TEXT_DATASETS)}, "
                         f"got {options['dataset']}")
    text = fz.datasets.text.load_data(options["dataset"])
    train_text, val_text = fz.datasets.text.train_val_split(text)
    tokenizer = make_tokenizer(options["tokenizer"], train_text if options["tokenizer"] == "bpe" else text)
    train_ids, val_ids = tokenizer.encode(train_text), tokenizer.encode(val_text)
    T, B, steps = options["sequence_length"], options["batch_size"], options["steps"]
    seed = 1337 if args.seed is None else args.seed  # nanoGPT's seed
    fz.utils.set_random_seed(seed)
    model = fz.models.gpt(tokenizer.vocab_size, T, options["num_layers"], options["num_heads"],
                          options["hidden_dim"], dropout=options["dropout"], use_bias=False,
                          tie_embeddings=True)
    info = fz.info()
    say(f"fromzero {info['version']}: gpt on {options['dataset']} ({options['tokenizer']} "
          f"tokenizer, vocabulary {tokenizer.vocab_size}), {model.count_params() / 1e6:.2f} M "
          f"parameters, {info['threads']} thread(s)", flush=True)
    evaluator, seconds = fit_on_windows(model, train_ids, val_ids, T, B, steps,
                                        options["learning_rate"], seed, GPT_EVAL_INTERVAL,
                                        GPT_EVAL_BATCHES, say, distribute=args.distributed)
    say(f"trained {steps} steps in {seconds:.1f} s ({B * T * steps / seconds:.0f} tokens/s)")
    if args.save and chief:
        model.save(args.save, extras={"tokenizer": fz.text.serialize(tokenizer)})
        say(f"saved to {args.save}")
    if args.plot and chief:
        write_gpt_plots(args.plot, evaluator.curve, model, tokenizer, val_text)
    say("sample:")
    say(fz.text.generate(model, tokenizer, "\n", 500, temperature=0.8, top_k=200, seed=seed))
    # The last line scores the whole validation split, each token once: no sampling noise.
    # One random batch's loss has σ ≈ 0.06 at the end of the recipe, so the 20-batch
    # estimates above are ±0.013 (1σ), 200 batches ±0.004; where the windows are cut
    # moves the whole-split figure by about 0.001.
    split = fz.text.ConsecutiveWindows(val_ids, T, GPT_SCORE_BATCH)
    val_loss = model.evaluate(split, verbose=0)
    say(f"the whole validation split ({split.num_windows} windows of {T} tokens, "
        f"{split.num_windows * T} targets):")
    say(f"val loss: {val_loss:.4f}")
    return 0


def write_gpt_plots(folder, curve, model, tokenizer, text):
    """loss_curve.png (train and val loss of the run) and attention.png (head
    0 of the first block on the first 32 tokens of `text`) in folder."""
    import os
    loss_path, attention_path = (os.path.join(folder, f"{name}.png")
                                 for name in ("loss_curve", "attention"))
    fz.plot.loss_curve(*zip(*curve), path=loss_path)
    ids = tokenizer.encode(text)[:32]
    probs = fz.models.gpt_attention(model, ids)[0]
    fz.plot.attention(probs, [tokenizer.decode(ids[i:i + 1]) for i in range(len(ids))],
                      path=attention_path, title="block 0, head 0")
    print(f"plots written to {folder}: loss_curve.png, attention.png")


def generate(args):
    """Continue --prompt with the model of --checkpoint and its tokenizer
    (and the LoRA adapters of --adapters on it)."""
    if args.threads is not None:
        fz.set_num_threads(args.threads)
    extras = fz.saving.load_extras(args.checkpoint)
    if "tokenizer" not in extras:
        raise ValueError(f"{args.checkpoint} holds no tokenizer: save it with fromzero train "
                         f"--model gpt --save FILE")
    tokenizer = fz.text.deserialize(extras["tokenizer"])
    model = fz.models.load_model(args.checkpoint)
    if args.adapters:
        model.load_weights(args.adapters, lora_only=True)
    print(fz.text.generate(model, tokenizer, args.prompt, args.max_new_tokens,
                           temperature=args.temperature, top_k=args.top_k, seed=args.seed))
    return 0


def finetune(args):
    """fz.finetuning.finetune_gpt with the command line's options; prints the
    losses as it goes, a sample, and last `val loss: X`."""
    if args.threads is not None:
        fz.set_num_threads(args.threads)
    target = None if args.lora_target is None else args.lora_target.split(",")
    result = fz.finetuning.finetune_gpt(
        args.base, args.dataset, steps=args.steps, batch_size=args.batch_size,
        learning_rate=args.learning_rate, lora_rank=args.lora_rank, lora_target=target,
        train_norms=args.train_norms, seed=args.seed)
    if args.save:
        if args.lora_rank and not args.train_norms:
            result.model.save_weights(args.save, lora_only=True)
            print(f"adapters saved to {args.save} (apply them to {args.base}: fromzero generate "
                  f"--checkpoint {args.base} --adapters {args.save})")
        else:
            result.model.save(args.save,
                              extras={"tokenizer": fz.text.serialize(result.tokenizer)})
            print(f"saved to {args.save}")
    print("sample:")
    print(fz.text.generate(result.model, result.tokenizer, "\n", args.sample_tokens,
                           temperature=0.8, top_k=200, seed=args.seed))
    print(f"val loss: {result.val_loss:.4f}")
    return 0


def train(args):
    processes, chief = 1, True
    if args.distributed:  # first: init gives each process its share of this machine's cores
        rank, processes = fz.distributed.init()
        chief = rank == 0
    say = print if chief else _silent
    if args.model == "gpt":
        if args.threads is not None:
            fz.set_num_threads(args.threads)
        if args.plot:
            fz.plot.require_matplotlib()
        return train_gpt(args, say, chief)
    if args.dataset is None:
        args.dataset = "mnist"
    if args.dataset not in IMAGE_DATASETS:
        raise ValueError(f"--dataset {args.dataset} is a text; --model {args.model} trains on "
                         f"{' or '.join(IMAGE_DATASETS)}")
    if args.threads is not None:
        fz.set_num_threads(args.threads)
    if args.seed is not None:
        fz.utils.set_random_seed(args.seed)
    if args.plot:
        fz.plot.require_matplotlib()  # fail now, not after training
    dataset = getattr(fz.datasets, args.dataset)
    (x_train, y_train), (x_test, y_test) = dataset.load_data()
    # Pixels scaled to [0, 1] as float32, the kernels' type: x / 255.0 would
    # make float64 copies twice the size, which fit would convert again.
    x_train, x_test = (np.divide(x, 255, dtype=np.float32) for x in (x_train, x_test))
    if args.model == "cnn":  # Conv2D wants (batch, height, width, channels)
        x_train, x_test = x_train[..., None], x_test[..., None]
    batch_size = DEFAULT_BATCH_SIZE[args.model] if args.batch_size is None else args.batch_size

    model = build_model(args.model)
    optimizer = fz.optimizers.get(args.optimizer)
    if args.learning_rate is not None:
        optimizer.learning_rate = args.learning_rate
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    info = fz.info()
    where = f"{processes} processes × " if args.distributed else ""
    say(f"fromzero {info['version']}: {args.model} on {args.dataset}, {info['simd']} GEMM, "
        f"{where}{info['threads']} thread(s){'' if info['openmp'] else ' (built without OpenMP)'}")
    start = time.perf_counter()
    # --plot holds out the last 10% of the training data, so the curves show validation too.
    history = model.fit(x_train, y_train, batch_size=batch_size, epochs=args.epochs, verbose=1,
                        validation_split=0.1 if args.plot else 0.0, distribute=args.distributed)
    seconds = time.perf_counter() - start
    loss, accuracy = model.evaluate(x_test, y_test, verbose=0)  # the same on every process
    say(f"trained {args.epochs} epoch(s) in {seconds:.1f} s "
        f"({seconds / max(args.epochs, 1):.2f} s/epoch)")
    say(f"test loss: {loss:.4f} - test accuracy: {accuracy:.4f}")
    if args.save and chief:
        model.save(args.save)
        say(f"saved to {args.save}")
    if args.plot and chief:
        write_plots(args.plot, history, model, x_test, y_test)
    return 0


def _silent(*args, **kwargs):
    pass


def write_plots(folder, history, model, x_test, y_test):
    """The four pictures of a training run (fz.plot), saved as PNGs in folder."""
    import os
    os.makedirs(folder, exist_ok=True)
    paths = {name: os.path.join(folder, f"{name}.png")
             for name in ("history", "confusion_matrix", "weights", "misclassified")}
    fz.plot.history(history, path=paths["history"])
    fz.plot.confusion_matrix(y_test, model.predict(x_test, batch_size=256, verbose=0),
                             path=paths["confusion_matrix"])
    fz.plot.weights(model, path=paths["weights"])
    fz.plot.misclassified(model, x_test, y_test, n=16, path=paths["misclassified"])
    print(f"plots written to {folder}: {', '.join(os.path.basename(p) for p in paths.values())}")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="fromzero", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train a model on MNIST and print the test accuracy")
    t.add_argument("--dataset", choices=IMAGE_DATASETS + TEXT_DATASETS, default=None,
                   help="default: mnist; tinyshakespeare for gpt")
    t.add_argument("--model", choices=["mlp", "cnn", "gpt"], default="mlp")
    t.add_argument("--epochs", type=int, default=5)
    t.add_argument("--batch-size", type=positive_int, default=None,
                   help="default: 32 for mlp, 128 for cnn (as Keras's examples), 12 for gpt")
    g = t.add_argument_group("gpt (defaults: nanoGPT's CPU recipe)")
    g.add_argument("--tokenizer", choices=["bytes", "chars", "bpe"], default=None)
    g.add_argument("--num-layers", type=positive_int, default=None)
    g.add_argument("--num-heads", type=positive_int, default=None)
    g.add_argument("--hidden-dim", type=positive_int, default=None)
    g.add_argument("--sequence-length", type=positive_int, default=None)
    g.add_argument("--steps", type=positive_int, default=None)
    g.add_argument("--dropout", type=float, default=None)
    t.add_argument("--optimizer", choices=["adam", "adamw", "sgd", "rmsprop"], default="adam")
    t.add_argument("--learning-rate", type=float, default=None,
                   help="default: the optimizer's own (Adam 0.001)")
    t.add_argument("--seed", type=int, default=None, help="make the run repeat bit for bit")
    t.add_argument("--threads", type=int, default=None,
                   help="kernel threads (default: all cores, shared among --distributed processes)")
    t.add_argument("--distributed", action="store_true",
                   help="data-parallel training over MPI: start as mpiexec -n N fromzero train "
                        "--distributed (needs pip install fromzero[mpi]); batch sizes are "
                        "global (each process computes 1/N of every batch)")
    t.add_argument("--save", metavar="PATH", default=None, help="save the trained model here")
    t.add_argument("--plot", metavar="DIR", default=None,
                   help="after training, write history.png, confusion_matrix.png, weights.png and "
                        "misclassified.png (gpt: loss_curve.png) here (needs matplotlib: pip install fromzero[plot]); "
                        "holds out 10%% of the training data for the validation curves")
    gen = sub.add_parser("generate", help="continue a prompt with a saved GPT")
    gen.add_argument("--checkpoint", required=True, metavar="FILE")
    gen.add_argument("--adapters", metavar="FILE", default=None,
                     help="LoRA adapters (fromzero finetune --save) to apply to the checkpoint")
    gen.add_argument("--prompt", default="\n")
    gen.add_argument("--max-new-tokens", type=int, default=500)
    gen.add_argument("--temperature", type=float, default=0.8)
    gen.add_argument("--top-k", type=positive_int, default=200)
    gen.add_argument("--seed", type=int, default=None)
    gen.add_argument("--threads", type=int, default=None)
    ft = sub.add_parser("finetune", help="go on training a saved GPT on another text (LoRA or "
                                          "full fine-tuning)")
    ft.add_argument("--base", required=True, metavar="FILE",
                    help="a GPT saved by fromzero train --model gpt --save FILE (not modified)")
    ft.add_argument("--dataset", choices=TEXT_DATASETS, default="austen")
    ft.add_argument("--steps", type=positive_int, default=500)
    ft.add_argument("--batch-size", type=positive_int, default=12)
    ft.add_argument("--learning-rate", type=float, default=None,
                    help=f"AdamW's peak (default: {fz.finetuning.LEARNING_RATE['lora']:g} with LoRA, "
                         f"{fz.finetuning.LEARNING_RATE['full']:g} for full fine-tuning)")
    ft.add_argument("--lora-rank", type=int, default=8,
                    help="rank of the adapters; 0: full fine-tuning (every weight trains)")
    ft.add_argument("--lora-target", default=None, metavar="NAMES",
                    help="comma-separated layer names or globs to adapt (default: "
                         f"{','.join(fz.finetuning.LORA_TARGET)})")
    ft.add_argument("--train-norms", action="store_true",
                    help="with LoRA, train the LayerNorms too (--save then writes the whole model)")
    ft.add_argument("--sample-tokens", type=int, default=500)
    ft.add_argument("--seed", type=int, default=1337)
    ft.add_argument("--threads", type=int, default=None)
    ft.add_argument("--save", metavar="PATH", default=None,
                    help="write the adapters alone (LoRA) or the whole model (--lora-rank 0 or "
                         "--train-norms) here")
    sub.add_parser("info", help="print the version, SIMD path and threads")
    args = parser.parse_args(argv)
    try:
        if args.command == "info":
            for key, value in fz.info().items():
                print(f"{key}: {value}")
            return 0
        if args.command == "generate":
            return generate(args)
        if args.command == "finetune":
            return finetune(args)
        return train(args)
    except (ValueError, TypeError, FileNotFoundError, ImportError) as e:
        print(f"fromzero: error: {e}", file=sys.stderr)
        if getattr(args, "distributed", False):
            fz.distributed.abort(2)  # the other processes may be waiting for this one
        return 2


if __name__ == "__main__":
    sys.exit(main())
