import json

import pytest

from modeling_scot import SCOT_VERSION, ScotConfig


def test_config_round_trips(tiny_clip_config, tmp_path):
    config = ScotConfig(
        encoder_config=tiny_clip_config.to_dict(),
        combiner_hidden_dim=24,
        temperature=0.07,
        learnable_temperature=True,
        hard_negative_weight=0.5,
        caption_negative_weight=2.0,
    )
    assert config.scot_version == SCOT_VERSION
    again = ScotConfig.from_dict(config.to_dict())
    assert again.to_dict() == config.to_dict()
    assert ScotConfig.from_dict(json.loads(config.to_json_string())).to_dict() == config.to_dict()
    config.save_pretrained(tmp_path)
    loaded = ScotConfig.from_pretrained(tmp_path)
    assert loaded.encoder_config.model_type == "clip"
    assert (loaded.embed_dim, loaded.projection_dim, loaded.hidden_dim) == (16, 32, 24)
    assert loaded.hard_negative_weight == 0.5 and loaded.learnable_temperature is True


@pytest.mark.parametrize(
    "field, value", [("temperature", 0.0), ("hard_negative_weight", -1.0), ("combiner_dropout", -0.1)]
)
def test_config_rejects_bad_values(tiny_clip_config, field, value):
    with pytest.raises(ValueError, match=field):
        ScotConfig(encoder_config=tiny_clip_config.to_dict(), **{field: value})

