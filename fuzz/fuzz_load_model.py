"""Coverage-guided fuzzing of fromzero.models.load_model with atheris.

The first byte of each input picks how the rest is used:
    0  the whole file, as is (damaged zips, truncations, foreign formats);
    1  entry `config.npy` of a valid checkpoint replaced by the bytes, re-zipped
       with a correct CRC (damaged .npy headers and data);
    2  the architecture JSON replaced by the bytes (as UTF-8);
    3  entry weight_<k> replaced by the bytes (k from the second byte).
The property: load_model returns a Sequential or raises ValueError; any other
exception is a finding (atheris stops and saves the input as crash-<hash>).
Nothing in a checkpoint may be unpickled: a pickled payload that ran would
create the file named in PWNED, which is checked after every input.

    pip install atheris
    python fuzz/fuzz_load_model.py -atheris_runs=1000000
    python fuzz/fuzz_load_model.py fuzz/corpus/load_model -max_total_time=600
"""

import io
import os
import tempfile
import zipfile

import atheris
from harness import fuzz_main
import numpy as np

import fromzero as fz
from fromzero import models

for _name in ("load_model", "_model_from_config", "_check_input_shape", "_check_type"):
    setattr(models, _name, atheris.instrument_func(getattr(models, _name)))
for _name in ("__init__", "read", "read_config", "read_weights"):
    setattr(models._Checkpoint, _name, atheris.instrument_func(getattr(models._Checkpoint, _name)))

FOLDER = tempfile.mkdtemp(prefix="fz-atheris-model-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
PATH = os.path.join(FOLDER, "model.npz")
PWNED = os.path.join(FOLDER, "pwned")


def base_checkpoint():
    fz.utils.set_random_seed(0)
    model = fz.Sequential([fz.layers.Dense(4, activation="relu"), fz.layers.Dropout(0.2),
                           fz.layers.Dense(3, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.build((None, 5))
    model.save(PATH)
    with open(PATH, "rb") as f:
        data = f.read()
    with zipfile.ZipFile(PATH) as z:
        entries = {n: z.read(n) for n in z.namelist()}
    return data, entries


BASE, ENTRIES = base_checkpoint()
CONFIG = str(np.load(io.BytesIO(ENTRIES["config.npy"]))).encode()


def rezip(entries):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, content in entries.items():
            z.writestr(name, content)
    return buf.getvalue()


def npy(array):
    f = io.BytesIO()
    np.lib.format.write_array(f, array)
    return f.getvalue()


def test_one_input(data):
    if not data:
        return
    mode, rest = data[0] % 4, data[1:]
    if mode == 0:
        content = rest
    elif mode == 1:
        content = rezip({**ENTRIES, "config.npy": rest})
    elif mode == 2:
        content = rezip({**ENTRIES, "config.npy": npy(np.array(rest.decode("utf-8", "replace")))})
    else:
        k = rest[0] % 4 if rest else 0
        content = rezip({**ENTRIES, f"weight_{k}.npy": rest[1:]})
    with open(PATH, "wb") as f:
        f.write(content)
    try:
        model = models.load_model(PATH)
    except ValueError:
        pass
    else:
        assert isinstance(model, fz.Model)
    assert not os.path.exists(PWNED), "load_model ran code from the file"


def seeds():
    return [b"\x00" + BASE, b"\x01" + ENTRIES["config.npy"], b"\x02" + CONFIG,
            b"\x03\x00" + ENTRIES["weight_0.npy"], b"\x03\x03" + ENTRIES["weight_3.npy"]]


if __name__ == "__main__":
    fuzz_main(test_one_input, seeds(), "model", defaults=(
        "-max_len=16384",   # a checkpoint is ~5 KB; libFuzzer's default is 4096
        "-len_control=0",   # mutate whole checkpoints from the start
    ))
