import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback, TrainingArguments

from modeling_scot import (
    CachedEmbeddingCollator,
    ScotDataCollator,
    ScotModel,
    ScotTrainer,
    build_embedding_cache,
)


@pytest.fixture
def cached(scot_model, triplet_dataset, tmp_path):
    cache, index = build_embedding_cache(scot_model, triplet_dataset, tmp_path / "cache", progress=False)
    return cache, index


def test_cache_embeds_each_distinct_image_and_text_once(cached, triplet_dataset):
    cache, index = cached
    assert cache.image_embeds.shape == (4, 16)
    texts = set(triplet_dataset["modification"]) | set(triplet_dataset["modified_caption"]) | set(triplet_dataset["caption"])
    texts |= {t for row in triplet_dataset["hard_negatives"] for t in row}
    assert cache.text_embeds.shape == (len(texts), 16)
    assert len(index) == len(triplet_dataset)
    assert set(index.column_names) == {"image_index", "text_index", "target_index", "caption_index", "negative_indices"}


def test_cache_is_reused_and_resumes_after_interruption(scot_model, triplet_dataset, tmp_path, monkeypatch):
    import modeling_scot.embedding_cache as embedding_cache

    folder, real_encode_texts = tmp_path / "cache", embedding_cache.encode_texts
    text_calls = []

    def killed_at_the_third_text_chunk(*args, **kwargs):
        text_calls.append(1)
        if len(text_calls) == 3:
            raise KeyboardInterrupt  # as if the run had been killed while embedding its last chunk
        return real_encode_texts(*args, **kwargs)

    monkeypatch.setattr(embedding_cache, "encode_texts", killed_at_the_third_text_chunk)
    with pytest.raises(KeyboardInterrupt):
        build_embedding_cache(scot_model, triplet_dataset, folder, chunk_size=3, progress=False)
    (cache_folder,) = folder.iterdir()
    assert sorted(path.name for path in cache_folder.iterdir()) == [
        "images.npy", "texts-00000.safetensors", "texts-00001.safetensors"  # 4 images merged; 2 of 3 text chunks
    ]

    monkeypatch.setattr(embedding_cache, "encode_images", lambda *a, **k: pytest.fail("images were re-encoded"))
    second, _ = build_embedding_cache(scot_model, triplet_dataset, folder, chunk_size=3, progress=False)
    assert len(text_calls) == 4  # only the missing chunk
    assert sorted(path.name for path in cache_folder.iterdir()) == ["images.npy", "texts.npy"]
    monkeypatch.setattr(embedding_cache, "encode_texts", lambda *a, **k: pytest.fail("texts were re-encoded"))
    third, _ = build_embedding_cache(scot_model, triplet_dataset, folder, chunk_size=3, progress=False)
    assert torch.equal(second.text_embeds, third.text_embeds) and torch.equal(second.image_embeds, third.image_embeds)

    monkeypatch.undo()
    fresh, _ = build_embedding_cache(scot_model, triplet_dataset, tmp_path / "fresh", chunk_size=3, progress=False)
    assert torch.equal(fresh.text_embeds, third.text_embeds) and torch.equal(fresh.image_embeds, third.image_embeds)
    memory_mapped = np.lib.format.open_memmap(cache_folder / "texts.npy", mode="r")
    assert torch.equal(torch.from_numpy(np.asarray(memory_mapped)), third.text_embeds)


def test_cache_key_changes_with_the_encoder(scot_model, tiny_clip_config, triplet_dataset, tmp_path):
    first, _ = build_embedding_cache(scot_model, triplet_dataset, tmp_path, progress=False)
    with torch.no_grad():
        scot_model.encoder.text_projection.weight.add_(0.01)
    second, _ = build_embedding_cache(scot_model, triplet_dataset, tmp_path, progress=False)
    assert first.folder != second.folder


def test_cache_rejects_a_dataset_without_triplet_columns(scot_model, triplet_dataset, tmp_path):
    with pytest.raises(ValueError, match="modified_caption"):
        build_embedding_cache(scot_model, triplet_dataset.remove_columns("modified_caption"), tmp_path, progress=False)


def test_raw_and_cached_paths_give_the_same_loss(scot_model, tiny_processor, triplet_dataset, cached):
    cache, index = cached
    rows = list(range(len(triplet_dataset)))
    raw = ScotDataCollator(tiny_processor)([triplet_dataset[i] for i in rows])
    fast = CachedEmbeddingCollator(cache)([index[i] for i in rows])
    assert raw["negative_input_ids"].shape[:2] == fast["negative_embeds"].shape[:2] == (12, 2)
    assert torch.equal(raw["negative_mask"], fast["negative_mask"])
    scot_model.eval()
    raw_loss = scot_model(**raw).loss
    fast_loss = scot_model(**fast).loss
    assert raw_loss.item() == pytest.approx(fast_loss.item(), rel=1e-5)
    without_negatives = scot_model(**{k: v for k, v in fast.items() if not k.startswith("negative")}).loss
    assert without_negatives.item() != pytest.approx(fast_loss.item(), rel=1e-3)


def _args(output_dir, **overrides):
    defaults = dict(
        output_dir=str(output_dir),
        per_device_train_batch_size=4,
        learning_rate=1e-2,
        num_train_epochs=2,
        remove_unused_columns=False,
        report_to="none",
        save_strategy="no",
        logging_steps=1,
        disable_tqdm=True,
        use_cpu=True,
        seed=0,
        data_seed=0,
    )
    return TrainingArguments(**{**defaults, **overrides})


def test_training_changes_only_the_combiner(scot_model, cached, tmp_path):
    cache, index = cached
    encoder_before = {k: v.clone() for k, v in scot_model.encoder.state_dict().items()}
    combiner_before = {k: v.clone() for k, v in scot_model.combiner.state_dict().items()}
    collator = CachedEmbeddingCollator(cache)
    whole_batch = collator([index[i] for i in range(len(index))])

    def full_loss() -> float:
        scot_model.eval()
        with torch.no_grad():
            return scot_model(**whole_batch).loss.item()

    loss_before = full_loss()
    trainer = ScotTrainer(model=scot_model, args=_args(tmp_path, num_train_epochs=5), train_dataset=index, data_collator=collator)
    assert trainer.train().global_step == 15
    assert full_loss() < 0.9 * loss_before
    for name, value in scot_model.encoder.state_dict().items():
        assert torch.equal(value, encoder_before[name]), name
    assert any(not torch.equal(v, combiner_before[k]) for k, v in scot_model.combiner.state_dict().items())


def test_training_on_raw_batches(scot_model, tiny_processor, triplet_dataset, tmp_path):
    trainer = ScotTrainer(
        model=scot_model,
        args=_args(tmp_path, num_train_epochs=1),
        train_dataset=triplet_dataset,
        data_collator=ScotDataCollator(tiny_processor),
    )
    assert trainer.train().global_step == 3


class _StopAt(TrainerCallback):
    """Stops training after a given step, as a killed run would (the schedule is left unchanged)."""

    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            control.should_training_stop = True


def test_checkpoint_resume_reaches_the_same_weights(tiny_clip_dir, triplet_dataset, tmp_path):
    def run(output_dir, **overrides):
        torch.manual_seed(0)
        model = ScotModel.from_clip(tiny_clip_dir, combiner_dropout=0.0)
        cache, index = build_embedding_cache(model, triplet_dataset, tmp_path / "cache", progress=False)
        args = _args(output_dir, save_strategy="steps", save_steps=3, **overrides)
        return model, ScotTrainer(model=model, args=args, train_dataset=index, data_collator=CachedEmbeddingCollator(cache))

    model, trainer = run(tmp_path / "straight")
    trainer.train()
    expected = {k: v.clone() for k, v in model.combiner.state_dict().items()}

    model, trainer = run(tmp_path / "interrupted")
    trainer.add_callback(_StopAt(3))
    trainer.train()
    checkpoint = tmp_path / "interrupted" / "checkpoint-3"
    saved = load_file(checkpoint / "model.safetensors")
    assert any(k.startswith("combiner.") for k in saved)

    model, trainer = run(tmp_path / "interrupted")
    trainer.train(resume_from_checkpoint=str(checkpoint))
    for name, value in model.combiner.state_dict().items():
        assert torch.allclose(value, expected[name], atol=1e-6), name


def test_trainer_rejects_batches_without_targets(scot_model, cached, tmp_path):
    cache, index = cached
    collator = CachedEmbeddingCollator(cache)
    batch = {k: v for k, v in collator([index[0], index[1]]).items() if k != "target_embeds"}
    trainer = ScotTrainer(model=scot_model, args=_args(tmp_path), train_dataset=index, data_collator=collator)
    with pytest.raises(ValueError, match="targets"):
        trainer.compute_loss(scot_model, batch)


def test_a_damaged_cache_table_is_named(scot_model, triplet_dataset, tmp_path):
    cache, _ = build_embedding_cache(scot_model, triplet_dataset, tmp_path, progress=False)
    table = cache.folder / "texts.npy"
    table.write_bytes(table.read_bytes()[:200])  # cut short
    with pytest.raises(ValueError, match=r"cache file .*texts\.npy cannot be read .* delete it to rebuild"):
        build_embedding_cache(scot_model, triplet_dataset, tmp_path, progress=False)
    np.save(table, np.zeros((2, 3), dtype=np.float64))
    with pytest.raises(ValueError, match=r"texts\.npy holds a float64 table of shape \(2, 3\), expected \d+ float32"):
        build_embedding_cache(scot_model, triplet_dataset, tmp_path, progress=False)
