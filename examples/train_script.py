"""Train from a tfkit config in your own script, calling `model.fit` yourself.

python examples/train_script.py configs/digits_cnn.yaml [--set train.epochs=3 ...]
"""

import sys

import tfkit

config = tfkit.load_config(sys.argv[1], [a for a in sys.argv[2:] if a != "--set"])
tfkit.distribute.setup_runtime(config.runtime)
strategy = tfkit.distribute.strategy(config.runtime)
splits = tfkit.data.build(config.data, seed=config.runtime.seed)
with strategy.scope():
    model = tfkit.models.build(config.model, splits.spec)
    tfkit.training.compile_model(model, config.train, splits.spec, config.runtime)
model.summary()
callbacks = tfkit.training.build_callbacks(
    config.train, "runs/train_script", batch_size=config.data.batch_size
)
model.fit(splits.train, validation_data=splits.val, epochs=config.train.epochs, callbacks=callbacks)
print("test:", model.evaluate(splits.test, return_dict=True, verbose=0))
