"""arc24's trainer flags (rsLoRA, DoRA, --optim, 4-bit, LoRA init, eval cadence, torch_dtype) and the
trainer's own promises: phase events, seconds_per_step without checkpoint writes, the attention
kernel's choice, a clear end on a full disk. Tiny model on CPU, real runner subprocesses."""

from __future__ import annotations

import importlib.machinery
import json
import math
import shutil
import subprocess
import sys
import types

import pytest
import torch

from runner.events import EventWriter, read_events
from runner.fine_tuning import PhaseProgress, _lora_init_kwargs, attention_implementation
from runner.optimizers import FALLBACK_OPTIMIZER, build_optimizer, resolve_optimizer
from runner.precision import cpu_bf16_support
from tests.conftest import REPO_ROOT
from tests.runner.training_helpers import run_module, runner_env, tiny_flags


def fake_module(monkeypatch, name: str) -> None:
    """``name`` importable (an empty module with a spec), as if the package were installed."""
    module = types.ModuleType(name)
    module.__spec__ = importlib.machinery.ModuleSpec(name, None)
    monkeypatch.setitem(sys.modules, name, module)


def hide_module(monkeypatch, name: str) -> None:
    """``import name`` fails and find_spec says absent, as if the package were not installed."""
    monkeypatch.setitem(sys.modules, name, None)


# ---------------------------------------------------------------------------------------------- optim


def test_bitsandbytes_optimizers_fall_back_to_adamw_torch_without_cuda_or_the_package(monkeypatch):
    used, note = resolve_optimizer("paged_adamw_8bit", "cpu")
    assert used == FALLBACK_OPTIMIZER and note == (
        "--optim paged_adamw_8bit: bitsandbytes needs a CUDA GPU; training with adamw_torch")
    hide_module(monkeypatch, "bitsandbytes")
    used, note = resolve_optimizer("adamw_8bit", "cuda")
    assert used == FALLBACK_OPTIMIZER and "bitsandbytes package is not installed" in note
    fake_module(monkeypatch, "bitsandbytes")
    assert resolve_optimizer("paged_adamw_8bit", "cuda") == ("paged_adamw_8bit", None)
    assert resolve_optimizer("sgd", "cpu") == ("sgd", None)


@pytest.mark.parametrize("name", ["adamw_torch", "adamw_torch_fused", "sgd", "adagrad", "rmsprop", "adafactor"])
def test_each_torch_optimizer_takes_a_step(name):
    torch.manual_seed(0)
    layer = torch.nn.Linear(4, 3)
    before = layer.weight.detach().clone()
    optimizer = build_optimizer(name, list(layer.parameters()), learning_rate=1e-2)
    layer(torch.randn(8, 4)).pow(2).mean().backward()
    optimizer.step()
    assert not torch.equal(before, layer.weight.detach())
    if name.startswith("adamw"):
        group = optimizer.param_groups[0]
        assert (group["betas"], group["eps"], group["weight_decay"]) == ((0.9, 0.999), 1e-8, 0.0)


# -------------------------------------------------------------------------------- attention kernel


def test_flash_attention_2_only_on_cuda_with_the_package_and_16_bit_weights(monkeypatch):
    assert attention_implementation("cpu", torch.bfloat16)[0] == "sdpa"
    hide_module(monkeypatch, "flash_attn")
    name, note = attention_implementation("cuda", torch.bfloat16)
    assert name == "sdpa" and "flash_attn is not installed" in note
    fake_module(monkeypatch, "flash_attn")
    assert attention_implementation("cuda", torch.bfloat16) == ("flash_attention_2", "attention: flash_attention_2")
    assert attention_implementation("cuda", torch.float16)[0] == "flash_attention_2"
    name, note = attention_implementation("cuda", torch.float32)
    assert name == "sdpa" and "bfloat16 or float16" in note


# ------------------------------------------------------------------------------------ LoRA init


@pytest.mark.parametrize("init", ["default", "gaussian", "olora", "pissa", "pissa_niter_2"])
def test_lora_initializations_reach_peft(tiny_model_dir, init):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    base = model.model.layers[0].self_attn.q_proj.weight.detach().clone()
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj"], use_rslora=True, use_dora=True,
                        task_type="CAUSAL_LM", **_lora_init_kwargs(init))
    peft_model = get_peft_model(model, config)
    layer = peft_model.base_model.model.model.layers[0].self_attn.q_proj
    lora_b = layer.lora_B["default"].weight
    assert layer.scaling["default"] == pytest.approx(8 / math.sqrt(4))  # rsLoRA: alpha / sqrt(r)
    if init in ("default", "gaussian"):
        assert torch.count_nonzero(lora_b) == 0  # B = 0: the adapter starts as the identity
        assert torch.equal(layer.base_layer.weight, base)
    else:
        # PiSSA and OLoRA move the principal part of W into the adapter and keep the residual as base.
        assert torch.count_nonzero(lora_b) > 0 and not torch.equal(layer.base_layer.weight, base)


# ------------------------------------------------------------------------------------- phases


def test_phase_progress_emits_the_first_the_last_and_at_most_one_a_second(tmp_path):
    path = tmp_path / "events.jsonl"
    with EventWriter(path) as events:
        progress = PhaseProgress(events, "eval_loss", 500)
        for _ in range(500):
            progress.advance()
    phases = read_events(path)
    assert [(e["phase"], e["done"], e["total"]) for e in phases[:1]] == [("eval_loss", 0, 500)]
    assert phases[-1]["done"] == 500
    elapsed = phases[-1]["time"] - phases[0]["time"]
    assert len(phases) <= 2 + math.ceil(elapsed / PhaseProgress.MIN_INTERVAL)


# --------------------------------------------------------------------------- runs (subprocesses)


def run_ok(flags: list[str]) -> subprocess.CompletedProcess:
    proc = run_module(flags)
    assert proc.returncode == 0, proc.stderr
    return proc


def one_line_failure(flags: list[str]) -> str:
    proc = run_module(flags)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fine_tuning: error: "), proc.stderr
    return lines[0]


@pytest.mark.slow
def test_4bit_and_loftq_without_cuda_fail_at_launch_with_one_line(tmp_path, tiny_model_dir, data):
    out = tmp_path / "run"
    line = one_line_failure(tiny_flags(tiny_model_dir, data["train"], out, "--use_4bit_quantization"))
    assert "--use_4bit_quantization: bitsandbytes needs a CUDA GPU" in line
    line = one_line_failure(tiny_flags(tiny_model_dir, data["train"], out, "--lora_weight_initialization", "loftq"))
    assert "loftq quantizes with bitsandbytes" in line and "pissa" in line
    assert not out.exists()


@pytest.mark.slow
def test_seed_defaults_are_recorded_and_evaluation_follows_eval_steps_only(tmp_path, tiny_model_dir, data):
    flags = ["--max_steps", "4", "--logging_steps", "1", "--eval_steps", "3", "--batch_size", "2",
             "--learning_rate", "1e-3"]
    out = tmp_path / "seed"
    proc = run_ok(tiny_flags(tiny_model_dir, data["train"], out, *flags, val=data["val"]))
    # The fallback is said once, whatever --verbose says.
    assert proc.stderr.count("--optim paged_adamw_8bit: bitsandbytes needs a CUDA GPU; training with adamw_torch") == 1
    events = read_events(out / "events.jsonl")
    start = next(e for e in events if e["event"] == "start")
    assert start["optimizer"] == {"requested": "paged_adamw_8bit", "used": "adamw_torch"}
    assert start["lora"] == {"r": 8, "alpha": 64.0, "rslora": True, "dora": True, "scale": 64 / math.sqrt(8),
                             "init": "default"}
    assert start["attn_implementation"] == "sdpa" and start["quantization"] is None
    assert start["dtype"] == ("bfloat16" if cpu_bf16_support()[0] else "float32")
    # arc24 evaluates every eval_steps only: step 3, not the last step 4.
    assert [e["step"] for e in events if e["event"] == "eval"] == [3]
    assert events[-1]["status"] == "completed" and events[-1]["eval_loss"] > 0

    # The phases, in a sensible order: load, train, evaluate (0..total), checkpoint, train again.
    phases = [(e["phase"], e["done"], e["total"]) for e in events if e["event"] == "phase"]
    names = [p[0] for p in phases]
    assert events[0]["event"] == "phase" and phases[0] == ("loading_model", None, None)
    assert events[1]["event"] == "start"
    assert phases[1] == ("train", 0, 4)
    evals = [p for p in phases if p[0] == "eval_loss"]
    assert evals[0][1] == 0 and evals[-1][1] == evals[-1][2] > 0
    assert names.index("eval_loss") < names.index("saving_checkpoint") < len(names) - 1
    assert phases[-1] == ("train", 3, 4)
    kinds = [e["event"] for e in events]
    assert kinds.index("eval") > max(i for i, e in enumerate(events) if e.get("phase") == "eval_loss")
    assert kinds.index("checkpoint") == 1 + max(i for i, e in enumerate(events) if e.get("phase") == "saving_checkpoint")

    # The other switches reach the adapter, and --eval_at_end adds the last step's evaluation.
    out = tmp_path / "plain"
    run_ok(tiny_flags(tiny_model_dir, data["train"], out, *flags, "--no-use_rslora", "--no-use_dora",
                      "--optim", "sgd", "--lora_weight_initialization", "gaussian", "--eval_at_end",
                      "--torch_dtype", "float32", val=data["val"]))
    events = read_events(out / "events.jsonl")
    start = next(e for e in events if e["event"] == "start")
    assert start["optimizer"] == {"requested": "sgd", "used": "sgd"} and start["dtype"] == "float32"
    assert start["lora"] == {"r": 8, "alpha": 64.0, "rslora": False, "dora": False, "scale": 8.0, "init": "gaussian"}
    assert [e["step"] for e in events if e["event"] == "eval"] == [3, 4]


@pytest.mark.slow
def test_seconds_per_step_leaves_checkpoint_writes_out(tmp_path, tiny_model_dir, data):
    out = tmp_path / "run"
    # Full fine-tuning: every checkpoint writes the whole model, optimizer state included.
    run_ok(tiny_flags(tiny_model_dir, data["train"], out, "--no-use_lora", "--max_steps", "4", "--logging_steps",
                      "1", "--save_steps", "1", "--batch_size", "2", "--learning_rate", "1e-3"))
    events = read_events(out / "events.jsonl")
    for step in (2, 3, 4):
        saved = next(e for e in events if e["event"] == "checkpoint" and e["step"] == step - 1)
        saving = next(e for e in events if e.get("phase") == "saving_checkpoint" and e["seq"] < saved["seq"]
                      and e["seq"] > saved["seq"] - 3)
        logged = next(e for e in events if e["event"] == "step" and e["step"] == step)
        assert saved["time"] > saving["time"]  # the save took time ...
        # ... which the step's window (timed from after the save to the step event) does not hold.
        assert logged["window_seconds"] <= logged["time"] - saved["time"]


@pytest.mark.slow
def test_a_full_disk_ends_the_run_with_a_clear_checkpoint_error(tmp_path, tiny_model_dir, data):
    unshare = shutil.which("unshare")
    mount_point = tmp_path / "small-disk"
    mount_point.mkdir()
    probe = subprocess.run([unshare or "unshare", "-r", "-m", "sh", "-c", f"mount -t tmpfs -o size=256k tmpfs "
                            f"{mount_point}"], capture_output=True, text=True) if unshare else None
    if probe is None or probe.returncode != 0:
        pytest.skip("needs `unshare -r -m` and tmpfs mounts to make a small disk "
                    f"({probe.stderr.strip() if probe else 'no unshare'})")
    out = mount_point / "run"
    # A 256 KiB disk holds the run's small files, not a full-model checkpoint of the tiny model.
    flags = tiny_flags(tiny_model_dir, data["train"], out, "--no-use_lora", "--max_steps", "3", "--logging_steps",
                       "1", "--save_steps", "2", "--batch_size", "2")
    runner = " ".join(f"'{a}'" for a in [sys.executable, "-m", "runner.fine_tuning", *flags])
    script = (f"mount -t tmpfs -o size=256k tmpfs {mount_point} && {runner}; code=$?; "
              f"cp -r {out} {tmp_path}/copied; ls -a {out}; exit $code")
    proc = subprocess.run([unshare, "-r", "-m", "sh", "-c", script], cwd=REPO_ROOT, env=runner_env(),
                          capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    message = "no space left on device while saving checkpoint-2"
    assert proc.stderr.strip().splitlines()[-1].startswith(f"fine_tuning: error: {message}")
    assert "Traceback" not in proc.stderr
    events = read_events(tmp_path / "copied" / "events.jsonl")
    error, end = events[-2], events[-1]
    assert error["event"] == "error" and error["type"] == "DiskFullError" and error["message"].startswith(message)
    assert end["event"] == "end" and end["status"] == "failed" and end["step"] == 2
    assert ".checkpoint-2.partial" not in proc.stdout  # the partial folder was removed


@pytest.mark.slow
def test_bf16_base_weights_follow_the_float32_loss_curve_over_20_steps(tmp_path, tiny_model_dir, data):
    supported, why = cpu_bf16_support()
    if not supported:
        pytest.skip(f"no bf16 on this CPU: {why}")
    curves = {}
    for dtype in ("bfloat16", "float32"):
        out = tmp_path / dtype
        run_ok(tiny_flags(tiny_model_dir, data["train"], out, "--torch_dtype", dtype, "--max_steps", "20",
                          "--logging_steps", "1", "--batch_size", "2", "--learning_rate", "1e-3",
                          "--save_steps", "1000", "--optim", "adamw_torch"))
        events = read_events(out / "events.jsonl")
        assert next(e for e in events if e["event"] == "start")["dtype"] == dtype
        curves[dtype] = [e["loss"] for e in events if e["event"] == "step"]
    bf16, reference = curves["bfloat16"], curves["float32"]
    assert len(bf16) == len(reference) == 20
    # Same data and seed: bf16 base weights round each forward a little, the float32 LoRA weights
    # keep the updates; the curves stay together and fall alike.
    for a, b in zip(bf16, reference, strict=True):
        assert a == pytest.approx(b, rel=0.03)
    assert sum(bf16[-5:]) / 5 < sum(bf16[:5]) / 5


@pytest.mark.slow
def test_a_pissa_run_saves_a_final_adapter_that_fits_the_original_base_model(tmp_path, tiny_model_dir, data):
    from peft import LoraConfig, PeftModel, get_peft_model, set_peft_model_state_dict
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    out = tmp_path / "run"
    run_ok(tiny_flags(tiny_model_dir, data["train"], out, "--lora_weight_initialization", "pissa", "--no-use_dora",
                      "--lora_target_modules", "q_proj", "v_proj", "--max_steps", "2", "--save_steps", "2",
                      "--batch_size", "2", "--learning_rate", "1e-2", "--torch_dtype", "float32"))
    tokens = torch.randint(0, 40, (1, 24), generator=torch.Generator().manual_seed(0))

    def load(dtype=torch.float32):
        return AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=dtype)

    # The trained model: PiSSA's residual base (its init is deterministic: a full SVD) plus the raw
    # adapter of the last checkpoint.
    residual = get_peft_model(load(), LoraConfig(r=8, lora_alpha=64, target_modules=["q_proj", "v_proj"],
                                                 use_rslora=True, init_lora_weights="pissa", task_type="CAUSAL_LM"))
    set_peft_model_state_dict(residual, load_file(out / "checkpoint-2" / "adapter_model.safetensors"))
    # The final adapter on the original base model gives the same outputs, as evaluation loads it.
    converted = PeftModel.from_pretrained(load(), out)
    with torch.no_grad():
        trained = residual.eval()(tokens).logits
        assert converted.eval()(tokens).logits == pytest.approx(trained, abs=1e-4)
    # A plain LoRA adapter (rank 2r, no PiSSA step at load time): any LoRA loader gets the trained model.
    config = json.loads((out / "adapter_config.json").read_text())
    assert (config["init_lora_weights"], config["r"]) == (True, 16)
