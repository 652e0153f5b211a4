"""What a dataset looks like to a model: the contract between `tfkit.data` and `tfkit.models`.

The data building block describes its examples with a `DataSpec`; model builders read it to
size their inputs and output head. Neither side imports the other. No TensorFlow here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Task = Literal["binary", "multiclass", "regression"]


@dataclass(frozen=True)
class InputSpec:
    """One model input: its name, per-example shape (no batch dimension) and dtype.

    `feature` is the stored feature it reads when that name is not a valid Keras name
    (a TFRecord's `image/encoded` feeds the input `image_encoded`).
    """

    name: str
    shape: tuple[int | None, ...]
    dtype: str = "float32"
    feature: str | None = None


@dataclass(frozen=True)
class DataSpec:
    """The shape of a dataset's examples.

    Elements of the batched datasets are `(x, y)` or `(x, y, sample_weight)`; `x` is a tensor
    when there is one input and a dict `{name: tensor}` (ordered as `inputs`) when there are
    several.

    Attributes:
        inputs: one `InputSpec` per model input.
        task: `binary` (labels 0/1), `multiclass` (integer labels 0..num_classes-1, or one-hot
            when `one_hot`), or `regression` (float targets of `label_shape`).
        num_classes: number of classes for classification, else None.
        label_shape: per-example label shape (`()` for integer labels).
        one_hot: labels are one-hot vectors of length `num_classes`.
        has_sample_weight: elements carry a third `sample_weight` component.
        counts: number of examples per split (`train`, `val`, `test`) where known.
        class_names: class names where known (image folders, shapes).
        normalization: per input name, the affine map `data.normalize` applies to its float
            values (`{"scale": [...], "offset": [...]}`, per feature or one value; 8-bit
            inputs are divided by 255 first), so `tfkit predict` can take raw inputs.
    """

    inputs: tuple[InputSpec, ...]
    task: Task
    num_classes: int | None = None
    label_shape: tuple[int, ...] = ()
    one_hot: bool = False
    has_sample_weight: bool = False
    counts: dict[str, int] = field(default_factory=dict)
    class_names: tuple[str, ...] | None = None
    normalization: dict[str, dict[str, list[float]]] | None = None

    @property
    def multi_input(self) -> bool:
        """Whether the model takes several named inputs (x is a dict)."""
        return len(self.inputs) > 1

    @property
    def output_units(self) -> int:
        """Units of the default output layer for this task."""
        if self.task == "binary":
            return 1
        if self.task == "multiclass":
            return int(self.num_classes or 0)
        return int(self.label_shape[-1]) if self.label_shape else 1

    @property
    def output_activation(self) -> str:
        """Activation of the default output layer for this task."""
        return {"binary": "sigmoid", "multiclass": "softmax", "regression": "linear"}[self.task]
