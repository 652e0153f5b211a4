"""Shared fixtures of the data tests: small files written once per session."""

import numpy as np
import pytest
from PIL import Image


def write_image_folder(root, classes=("cat", "dog"), per_class=4, size=(20, 12), bad=None):
    """One subfolder per class of random PNGs; `bad` adds an undecodable file to a class."""
    rng = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            arr = rng.integers(0, 255, (size[0] + i, size[1], 3), dtype=np.uint8)
            Image.fromarray(arr).save(root / c / f"{i}.png")
    if bad:
        (root / bad / "broken.png").write_bytes(b"this is not a png")
    return root


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory):
    """A two-class image folder with one undecodable file in `dog`."""
    return write_image_folder(tmp_path_factory.mktemp("images"), bad="dog")


@pytest.fixture(scope="session")
def id_arrays():
    """100 examples whose feature 0 is the example id, with 3-class labels."""
    rng = np.random.default_rng(1)
    ids = np.arange(100, dtype=np.float32)
    x = np.stack([ids, rng.normal(size=100).astype(np.float32)], axis=1)
    y = (np.arange(100) % 3).astype(np.int64)
    return x, y


@pytest.fixture(scope="session")
def id_records(tmp_path_factory, id_arrays):
    """The id arrays as 4 TFRecord shards with a schema."""
    from tfkit.data.tfrecord import write_tfrecords

    out = tmp_path_factory.mktemp("records")
    x, y = id_arrays
    write_tfrecords(
        {"x": x, "label": y}, out, num_shards=4,
        meta={"label": "label", "task": "multiclass", "num_classes": 3},
    )  # fmt: skip
    return out
