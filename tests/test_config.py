"""TrainConfig: attention placed by the architecture by default, every attention variant of the layer reachable,
and the fields a resume may change (always, or when named in ``allow``)."""
import pytest

from sagan_tut.config import (FIELDS, OPTIMISATION_FIELDS, PRESETS, RESUMABLE_CHANGES, ConfigError, TrainConfig,
                              get_config, incompatible_fields, parse_fields, parse_overrides, parse_value)

TINY = dict(resolution=32, width=0.125, z_dim=8)


def _attention_layers(model):
    from sagan_tut.attention import SelfAttention

    return [layer for layer in model.layers if isinstance(layer, SelfAttention)]


# -- attention_res="auto" ------------------------------------------------------------------------------------------
def test_default_attention_is_the_architectures_own():
    assert TrainConfig().attention_res == "auto"
    TrainConfig(resolution=32)  # used to raise: the old default 32 is no feature map of a 32x32 discriminator
    TrainConfig(arch="dcgan", resolution=32)


def test_presets_keep_their_explicit_sizes():
    for name, values in PRESETS.items():
        assert isinstance(values["attention_res"], int)
        assert get_config(name).attention_res == values["attention_res"]


def test_dcgan_by_default_has_no_attention():
    from sagan_tut.train import build_models

    G, D = build_models(TrainConfig(arch="dcgan", **TINY))
    assert not _attention_layers(G) and not _attention_layers(D)


def test_auto_builds_what_the_model_builders_pick():
    from sagan_tut.models import make_discriminator, make_generator
    from sagan_tut.train import build_models

    G, D = build_models(TrainConfig(arch="blog", **TINY))
    # The blog SAGAN attends at 32x32 where a network has such a map (G at 32 px), else at its largest (D: 16).
    assert [layer.input.shape[1] for layer in _attention_layers(G)] == [32]
    assert [layer.input.shape[1] for layer in _attention_layers(D)] == [16]
    ref_g = make_generator("blog", 32, z_dim=8, width=0.125, attention_res="auto")
    ref_d = make_discriminator("blog", 32, width=0.125, attention_res="auto")
    assert [lay.input.shape[1] for lay in _attention_layers(ref_g)] == [32]
    assert [lay.input.shape[1] for lay in _attention_layers(ref_d)] == [16]


@pytest.mark.parametrize("text, value", [("auto", "auto"), ("AUTO", "auto"), ("none", None), ("16", 16)])
def test_attention_res_parses_from_the_command_line(text, value):
    assert parse_value("attention_res", text) == value
    cfg = get_config("quick", **parse_overrides([f"attention_res={text}"]))
    assert cfg.attention_res == value


@pytest.mark.parametrize("value", ["big", True, 32, 12])
def test_bad_attention_res_names_auto(value):
    with pytest.raises(ConfigError, match="attention_res must be 'auto'"):
        TrainConfig(resolution=32, attention_res=value)
    with pytest.raises(ConfigError, match="auto, none or a feature-map size"):
        parse_value("attention_res", "big")


def test_auto_survives_config_json(tmp_path):
    cfg = TrainConfig(arch="dcgan", resolution=32)
    cfg.to_json(tmp_path / "config.json")
    assert TrainConfig.from_json(str(tmp_path / "config.json")) == cfg


# -- attention variants --------------------------------------------------------------------------------------------
def test_every_variant_of_the_layer_is_a_config_choice():
    from sagan_tut.attention import VARIANTS
    from sagan_tut.config import ATTENTION_VARIANTS

    assert set(ATTENTION_VARIANTS) == {None, *VARIANTS}


def test_icml_from_the_command_line_reaches_the_built_models():
    from sagan_tut.train import build_models

    cfg = get_config("quick", **parse_overrides(["attention_variant=icml", "width=0.125"]))
    G, D = build_models(cfg)
    for model in (G, D):
        layers = _attention_layers(model)
        assert layers and all(layer.variant == "icml" for layer in layers)


# -- what a resume may change --------------------------------------------------------------------------------------
def test_optimisation_fields():
    assert OPTIMISATION_FIELDS == ("lr_g", "lr_d", "beta1", "beta2")
    assert set(OPTIMISATION_FIELDS) <= set(FIELDS) and not set(OPTIMISATION_FIELDS) & set(RESUMABLE_CHANGES)


def test_incompatible_fields_leaves_out_allowed_ones():
    saved = get_config("quick")
    new = saved.replace(lr_g=5e-5, lr_d=2e-4, beta2=0.99, arch="paper", steps=900)
    assert incompatible_fields(saved, new) == ["arch", "lr_g", "lr_d", "beta2"]  # steps may always change
    assert incompatible_fields(saved, new, allow=("lr_g", "lr_d")) == ["arch", "beta2"]
    assert incompatible_fields(saved, new, allow=OPTIMISATION_FIELDS) == ["arch"]
    assert incompatible_fields(saved, new, allow="beta2") == ["arch", "lr_g", "lr_d"]  # one name, not letters
    with pytest.raises(ConfigError, match="unknown config field 'lrg'. Did you mean 'lr_g'"):
        incompatible_fields(saved, new, allow=["lrg"])


def test_parse_fields():
    assert parse_fields(["lr_g,lr_d", " beta2 ", "lr_g"]) == ("lr_g", "lr_d", "beta2")
    assert parse_fields([]) == ()
    with pytest.raises(ConfigError, match="^--allow-change: unknown config field 'lrd'. Did you mean 'lr_d'"):
        parse_fields(["lr_g,lrd"])
