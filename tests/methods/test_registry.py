import math

import pytest
import torch
import torch.nn.functional as F

from modeling_scot.methods import (
    DEFAULT_METHOD_NAMES,
    METHOD_NAMES,
    SLERP_PAPER_ALPHAS,
    ScotMethod,
    Slerp,
    build_method,
    embedding_sum,
    slerp,
)
from modeling_scot.methods.isa_model import IsaModel
from modeling_scot.methods.lincir_model import LincirModel


def _embeds(rows=6, dim=16, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return (F.normalize(torch.randn(rows, dim, generator=generator), dim=-1) for _ in range(3))


def test_the_registry_names_every_method():
    assert METHOD_NAMES == ("scot", "image", "text", "sum", "slerp", "lincir", "isa")
    assert DEFAULT_METHOD_NAMES == ("scot", "image", "text", "sum", "slerp")
    for name in METHOD_NAMES:
        assert build_method(name).name == name


def test_lincir_runs_its_saved_phi_from_the_registry(scot_model, tmp_path):
    torch.manual_seed(0)
    phi = LincirModel.from_encoder(scot_model)
    phi.save_pretrained(tmp_path / "phi")
    image, text, gallery = _embeds(rows=3)
    texts = ["make it blue", "add a red star", ""]
    method = build_method("lincir", model_path=str(tmp_path / "phi"))
    assert method.settings() == {"model_path": str(tmp_path / "phi")}
    assert torch.equal(method.queries(scot_model, image, text, texts), phi.compose(image, texts))
    assert method.score(scot_model, image, text, gallery, texts).shape == (3, 3)
    with pytest.raises(ValueError, match="needs a trained phi"):
        build_method("lincir").queries(scot_model, image, text, texts)
    with pytest.raises(ValueError, match="composes from the modification texts"):
        method.queries(scot_model, image, text)


@pytest.mark.parametrize("benchmark, alpha", [*SLERP_PAPER_ALPHAS.items(), ("genecis", 0.8), ("world", 0.8), (None, 0.8)])
def test_slerp_follows_its_paper_per_benchmark(benchmark, alpha):
    method = build_method("slerp", benchmark)
    assert method.settings() == {"alpha": alpha}
    assert SLERP_PAPER_ALPHAS == {"cirr": 0.9, "fashioniq": 0.8, "circo": 0.8}


def test_slerp_at_one_half_is_the_sum_and_is_never_the_default():
    image, text, _ = _embeds()
    half = build_method("slerp", alpha=0.5)
    assert torch.allclose(half.queries(None, image, text), embedding_sum(image, text), atol=1e-5)
    assert all(build_method("slerp", benchmark).alpha != 0.5 for benchmark in ("cirr", "fashioniq", "circo", "world"))


def test_settings_are_checked():
    with pytest.raises(ValueError, match=r"no setting\(s\) \['beta'\]"):
        build_method("slerp", beta=0.3)
    with pytest.raises(ValueError, match="alpha must be in"):
        build_method("slerp", alpha=1.5)
    with pytest.raises(ValueError, match="unknown method 'pic2word'"):
        build_method("pic2word")
    with pytest.raises(ValueError, match="has no setting"):
        build_method("image", alpha=0.2)


def test_scores_are_cosines_of_the_queries():
    image, text, gallery = _embeds()
    method = Slerp(alpha=0.3)
    assert torch.allclose(method.score(None, image, text, gallery), slerp(image, text, 0.3) @ gallery.T)


def test_slerp_walks_the_great_circle():
    e1, e2 = torch.eye(3)[:1], torch.eye(3)[1:2]
    third = slerp(e1, e2, 1 / 3)  # a third of the way along 90 degrees: 30 degrees from the image embedding
    assert torch.allclose(third, torch.tensor([[math.cos(math.pi / 6), math.sin(math.pi / 6), 0.0]]), atol=1e-6)
    assert torch.allclose(slerp(e1, e2, 0.0), e1) and torch.allclose(slerp(e1, e2, 1.0), e2, atol=1e-6)


@pytest.mark.parametrize("offset", [0.0, 1e-7, 1e-5])
def test_slerp_of_nearly_parallel_embeddings_is_the_normalised_linear_mix(offset):
    image = torch.tensor([[1.0, 0.0, 0.0]])
    text = F.normalize(torch.tensor([[1.0, offset, 0.0]]), dim=-1)
    mixed = slerp(image, text, 0.8)
    assert torch.isfinite(mixed).all()
    assert torch.allclose(mixed, F.normalize(0.2 * image + 0.8 * text, dim=-1), atol=1e-6)


def test_scot_queries_are_the_combiner_in_batches(scot_model):
    image, text, _ = _embeds(rows=7)
    scot_model.eval()
    expected = scot_model.compose(image, text).query_embeds.detach()
    assert torch.allclose(ScotMethod().queries(scot_model, image, text), expected, atol=1e-6)
    assert ScotMethod().settings() == {}


def test_isa_runs_its_saved_query_encoder_on_the_reference_images(scot_model, tmp_path):
    from PIL import Image

    torch.manual_seed(0)
    isa = IsaModel.from_encoder(scot_model)
    isa.save_pretrained(tmp_path / "isa")
    images = [Image.new("RGB", (20, 24), colour) for colour in ((200, 0, 0), (0, 200, 0))]
    texts = ["make it blue", "add a star"]
    method = build_method("isa", model_path=str(tmp_path / "isa"))
    assert torch.equal(method.queries(scot_model, None, None, texts, images), isa.compose(images, texts))
    with pytest.raises(ValueError, match="needs a trained query encoder"):
        build_method("isa").queries(scot_model, None, None, texts, images)
    with pytest.raises(ValueError, match="reference images and modification texts"):
        method.queries(scot_model, None, None, texts)
