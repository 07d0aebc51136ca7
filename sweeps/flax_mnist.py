"""flax_mnist — Flax's own examples/mnist CNN as a grid of optimizers and learning rates.

Command::

    python -m jaxmnist.sweep sweeps/flax_mnist.py                # full: 6 models x 3 seeds
    python -m jaxmnist.sweep sweeps/flax_mnist.py --preset cpu   # 1 seed, full data, 10 epochs
    python -m jaxmnist.sweep sweeps/flax_mnist.py --quick        # 6,000 images, 2 epochs
    python -m jaxmnist.sweep flax_mnist --preset flax_config \
        --config.base.model.name=path/to/train.py:CNN           # Flax's file, Flax's config

Reproduces: the CNN of Flax's ``examples/mnist/train.py`` (NNX: two 3x3 convs with BatchNorm
and average pooling, dense 256, dropout 0.025; ``jaxmnist.models.flax_examples:FlaxMnistCNN``,
824,650 params + BatchNorm statistics) with Flax's own config (SGD, momentum 0.9, lr 0.1, batch
128, 10 epochs, the full 60k training set, the 10k test set) as one point of an optimizer x
learning rate grid: SGD momentum 0.9 at {0.1 (Flax's), 0.03}, Adam and AdamW at {1e-3, 3e-4}.
Published: 99.17% top-1 test accuracy after 10 epochs (Flax's examples/mnist README,
"default"). Differences from Flax's loop: the last partial batch of an epoch is trained
(Flax drops it: 468 vs 469 steps), and images are shuffled per epoch from the member's seed
(Flax: a 1,024-image shuffle buffer).

Your own copy of Flax's file works unchanged in its place:
``--config.base.model.name=path/to/train.py:CNN`` (tests/test_sweep.py trains the example's
text that way).

Expected accuracy and runtime per device: measured runs are in figures/README.md.
"""

import ml_collections

# Flax's optimizer, optax.sgd(lr, momentum=0.9), is jaxmnist's "momentum" (heavy ball).
LABELS = {"momentum": "sgd+momentum"}


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.study = "flax_mnist"
    c.title = ("flax_mnist: Flax's examples/mnist CNN, optimizer x learning rate "
               "(batch 128, 10 epochs)")
    c.data = dict(split="none", seed=0)
    c.base = dict(
        model=dict(name="jaxmnist.models.flax_examples:FlaxMnistCNN"),
        optim=dict(name="momentum", learning_rate=0.1, momentum=0.9),  # optax.sgd(.1, momentum=.9)
        train=dict(epochs=10, batch_size=128),
    )
    # Each optimizer at two learning rates around its usual one (a full cartesian grid would
    # spend a third of the run on SGD at 1e-3 and Adam at 0.1, which a user would not try).
    c.experiments = [dict(name="main", title="Optimizer x learning rate", points=[
        dict(label=f"{LABELS.get(name, name)} lr={lr:g}",
             set={"optim.name": name, "optim.learning_rate": lr})
        for name, lrs in (("momentum", (0.1, 0.03)), ("adam", (1e-3, 3e-4)),
                          ("adamw", (1e-3, 3e-4)))
        for lr in lrs])]
    c.seeds = 3
    c.presets = dict(
        quick=dict(data=dict(train_limit=6000, test_limit=2000), base=dict(train=dict(epochs=2)),
                   seeds=1),
        cpu=dict(seeds=1),
        # Flax's example exactly: its config alone (SGD 0.1, momentum 0.9), one seed.
        flax_config=dict(experiments=[dict(name="main", title="Flax's own config", points=[
            dict(label="sgd+momentum lr=0.1", set={"optim.learning_rate": 0.1})])],
            seeds=1),
    )
    return c
