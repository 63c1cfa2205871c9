"""Steps (subprocesses) that build the small models of the shape tests, as users build them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def keras_two_in_two_out(path: str, samples: str) -> dict[str, Any]:
    """Keras functional model: ``image`` [-1, 6, 6, 1], ``meta`` [-1, 3] -> ``digit`` [-1, 4], ``score`` [-1, 1]."""
    import keras

    keras.utils.set_random_seed(0)
    image = keras.Input((6, 6, 1), name="image")
    meta = keras.Input((3,), name="meta")
    features = keras.layers.Flatten()(keras.layers.Conv2D(4, 3, activation="relu")(image))
    joined = keras.layers.Concatenate()([features, meta])
    # Every weight tensor stays under 1024 elements (TFLite's int8 threshold), the total does not.
    hidden = keras.layers.Dense(15, activation="relu")(keras.layers.Dense(15, activation="relu")(joined))
    digit = keras.layers.Dense(4, activation="softmax", name="digit")(hidden)
    score = keras.layers.Dense(1, name="score")(hidden)
    keras.Model([image, meta], [digit, score]).save(path)
    rng = np.random.default_rng(0)
    np.savez(samples, image=rng.random((40, 6, 6, 1), dtype=np.float32), meta=rng.random((40, 3), dtype=np.float32))
    return {}


def keras_uint8_bn_dropout(path: str, samples: str) -> dict[str, Any]:
    """Keras model on uint8 images with Rescaling, BatchNorm and Dropout (inference mode must be used)."""
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1), dtype="uint8", name="pixels"),
            keras.layers.Rescaling(1 / 255),
            keras.layers.Conv2D(4, 3, activation="relu"),
            keras.layers.BatchNormalization(),
            keras.layers.Flatten(),
            keras.layers.Dropout(0.5),
            keras.layers.Dense(3, activation="softmax", name="probs"),
        ]
    )
    model.compile("adam", "sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (64, 8, 8, 1)).astype(np.uint8)
    model.fit(x, rng.integers(0, 3, 64), epochs=1, verbose=0)
    model.save(path)
    np.save(samples, x[:40])
    return {}


def torch_models(folder: str) -> dict[str, Any]:
    """PyTorch sources (.pt2): a 2-D-input MLP, a two-input tuple-output net, a dict-output net, LSTM, GRU."""
    import torch
    from torch import nn

    from converters.torch2exportedprogram import export_module
    from gateway.core.types import TensorSpec

    torch.manual_seed(0)

    class Mlp(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Sequential(nn.Linear(5, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.3), nn.Linear(8, 3))

        def forward(self, features: torch.Tensor) -> torch.Tensor:
            return torch.softmax(self.net(features), dim=1)

    class TwoInTuple(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            # Submodules not named like the inputs: torch.export.load trips over `meta` vs `meta.weight`.
            self.conv = nn.Conv2d(1, 2, 3)
            self.dense = nn.Linear(3, 4)

        def forward(self, image: torch.Tensor, meta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            pooled = self.conv(image).mean(dim=(2, 3))
            return torch.softmax(self.dense(meta), dim=1), pooled

    class DictOut(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = nn.Linear(4, 3)

        def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
            logits = self.linear(x)
            return {"probs": torch.softmax(logits, dim=1), "logits": logits}

    class Recurrent(nn.Module):
        def __init__(self, cell: type[nn.Module]) -> None:
            super().__init__()
            self.rnn = cell(input_size=3, hidden_size=5, batch_first=True)
            self.head = nn.Linear(5, 2)

        def forward(self, sequence: torch.Tensor) -> torch.Tensor:
            out, _ = self.rnn(sequence)
            last: torch.Tensor = self.head(out[:, -1])
            return last

    out = Path(folder)
    export_module(Mlp().eval(), [TensorSpec("features", "FP32", (-1, 5))], out / "mlp.pt2")
    export_module(
        TwoInTuple().eval(),
        [TensorSpec("image", "FP32", (-1, 1, 6, 6)), TensorSpec("meta", "FP32", (-1, 3))],
        out / "two_in_tuple.pt2",
    )
    export_module(DictOut().eval(), [TensorSpec("x", "FP32", (-1, 4))], out / "dict_out.pt2")
    export_module(Recurrent(nn.LSTM).eval(), [TensorSpec("sequence", "FP32", (-1, 7, 3))], out / "lstm.pt2")
    export_module(Recurrent(nn.GRU).eval(), [TensorSpec("sequence", "FP32", (-1, 7, 3))], out / "gru.pt2")
    return {}


def source_outputs(path: str, kind: str, inputs: str, output: str) -> dict[str, Any]:
    """The source model's own answers on ``inputs`` (.npz keyed by input name), loaded as its author would.

    Saved to ``output`` as ``0``, ``1``, ... in the model's output order; returns the keys of a dict output.
    These test files are our own: loaded directly, not through the converters.
    """
    arrays = dict(np.load(inputs))
    if kind == "keras":
        import keras

        model = keras.saving.load_model(path, compile=False)
        ordered = [arrays[t.name.split(":")[0]] for t in model.inputs]
        result: Any = model(ordered if len(ordered) > 1 else ordered[0], training=False)
        values = [np.asarray(v) for v in (result if isinstance(result, list | tuple) else [result])]
        keys: list[str] = []
    else:
        import torch

        program = torch.export.load(path)
        names = [s.arg.name for s in program.graph_signature.input_specs if s.kind.name == "USER_INPUT"]
        with torch.no_grad():
            result = program.module()(*(torch.from_numpy(arrays[n]) for n in names))
        keys = [str(k) for k in result] if isinstance(result, dict) else []
        items = list(result.values()) if isinstance(result, dict) else result
        values = [t.numpy() for t in (items if isinstance(items, list | tuple) else [items])]
    named: dict[str, Any] = {str(i): v for i, v in enumerate(values)}
    np.savez(output, **named)
    return {"keys": keys}


def keras_recurrent(path: str, samples: str, cell: str) -> dict[str, Any]:
    """Keras sequence model: ``sequence`` [-1, 7, 3] -> LSTM or GRU(5) -> Dense(2) ``scores``."""
    import keras

    keras.utils.set_random_seed(0)
    layer = {"lstm": keras.layers.LSTM, "gru": keras.layers.GRU}[cell]
    sequence = keras.Input((7, 3), name="sequence")
    scores = keras.layers.Dense(2, name="scores")(layer(5)(sequence))
    keras.Model(sequence, scores).save(path)
    np.save(samples, np.random.default_rng(0).random((24, 7, 3), dtype=np.float32))
    return {}


def torch_resnet(path: str, samples: str) -> dict[str, Any]:
    """A ResNet-like CNN (BasicBlocks 32-64-128-256, BatchNorm, 2.8M parameters) on [-1, 3, 16, 16] images."""
    import torch
    from torch import nn

    from converters.torch2exportedprogram import export_module
    from gateway.core.types import TensorSpec

    torch.manual_seed(0)

    class Block(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int) -> None:
            super().__init__()
            self.conv1, self.bn1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)
            self.conv2, self.bn2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
            self.skip: nn.Module = nn.Identity()
            if stride != 1 or cin != cout:
                self.skip = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = torch.relu(self.bn1(self.conv1(x)))
            return torch.relu(self.bn2(self.conv2(y)) + self.skip(x))

    class ResNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 32, 3, 1, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU())
            widths = [(32, 32, 1), (32, 32, 1), (32, 64, 2), (64, 64, 1), (64, 128, 2), (128, 128, 1),
                      (128, 256, 2), (256, 256, 1)]  # fmt: skip
            self.blocks = nn.Sequential(*(Block(*w) for w in widths))
            self.head = nn.Linear(256, 10)

        def forward(self, image: torch.Tensor) -> torch.Tensor:
            features = self.blocks(self.stem(image)).mean(dim=(2, 3))
            return torch.softmax(self.head(features), dim=1)

    model = ResNet()
    with torch.no_grad():  # non-trivial BatchNorm statistics, as after training
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d) and module.running_mean is not None:
                module.running_mean.uniform_(-0.1, 0.1)
                assert module.running_var is not None
                module.running_var.uniform_(0.5, 1.5)
    export_module(model.eval(), [TensorSpec("image", "FP32", (-1, 3, 16, 16))], Path(path))
    np.save(samples, np.random.default_rng(0).random((8, 3, 16, 16), dtype=np.float32))
    return {"parameters": sum(p.numel() for p in model.parameters())}
