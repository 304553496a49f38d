"""The core library works without the lab: run in a venv where only `pip install .` ran.

Imports mlrsnet, builds MLRSNetLR and MetaTrainer and takes a meta step, loads every shipped
network (the faithful ones and MLR-SNet+'s, stepping a scheduler with each MLR-SNet+ one), and
checks that no lab dependency is installed and no lab module was imported.
"""

import importlib
import importlib.util
import sys

import torch

import mlrsnet

LAB_DEPENDENCIES = ("sklearn", "matplotlib", "tqdm", "schedulefree", "prodigyopt")
installed = [name for name in LAB_DEPENDENCIES if importlib.util.find_spec(name) is not None]
assert not installed, f"lab dependencies installed in the core-only venv: {installed}"

model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
net = mlrsnet.MLRSNet()
scheduler = mlrsnet.MLRSNetLR(optimizer, net)
meta_optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
trainer = mlrsnet.MetaTrainer(
    model, optimizer, scheduler, meta_optimizer, torch.nn.functional.cross_entropy, meta_interval=1
)
x, y = torch.randn(16, 4), torch.randint(0, 3, (16,))
stats = trainer.step((x, y), meta_batch=(x, y))
assert "meta_loss" in stats and trainer.num_meta_steps == 1, stats

for name in mlrsnet.pretrained_names():
    bundle = mlrsnet.pretrained(name)
    assert bundle.nets and bundle.manifest["source_task"], name

from mlrsnet import plus  # noqa: E402

assert plus.pretrained_names(), "no MLR-SNet+ network in the installed package"
for name in plus.pretrained_names():  # each loads and drives a scheduler
    plus_net, plus_manifest = plus.pretrained(name)
    assert plus_manifest["command"].startswith("python tools/meta_train_plus.py"), name
    plus_scheduler = plus.MLRSNetPlusLR(optimizer, plus_net, total_steps=10)
    plus_scheduler.step(1.0)
    assert 0 < optimizer.param_groups[0]["lr"] < float("inf"), name

lab = sorted(m for m in sys.modules if m.startswith("mlrsnet.lab"))
assert not lab, f"the core imported lab modules: {lab}"

# the integrations package imports no framework; a module of it names the extra it needs
import mlrsnet.integrations  # noqa: E402

for module, extra in (("lightning", "lightning"), ("huggingface", "huggingface")):
    try:
        importlib.import_module(f"mlrsnet.integrations.{module}")
    except ImportError as error:
        assert f"mlrsnet[{extra}]" in str(error), error
    else:
        raise AssertionError(f"mlrsnet.integrations.{module} imported without its framework")
print(
    f"core only: mlrsnet {mlrsnet.__version__}, {len(mlrsnet.pretrained_names())} shipped "
    "networks loaded, a meta step taken, no lab dependency installed or imported"
)
