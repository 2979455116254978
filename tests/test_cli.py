"""The `ltlight` command: configs, the quick start as a user runs it, and bad command lines."""

import contextlib
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from fake_clip import text_init_arguments

from ltlight import LongTailModule
from ltlight.cli import LongTailCLI, condense_error, main
from ltlight.cli.configs import available_methods, composed_files

ROOT = Path(__file__).resolve().parents[1]
#: Stage-2 configs of decoupled training: they need a stage-1 checkpoint (init_weights).
STAGE2 = {"crt", "lws", "mislas_stage2"}
DATASETS = sorted(p.parent.name for p in (ROOT / "configs").glob("*/dataset.yaml"))
#: The multi-label datasets and their methods: configs/methods/multilabel/ and the sigmoid GHM-C.
MULTILABEL_DATASETS = ("chestxray14", "coco_mlt", "folder_multilabel", "voc_mlt")
MULTILABEL_METHODS = sorted(
    [p.stem for p in (ROOT / "configs" / "methods" / "multilabel").glob("*.yaml")] + ["ghm"]
)
METHODS = [
    m
    for m in available_methods(ROOT / "configs" / "methods")
    if not (ROOT / "configs" / "methods" / "multilabel" / f"{m}.yaml").is_file()
]
#: Every (dataset, method) pair, named as the user names it: configs/<dataset>/<method>.yaml.
METHOD_CONFIGS = [
    ROOT / "configs" / d / f"{m}.yaml"
    for d in DATASETS
    for m in (MULTILABEL_METHODS if d in MULTILABEL_DATASETS else METHODS)
]
QUICK_START = ROOT / "configs" / "digits_lt" / "ldam_drw.yaml"
FIXTURE = {"cifar10_lt": "cifar10_dir", "cifar100_lt": "cifar100_dir"}
FIXTURE["fashion_mnist_lt"] = "fashion_mnist_dir"
#: Image-file datasets: their fixture, the arguments that point at it, small images, no workers.
FILE_FIXTURE = {
    "imagenet_lt": ("imagenet_lt_dir", lambda d: [f"--data.init_args.root={d}/images",
                                                   f"--data.init_args.split_dir={d}/splits"]),
    "places_lt": ("places_lt_dir", lambda d: [f"--data.init_args.root={d}/images",
                                               f"--data.init_args.split_dir={d}/splits"]),
    "inat2018": ("inat2018_dir", lambda d: [f"--data.init_args.root={d}"]),
    "folder": ("image_folder_dir", lambda d: [f"--data.init_args.train={d}/train",
                                               f"--data.init_args.test={d}/test",
                                               "--data.init_args.val_per_class=1"]),
    "voc_mlt": ("multilabel_dirs", lambda d: [f"--data.init_args.root={d['voc_mlt']}"]),
    "coco_mlt": ("multilabel_dirs", lambda d: [f"--data.init_args.root={d['coco_mlt']}",
                                                "--model.init_args.backbone.init_args.num_classes=5"]),
    "chestxray14": ("multilabel_dirs", lambda d: [f"--data.init_args.root={d['chestxray14']}"]),
    "folder_multilabel": ("multilabel_dirs", lambda d: [
        f"--data.init_args.train={d['folder_multilabel']}/train_names.csv",
        f"--data.init_args.test={d['folder_multilabel']}/test_names.csv",
        "--model.init_args.backbone.init_args.num_classes=3"]),
}  # fmt: skip
SMALL_FILES = ["--data.init_args.num_workers=0", "--data.init_args.image_size=32"]
SMALL_FILES += ["--data.init_args.resize=36"]


def test_every_dataset_has_every_method():
    assert DATASETS == [
        "chestxray14", "cifar100_lt", "cifar10_lt", "coco_mlt", "digits_lt", "fashion_mnist_lt",
        "folder", "folder_multilabel", "imagenet_lt", "inat2018", "places_lt", "voc_mlt",
    ]  # fmt: skip
    assert MULTILABEL_METHODS == ["asl", "bce", "db", "db_drw", "ghm", "sigmoid_focal"]
    expected = {"ce", "ce_drw", "focal", "cb_focal", "ldam", "ldam_drw", "ldam_drs"}
    expected |= {"logit_adjusted", "balanced_softmax", "tailr", "tailr_schedule", "ghm"}
    expected |= {"ce_posthoc_la", "ce_tau_norm", "ce_stage1", "mislas_stage1", *STAGE2}
    expected |= {"lift", "convnext_lora"}
    assert set(METHODS) == expected
    for config in METHOD_CONFIGS:  # each composes from its dataset's recipe and its method
        files = composed_files(config)
        assert files is not None and files[0] == config.parent / "dataset.yaml", config
        assert files[1].stem == config.stem and "methods" in files[1].parts, files


#: LIFT's CLIP ViT-B/16 is not downloaded here: its architecture shrunk to one 192-wide block
#: with 4-pixel patches (any image size), random, stands in for it, with the recipe's head,
#: adapter, loss and schedule, and a tiny CLIP in a local file for the head's text initialisation.
GREY = {"digits_lt", "fashion_mnist_lt"}


def tiny_vit_instead_of_clip(dataset: str, tiny_clip: tuple[str, str]) -> list[str]:
    """The backbone, and the text tower of the head's initialisation (a tiny CLIP in a file)."""
    backbone = "--model.init_args.backbone.init_args"
    channels = 1 if dataset in GREY else 3
    # image files: the ViT's img_size sets the crops (preprocessing follows the weights); the
    # in-memory datasets keep their own sizes (8, 28, 32), which a dynamic-size ViT accepts
    size = "" if dataset in FILE_FIXTURE else ', "dynamic_img_size": true'
    return [
        f"{backbone}.model_name=vit_base_patch16_clip_quickgelu_224",
        f"{backbone}.pretrained=false",
        f'{backbone}.create_kwargs={{"depth": 1, "patch_size": 4, "img_size": 32, '
        f'"embed_dim": 192, "num_heads": 3, "in_chans": {channels}{size}}}',
        *text_init_arguments(*tiny_clip),
    ]


def tiny_convnext_instead_of_convnext_t(dataset: str, tiny_clip: tuple[str, str]) -> list[str]:
    """A random two-stage ConvNeXt (8 and 16 wide; stride 8 takes Digits' 8×8): the same fc1 /
    fc2 for LoRA."""
    backbone = "--model.init_args.backbone.init_args"
    channels = 1 if dataset in GREY else 3
    return [
        f"{backbone}.model_name=convnext_tiny",
        f"{backbone}.pretrained=false",
        f'{backbone}.create_kwargs={{"depths": [1, 1, 1, 1], "dims": [8, 16, 32, 64], '
        f'"patch_size": 1, "in_chans": {channels}}}',
    ]


#: The methods that start from pretrained weights, and what stands in for those weights here.
STAND_INS = {"lift": tiny_vit_instead_of_clip, "convnext_lora": tiny_convnext_instead_of_convnext_t}


def without_image_size(args: list[str]) -> list[str]:
    """Pretrained backbones' configs: the weights decide the image size, the data may not."""
    sizes = ("--data.init_args.image_size=", "--data.init_args.resize=")
    return [a for a in args if not a.startswith(sizes)]


def cli_args(config, request, *extra):
    args = ["--config", str(config), "--trainer.logger=false", *extra]
    if config.parent.name in FIXTURE:
        data_dir = request.getfixturevalue(FIXTURE[config.parent.name])
        args += [f"--data.init_args.data_dir={data_dir}", "--data.init_args.download=false"]
    if config.parent.name in FILE_FIXTURE:
        fixture, point_at = FILE_FIXTURE[config.parent.name]
        args += [*point_at(request.getfixturevalue(fixture)), *SMALL_FILES]
    if config.stem in STAND_INS:
        stand_in = STAND_INS[config.stem](config.parent.name, request.getfixturevalue("tiny_clip"))
        args = [*without_image_size(args), *stand_in]
    return args


@pytest.mark.parametrize("config", METHOD_CONFIGS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_config_parses_and_instantiates(config, request, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cli = LongTailCLI(args=cli_args(config, request), run=False)
    assert isinstance(cli.model, LongTailModule)
    assert len(cli.datamodule.class_counts) == cli.datamodule.num_classes
    if config.stem == "lift":  # LIFT's own recipe
        assert cli.trainer.max_epochs == (20 if config.parent.name == "inat2018" else 10)
        assert cli.datamodule.batch_size == 128 and cli.trainer.precision == "bf16-mixed"
    elif config.stem == "convnext_lora":
        assert cli.trainer.max_epochs == 20 and cli.model.finetune.rank == 8
    elif config.parent.name.startswith("cifar") and config.stem not in STAGE2:  # the paper's
        assert cli.trainer.max_epochs == 200
        assert cli.datamodule.batch_size == 128


#: Datasets of image files: a batch of them trains at 32×32 here (ResNet-50 pools adaptively);
#: the 224 recipe itself is parsed and instantiated by test_every_config_parses_and_instantiates.
FILE_DATASETS = ("folder", "imagenet_lt", "places_lt", "inat2018", *MULTILABEL_DATASETS)


def fit_one_batch(config, request):
    small = ["--data.init_args.batch_size=8", "--data.init_args.eval_batch_size=16"]
    if config.parent.name in FILE_DATASETS:
        # the post-hoc configs evaluate the whole validation split (8,142 iNaturalist images)
        small += ["--data.init_args.image_size=32", "--data.init_args.resize=36"]
    if config.stem in STAGE2:  # a stage-1 checkpoint: the freshly built model's weights
        cli = LongTailCLI(args=cli_args(config, request), run=False)
        torch.save({"state_dict": cli.model.state_dict()}, "stage1.ckpt")
        small.append("--model.init_args.init_weights=stage1.ckpt")
    cli = LongTailCLI(args=cli_args(config, request, "--trainer.fast_dev_run=1", *small), run=False)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    assert cli.trainer.state.finished


@pytest.mark.parametrize("method", METHODS)
def test_every_digits_method_trains_a_batch(method, request, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fit_one_batch(ROOT / "configs" / "digits_lt" / f"{method}.yaml", request)


@pytest.mark.parametrize(
    "dataset", ["cifar10_lt", "cifar100_lt", "fashion_mnist_lt", "folder", "imagenet_lt"]
)
def test_ldam_drw_trains_a_batch_on_each_dataset_fixture(dataset, request, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fit_one_batch(ROOT / "configs" / dataset / "ldam_drw.yaml", request)


@pytest.mark.slow
@pytest.mark.parametrize(
    "config",
    [p for p in METHOD_CONFIGS if p.parent.name not in ("digits_lt", *MULTILABEL_DATASETS)]
    # multi-label (every pair parses and instantiates above): every method on your own CSV
    # folder, the DB recipe (the DB loss, class-aware sampling) on each benchmark
    + [ROOT / "configs" / "folder_multilabel" / f"{m}.yaml" for m in MULTILABEL_METHODS]
    + [ROOT / "configs" / d / "db.yaml" for d in MULTILABEL_DATASETS if d != "folder_multilabel"],
    ids=lambda p: f"{p.parent.name}/{p.stem}",
)
def test_every_config_trains_a_batch(config, request, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fit_one_batch(config, request)


def test_print_config_round_trips(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(QUICK_START), "--print_config"])
    assert exit_info.value.code in (0, None)
    printed = capsys.readouterr().out
    (tmp_path / "printed.yaml").write_text(printed)
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(tmp_path / "printed.yaml"), "--print_config"])
    assert capsys.readouterr().out == printed
    assert "ltlight.losses.LDAMLoss" in printed and "DeferredReweighting" in printed


def resolved(config, *extra):
    """What ``ltlight fit --config CONFIG --print_config`` prints, as a dict."""
    output = io.StringIO()
    with contextlib.redirect_stdout(output), pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(config), *extra, "--print_config"])
    assert exit_info.value.code in (0, None)
    return yaml.safe_load(output.getvalue())


def test_a_method_is_composed_onto_its_datasets_recipe():
    ldam = resolved(ROOT / "configs" / "cifar100_lt" / "ldam_drw.yaml")
    backbone = ldam["model"]["init_args"]["backbone"]  # the method's cosine head, merged
    assert backbone["class_path"] == "ltlight.models.resnet32"
    assert backbone["init_args"]["num_classes"] == 100 and backbone["init_args"]["normed"]
    assert ldam["model"]["init_args"]["loss"]["class_path"] == "ltlight.losses.LDAMLoss"
    assert ldam["trainer"]["max_epochs"] == 200 and ldam["data"]["init_args"]["val_per_class"] == 0
    crt = resolved(ROOT / "configs" / "digits_lt" / "crt.yaml")  # + digits' validation split
    assert crt["data"]["init_args"]["val_per_class"] == 10 and crt["trainer"]["max_epochs"] == 10
    schedule = crt["model"]["init_args"]["lr_scheduler"]
    assert schedule["class_path"] == "ltlight.optim.WarmupCosineLR"
    assert schedule["init_args"]["warmup_epochs"] == 0  # not digits' 2 for WarmupMultiStepLR
    mislas = resolved(ROOT / "configs" / "cifar10_lt" / "mislas_stage2.yaml")  # adjusted last
    (retraining,) = mislas["model"]["init_args"]["callbacks"]
    assert retraining["init_args"]["classifier_lr_factor"] == 0.5
    assert retraining["init_args"]["shifted_bn"] is False and retraining["init_args"]["learn_scale"]
    assert mislas["model"]["init_args"]["loss"]["init_args"]["head"] == 0.3
    # the command line still has the last word
    assert resolved(QUICK_START, "--trainer.max_epochs=3")["trainer"]["max_epochs"] == 3


def test_a_multilabel_method_is_composed_onto_a_multilabel_recipe():
    db = resolved(ROOT / "configs" / "coco_mlt" / "db.yaml")  # + the release's COCO values
    assert db["data"]["init_args"]["sampling"] == "class_aware"
    loss = db["model"]["init_args"]["loss"]
    assert loss["class_path"] == "ltlight.losses.DistributionBalancedLoss"
    assert loss["init_args"]["mu"] == 0.2 and loss["init_args"]["negative_scale"] == 2.0
    assert loss["init_args"]["alpha"] == 0.1  # the defaults it shares with VOC-MLT
    voc = resolved(ROOT / "configs" / "voc_mlt" / "db.yaml")["model"]["init_args"]["loss"]
    assert voc["init_args"]["mu"] == 0.3 and voc["init_args"]["negative_scale"] == 5.0


def test_an_unknown_method_is_one_line_listing_the_methods(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(ROOT / "configs" / "digits_lt" / "ldam_drv.yaml")])
    assert exit_info.value.code == 2
    line = capsys.readouterr().err.strip().splitlines()[0]
    assert "'ldam_drv' of digits_lt, which does not exist" in line
    assert "the methods are: balanced_softmax, cb_focal, ce," in line and "ldam_drw" in line


def run_ltlight(*args, cwd, timeout=600):
    env = dict(os.environ, WANDB_MODE="offline", WANDB_SILENT="true", PYTHONUNBUFFERED="1")
    command = [sys.executable, "-m", "ltlight.cli", *args]
    return subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def check_quick_start(tmp_path, *overrides, epochs=40):
    """The README's quick start writes one run folder; `validate` on its checkpoint prints the
    metrics of the last epoch."""
    fit = run_ltlight("fit", "--config", str(QUICK_START), *overrides, cwd=tmp_path)
    assert fit.returncode == 0, fit.stderr[-3000:]
    (run,) = (tmp_path / "runs" / "digits_lt" / "ldam_drw").iterdir()
    assert sorted(p.name for p in run.iterdir()) == [".lock", "checkpoints", "config.yaml", "wandb"]
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["last.ckpt"]
    checkpoint = run / "checkpoints" / "last.ckpt"
    assert torch.load(checkpoint, weights_only=True)["epoch"] == epochs - 1  # the last epoch
    images = list(run.glob("wandb/offline-run-*/files/media/images/**/*.png"))
    names = {p.name.split("_")[0] for p in images}
    assert any("per" in p.name for p in images) and any("reliability" in p.name for p in images), (
        names
    )
    # No Lightning warning asks the user to do what the config does.
    assert "save_last" not in fit.stderr and "without a model" not in fit.stderr, fit.stderr
    fit_config = (run / "config.yaml").read_text()

    validate = run_ltlight(
        "validate",
        "--config",
        str(QUICK_START),
        "--trainer.logger=false",
        f"--ckpt_path={checkpoint}",
        cwd=tmp_path,
    )
    assert validate.returncode == 0, validate.stderr[-3000:]
    out = validate.stdout
    assert "val/balanced_error" in out and "val/ece" in out
    assert "balanced error" in out and "ECE" in out  # the per-class summary table
    assert f"(epoch {epochs - 1})" in out  # the checkpoint's epoch, not the trainer's 0
    assert (run / "validate_config.yaml").is_file()
    assert (run / "config.yaml").read_text() == fit_config  # validate keeps the fit's config


def test_quick_start_writes_a_checkpoint_that_validates(tmp_path):
    check_quick_start(tmp_path, "--trainer.max_epochs=2", epochs=2)


@pytest.mark.slow
def test_quick_start_exactly_as_in_the_readme(tmp_path):
    check_quick_start(tmp_path)


BAD_COMMAND_LINES = [
    (["--data.init_args.imbalance_ratio=0.5"], "imbalance_ratio must be >= 1"),
    (["--trainer.max_epochs=foo"], "trainer.max_epochs"),
    (["--model.init_args.loss.class_path=ltlight.losses.Nope"], "ltlight.losses.Nope"),
    (["--model.init_args.loss.init_args.max_m=-1"], "max_m must be > 0"),
    (["--data.init_args.profile=cubic"], "profile must be one of"),
]


@pytest.mark.parametrize(("extra", "named"), BAD_COMMAND_LINES, ids=lambda v: str(v)[:40])
def test_bad_command_line_ends_with_a_line_naming_the_argument(extra, named, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(QUICK_START), "--trainer.logger=false", *extra])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert any(named in line for line in err[-2:]), err[-5:]
    assert "Traceback" not in "\n".join(err)


def test_missing_config_file_is_named(tmp_path):
    result = run_ltlight("fit", "--config", "no/such/config.yaml", cwd=tmp_path, timeout=120)
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert "config" in last and "no/such/config.yaml" in last and "does not exist" in last


def test_condense_error_keeps_the_argument_and_the_reason():
    message = """Parser key "model":
  Does not validate against any of the Union subtypes
  Subtypes: [<class 'ltlight.module.LongTailModule'>, <class 'NoneType'>]
  Errors:
    - Problem with given class_path 'ltlight.LongTailModule':
        Parser key "loss":
          Errors:
            - module 'ltlight.losses' has no attribute 'Nope'
            - Expected a <class 'NoneType'>
  Given value type: <class 'str'>"""
    assert condense_error(message) == (
        "model.loss: Problem with given class_path 'ltlight.LongTailModule': "
        "module 'ltlight.losses' has no attribute 'Nope'"
    )
    assert condense_error("plain message") == "plain message"


@pytest.mark.slow
def test_fit_on_an_image_folder_for_two_epochs_as_a_user_types_it(image_folder_dir, tmp_path):
    """``ltlight fit --config configs/folder/ldam_drw.yaml --data.init_args.train=…``."""
    folder = ROOT / "configs" / "folder" / "ldam_drw.yaml"
    data = [
        f"--data.init_args.train={image_folder_dir}/train",
        f"--data.init_args.test={image_folder_dir}/test",
        "--data.init_args.val_per_class=1", "--data.init_args.batch_size=8",
        "--data.init_args.num_workers=2", "--data.init_args.image_size=32",
        "--data.init_args.resize=36",
    ]  # fmt: skip
    fit = run_ltlight("fit", "--config", str(folder), "--trainer.max_epochs=2", *data, cwd=tmp_path)
    assert fit.returncode == 0, fit.stderr[-3000:]
    checkpoints = sorted(tmp_path.glob("runs/folder/**/checkpoints/*.ckpt"))
    assert {p.name for p in checkpoints} == {"last.ckpt", "best.ckpt"}, checkpoints
    test = run_ltlight(
        "test", "--config", str(folder), "--trainer.logger=false", *data,
        f"--ckpt_path={checkpoints[1]}", cwd=tmp_path,
    )  # fmt: skip
    assert test.returncode == 0, test.stderr[-3000:]
    assert "test/balanced_error" in test.stdout


@pytest.mark.slow
def test_fit_on_the_imagenet_lt_format_from_the_command_line(imagenet_lt_dir, tmp_path):
    """ImageNet-LT's split files and 1,000 classes, ResNeXt-50 on 32-pixel crops, 4 steps."""
    fit = run_ltlight(
        "fit", "--config", str(ROOT / "configs" / "imagenet_lt" / "ce.yaml"),
        "--trainer.logger=false", "--trainer.max_epochs=1", "--trainer.limit_train_batches=4",
        "--trainer.limit_val_batches=2", f"--data.init_args.root={imagenet_lt_dir}/images",
        f"--data.init_args.split_dir={imagenet_lt_dir}/splits", "--data.init_args.batch_size=16",
        "--data.init_args.eval_batch_size=32", "--data.init_args.num_workers=2",
        "--data.init_args.image_size=32", "--data.init_args.resize=36", cwd=tmp_path,
    )  # fmt: skip
    assert fit.returncode == 0, fit.stderr[-3000:]
    assert "val/balanced_error" in fit.stdout + fit.stderr
