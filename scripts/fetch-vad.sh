#!/usr/bin/env bash
# Places the Silero VAD v6 weights that faster-whisper 1.2.1 runs (its bundled
# faster_whisper/assets/silero_vad_v6.onnx) in DIR (default models/silero-vad) as
# silero_vad_16k.safetensors, with the LICENSE and a README.md. They come from
# silero_vad/data/silero_vad_16k_op15.onnx in the MIT-licensed PyPI wheel silero-vad 6.1.0,
# so a fresh machine needs only python3 with pip: the ONNX initializers are read with a small
# protobuf reader below, no onnx package. The wheel and every output file are checked
# against their sha256; a complete, verified copy is left alone.
set -euo pipefail

dir="${1:-models/silero-vad}"
python="${PYTHON:-python3}"
wheel_spec="silero-vad==6.1.0"

"$python" - "$dir" "$wheel_spec" <<'PY'
import glob, hashlib, json, os, struct, subprocess, sys, tempfile, zipfile

out, spec = sys.argv[1:3]
wheel_sha = "f71004f5a6d0d784b285fba4436d9c8d462f990ee64500f723473c83e6dd16a1"
onnx_member = "silero_vad/data/silero_vad_16k_op15.onnx"
license_member = "silero_vad-6.1.0.dist-info/licenses/LICENSE"
expected = {
    "silero_vad_16k.safetensors": "e2f6dd7b1e88dd3f2a0a0c86042448ff621b50fa2d06ce5b8911877ba959bc72",
    "LICENSE": "2e63e9a38b6e8fc0c7bc37ce174caca1862870856c6daf5697cfb785e925520b",
}

# ONNX initializer name -> safetensors name. The op15 export keeps the LSTMCell parameters in
# PyTorch's own layout (gate blocks i, f, g, o; separate ih/hh biases) and reorders them to
# ONNX's i, o, f, c inside the graph (Slice/Concat before its LSTM node), so they are copied
# as they are. All of these are initializers of the top-level graph; the file is 16 kHz only.
names = {
    "model.stft.forward_basis_buffer": "stft_conv.weight",
    "model.encoder.0.reparam_conv.weight": "conv1.weight",
    "model.encoder.0.reparam_conv.bias": "conv1.bias",
    "model.encoder.1.reparam_conv.weight": "conv2.weight",
    "model.encoder.1.reparam_conv.bias": "conv2.bias",
    "model.encoder.2.reparam_conv.weight": "conv3.weight",
    "model.encoder.2.reparam_conv.bias": "conv3.bias",
    "model.encoder.3.reparam_conv.weight": "conv4.weight",
    "model.encoder.3.reparam_conv.bias": "conv4.bias",
    "model.decoder.rnn.weight_ih": "lstm_cell.weight_ih",
    "model.decoder.rnn.weight_hh": "lstm_cell.weight_hh",
    "model.decoder.rnn.bias_ih": "lstm_cell.bias_ih",
    "model.decoder.rnn.bias_hh": "lstm_cell.bias_hh",
    "model.decoder.decoder.2.weight": "final_conv.weight",
    "model.decoder.decoder.2.bias": "final_conv.bias",
}

readme = """# Silero VAD weights (v6, as bundled by faster-whisper 1.2.1)

`silero_vad_16k.safetensors` holds the 16 kHz Silero VAD v6 model that faster-whisper 1.2.1
runs for `vad_filter` and `BatchedInferencePipeline` (`faster_whisper/assets/silero_vad_v6.onnx`).

Source: the initializers of `silero_vad/data/silero_vad_16k_op15.onnx` in the PyPI wheel
`silero-vad==6.1.0` (silero_vad-6.1.0-py3-none-any.whl, sha256 %s),
MIT license (`LICENSE`, copied from the wheel). Written by `scripts/fetch-vad.sh`.

Why 6.1.0: its weights are bit-identical to the ones faster-whisper 1.2.1 ships (6.0.0 has the
same). The silero-vad 6.2.x wheels carry retrained v6.2 weights, which give different speech
probabilities, so they cannot reproduce faster-whisper's VAD.

Tensors (float32, PyTorch layout; LSTM gate blocks in PyTorch order i, f, g, o):
stft_conv.weight [258,1,256] (no bias), conv1..conv4 weight/bias ((128,129,3), (64,128,3),
(64,64,3), (128,64,3); strides 1, 2, 2, 1; padding 1; ReLU after each), lstm_cell.weight_ih
[512,128], lstm_cell.weight_hh [512,128], lstm_cell.bias_ih [512], lstm_cell.bias_hh [512],
final_conv.weight [1,128,1], final_conv.bias [1].
""" % wheel_sha


def digest(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def complete():
    return os.path.isfile(os.path.join(out, "README.md")) and all(
        os.path.isfile(os.path.join(out, n)) and digest(os.path.join(out, n)) == s for n, s in expected.items())


# A minimal protobuf reader: enough of ModelProto -> GraphProto -> TensorProto.
def varint(buf, pos):
    result = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7


def fields(buf):
    """Yields (field number, wire type, value) of one message; LEN values are memoryviews."""
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = varint(buf, pos)
        num, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos:pos + 8], pos + 8
        elif wire == 2:
            n, pos = varint(buf, pos)
            value, pos = buf[pos:pos + n], pos + n
        elif wire == 5:
            value, pos = buf[pos:pos + 4], pos + 4
        else:
            raise ValueError("unsupported protobuf wire type %d" % wire)
        yield num, wire, value


def tensor(buf):
    """TensorProto: dims = 1, data_type = 2, float_data = 4, name = 8, raw_data = 9."""
    dims, dtype, name, raw, floats = [], None, None, None, []
    for num, wire, value in fields(buf):
        if num == 1:
            if wire == 2:  # packed
                p = 0
                while p < len(value):
                    d, p = varint(value, p)
                    dims.append(d)
            else:
                dims.append(value)
        elif num == 2:
            dtype = value
        elif num == 4:
            floats.extend(struct.unpack("<%df" % (len(value) // 4), value) if wire == 2
                          else struct.unpack("<f", value))
        elif num == 8:
            name = bytes(value).decode()
        elif num == 9:
            raw = bytes(value)
    if dtype != 1:
        raise ValueError("initializer %s: data_type %s, want 1 (FLOAT)" % (name, dtype))
    data = raw if raw is not None else struct.pack("<%df" % len(floats), *floats)
    count = 1
    for d in dims:
        count *= d
    if len(data) != 4 * count:
        raise ValueError("initializer %s: %d bytes for shape %s" % (name, len(data), dims))
    return name, dims, data


def initializers(model):
    """The initializers of ModelProto.graph (field 7), GraphProto.initializer (field 5)."""
    found = {}
    for num, _, graph in fields(memoryview(model)):
        if num == 7:
            for gnum, _, value in fields(graph):
                if gnum == 5:
                    name, dims, data = tensor(value)
                    found[name] = (dims, data)
    return found


def safetensors(tensors):
    """The safetensors bytes: u64 LE header length, JSON header (names sorted), the data."""
    header, offset = {}, 0
    for name in sorted(tensors):
        dims, data = tensors[name]
        header[name] = {"dtype": "F32", "shape": dims, "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
    header["__metadata__"] = {"source": "silero-vad 6.1.0 wheel, " + onnx_member}
    text = json.dumps(header, separators=(",", ":"), sort_keys=True).encode()
    text += b" " * (-len(text) % 8)  # pad the header so the data starts 8-byte aligned
    return struct.pack("<Q", len(text)) + text + b"".join(tensors[n][1] for n in sorted(tensors))


def place(name, data):
    partial = os.path.join(out, name + ".partial")
    with open(partial, "wb") as f:
        f.write(data)
    if name in expected and digest(partial) != expected[name]:
        got = digest(partial)
        os.remove(partial)
        sys.exit(f"sha256 mismatch for {name}: {got}")
    # Rename last, so an interrupted fetch never leaves a file that looks complete.
    os.replace(partial, os.path.join(out, name))


if complete():
    print(f"Silero VAD already in {out}")
    sys.exit(0)

os.makedirs(out, exist_ok=True)
with tempfile.TemporaryDirectory() as tmp:
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", spec, "-d", tmp],
                   check=True, stdout=sys.stderr)
    wheel = glob.glob(os.path.join(tmp, "*.whl"))[0]
    if digest(wheel) != wheel_sha:
        sys.exit(f"sha256 mismatch for {os.path.basename(wheel)}")
    with zipfile.ZipFile(wheel) as z:
        model = z.read(onnx_member)
        license_text = z.read(license_member)

found = initializers(model)
missing = sorted(set(names) - set(found))
if missing:
    sys.exit("initializers missing from %s: %s" % (onnx_member, ", ".join(missing)))
place("silero_vad_16k.safetensors", safetensors({names[k]: found[k] for k in names}))
place("LICENSE", license_text)
place("README.md", readme.encode())
print(f"Silero VAD v6 (silero-vad 6.1.0) placed in {out}")
PY
