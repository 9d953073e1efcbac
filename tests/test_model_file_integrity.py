"""Hostile and damaged saved models (``.pt``, ``.keras``) given to ``load`` and ``convert``.

Every case goes through the CLI in-process and must end with exit status 1 (a refused model;
2 where the command line itself is wrong), one ``error:`` line naming the problem (the tensor,
the member or the part that differs), no traceback, and nothing created or changed in the
case's folder; the loaders must never open another path (a stored spec that names a FIFO would
hang) nor inflate a zip member past what the network needs (docs/threat-model.md, "Saved
models"). One tiny model per backend is built and saved once per module.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from model_file_helpers import TINY, declare, deflated_bomb, refused, rewrite_zip, run_cli

from resnet_spec import build_architecture
from resnet_spec.backends import get_backend

REPO = Path(__file__).resolve().parent.parent
Case = Callable[[Path, Path], Path]


@pytest.fixture(scope="module")
def torch_good(tmp_path_factory) -> Path:
    torch = pytest.importorskip("torch")
    arch = build_architecture(TINY)
    backend = get_backend("torch")
    model = backend.build(arch, seed=0)
    model.train()
    model(torch.randn(4, 3, 8, 8))  # running statistics away from their start
    path = tmp_path_factory.mktemp("good") / "tiny.pt"
    backend.save(model, arch, TINY, path)
    return path


@pytest.fixture(scope="module")
def keras_good(tmp_path_factory) -> Path:
    pytest.importorskip("tensorflow")
    arch = build_architecture(TINY)
    backend = get_backend("keras")
    model = backend.build(arch)
    path = tmp_path_factory.mktemp("good") / "tiny.keras"
    backend.save(model, arch, TINY, path)
    return path


# ---------------------------------------------------------------------- PyTorch cases


def edited(change: Callable[[dict], None], name: str = "bad.pt") -> Case:
    """The good file's payload, changed, saved again (its integrity record kept unless removed)."""

    def make(good: Path, folder: Path) -> Path:
        import torch

        payload = torch.load(good, weights_only=True)
        change(payload)
        path = folder / name
        torch.save(payload, path)
        return path

    return make


def tensor(name: str, change: Callable[[object], object], *, v1: bool = False) -> Case:
    def apply(payload: dict) -> None:
        payload["state_dict"][name] = change(payload["state_dict"][name])
        if v1:
            old_format(payload)

    return edited(apply)


def old_format(payload: dict) -> None:
    """What resnet-spec wrote before digests: format version 1, no integrity record."""
    payload["format_version"] = 1
    payload.pop("integrity")


def set_key(key: str, value: object) -> Case:
    return edited(lambda p: p.__setitem__(key, value))


def drop_key(key: str) -> Case:
    return edited(lambda p: p.pop(key))


def flip_one(t):
    t = t.clone()
    t.view(-1)[0] += 0.5
    return t


def nan_one(t):
    t = t.clone()
    t.view(-1)[1] = float("nan")
    return t


def inf_one(t):
    t = t.clone()
    t.view(-1)[0] = float("inf")
    return t


def negative(t):
    return -t.abs() - 1


def as_dtype(dtype_name: str):
    def change(t):
        import torch

        return t.to(getattr(torch, dtype_name))

    return change


def reshaped(t):
    import torch

    return torch.zeros(t.shape[0], 2)


def raw_bytes(data: bytes, name: str = "bad.pt") -> Case:
    def make(good: Path, folder: Path) -> Path:
        path = folder / name
        path.write_bytes(data)
        return path

    return make


def truncated(fraction: float) -> Case:
    def make(good: Path, folder: Path) -> Path:
        data = good.read_bytes()
        path = folder / "bad.pt"
        path.write_bytes(data[: int(len(data) * fraction)])
        return path

    return make


def torch_bomb(good: Path, folder: Path) -> Path:
    """A real zip bomb: the good archive plus 256 MiB of zeros deflated to about 250 kB."""
    with zipfile.ZipFile(good) as archive:
        prefix = archive.namelist()[0].split("/")[0]
    return deflated_bomb(good, folder / "bomb.pt", f"{prefix}/data/999", 256)


def torch_declared(good: Path, folder: Path) -> Path:
    """A member whose central-directory entry declares 4 GiB (the data stays small)."""
    path = folder / "declared.pt"
    path.write_bytes(good.read_bytes())
    return declare(path, "data.pkl", 0xFFFFFFF0)


def legacy_format(good: Path, folder: Path) -> Path:
    import torch

    path = folder / "legacy.pt"
    torch.save(torch.load(good, weights_only=True), path, _use_new_zipfile_serialization=False)
    return path


def code_in_pickle(good: Path, folder: Path) -> Path:
    """A pickle that would run os.system when unpickled without weights_only."""
    import pickle

    import torch

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {folder / 'pwned'}",))

    path = folder / "evil.pt"
    torch.save({"format": "resnet-spec/torch", "spec": Evil()}, path, pickle_module=pickle)
    return path


def a_directory(good: Path, folder: Path) -> Path:
    path = folder / "model.pt"
    path.mkdir()
    return path


def a_fifo(good: Path, folder: Path) -> Path:
    path = folder / "model.pt"
    os.mkfifo(path)
    return path


def spec_names(target: str) -> Callable[[Path, Path], Case]:
    """A stored spec that is a path string: a FIFO (opening it would hang) or a YAML file."""

    def make(good: Path, folder: Path) -> Path:
        if target == "fifo":
            os.mkfifo(folder / "spec.fifo")
            named = str(folder / "spec.fifo")
        else:
            named = str(folder / "secret.yaml")
            Path(named).write_text("version: 1\nsecret_key_xyz: 1\n")
        return edited(lambda p: p.__setitem__("spec", named))(good, folder)

    return make


FIRST = "stem.conv1.weight"
VAR = "stem.norm1.running_var"
TORCH_CASES: dict[str, tuple[Case, str]] = {
    "tensor_value_changed": (tensor(FIRST, flip_one), rf"tensor '{FIRST}' differs.*damaged or edited"),
    "tensor_nan": (tensor(FIRST, nan_one), rf"{FIRST}: 1 of 108 values are NaN or infinite"),
    "tensor_inf": (tensor("head.classifier.bias", inf_one), r"head.classifier.bias: 1 of 3 values are NaN or infinite"),
    "tensor_nan_old_format": (tensor(FIRST, nan_one, v1=True), rf"{FIRST}: 1 of 108 values are NaN"),
    "negative_running_var": (tensor(VAR, negative), rf"{VAR}: 4 of 4 running variances are negative"),
    "negative_running_var_old_format": (tensor(VAR, negative, v1=True), r"running variances are negative"),
    "int32_weight": (tensor(FIRST, as_dtype("int32")), rf"{FIRST}: dtype int32; weights must be"),
    "int8_weight": (tensor(FIRST, as_dtype("int8")), r"dtype int8; weights must be"),
    "complex_weight": (tensor(FIRST, as_dtype("complex64")), r"dtype complex64; weights must be"),
    "bool_weight": (tensor(FIRST, as_dtype("bool")), r"dtype bool; weights must be"),
    "float64_weight": (tensor(FIRST, as_dtype("float64")), rf"tensor '{FIRST}' differs"),
    "float_batch_counter": (tensor("stem.norm1.num_batches_tracked", as_dtype("float32")), r"batch counter must be one integer"),
    "wrong_shape": (tensor("head.classifier.weight", reshaped), r"tensor 'head.classifier.weight' differs"),
    "wrong_shape_old_format": (tensor("head.classifier.weight", reshaped, v1=True),
                               r"'head.classifier.weight' has shape \(3, 2\), the spec's graph expects \(3, 4\)"),
    "missing_tensor": (edited(lambda p: p["state_dict"].pop(FIRST)), rf"tensor '{FIRST}' is missing"),
    "missing_tensor_old_format": (edited(lambda p: (p["state_dict"].pop(FIRST), old_format(p))),
                                  rf"do not fit the spec's graph \(missing '{FIRST}'\)"),
    "extra_tensor": (edited(lambda p: p["state_dict"].__setitem__("evil.weight", p["state_dict"][FIRST])),
                     r"tensor 'evil.weight' has no digest"),
    "extra_tensor_old_format": (edited(lambda p: (p["state_dict"].__setitem__("evil.weight", p["state_dict"][FIRST]), old_format(p))),
                                r"not in the spec's graph: 'evil.weight'"),
    "control_chars_in_key": (edited(lambda p: p["state_dict"].__setitem__("\x1b[2Jx", p["state_dict"][FIRST])),
                             r"tensor '\\x1b\[2Jx' has no digest"),
    "string_in_state_dict": (edited(lambda p: p["state_dict"].__setitem__(FIRST, "zeros")),
                             rf"state_dict key '{FIRST}' holds a str, expected a tensor"),
    "int_key_in_state_dict": (edited(lambda p: p["state_dict"].__setitem__(7, p["state_dict"][FIRST])), r"a int key holds a Tensor"),
    "no_state_dict": (drop_key("state_dict"), r"its state_dict is missing"),
    "state_dict_list": (set_key("state_dict", [1, 2]), r"its state_dict is a list"),
    "state_dict_empty": (set_key("state_dict", {}), r"its state_dict is a dict \(empty\)"),
    "no_hash": (drop_key("hash"), r"stored architecture hash is missing"),
    "hash_int": (set_key("hash", 12), r"stored architecture hash is of type int"),
    "hash_other_network": (set_key("hash", "sha256:" + "0" * 64), r"refusing to load weights into a different network"),
    "spec_none": (set_key("spec", None), r"the stored spec is missing, expected a mapping"),
    "spec_int": (set_key("spec", 3), r"the stored spec is of type int, expected a mapping"),
    "spec_list": (set_key("spec", [TINY]), r"the stored spec is of type list"),
    "spec_fifo_path": (spec_names("fifo"), r"the stored spec is a string of \d+ characters, expected a mapping"),
    "spec_yaml_path": (spec_names("yaml"), r"the stored spec is a string of \d+ characters.*never refers to another file"),
    "spec_invalid": (edited(lambda p: p["spec"].__setitem__("classes", "many")), r"the stored spec no longer validates"),
    "spec_other_network": (edited(lambda p: p["spec"].__setitem__("classes", 4)), r"refusing to load weights into a different network"),
    "header_edited": (set_key("resnet_spec_version", "0.0.0-evil"), r"part 'header' differs"),
    "no_format_marker": (drop_key("format"), r"not a resnet-spec PyTorch file"),
    "format_version_99": (set_key("format_version", 99), r"file format version 99 is not supported"),
    "integrity_removed": (drop_key("integrity"), r"its format has integrity digests but the record is missing"),
    "integrity_string": (set_key("integrity", "ok"), r"its integrity record is damaged"),
    "integrity_digest_changed": (edited(lambda p: p["integrity"]["tensors"].__setitem__(FIRST, "sha256:" + "1" * 64)),
                                 rf"tensor '{FIRST}' differs"),
    "integrity_tensors_not_digests": (edited(lambda p: p["integrity"].__setitem__("tensors", {FIRST: 5})),
                                      r"parts and tensors must map names to digests"),
    "not_a_dict": (edited(lambda p: (p.clear(), p.setdefault("x", 1))), r"not a resnet-spec PyTorch file"),
    "empty_file": (raw_bytes(b""), r"not a PyTorch file \(no zip archive inside\)"),
    "text_file": (raw_bytes(b"version: 1\n"), r"not a PyTorch file"),
    "zip_of_nothing": (raw_bytes(b"PK\x05\x06" + bytes(18)), r"not a PyTorch file"),
    "truncated_half": (truncated(0.5), r"not a (loadable|PyTorch model)"),
    "truncated_to_header": (truncated(0.02), r"not a (loadable|PyTorch model)"),
    "zip_bomb": (torch_bomb, r"zip members declare 256\.\d MiB once inflated.*zip bomb.*refused before inflating"),
    "zip_declares_4gib": (torch_declared, r"declare [34]\.\d GiB once inflated \('.*data.pkl'"),
    "legacy_pickle_format": (legacy_format, r"a legacy \(pre-1\.6, non-zip\) PyTorch file"),
    "pickle_calls_os_system": (code_in_pickle, r"not a loadable PyTorch file \(UnpicklingError"),
    "a_directory": (a_directory, r"is a directory, not a PyTorch model file"),
    "a_fifo": (a_fifo, r"not a regular file"),
}


@pytest.mark.torch
@pytest.mark.parametrize("case", sorted(TORCH_CASES))
def test_hostile_pt_is_refused_by_load(case, torch_good, tmp_path, capsys):
    make, match = TORCH_CASES[case]
    path = make(torch_good, tmp_path)
    refused(capsys, ["load", str(path)], match, [tmp_path, torch_good.parent])
    assert not (tmp_path / "pwned").exists()


CONVERTED = ("tensor_value_changed", "tensor_nan", "negative_running_var_old_format", "spec_fifo_path",
             "zip_bomb", "integrity_removed")  # fmt: skip


@pytest.mark.torch
@pytest.mark.keras
@pytest.mark.parametrize("case", CONVERTED)
def test_hostile_pt_is_refused_by_convert(case, torch_good, tmp_path, capsys):
    make, match = TORCH_CASES[case]
    path = make(torch_good, tmp_path)
    refused(capsys, ["convert", str(path), "--to", "keras", "-o", str(tmp_path / "out.keras")], match, [tmp_path])


@pytest.mark.torch
def test_good_pt_loads_with_every_digest_verified(torch_good, capsys):
    code, out, err = run_cli(capsys, ["load", str(torch_good), "--format", "json"])
    assert code == 0, err
    report = json.loads(out)
    assert report["verified"] is True and report["digests"] == "verified" and "warning" not in err


@pytest.mark.torch
def test_old_format_pt_loads_with_a_warning(torch_good, tmp_path, capsys):
    path = edited(old_format)(torch_good, tmp_path)
    code, out, err = run_cli(capsys, ["load", str(path)])
    assert code == 0, err
    assert "warning:" in err and "written without integrity digests; re-save it" in err
    assert "spec hash sha256:" in out and "match their digests" not in out


@pytest.mark.torch
def test_torch_zip_bomb_is_refused_with_little_memory(torch_good, tmp_path):
    """In a fresh process: a 1 GiB bomb is refused with under 64 MiB of peak-RSS growth."""
    path = deflated_bomb(torch_good, tmp_path / "bomb.pt", "tiny/data/999", 1024)
    script = (
        "import resource, sys, resnet_spec_torch.io as io\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "try:\n    io.load(sys.argv[1])\nexcept Exception as exc:\n    print(type(exc).__name__, exc)\n"
        "print('growth_kib', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)\n"
    )
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'backends'}"}
    run = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True, env=env, timeout=120, check=False)
    assert "zip bomb" in run.stdout, run.stdout + run.stderr
    growth = int(run.stdout.split("growth_kib")[1])
    assert growth < 64 * 1024, growth
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss > 0


# ---------------------------------------------------------------------- Keras cases


def member(name: str, change: Callable[[bytes], bytes | None], out: str = "bad.keras") -> Case:
    def make(good: Path, folder: Path) -> Path:
        return rewrite_zip(good, folder / out, lambda n, data: change(data) if n == name else data)

    return make


def meta(change: Callable[[dict], None]) -> Case:
    def edit(data: bytes) -> bytes:
        value = json.loads(data)
        change(value)
        return json.dumps(value).encode()

    return member("resnet_spec.json", edit)


def keras_old_format(value: dict) -> None:
    value["format"] = 1
    value.pop("integrity")


def weights(change: Callable[[object], None]) -> Case:
    """``model.weights.h5`` edited in place with h5py."""

    def edit(data: bytes) -> bytes:
        import io

        import h5py

        buffer = io.BytesIO(data)
        with h5py.File(buffer, "r+") as root:
            change(root)
        return buffer.getvalue()

    return member("model.weights.h5", edit)


def layer_group(root, node: str):
    for key in root["layers"]:
        group = root["layers"][key]
        if "vars" in group and group["vars"].attrs.get("name") == node:
            return group["vars"]
    raise KeyError(node)


def set_var(node: str, index: int, value: Callable[[np.ndarray], np.ndarray]) -> Callable[[object], None]:
    def change(root) -> None:
        variables = layer_group(root, node)
        new = value(variables[str(index)][()])
        del variables[str(index)]
        variables[str(index)] = new

    return change


def both(*changes: Callable) -> Callable:
    def change(value) -> None:
        for one in changes:
            one(value)

    return change


def soft_link(root) -> None:
    variables = layer_group(root, "stem.conv1")
    del variables["0"]
    variables["0"] = __import__("h5py").SoftLink("/layers/dense/vars/0")


def external_link(root) -> None:
    variables = layer_group(root, "stem.conv1")
    del variables["0"]
    variables["0"] = __import__("h5py").ExternalLink("/etc/passwd", "/x")


def extra_layer(root) -> None:
    group = root["layers"].create_group("conv2d_99/vars")
    group.attrs["name"] = "evil.conv"
    group["0"] = np.zeros((1, 1, 3, 4), np.float32)


def duplicate_group(root) -> None:
    root.copy(layer_group(root, "stem.conv1").parent, "layers/conv2d_77")


def keras_spec_names(target: str) -> Case:
    def make(good: Path, folder: Path) -> Path:
        if target == "fifo":
            os.mkfifo(folder / "spec.fifo")
            named = str(folder / "spec.fifo")
        else:
            named = str(folder / "secret.yaml")
            Path(named).write_text("version: 1\nsecret_key_xyz: 1\n")
        return meta(lambda m: m.__setitem__("spec", named))(good, folder)

    return make


def keras_bomb(target: str, mib: int) -> Case:
    def make(good: Path, folder: Path) -> Path:
        return deflated_bomb(good, folder / "bomb.keras", target, mib)

    return make


def keras_declared(target: str) -> Case:
    def make(good: Path, folder: Path) -> Path:
        path = folder / "declared.keras"
        path.write_bytes(good.read_bytes())
        return declare(path, target, 0xFFFFFFF0)

    return make


def keras_raw(data: bytes) -> Case:
    return raw_bytes(data, "bad.keras")


def keras_truncated(fraction: float) -> Case:
    def make(good: Path, folder: Path) -> Path:
        data = good.read_bytes()
        path = folder / "bad.keras"
        path.write_bytes(data[: int(len(data) * fraction)])
        return path

    return make


def keras_dir(good: Path, folder: Path) -> Path:
    path = folder / "model.keras"
    path.mkdir()
    (path / "config.json").write_text("{}")
    return path


def keras_fifo(good: Path, folder: Path) -> Path:
    path = folder / "model.keras"
    os.mkfifo(path)
    return path


def chain(first: Case, second: Case) -> Case:
    def make(good: Path, folder: Path) -> Path:
        step = folder / "step"
        step.mkdir()
        return second(first(good, step), folder)

    return make


def swap_relu_for_tanh(data: bytes) -> bytes:
    assert b'"relu"' in data
    return data.replace(b'"relu"', b'"tanh"')


CONV = "stem.conv1"
KERAS_CASES: dict[str, tuple[Case, str]] = {
    "config_relu_to_tanh": (member("config.json", swap_relu_for_tanh), r"part 'config.json' differs.*damaged or edited"),
    "config_not_json": (member("config.json", lambda d: b"{not json"), r"part 'config.json' differs"),
    "config_removed": (member("config.json", lambda d: None), r"the archive has no config.json"),
    "config_zip_bomb": (keras_bomb("config.json", 128), r"zip members declare 128\.\d MiB.*'config.json'.*zip bomb"),
    "metadata_edited": (member("metadata.json", lambda d: d.replace(b"}", b', "x": 1}')), r"part 'metadata.json' differs"),
    "metadata_removed": (member("metadata.json", lambda d: None), r"part 'metadata.json' is missing"),
    "weights_removed": (member("model.weights.h5", lambda d: None), r"the archive has no model.weights.h5"),
    "weights_not_hdf5": (member("model.weights.h5", lambda d: b"garbage" * 10), r"not readable Keras weights"),
    "weights_zip_bomb": (keras_bomb("model.weights.h5", 128), r"'model.weights.h5': 128\.0 MiB from .*zip bomb"),
    "weights_declare_4gib": (keras_declared("model.weights.h5"), r"declare [34]\.\d GiB once inflated \('model.weights.h5'"),
    "spec_member_declares_4gib": (keras_declared("resnet_spec.json"), r"resnet_spec.json is larger than 1,000,000 bytes"),
    "tensor_value_changed": (weights(set_var(CONV, 0, lambda a: a + 0.5)), rf"tensor '{CONV}/kernel' differs"),
    "tensor_nan": (weights(set_var(CONV, 0, lambda a: np.where(np.arange(a.size).reshape(a.shape) == 1, np.nan, a))),
                   rf"{CONV}/kernel: 1 of 108 values are NaN or infinite"),
    "tensor_inf": (weights(set_var("head.classifier", 1, lambda a: a + np.inf)), r"head.classifier/bias: 3 of 3 values are NaN"),
    "negative_moving_variance": (weights(set_var("stem.norm1", 3, lambda a: -a - 1)),
                                 r"stem.norm1/moving_variance: 4 of 4 running variances are negative"),
    "negative_moving_variance_old_format": (chain(weights(set_var("stem.norm1", 3, lambda a: -a - 1)), meta(keras_old_format)),
                                            r"running variances are negative"),
    "int_weights": (weights(set_var(CONV, 0, lambda a: a.astype(np.int32))), rf"{CONV}/kernel: dtype int32; weights must be"),
    "complex_weights": (weights(set_var(CONV, 0, lambda a: a.astype(np.complex64))), r"dtype complex64; weights must be"),
    "float64_weights": (weights(set_var(CONV, 0, lambda a: a.astype(np.float64))), rf"tensor '{CONV}/kernel' differs"),
    "wrong_shape": (weights(set_var("head.classifier", 0, lambda a: np.zeros((4, 2), np.float32))),
                    r"'head.classifier/kernel' has shape \(4, 2\), the spec's graph expects \(4, 3\)"),
    "variable_removed": (weights(lambda root: layer_group(root, CONV).__delitem__("0")),
                         rf"do not fit the spec's graph \(missing '{CONV}/kernel'\)"),
    "soft_link": (weights(soft_link), r"is a SoftLink; links to other objects or files are not followed"),
    "external_link": (weights(external_link), r"is a ExternalLink; links to other objects or files are not followed"),
    "duplicate_layer_group": (weights(duplicate_group), r"two layer groups hold the weights of 'stem.conv1'"),
    "extra_layer": (weights(extra_layer), r"layer 'evil.conv' holds 1 variables, the spec's graph expects 0"),
    "spec_member_removed": (member("resnet_spec.json", lambda d: None), r"was not saved by resnet-spec \(no resnet_spec.json"),
    "spec_member_not_json": (member("resnet_spec.json", lambda d: b"{"), r"resnet_spec.json is not valid JSON"),
    "spec_member_list": (member("resnet_spec.json", lambda d: b"[]"), r"unsupported resnet_spec.json \(format 'a list'"),
    "spec_member_deep": (member("resnet_spec.json", lambda d: b"[" * 100_000 + b"]" * 100_000), r"nests too deeply"),
    "spec_none": (meta(lambda m: m.__setitem__("spec", None)), r"the stored spec is missing, expected a mapping"),
    "spec_int": (meta(lambda m: m.__setitem__("spec", 5)), r"the stored spec is of type int"),
    "spec_fifo_path": (keras_spec_names("fifo"), r"the stored spec is a string of \d+ characters, expected a mapping"),
    "spec_yaml_path": (keras_spec_names("yaml"), r"the stored spec is a string of \d+ characters"),
    "spec_other_network": (meta(lambda m: m["spec"].__setitem__("classes", 4)), r"architecture hash mismatch"),
    "spec_renamed": (meta(lambda m: m["spec"].__setitem__("name", "renamed")), r"architecture hash mismatch|part 'spec' differs"),
    "no_hash": (meta(lambda m: m.pop("hash")), r"stored architecture hash is missing"),
    "hash_list": (meta(lambda m: m.__setitem__("hash", [])), r"stored architecture hash is of type list"),
    "header_edited": (meta(lambda m: m.__setitem__("resnet_spec_version", "9")), r"part 'header' differs"),
    "format_99": (meta(lambda m: m.__setitem__("format", 99)), r"unsupported resnet_spec.json \(format 99"),
    "integrity_removed": (meta(lambda m: m.pop("integrity")), r"its format has integrity digests but the record is missing"),
    "integrity_wrong_algorithm": (meta(lambda m: m["integrity"].__setitem__("algorithm", "md5")), r"integrity record is damaged"),
    "integrity_part_changed": (meta(lambda m: m["integrity"]["parts"].__setitem__("config.json", "sha256:" + "2" * 64)),
                               r"part 'config.json' differs"),
    "empty_file": (keras_raw(b""), r"not a .keras file \(not a readable zip archive"),
    "text_file": (keras_raw(b"hello"), r"not a .keras file"),
    "truncated_half": (keras_truncated(0.5), r"not a .keras file|cannot be read"),
    "a_directory": (keras_dir, r"is a directory, not a .keras file"),
    "a_fifo": (keras_fifo, r"not a regular file"),
}


@pytest.mark.keras
@pytest.mark.parametrize("case", sorted(KERAS_CASES))
def test_hostile_keras_is_refused_by_load(case, keras_good, tmp_path, capsys):
    make, match = KERAS_CASES[case]
    path = make(keras_good, tmp_path)
    refused(capsys, ["load", str(path)], match, [tmp_path, keras_good.parent])


KERAS_CONVERTED = ("config_relu_to_tanh", "tensor_nan", "spec_fifo_path", "weights_zip_bomb", "integrity_removed")


@pytest.mark.keras
@pytest.mark.torch
@pytest.mark.parametrize("case", KERAS_CONVERTED)
def test_hostile_keras_is_refused_by_convert(case, keras_good, tmp_path, capsys):
    make, match = KERAS_CASES[case]
    path = make(keras_good, tmp_path)
    refused(capsys, ["convert", str(path), "--to", "torch", "-o", str(tmp_path / "out.pt")], match, [tmp_path])


@pytest.mark.keras
def test_keras_bomb_member_is_never_inflated(keras_good, tmp_path, monkeypatch):
    """The bomb fails before its member is opened: zipfile.ZipFile.open never sees it."""
    from resnet_spec.backends import BackendError

    path = deflated_bomb(keras_good, tmp_path / "bomb.keras", "model.weights.h5", 128)
    opened: list[str] = []
    real_open = zipfile.ZipFile.open

    def spy(self, name, *args, **kwargs):
        opened.append(name if isinstance(name, str) else name.filename)
        return real_open(self, name, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "open", spy)
    with pytest.raises(BackendError, match="zip bomb"):
        get_backend("keras").load(path)
    assert "model.weights.h5" not in opened and opened == ["resnet_spec.json"]


@pytest.mark.keras
def test_good_keras_loads_with_every_digest_verified(keras_good, capsys):
    code, out, err = run_cli(capsys, ["load", str(keras_good)])
    assert code == 0, err
    assert "4 parts and 17 tensors match their digests" in out and "warning" not in err


@pytest.mark.keras
def test_old_format_keras_loads_with_a_warning_and_from_its_spec(keras_good, tmp_path, capsys):
    """A format-1 file has no digests: it loads (with a warning), and its network comes from the
    verified spec, so a config.json that swaps relu for tanh changes nothing."""
    old = meta(keras_old_format)(keras_good, tmp_path)
    path = rewrite_zip(old, tmp_path / "tanh.keras", lambda n, d: swap_relu_for_tanh(d) if n == "config.json" else d)
    code, _out, err = run_cli(capsys, ["load", str(path)])
    assert code == 0, err
    assert "written without integrity digests; re-save it" in err
    backend = get_backend("keras")
    model, _ = backend.load(path)
    reference, _ = backend.load(keras_good)
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 3)).astype(np.float32)
    np.testing.assert_array_equal(model(x, training=False).numpy(), reference(x, training=False).numpy())
    activations = [layer.get_config().get("activation") for layer in model.layers if "act" in layer.name]
    assert activations and set(activations) == {"relu"}


@pytest.mark.torch
def test_saving_refuses_what_loading_would_refuse(tmp_path):
    import torch

    arch = build_architecture(TINY)
    backend = get_backend("torch")
    model = backend.build(arch, seed=0)
    with torch.no_grad():
        model.get_submodule("stem.norm1").running_var.fill_(-1.0)
    from resnet_spec.backends import BackendError

    with pytest.raises(BackendError, match="stem.norm1.running_var: 4 of 4 running variances are negative"):
        backend.save(model, arch, TINY, tmp_path / "bad.pt")
    assert list(tmp_path.iterdir()) == []
