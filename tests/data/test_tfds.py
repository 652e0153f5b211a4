"""The tensorflow-datasets source on a dataset built here, in the test's temp dir (the
`tfds` extra installs the package; nothing is downloaded)."""

import numpy as np
import pytest
import tensorflow as tf

from tfkit.config import DataConfig
from tfkit.data import build
from tfkit.errors import UserError

tfds = pytest.importorskip("tensorflow_datasets", reason="the `tfds` extra is not installed")

COUNT = 40


def _image(i: int) -> np.ndarray:
    """Example i: an 8x8 grey image whose every pixel is 6 * i (so the value names it)."""
    return np.full((8, 8, 1), 6 * i, np.uint8)


class TfkitTinyImages(tfds.core.GeneratorBasedBuilder):
    """40 8x8 grey images, labelled i % 3, generated in memory (no download)."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(8, 8, 1)),
                    "label": tfds.features.ClassLabel(names=["a", "b", "c"]),
                }
            ),
            supervised_keys=("image", "label"),
        )

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples()}

    def _generate_examples(self):
        for i in range(COUNT):
            yield i, {"image": _image(i), "label": i % 3}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tfds")
    TfkitTinyImages(data_dir=str(path)).download_and_prepare()
    return str(path)


def _cfg(source, **kw):
    return DataConfig.model_validate({"source": source, "batch_size": 8, **kw})


def test_tfds_dataset_in_data_dir_is_read_with_its_spec(data_dir):
    source = {"kind": "tfds", "name": "tfkit_tiny_images", "data_dir": data_dir}
    splits = build(_cfg(source, split={"train": 0.5, "val": 0.25, "test": 0.25, "seed": 0}))
    spec = splits.spec
    assert (spec.task, spec.num_classes) == ("multiclass", 3)
    assert spec.class_names == ("a", "b", "c")
    assert spec.inputs[0].shape == (8, 8, 1)
    assert sum(spec.counts.values()) == COUNT
    seen = []
    for split in (splits.train, splits.val, splits.test):
        for x, y in split:
            assert x.dtype == tf.float32 and x.shape[1:] == (8, 8, 1)
            # every pixel names its example: value 6 * i scaled to [0, 1], label i % 3
            index = np.rint(x.numpy()[:, 0, 0, 0] * 255.0 / 6.0).astype(int)
            np.testing.assert_array_equal(y.numpy(), index % 3)
            assert np.all(x.numpy() == x.numpy()[:, :1, :1, :])
            seen.extend(index.tolist())
    assert sorted(seen) == list(range(COUNT))  # every example once across the splits


def test_tfds_unknown_split_names_the_dataset_and_data_dir(data_dir):
    source = {"kind": "tfds", "name": "tfkit_tiny_images", "data_dir": data_dir, "split": "nope"}
    with pytest.raises(UserError, match=r"tfds dataset `tfkit_tiny_images` \(split 'nope'\)"):
        build(_cfg(source))


def test_tfds_missing_package_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "tensorflow_datasets", None)
    with pytest.raises(UserError, match=r"kind: tfds` needs the tensorflow-datasets package"):
        build(_cfg({"kind": "tfds", "name": "mnist"}))
