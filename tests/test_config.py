"""The one config dataclass, its YAML files and the CLI flags derived from it."""

import dataclasses

import pytest

from rnn_classifier import cli
from rnn_classifier.config import (
    DEFAULTS,
    PRESETS,
    ConfigError,
    TrainConfig,
    field_names,
    preset,
)


def test_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        DEFAULTS.rnn_units = 3


def test_every_field_has_a_flag_and_flags_override_yaml(tmp_path):
    config_file = tmp_path / "config.yaml"
    config_file.write_text("rnn_units: 48\nloss: wce\nlearning_rate: 0.01\n")
    args = cli.build_parser().parse_args([
        "train", "--data-dir", "d", "--output-dir", "o", "--config", str(config_file),
        "--loss", "ce", "--bidirectional=true", "--no-mixed", "--l2", "0"])
    config = cli.resolve_config(args)
    assert (config.rnn_units, config.loss, config.learning_rate) == (48, "ce", 0.01)
    assert config.bidirectional is True and config.mixed is False and config.l2 == 0.0
    assert config.epochs == DEFAULTS.epochs
    help_text = cli.build_parser()._subparsers._group_actions[0].choices["train"].format_help()
    for name in field_names():
        assert cli.flag_name(name) in help_text


def test_katib_style_bool_flags():
    parser = cli.build_parser()
    for text, expected in (("--mixed=false", False), ("--mixed=True", True), ("--mixed", True)):
        args = parser.parse_args(["train", "--data-dir", "d", "--output-dir", "o", text])
        assert cli.resolve_config(args).mixed is expected


def test_unknown_yaml_key_names_the_file_and_key(tmp_path):
    config_file = tmp_path / "bad.yaml"
    config_file.write_text("rnn_units: 8\nrnn_unit: 9\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*unknown config key.*rnn_unit'"):
        TrainConfig.load(config_file)


@pytest.mark.parametrize("overrides, message", [
    ({"rnn_type": "transformer"}, "rnn_type: 'transformer' is not one of"),
    ({"dropout": 1.5}, "dropout: 1.5 is above the maximum"),
    ({"rnn_units": 0}, "rnn_units: 0 is below the minimum"),
    ({"epochs": 2.5}, "epochs: expected int"),
    ({"mixed": "yes"}, "mixed: expected bool"),
])
def test_invalid_values_are_rejected(overrides, message):
    with pytest.raises(ConfigError, match=message):
        DEFAULTS.replace(**overrides)


def test_unknown_flag_is_an_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "--data-dir", "d", "--output-dir", "o", "--rnn-unit", "3"])
    assert exit_info.value.code == 2
    assert "--rnn-unit" in capsys.readouterr().err


def test_saved_config_round_trips(tmp_path):
    config = DEFAULTS.replace(loss="wce", rnn_units=7, learning_rate=3e-4)
    config.save(tmp_path / "config.json")
    assert TrainConfig.load(tmp_path / "config.json") == config
    assert TrainConfig(learning_rate=1).learning_rate == 1.0


@pytest.mark.parametrize("n_train, expected", [
    (10, 16), (216, 16), (560, 16), (3000, 64), (6000, 128), (15294, 256), (10**6, 256)])
def test_automatic_batch_size_gives_about_64_steps_an_epoch_within_16_to_256(n_train, expected):
    assert DEFAULTS.batch_size == 0
    assert DEFAULTS.resolved_batch_size(n_train) == expected


def test_an_explicit_batch_size_is_kept():
    assert DEFAULTS.replace(batch_size=48).resolved_batch_size(15294) == 48
    with pytest.raises(ConfigError, match="below the minimum"):
        DEFAULTS.replace(batch_size=-1)


@pytest.mark.parametrize("augmentation, time_column, augments", [
    ("auto", 0, True), ("auto", -1, False), ("on", -1, True), ("off", 2, False)])
def test_automatic_augmentation_is_for_light_curves_with_a_time_column(augmentation, time_column,
                                                                       augments):
    config = DEFAULTS.replace(augmentation=augmentation, time_column=time_column)
    assert config.augments() is augments
    with pytest.raises(ConfigError, match="augmentation"):
        DEFAULTS.replace(augmentation="yes")


def test_random_kernel_head_is_for_equally_sampled_series_only():
    assert DEFAULTS.time_column == -1 and DEFAULTS.kernel_features() == DEFAULTS.random_kernels > 0
    # Light curves with a time column: kernels on the step grid would mix days and months.
    assert DEFAULTS.replace(time_column=0).kernel_features() == 0
    assert DEFAULTS.replace(random_kernels=0).kernel_features() == 0
    assert preset("original").kernel_features() == 0


def test_a_boolean_augmentation_from_an_earlier_version_still_loads(tmp_path):
    for written, expected in ((True, "on"), (False, "off")):
        (tmp_path / "config.json").write_text(f'{{"augmentation": {str(written).lower()}}}')
        assert TrainConfig.load(tmp_path / "config.json").augmentation == expected


def test_original_preset_is_the_original_model_and_training():
    original = preset("original")
    assert (original.pooling, original.conv_filters, original.curve_normalisation) == (
        "last", 0, False)
    assert (original.loss, original.gamma, original.class_weighting) == ("focal", 2.0,
                                                                        "balanced")
    assert (original.batch_size, original.learning_rate, original.epochs) == (32, 1e-4, 50)
    # Nothing the original did not have: its contextual features unencoded, no augmentation.
    assert original.context_bins == 0
    assert not original.replace(time_column=0).augments()
    # No early stopping: patience as long as the run.
    assert original.patience == original.epochs
    assert set(PRESETS["original"]) <= set(field_names())
    with pytest.raises(ConfigError, match="unknown preset 'paper'"):
        preset("paper")


def test_preset_then_config_file_then_flags(tmp_path):
    config_file = tmp_path / "config.yaml"
    config_file.write_text("learning_rate: 0.002\nepochs: 7\n")
    args = cli.build_parser().parse_args([
        "train", "--data-dir", "d", "--output-dir", "o", "--preset", "original",
        "--config", str(config_file), "--epochs", "9"])
    config = cli.resolve_config(args)
    assert config.pooling == "last" and config.batch_size == 32  # the preset
    assert config.learning_rate == 0.002  # the file over the preset
    assert config.epochs == 9  # the flag over both
    bad = cli.build_parser()
    with pytest.raises(SystemExit):
        bad.parse_args(["train", "--data-dir", "d", "--output-dir", "o", "--preset", "paper"])
