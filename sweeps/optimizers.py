"""Optimizers — the S0 CNN written in Flax x {Adam, AdamW, Nadam, Lion, SGD+Nesterov} x 3 rates.

Command::

    python -m jaxmnist.sweep sweeps/optimizers.py                       # full, MNIST
    python -m jaxmnist.sweep sweeps/optimizers.py --config.data.name=fashion_mnist  # full, F-MNIST
    python -m jaxmnist.sweep sweeps/optimizers.py --preset cpu          # CPU-sized, MNIST
    python -m jaxmnist.sweep sweeps/optimizers.py --preset cpu_fashion  # CPU-sized, Fashion-MNIST
    python -m jaxmnist.sweep sweeps/optimizers.py --quick               # smoke-sized

Not a reproduction: a showcase of what the grid opens up. The model is the S0/S1 CNN written as
a Flax linen module (``jaxmnist/models/flax_examples.py``, 225,034 parameters, S1's dropout
0.25/0.5); five optax optimizers, each at three learning rates around its usual default (Lion
wants ~10x smaller steps than Adam, SGD ~30x larger), all with a linear warm-up then cosine decay
to 0 over the run (``optax.warmup_cosine_decay_schedule``) and global-norm clipping at 1.0, on
the full 60k/10k split with a 10% Keras-style validation tail. All 15 members of a seed train as
ONE compiled program (five optimizer families, per-member learning rates).

Expected accuracy and runtime:
- full (10 epochs on 54,000 images, 3 seeds = 45 members): not run (on the 2-core CPU at the
  measured ~450 img/s under load that is ~15 h; it wants a GPU).
- cpu (2 epochs on 12,000 images, 1 seed), 2-core CPU at load ~16, 2026-11-30: 1,210 s wall
  (compile 75 s); test accuracy on the first 5,000 test images 0.956-0.958 for the Adam family at
  3e-3, 0.948 SGD+Nesterov 0.1, 0.878 Lion 3e-4. cpu_fashion: 985 s wall (compile 32 s); Nadam
  3e-3 0.826, Adam/AdamW 3e-3 0.820/0.821, SGD+Nesterov 0.1 0.795, Lion 3e-4 0.746
  (figures/optimizers/README.md).
"""

import ml_collections

FLAX_CNN = "jaxmnist.models.flax_examples:linen_cnn"
# Three learning rates per optimizer, centred on its usual default.
RATES = {
    "adam": (3e-4, 1e-3, 3e-3),
    "adamw": (3e-4, 1e-3, 3e-3),
    "nadam": (3e-4, 1e-3, 3e-3),
    "lion": (3e-5, 1e-4, 3e-4),
    "nesterov": (0.01, 0.03, 0.1),
}


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.study = "optimizers"
    c.title = ("Optimizers: Flax S0 CNN x {Adam, AdamW, Nadam, Lion, SGD+Nesterov} x 3 learning "
               "rates, warm-up + cosine, clip 1.0")
    c.data = dict(split="keras", val_fraction=0.1, seed=0)
    c.base = dict(
        model=dict(name=FLAX_CNN, dropout=[0.25, 0.5]),
        optim=dict(name="adam", learning_rate=1e-3, clip_norm=1.0,
                   schedule=dict(name="warmup_cosine", warmup_steps=200, end_value=0.0)),
        train=dict(epochs=10, batch_size=128),
    )
    c.experiments = [dict(
        name="main",
        title=c.title,
        points=[dict(label=f"{name} {lr:g}",
                     set={"optim.name": name, "optim.learning_rate": lr})
                for name, rates in RATES.items() for lr in rates],
    )]
    c.seeds = 3
    # cpu: 12,000 training images (first of the 54,000), 2 epochs = 188 steps of 128 with a
    # 20-step warm-up, full validation tail and test set; cpu_fashion: the same on Fashion-MNIST.
    cpu = dict(data=dict(train_limit=12_000, val_limit=2_000, test_limit=5_000),
               base=dict(train=dict(epochs=2),
                         optim=dict(schedule=dict(warmup_steps=20))),
               seeds=1)
    c.presets = dict(
        quick=dict(data=dict(train_limit=1_024, val_limit=256, test_limit=512),
                   base=dict(train=dict(epochs=1), optim=dict(schedule=dict(warmup_steps=2))),
                   seeds=1),
        cpu=cpu,
        cpu_fashion=dict(cpu, data=dict(cpu["data"], name="fashion_mnist")),
    )
    return c
