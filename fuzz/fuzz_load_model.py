"""Coverage-guided fuzzing of fromzero's checkpoint readers with atheris:
load_model, load_weights and load_extras on safetensors files (the format
model.save writes) and on .npz files of fromzero's format 2 (still read).

The first byte of each input picks how the rest is used:
    0  the whole file, as is (damaged, truncated, foreign files of either format);
    1  the safetensors header JSON of a valid checkpoint replaced by the bytes
       (its length prefix made to match, the tensor data kept);
    2  fromzero's metadata JSON (architecture, weight names, optimizer state,
       generator state) replaced by the bytes, as UTF-8;
    3  entry `config.npy` of a valid .npz checkpoint replaced by the bytes,
       re-zipped with a correct CRC (damaged .npy headers and data);
    4  entry weight_<k> of the .npz replaced by the bytes (k from the second byte).
The property: each reader returns or raises ValueError; any other exception
is a finding (atheris stops and saves the input as crash-<hash>). Nothing in
a checkpoint may be unpickled: a pickled payload that ran would create the
file named in PWNED, which is checked after every input.

    pip install atheris
    python fuzz/fuzz_load_model.py -atheris_runs=1000000
    python fuzz/fuzz_load_model.py fuzz/corpus/load_model -max_total_time=600
"""

import io
import json
import os
import struct
import tempfile
import zipfile

import atheris
from harness import fuzz_main
import numpy as np

import fromzero as fz
from fromzero import saving

for _name in ("load_model", "load_weights", "load_extras", "_model_from_file_config",
              "_restore_optimizer", "_generator_from_state", "_check_input_shape", "_check_type"):
    setattr(saving, _name, atheris.instrument_func(getattr(saving, _name)))
for _cls, _names in ((saving._Checkpoint, ("__init__", "read", "read_config", "read_weights")),
                     (saving._SafetensorsFile, ("__init__", "read_config", "read_tensor",
                                                "read_weights", "extras"))):
    for _name in _names:
        setattr(_cls, _name, atheris.instrument_func(getattr(_cls, _name)))

FOLDER = tempfile.mkdtemp(prefix="fz-atheris-model-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
PATH = os.path.join(FOLDER, "model.safetensors")
PWNED = os.path.join(FOLDER, "pwned")


def small_model():
    fz.utils.set_random_seed(0)
    model = fz.Sequential([fz.Input((5,)), fz.layers.Dense(4, activation="relu"),
                           fz.layers.Dropout(0.2), fz.layers.Dense(3, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def base_files():
    model = small_model()
    model.fit(np.ones((4, 5), np.float32), np.zeros(4, int), verbose=0)
    model.save(PATH, extras={"tokenizer": {"kind": "bytes"}})
    with open(PATH, "rb") as f:
        data = f.read()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + length])
    config = saving.file_config(model)
    config["format_version"] = 2
    buf = io.BytesIO()
    np.savez(buf, config=np.array(json.dumps(config)),
             **{f"weight_{i}": w for i, w in enumerate(model.get_weights())})
    with zipfile.ZipFile(io.BytesIO(buf.getvalue())) as z:
        entries = {n: z.read(n) for n in z.namelist()}
    return data, header, data[8 + length:], entries


BASE, HEADER, TENSOR_DATA, ENTRIES = base_files()
MODEL = small_model()  # load_weights target


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


def with_header(text):
    return struct.pack("<Q", len(text)) + text + TENSOR_DATA


def test_one_input(data):
    if not data:
        return
    mode, rest = data[0] % 5, data[1:]
    if mode == 0:
        content = rest
    elif mode == 1:
        content = with_header(rest)
    elif mode == 2:
        header = dict(HEADER, __metadata__=dict(HEADER["__metadata__"],
                                                fromzero=rest.decode("utf-8", "replace")))
        content = with_header(json.dumps(header).encode())
    elif mode == 3:
        content = rezip({**ENTRIES, "config.npy": rest})
    else:
        k = rest[0] % 4 if rest else 0
        content = rezip({**ENTRIES, f"weight_{k}.npy": rest[1:]})
    with open(PATH, "wb") as f:
        f.write(content)
    try:
        model = saving.load_model(PATH)
    except ValueError:
        pass
    else:
        assert isinstance(model, fz.Model)
    for load in (saving.load_extras, MODEL.load_weights):
        try:
            load(PATH)
        except ValueError:
            pass
    assert not os.path.exists(PWNED), "a checkpoint reader ran code from the file"


def seeds():
    (length,) = struct.unpack("<Q", BASE[:8])
    return [b"\x00" + BASE, b"\x01" + BASE[8:8 + length],
            b"\x02" + HEADER["__metadata__"]["fromzero"].encode(),
            b"\x00" + rezip(ENTRIES), b"\x03" + ENTRIES["config.npy"],
            b"\x04\x00" + ENTRIES["weight_0.npy"]]


if __name__ == "__main__":
    fuzz_main(test_one_input, seeds(), "model", defaults=(
        "-max_len=16384",   # a checkpoint is ~5 KB; libFuzzer's default is 4096
        "-len_control=0",   # mutate whole checkpoints from the start
    ))
