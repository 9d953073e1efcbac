"""Hostile and damaged files given to the importer: each is refused with a one-line
WeightsImportError (a BackendError) before anything it declares is allocated or any code in it
runs, and the CLI exits 1 with one line and no traceback (docs/threat-model.md, "Imported
weights")."""

from __future__ import annotations

import json
import struct
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from import_helpers import random_weights, tiny, torchvision_state_dict, write_keras3_weights

from resnet_spec.cli import main
from resnet_spec.importing import WeightsImportError, import_weights

FOUR_GIB = 0xFFFFFFFE


def refused(source: Any, match: str) -> str:
    start = time.process_time()
    with pytest.raises(WeightsImportError, match=match) as info:
        import_weights(tiny(), source)
    assert time.process_time() - start < 5  # refused up front, not after reading gigabytes
    message = str(info.value)
    assert "\n" not in message and len(message) < 600
    return message


def declare(path: Path, suffix: str, size: int) -> None:
    """Rewrite the central-directory entry of the zip member ending in ``suffix`` to declare
    ``size`` uncompressed bytes (a zip bomb's lie)."""
    data = bytearray(path.read_bytes())
    position = data.find(b"PK\x01\x02")
    found = False
    while position != -1:
        length = struct.unpack_from("<H", data, position + 28)[0]
        name = bytes(data[position + 46 : position + 46 + length]).decode()
        if name.endswith(suffix):
            struct.pack_into("<I", data, position + 24, size)
            found = True
        position = data.find(b"PK\x01\x02", position + 46)
    assert found, suffix
    path.write_bytes(bytes(data))


def state(**changes: np.ndarray) -> dict[str, np.ndarray]:
    values = torchvision_state_dict(random_weights(tiny()))
    values.update(changes)
    return values


# ---------------------------------------------------------------------- PyTorch files


@pytest.fixture
def torch_module() -> Any:
    return pytest.importorskip("torch")


class _Payload:
    """Unpickling calls open(marker, "w"): code from the file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return open, (str(self.marker), "w")


@pytest.mark.torch
def test_pytorch_files(torch_module: Any, tmp_path: Path) -> None:
    torch = torch_module
    tensors = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state().items()}
    good = tmp_path / "good.pth"
    torch.save(tensors, good)
    assert import_weights(tiny(), good).weights

    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    refused(truncated, r"truncated\.pth: a damaged zip archive \(not a readable zip archive")

    marker = tmp_path / "code-ran"
    evil = tmp_path / "evil.pth"
    torch.save({"conv1.weight": _Payload(marker)}, evil)
    refused(evil, r"evil\.pth: not a loadable PyTorch file \(UnpicklingError: Weights only load failed")
    assert not marker.exists()

    for name, value, match in [
        (
            "nan",
            tensors["conv1.weight"].clone().fill_(float("nan")),
            r"conv1\.weight: 216 of 216 values are NaN or infinite",
        ),
        (
            "int8",
            tensors["conv1.weight"].to(torch.int8),
            r"conv1\.weight: dtype int8; weights must be float16, bfloat16",
        ),
        ("complex", tensors["conv1.weight"].to(torch.complex64), r"conv1\.weight: dtype complex64"),
        ("float8", tensors["conv1.weight"].to(torch.float8_e4m3fn), r"conv1\.weight: dtype torch\.float8_e4m3fn"),
    ]:
        path = tmp_path / f"{name}.pth"
        torch.save({**tensors, "conv1.weight": value}, path)
        refused(path, match)

    bomb = tmp_path / "bomb.pth"
    torch.save(tensors, bomb)
    declare(bomb, "data/0", FOUR_GIB)  # a storage that would inflate to 4 GiB
    refused(bomb, r"bomb\.pth: declares 4,096\.0 MiB of tensors, more than this spec's import limit")

    for payload, match in [([1, 2, 3], r"holds a list, not a state dict"),
                           ({"epoch": 3, "optimizer": {}}, r"not a state dict \(key 'epoch' holds a int")]:  # fmt: skip
        path = tmp_path / "other.pth"
        torch.save(payload, path)
        refused(path, match)
    checkpoint = tmp_path / "checkpoint.pth"
    torch.save({"epoch": 3, "state_dict": tensors}, checkpoint)  # a training checkpoint's state dict is found
    assert import_weights(tiny(), checkpoint).weights

    legacy = tmp_path / "legacy.pth"
    torch.save(tensors, legacy, _use_new_zipfile_serialization=False)
    refused(legacy, r"a legacy \(pre-1\.6, non-zip\) PyTorch file, whose sizes cannot be checked before loading")


@pytest.mark.torch
def test_an_edited_resnet_spec_pt_file_is_refused(torch_module: Any, tmp_path: Path) -> None:
    from resnet_spec.backends import get_backend

    backend, arch = get_backend("torch"), tiny()
    path = tmp_path / "tiny.pt"
    backend.save(backend.build(arch), arch, arch.spec.model_dump(mode="json", exclude_none=True), path)
    payload = torch_module.load(path, weights_only=True)
    payload["spec"]["classes"] = 6  # the stored spec no longer gives the stored hash
    torch_module.save(payload, path)
    refused(path, r"the stored spec compiles to architecture sha256:\w+, the weights were saved for sha256:\w+")


# ---------------------------------------------------------------------- safetensors


def test_safetensors_files(tmp_path: Path) -> None:
    from safetensors.numpy import save_file

    good = tmp_path / "good.safetensors"
    save_file({k: np.ascontiguousarray(v) for k, v in state().items() if v.ndim}, str(good))
    assert import_weights(tiny(), good).weights

    huge_header = tmp_path / "header.safetensors"
    huge_header.write_bytes(struct.pack("<Q", 2**40) + b"{}")
    refused(huge_header, r"declares a 1,099,511,627,776-byte header \(limit 16,777,216\)")

    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(good.read_bytes()[:1000])
    refused(truncated, r"truncated \(its header needs [\d,]+ bytes, the file has 1,000\)")

    header = json.dumps(
        {"conv1.weight": {"dtype": "F32", "shape": [10**6, 10**6], "data_offsets": [0, 4 * 10**12]}}
    ).encode()
    lying = tmp_path / "lying.safetensors"
    lying.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 64)
    refused(lying, r"lying\.safetensors: not a readable safetensors file")

    for name, value, match in [
        ("nan", np.full((8, 3, 3, 3), np.inf, np.float32), r"conv1\.weight: 216 of 216 values are NaN or infinite"),
        ("int32", np.ones((8, 3, 3, 3), np.int32), r"conv1\.weight: dtype I32; weights must be"),
    ]:
        path = tmp_path / f"{name}.safetensors"
        save_file(
            {k: np.ascontiguousarray(v) for k, v in state(**{"conv1.weight": value}).items() if v.ndim}, str(path)
        )
        refused(path, match)


# ---------------------------------------------------------------------- Keras HDF5 and .keras


def test_keras_weight_files(tmp_path: Path) -> None:
    import h5py

    weights = random_weights(tiny())
    good = tmp_path / "good.weights.h5"
    write_keras3_weights(good, weights)
    assert import_weights(tiny(), good).weights

    bomb = tmp_path / "bomb.weights.h5"
    write_keras3_weights(bomb, weights)
    with h5py.File(bomb, "a") as f:  # 400 GB declared, a few kB on disk: compressed chunks never written
        del f["layers/conv2d/vars/0"]
        f["layers/conv2d/vars"].create_dataset(
            "0", shape=(10**6, 10**5), dtype="f4", chunks=(1, 1000), compression="gzip"
        )
    refused(bomb, r"bomb\.weights\.h5: declares 381,469\.8 MiB of tensors, more than this spec's import limit")

    linked = tmp_path / "linked.weights.h5"
    write_keras3_weights(linked, weights)
    with h5py.File(linked, "a") as f:
        del f["layers/conv2d/vars/0"]
        f["layers/conv2d/vars/0"] = h5py.ExternalLink("/etc/passwd", "/secret")
    refused(linked, r"/layers/conv2d/vars/0 is a ExternalLink; links to other objects or files are not followed")

    for name, change, match in [
        ("int", lambda v: v.astype(np.int32), r"conv1_conv/kernel: dtype int32; weights must be"),
        ("nan", lambda v: np.full_like(v, np.nan), r"conv1_conv/kernel: 216 of 216 values are NaN or infinite"),
    ]:
        path = tmp_path / f"{name}.weights.h5"
        write_keras3_weights(path, {**weights, "stem.conv1": {"kernel": change(weights["stem.conv1"]["kernel"])}})
        refused(path, match)

    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(good.read_bytes()[:2000])
    refused(truncated, r"truncated\.h5: not a readable Keras weights file")

    archive = tmp_path / "bomb.keras"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("config.json", "{}")
        z.write(good, "model.weights.h5")
    declare(archive, "model.weights.h5", FOUR_GIB)
    refused(archive, r"bomb\.keras: declares 4,096\.0 MiB of tensors")


def test_files_of_no_known_kind(tmp_path: Path) -> None:
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    refused(empty, r"empty\.pth: not a weights file this importer reads")
    text = tmp_path / "notes.h5"
    text.write_text("not weights at all\n")
    refused(text, r"notes\.h5: not a weights file this importer reads")
    refused(tmp_path / "missing.pth", r"missing\.pth: no such file")
    archive = tmp_path / "other.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("readme.txt", "hello")
    refused(archive, r"a zip archive that is neither a PyTorch file nor a Keras \.keras file")


@pytest.mark.torch
def test_the_cli_refuses_with_one_line_and_exit_1(
    torch_module: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    evil = tmp_path / "evil.pth"
    torch_module.save({"conv1.weight": _Payload(tmp_path / "code-ran")}, evil)
    spec = tmp_path / "tiny.yaml"
    from import_helpers import TINY

    spec.write_text(TINY)
    code = main(["import-weights", str(spec), str(evil), "-o", str(tmp_path / "out.pt")])
    err = capsys.readouterr().err
    assert code == 1
    assert err.count("\n") == 1 and err.startswith(f"error: {evil}: not a loadable PyTorch file (UnpicklingError")
    assert "Traceback" not in err and not (tmp_path / "out.pt").exists() and not (tmp_path / "code-ran").exists()
