"""resnet — Flax's imagenet ResNet-18 on MNIST: SGD momentum, Adam and AdamW.

Command::

    python -m jaxmnist.sweep resnet               # full: 10 epochs, 55k train / 5k val, 3 seeds
    python -m jaxmnist.sweep resnet --preset cpu  # reduced: 8k/2k/2k images, 3 epochs, 1 seed
    python -m jaxmnist.sweep resnet --quick       # smoke-sized: 1,000 images, 1 epoch
    python -m jaxmnist.sweep resnet --preset cpu \
        --config.base.model.name=path/to/models.py:ResNet18   # Flax's own file, unchanged

Trains: ResNet-18 v1.5 as Flax's ``examples/imagenet/models.py`` builds it (7x7 stride-2 stem,
3x3 stride-2 max-pool, 4 stages of 2 basic blocks, BatchNorm over the named axis ``batch``,
global average pool; ``jaxmnist.models.flax_examples:FlaxResNet18``, 11.2M parameters), batch 128,
on MNIST with a 5,000-image holdout validation split (the setting reported is chosen on it).
Optimizers at the imagenet example's settings scaled to batch 128 where it gives them: SGD
momentum 0.9 at 0.05 (its 0.1 x batch / 256), Adam and AdamW (weight decay 1e-4) at 1e-3.
No published number: this study shows that Flax's ResNet trains unchanged as a grid.

Expected runtime: the ``cpu`` preset on the 2-core CPU is measured in figures/README.md.
"""

import ml_collections

LABELS = {"momentum": "sgd+momentum"}


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.study = "resnet"
    c.title = ("resnet: Flax's imagenet ResNet-18 on MNIST, SGD momentum vs Adam vs AdamW "
               "(batch 128)")
    c.data = dict(split="holdout", val_size=5000, seed=0)
    c.base = dict(
        model=dict(name="jaxmnist.models.flax_examples:FlaxResNet18"),
        optim=dict(name="momentum", learning_rate=0.05, momentum=0.9),
        train=dict(epochs=10, batch_size=128),
    )
    c.experiments = [dict(name="main", title="Optimizer", points=[
        dict(label=f"{LABELS.get(name, name)} lr={lr:g}",
             set={"optim.name": name, "optim.learning_rate": lr})
        for name, lr in (("momentum", 0.05), ("adam", 1e-3), ("adamw", 1e-3))])]
    c.seeds = 3
    c.presets = dict(
        cpu=dict(data=dict(train_limit=8000, val_size=2000, test_limit=2000),
                 base=dict(train=dict(epochs=3)), seeds=1),
        quick=dict(data=dict(train_limit=1000, val_size=500, test_limit=500),
                   base=dict(train=dict(epochs=1)), seeds=1),
    )
    return c
