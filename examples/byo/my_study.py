"""Bring your own model, optimizer and dataset: a study that uses all three.

Command (from anywhere; the model file is found next to this study file)::

    python -m jaxmnist.sweep examples/byo/my_study.py --preset quick
"""

from pathlib import Path

import ml_collections

MODEL = f"{Path(__file__).with_name('my_nets.py')}:make_mlp"


def get_config() -> ml_collections.ConfigDict:
    """The study: one Flax model, three optimizer families, one compiled program."""
    c = ml_collections.ConfigDict()
    c.study = "byo"
    c.title = "Bring your own: a Flax MLP x {AdamW, Lion, SGD+Nesterov}, warm-up + cosine"
    # data.name: mnist, fashion_mnist or kmnist (IDX files or TFDS, see docs/byo.md); a key
    # left out takes its default (jaxmnist.data.DATA_DEFAULTS: no data slice, source auto)
    c.data = dict(name="mnist", split="keras", val_fraction=0.1, seed=0)
    c.base = dict(
        model=dict(name=MODEL, width=128, dropout=0.2),
        # any optimizer in jaxmnist.engine.optim.OPTIMIZERS with its optax hyperparameters; a key
        # here must be valid for every optimizer the points below select
        optim=dict(name="adamw", learning_rate=3e-3, clip_norm=1.0,
                   schedule=dict(name="warmup_cosine", warmup_steps=50)),
        reg=dict(l1=0.0, l2=0.0),
        loss="xent",
        train=dict(epochs=3, batch_size=128),
    )
    c.experiments = [dict(name="main", title=c.title, points=[
        dict(label="adamw 3e-3", set={"optim.name": "adamw", "optim.learning_rate": 3e-3}),
        dict(label="lion 1e-3", set={"optim.name": "lion", "optim.learning_rate": 1e-3}),
        dict(label="nesterov 0.05", set={"optim.name": "nesterov", "optim.learning_rate": 0.05}),
    ])]
    c.seeds = 2
    c.presets = dict(quick=dict(data=dict(train_limit=2_048, val_limit=512, test_limit=1_000),
                                base=dict(train=dict(epochs=1),
                                          optim=dict(schedule=dict(warmup_steps=4))),
                                seeds=1))
    return c
