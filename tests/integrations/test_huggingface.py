"""The Hugging Face Trainer: its learning rates equal a hand-written loop's; resume; accumulation."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch

import mlrsnet

transformers = pytest.importorskip("transformers")
from mlrsnet.integrations.huggingface import MLRSNetCallback  # noqa: E402

SEQUENCES, LENGTH, VOCAB, BATCH_SIZE = 16, 8, 32, 4


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # nothing is downloaded: the model is a config
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    transformers.logging.set_verbosity_error()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module=r"(transformers|accelerate)\..*")
        yield


def tiny_llama():
    """A 2-layer causal LM from a config (nothing downloaded), no dropout."""
    torch.manual_seed(0)
    config = transformers.LlamaConfig(vocab_size=VOCAB, hidden_size=16, intermediate_size=32,
                                      num_hidden_layers=2, num_attention_heads=2,
                                      num_key_value_heads=2, max_position_embeddings=LENGTH,
                                      bos_token_id=0, eos_token_id=0, pad_token_id=0)  # fmt: skip
    return transformers.LlamaForCausalLM(config)


def dataset():
    ids = torch.randint(0, VOCAB, (SEQUENCES, LENGTH), generator=torch.Generator().manual_seed(1))
    labels = ids.clone()
    labels[::3, :2] = -100  # some positions are not predicted: a token-weighted mean
    return [{"input_ids": i, "labels": lab} for i, lab in zip(ids, labels, strict=True)]


def optimizer_and_scheduler(model, net_seed=2):
    torch.manual_seed(net_seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    return optimizer, mlrsnet.MLRSNetLR(optimizer, mlrsnet.MLRSNet(), loss_scale=3.47)  # ln 32


class RecordLR(transformers.TrainerCallback):
    """The learning rate each optimizer step runs at; optionally fakes a scaler's skipped step."""

    def __init__(self, skip_step=None):
        self.lrs, self.skip_step = [], skip_step

    def on_pre_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
        self.lrs.append(optimizer.param_groups[0]["lr"])

    def on_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
        # as a GradScaler does on an overflow (no CPU run has one): accelerate reports the step
        # skipped, so the Trainer does not step the scheduler
        optimizer._is_overflow = state.global_step == self.skip_step


def trainer(tmp_path, accumulate, record, net_seed=2, epochs=3, eval_dataset=None, **kwargs):
    model = tiny_llama()
    optimizer, scheduler = optimizer_and_scheduler(model, net_seed)
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=BATCH_SIZE,
        gradient_accumulation_steps=accumulate, num_train_epochs=epochs,
        train_sampling_strategy="sequential", max_grad_norm=0.0, use_cpu=True, seed=0,
        report_to="none", disable_tqdm=True, logging_strategy="no",
        **{"save_strategy": "no", **kwargs},
    )  # fmt: skip
    trainer = transformers.Trainer(model=model, args=args, train_dataset=dataset(),
                                   eval_dataset=eval_dataset, optimizers=(optimizer, scheduler),
                                   callbacks=[record])  # fmt: skip
    MLRSNetCallback.attach(trainer)
    return trainer, scheduler


def hand_written(accumulate, epochs=3, skip_step=None):
    """The Trainer's training as a plain loop in torch's order (its loss: summed over tokens,
    divided by the window's token count)."""
    model = tiny_llama()
    optimizer, scheduler = optimizer_and_scheduler(model)
    collate = transformers.default_data_collator
    data = dataset()
    batches = [collate(data[i : i + BATCH_SIZE]) for i in range(0, SEQUENCES, BATCH_SIZE)]
    model.train()
    lrs, step = [], 0
    for _ in range(epochs):
        for start in range(0, len(batches), accumulate):
            window = batches[start : start + accumulate]
            tokens = sum(b["labels"][..., 1:].ne(-100).sum() for b in window) / 1
            total = None
            for batch in window:
                loss = model(**batch, num_items_in_batch=tokens).loss
                loss.backward()
                total = loss.detach() if total is None else total + loss.detach()
            lrs.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            if step != skip_step:  # a skipped step feeds nothing and is not stepped
                scheduler.observe(total)
                scheduler.step()
            model.zero_grad()
            step += 1
    return lrs, scheduler


@pytest.mark.parametrize("accumulate", [1, 2])
def test_the_trainer_uses_the_learning_rates_of_a_hand_written_loop(tmp_path, accumulate):
    record = RecordLR()
    hf, scheduler = trainer(tmp_path, accumulate, record)
    hf.train()
    expected, reference = hand_written(accumulate)
    steps = 3 * SEQUENCES // (BATCH_SIZE * accumulate)
    assert record.lrs == expected and len(expected) == steps
    assert len(set(expected)) == steps  # every step had a learning rate of its own
    assert scheduler.num_steps == steps  # once per optimizer step, with the window's mean loss
    assert scheduler.get_last_lr() == reference.get_last_lr()
    for a, b in zip(scheduler.state, reference.state, strict=True):
        assert torch.equal(a, b)


def test_resume_from_checkpoint_continues_the_learning_rates_exactly(tmp_path):
    full = RecordLR()
    hf, _ = trainer(tmp_path / "run", 2, full, save_strategy="steps", save_steps=3)
    hf.train()
    assert len(full.lrs) == 6
    resumed = RecordLR()
    # another schedule network: the checkpoint brings back the saved one; step 3 is mid-epoch
    hf, scheduler = trainer(tmp_path / "resumed", 2, resumed, net_seed=9)
    hf.train(resume_from_checkpoint=str(tmp_path / "run" / "checkpoint-3"))
    assert resumed.lrs == full.lrs[3:]
    assert scheduler.num_steps == 6


def test_a_step_skipped_by_the_gradient_scaler_feeds_nothing(tmp_path):
    record = RecordLR(skip_step=2)
    hf, scheduler = trainer(tmp_path, 2, record)
    hf.train()
    expected, reference = hand_written(2, skip_step=2)
    assert record.lrs == expected
    assert record.lrs[3] == record.lrs[2]  # the lr after the skipped step is kept
    assert scheduler.num_steps == 5 and scheduler.observed_count == 0
    assert scheduler.get_last_lr() == reference.get_last_lr()


def test_the_callback_needs_attach_and_an_mlrsnet_scheduler(tmp_path):
    model = tiny_llama()
    optimizer, scheduler = optimizer_and_scheduler(model)
    args = transformers.TrainingArguments(output_dir=str(tmp_path), use_cpu=True, max_steps=1,
                                          report_to="none", save_strategy="no")  # fmt: skip
    alone = transformers.Trainer(model=model, args=args, train_dataset=dataset(),
                                 optimizers=(optimizer, scheduler), callbacks=[MLRSNetCallback()])  # fmt: skip
    with pytest.raises(ValueError, match="attach"):
        alone.train()
    other = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    wrong = transformers.Trainer(model=model, args=args, train_dataset=dataset(),
                                 optimizers=(optimizer, other))  # fmt: skip
    MLRSNetCallback.attach(wrong)
    with pytest.raises(TypeError, match="not MLRSNetLR"):
        wrong.train()
    with pytest.raises(TypeError, match="Trainer"):
        MLRSNetCallback.attach(model)
    assert MLRSNetCallback.attach(wrong) is MLRSNetCallback.attach(wrong)
    assert copy.copy(MLRSNetCallback()).trainer is None


def test_the_trainer_feeds_mlrsnet_plus_like_a_hand_written_loop(tmp_path, monkeypatch):
    from mlrsnet.plus import MLRSNetPlusLR, PlusNet

    def plus_optimizer_and_scheduler(model, net_seed=2):
        torch.manual_seed(net_seed)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        net = PlusNet(hidden=6)
        with torch.no_grad():
            net.layer1.weight.mul_(3.0)  # let the loss features move the rate
        return optimizer, MLRSNetPlusLR(optimizer, net, total_steps=3 * SEQUENCES // BATCH_SIZE)

    monkeypatch.setitem(globals(), "optimizer_and_scheduler", plus_optimizer_and_scheduler)
    record = RecordLR()
    hf, scheduler = trainer(tmp_path, 1, record)
    hf.train()
    expected, reference = hand_written(1)
    assert record.lrs == expected and len(set(expected)) > 1
    assert scheduler.get_last_lr() == reference.get_last_lr()


def test_the_trainer_gives_a_validation_network_each_evaluation_loss(tmp_path, monkeypatch):
    from mlrsnet.plus import MLRSNetPlusLR, PlusNet

    def validated(model, net_seed=2):
        torch.manual_seed(net_seed)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        net = PlusNet(hidden=6, validation=True)
        return optimizer, MLRSNetPlusLR(optimizer, net, total_steps=3 * SEQUENCES // BATCH_SIZE)

    class RecordEval(transformers.TrainerCallback):
        def __init__(self):
            self.losses = []

        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            self.losses.append(metrics["eval_loss"])

    monkeypatch.setitem(globals(), "optimizer_and_scheduler", validated)
    hf, scheduler = trainer(tmp_path, 1, RecordLR(), eval_dataset=dataset(), eval_strategy="epoch")
    record = RecordEval()
    hf.add_callback(record)
    hf.train()
    state = scheduler.validation_state
    assert len(record.losses) == 3 and state.count == 3
    assert state.last == record.losses[-1] and state.minimum == min(record.losses)
    other, _ = trainer(tmp_path / "b", 1, RecordLR(), eval_dataset=dataset(),
                       eval_strategy="epoch")  # fmt: skip
    for callback in other.callback_handler.callbacks:
        if isinstance(callback, MLRSNetCallback):
            callback.metric = "eval_nope"
    with pytest.raises(ValueError, match="no 'eval_nope'"):
        other.train()
    with pytest.raises(ValueError, match="metric"):
        MLRSNetCallback(metric="")
