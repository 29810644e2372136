"""The command line both atheris harnesses share: with no corpus folder on the
command line, a temporary one is seeded with the harness's valid inputs, so
libFuzzer starts from well-formed files and mutates them."""

import os
import sys
import tempfile

import atheris


def fuzz_main(test_one_input, seeds, name, defaults=()):
    """Run atheris on test_one_input. `defaults` are libFuzzer flags
    ("-max_len=16384") used unless the command line sets the same flag."""
    args = list(sys.argv)
    if not any(not a.startswith("-") for a in args[1:]):  # no corpus folder given: seed one
        corpus = tempfile.mkdtemp(prefix=f"fz-atheris-{name}-corpus-")
        for i, seed in enumerate(seeds):
            with open(os.path.join(corpus, f"seed-{i}"), "wb") as f:
                f.write(seed)
        args.append(corpus)
    for flag in defaults:
        if not any(a.startswith(flag.split("=")[0] + "=") for a in args):
            args.append(flag)
    atheris.Setup(args, test_one_input)
    atheris.Fuzz()
