"""BLIP-2 as a SCOT backbone: the retrieval model only, its processor, multi-vector galleries searched by each
image's best query vector (exact and faiss), the embedding cache and `scot train`, and `scot eval`'s baselines."""

import json

import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from transformers import BertTokenizer, Blip2Config, Blip2ForImageTextRetrieval, Blip2Model, BlipImageProcessor

from modeling_scot import CachedEmbeddingCollator, ScotConfig, ScotModel, ScotProcessor, build_embedding_cache
from modeling_scot.cli import main
from modeling_scot.demo.search import compose_queries
from modeling_scot.encoders import text_matched
from modeling_scot.encoding import encode_images, encode_texts
from modeling_scot.evaluation.cirr import load_cirr
from modeling_scot.evaluation.scoring import compute_metrics
from modeling_scot.methods import build_method
from modeling_scot.retrieval import Gallery, GalleryIndex, ImageFiles, compose_query, embed_gallery, faiss_available
from tests.conftest import BLIP2_QUERY_TOKENS
from tests.evaluation.benchmark_fixtures import make_cirr

BASELINES = ("image", "text", "sum", "slerp")


@pytest.fixture(scope="module")
def blip2(tiny_blip2_dir) -> ScotModel:
    """V pooled as the mean of the query vectors, one vector per image."""
    torch.manual_seed(0)
    return ScotModel.from_encoder(tiny_blip2_dir, combiner_dropout=0.0, image_pooling="mean").eval()


def brute_force_max(queries: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
    """(Q, N): each query against each image's best vector, one pair at a time."""
    return torch.tensor([[max(float(query @ vector) for vector in image) for image in vectors] for query in queries])


# ----- what is loaded ------------------------------------------------------------------------------------------


def test_blip2_models_other_than_the_retrieval_one_are_refused(tiny_blip2_config, tmp_path):
    needs = r"SCOT needs BLIP-2's retrieval model, Blip2ForImageTextRetrieval"
    with pytest.raises(ValueError, match=rf"Blip2Model: {needs}"):
        ScotModel.from_encoder(Blip2Model(tiny_blip2_config))
    captioner = tmp_path / "captioner"
    Blip2ForImageTextRetrieval(tiny_blip2_config).save_pretrained(captioner)
    config = json.loads((captioner / "config.json").read_text())
    (captioner / "config.json").write_text(json.dumps({**config, "architectures": ["Blip2ForConditionalGeneration"]}))
    (captioner / "model.safetensors").write_bytes(b"never read")  # refused from its config, before any weights
    with pytest.raises(ValueError, match=r"captioner' is a BLIP-2 Blip2ForConditionalGeneration: SCOT needs"):
        ScotModel.from_encoder(captioner)
    no_text = Blip2Config(**{**tiny_blip2_config.to_dict(), "qformer_config": {
        **tiny_blip2_config.qformer_config.to_dict(), "use_qformer_text_input": False}})
    with pytest.raises(ValueError, match="use_qformer_text_input=false, so its Q-Former has no text path"):
        ScotModel.from_encoder(Blip2ForImageTextRetrieval(no_text))


def test_the_encoder_is_the_retrieval_model_and_its_embedding_size_the_projection(blip2, tiny_blip2_config):
    assert isinstance(blip2.encoder, Blip2ForImageTextRetrieval)
    assert blip2.config.embed_dim == tiny_blip2_config.image_text_hidden_size
    assert blip2.encoder_adapter.multi_vector and blip2.encoder_adapter.vectors_per_image == BLIP2_QUERY_TOKENS


def test_the_processor_is_blips_image_processor_and_a_bert_tokenizer_saved_with_the_model(blip2, tmp_path):
    assert isinstance(blip2.processor.image_processor, BlipImageProcessor)
    assert isinstance(blip2.processor.tokenizer, BertTokenizer)
    blip2.save_pretrained(tmp_path / "model")
    loaded = ScotModel.from_pretrained(tmp_path / "model").processor
    assert isinstance(loaded.image_processor, BlipImageProcessor) and isinstance(loaded.tokenizer, BertTokenizer)
    image = torch.randint(0, 256, (3, 20, 30), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    batch = loaded(text=["make it blue", ""], images=image)
    original = blip2.processor(text=["make it blue", ""], images=image)
    assert all(torch.equal(batch[name], original[name]) for name in ("input_ids", "attention_mask", "pixel_values"))
    cls_id = loaded.tokenizer.cls_token_id
    assert batch["input_ids"][:, 0].tolist() == [cls_id, cls_id]  # the Q-Former's text path pools this position
    assert batch["pixel_values"].shape == (1, 3, 32, 32)
    with pytest.raises(ValueError, match=r"text\[1\] must be a str, got int"):
        loaded(text=["a", 3])
    with pytest.raises(ValueError, match=r"images\[0\] has unsupported type dict"):
        loaded(images=[{}])


def test_a_folder_saved_by_blip2s_own_processor_loads_without_image_tokens(tiny_blip2_dir, tmp_path):
    from transformers import Blip2Processor

    reference = ScotProcessor.from_pretrained(tiny_blip2_dir)
    folder = tmp_path / "blip2-processor"
    Blip2Processor(reference.image_processor, reference.tokenizer, num_query_tokens=BLIP2_QUERY_TOKENS).save_pretrained(
        folder
    )
    loaded = ScotProcessor.from_pretrained(folder)
    assert torch.equal(loaded(text=["a red circle"])["input_ids"], reference(text=["a red circle"])["input_ids"])


# ----- multi-vector galleries ----------------------------------------------------------------------------------


def test_gallery_vectors_are_the_query_tokens_and_search_takes_each_images_best(blip2, tmp_path):
    paths = []
    for number in range(12):
        pixels = torch.randint(0, 256, (24, 24, 3), generator=torch.Generator().manual_seed(number), dtype=torch.uint8)
        paths.append(tmp_path / f"{number}.png")
        Image.fromarray(pixels.numpy()).save(paths[-1])
    gallery = embed_gallery(blip2, ImageFiles(paths), tmp_path / "cache", progress=False)
    assert gallery.embeddings.shape == (12, BLIP2_QUERY_TOKENS, blip2.config.embed_dim) and gallery.vectors == 4
    pixels = blip2.processor(images=[str(path) for path in paths])["pixel_values"]
    assert torch.allclose(gallery.embeddings, blip2.get_image_vectors(pixels), atol=1e-6)
    assert torch.equal(Gallery.load(gallery.save(tmp_path / "saved")).embeddings, gallery.embeddings)

    queries = F.normalize(torch.randn(5, blip2.config.embed_dim, generator=torch.Generator().manual_seed(1)), dim=-1)
    truth = brute_force_max(queries, gallery.embeddings)
    exclude = [[], [gallery.ids[int(truth[1].argmax())]], [], [], gallery.ids[:3]]
    for kind in ("exact", *(["flat"] if faiss_available() else [])):
        index = GalleryIndex.load(GalleryIndex.from_gallery(gallery, kind).save(tmp_path / kind))
        assert index.vectors == BLIP2_QUERY_TOKENS
        scores, ids = index.search(queries, k=4, exclude=exclude)
        for row in range(len(queries)):
            allowed = [i for i, name in enumerate(gallery.ids) if name not in exclude[row]]
            best = sorted(allowed, key=lambda i: -float(truth[row, i]))[:4]
            assert ids[row] == [gallery.ids[i] for i in best], kind
            assert torch.allclose(scores[row], truth[row, best], atol=1e-5), kind


# ----- training ------------------------------------------------------------------------------------------------


def test_the_training_cache_holds_one_pooled_vector_per_image(blip2, triplet_dataset, tmp_path):
    cache, index = build_embedding_cache(blip2, triplet_dataset, tmp_path / "cache", progress=False)
    images = triplet_dataset.select(range(len(triplet_dataset)))["image"]
    first_rows = {row["image_index"]: number for number, row in enumerate(index)}
    expected = encode_images(blip2, [images[first_rows[i]] for i in range(len(first_rows))], progress=False)
    assert cache.image_embeds.shape == (len(first_rows), blip2.config.embed_dim)
    assert torch.allclose(cache.image_embeds, expected, atol=1e-6)


def test_scot_train_trains_a_combiner_on_blip2(tiny_blip2_dir, triplet_dataset, tmp_path):
    triplet_dataset.save_to_disk(str(tmp_path / "triplets"))
    argv = ["train", "--clip", tiny_blip2_dir, "--dataset", str(tmp_path / "triplets"), "--output",
            str(tmp_path / "run"), "--batch-size", "4", "--num_train_epochs", "1", "--combiner-only"]
    assert main(argv) == 0
    model = ScotModel.from_pretrained(tmp_path / "run" / "model")
    assert isinstance(model.encoder, Blip2ForImageTextRetrieval) and model.config.encoder_name_or_path == tiny_blip2_dir


# ----- evaluation ----------------------------------------------------------------------------------------------


def test_scot_eval_scores_the_baselines_against_each_images_best_query_vector(blip2, tmp_path, capsys):
    blip2.save_pretrained(tmp_path / "model")
    root = make_cirr(tmp_path / "cirr")
    output = tmp_path / "metrics.json"
    methods = [arg for name in BASELINES for arg in ("--method", name)]
    code = main(["eval", "--model", str(tmp_path / "model"), "--benchmark", "cirr", "--data-root", str(root),
                 "--split", "val", *methods, "--output", str(output), "--cache-dir", str(tmp_path / "cache")])
    assert code == 0, capsys.readouterr().err
    report = json.loads(output.read_text())

    split = load_cirr(root, "val")
    pixels = blip2.processor(images=[split.open_image(image_id) for image_id in split.gallery])["pixel_values"]
    vectors = blip2.get_image_vectors(pixels)
    rows = [split.gallery_index[query.reference] for query in split.queries]
    references = F.normalize(vectors[rows].mean(dim=1), dim=-1)  # V: the mean of the reference's query vectors
    texts = encode_texts(blip2, split.texts, progress=False)
    for name in BASELINES:
        queries = build_method(name, "cirr").queries(blip2, references, texts)
        expected = compute_metrics(split, brute_force_max(queries, vectors).numpy())
        assert report["methods"][name] == pytest.approx(expected, abs=0.01), name


# ----- V matched to the modification text ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def matched(tiny_blip2_dir) -> ScotModel:
    """The default pooling: V is the query vector closest to the modification."""
    torch.manual_seed(0)
    return ScotModel.from_encoder(tiny_blip2_dir, combiner_dropout=0.0).eval()


def test_text_matched_v_is_the_query_vector_closest_to_the_modification(matched, triplet_dataset):
    assert matched.config.image_pooling == "text_matched" and matched.pools_with_text
    images, texts = triplet_dataset["image"][:4], triplet_dataset["modification"][:4]
    vectors = encode_images(matched, images, vectors=True, progress=False)
    text_embeds = encode_texts(matched, texts, progress=False)
    closest = [max(range(BLIP2_QUERY_TOKENS), key=lambda k: float(vectors[row, k] @ text_embeds[row])) for row in range(4)]
    expected = torch.stack([vectors[row, k] for row, k in enumerate(closest)])
    assert torch.equal(matched.pool_image(vectors, text_embeds), expected)
    pixels = matched.processor(images=images)["pixel_values"]
    with torch.inference_mode():
        from_pixels = matched(pixel_values=pixels, text_embeds=text_embeds, return_loss=False)
        from_vector = matched.compose(expected, text_embeds)
    assert torch.allclose(from_pixels.query_embeds, from_vector.query_embeds, atol=1e-5)
    assert torch.allclose(from_pixels.image_embeds, expected, atol=1e-5)


def test_the_mean_and_single_vector_encoders_ignore_the_text(blip2, tiny_clip_dir):
    vectors = F.normalize(torch.randn(3, BLIP2_QUERY_TOKENS, blip2.config.embed_dim), dim=-1)
    texts = F.normalize(torch.randn(3, blip2.config.embed_dim), dim=-1)
    assert torch.allclose(blip2.pool_image(vectors, texts), F.normalize(vectors.mean(dim=1), dim=-1))
    clip = ScotModel.from_encoder(tiny_clip_dir, image_pooling="text_matched")
    assert not clip.pools_with_text
    single = F.normalize(torch.randn(3, 1, clip.config.embed_dim), dim=-1)
    assert torch.equal(clip.pool_image(single, texts[:, : clip.config.embed_dim]), single[:, 0])


def test_a_text_matched_cache_keeps_every_query_vector_and_trains(matched, triplet_dataset, tmp_path):
    cache, index = build_embedding_cache(matched, triplet_dataset, tmp_path / "cache", progress=False)
    distinct = len(set(index["image_index"]))
    assert cache.image_embeds.shape == (distinct, BLIP2_QUERY_TOKENS, matched.config.embed_dim)
    pooled, _ = build_embedding_cache(
        ScotModel.from_encoder(matched.config.encoder_name_or_path, image_pooling="mean"),
        triplet_dataset,
        tmp_path / "cache",
        progress=False,
    )
    assert pooled.folder != cache.folder and pooled.image_embeds.shape == (distinct, matched.config.embed_dim)
    batch = CachedEmbeddingCollator(cache)([index[row] for row in range(4)])
    loss = matched.train()(**batch).loss
    loss.backward()
    matched.eval()
    assert torch.isfinite(loss) and matched.combiner.image_projection[0].weight.grad is not None


def test_scot_train_and_eval_take_the_pooling_and_save_it(tiny_blip2_dir, triplet_dataset, tmp_path, capsys):
    triplet_dataset.save_to_disk(str(tmp_path / "triplets"))
    argv = ["train", "--clip", tiny_blip2_dir, "--dataset", str(tmp_path / "triplets"), "--output",
            str(tmp_path / "run"), "--batch-size", "4", "--num_train_epochs", "1", "--image-pooling", "mean"]
    assert main(argv) == 0, capsys.readouterr().err
    model = ScotModel.from_pretrained(tmp_path / "run" / "model")
    assert model.config.image_pooling == "mean" and not model.pools_with_text
    with pytest.raises(SystemExit):
        main([*argv[:-1], "max"])
    assert "invalid choice: 'max'" in capsys.readouterr().err


def test_an_unknown_pooling_is_refused_by_name():
    with pytest.raises(ValueError, match=r"ScotConfig.image_pooling must be one of \['mean', 'text_matched'\], got 'max'"):
        ScotConfig(image_pooling="max")


def test_queries_and_eval_pool_each_reference_with_its_own_modification(matched, triplet_dataset, tmp_path, capsys):
    image, text = triplet_dataset["image"][0], triplet_dataset["modification"][0]
    vectors = encode_images(matched, [image], vectors=True, progress=False)
    texts = encode_texts(matched, [text], progress=False)
    expected = text_matched(vectors, texts)
    query = compose_query(matched, image, text, "scot")
    assert torch.allclose(query.image_embeds, expected, atol=1e-6)
    with torch.inference_mode():
        composed = matched.compose(expected, texts)
    assert torch.allclose(query.query_embeds, composed.query_embeds, atol=1e-5)
    images, modifications = triplet_dataset["image"][:3], triplet_dataset["modification"][:3]
    for batched, image, text in zip(compose_queries(matched, images, modifications, ["scot"] * 3), images, modifications):
        alone = compose_query(matched, image, text, "scot")  # the demo's batches pool as one query does
        assert torch.allclose(batched.image_embeds, alone.image_embeds, atol=1e-5)
        assert torch.allclose(batched.query_embeds, alone.query_embeds, atol=1e-5)

    matched.save_pretrained(tmp_path / "model")
    root = make_cirr(tmp_path / "cirr")
    code = main(["eval", "--model", str(tmp_path / "model"), "--benchmark", "cirr", "--data-root", str(root),
                 "--split", "val", "--method", "image", "--output", str(tmp_path / "metrics.json"),
                 "--cache-dir", str(tmp_path / "cache")])
    assert code == 0, capsys.readouterr().err
    split = load_cirr(root, "val")
    pixels = matched.processor(images=[split.open_image(image_id) for image_id in split.gallery])["pixel_values"]
    gallery = matched.get_image_vectors(pixels)
    references = gallery[[split.gallery_index[query.reference] for query in split.queries]]
    references = text_matched(references, encode_texts(matched, split.texts, progress=False))
    expected_metrics = compute_metrics(split, brute_force_max(references, gallery).numpy())
    report = json.loads((tmp_path / "metrics.json").read_text())
    assert report["methods"]["image"] == pytest.approx(expected_metrics, abs=0.01)
