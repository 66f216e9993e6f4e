"""The VQA generator names its validation split ``valid`` like the caption generator; ``val`` data still reads."""

from __future__ import annotations

import hashlib

from paddle_mm.data.vqa import VQA_SPLITS, load_vqa_split, make_vqa_dataset

# sha256 of val_questions.jsonl from make_vqa_dataset(out, {"val": 6}, seed=4, image_size=24): the split is drawn
# from the generator key it had as ``val``. Recorded again when VQA objects became large and centred (issue 10),
# which changed every split's draws, and again when count / existence scenes got same-colour objects of other
# shapes (1c94b4c7... before); the rename itself changed no byte (b9002d28... before and after it).
OLD_VAL_QUESTIONS = "2255895bf1812ee9adbc9f9c7e61e42888881d1c3094057e15201733c77e8e74"


def test_the_split_is_valid_and_its_data_is_what_val_was(tmp_path):
    assert VQA_SPLITS == ("train", "valid", "test")
    make_vqa_dataset(tmp_path, {"valid": 6}, seed=4, image_size=24)
    written = sorted(p.name for p in tmp_path.glob("valid_*"))
    assert written == ["valid_imgs.tsv", "valid_questions.jsonl", "valid_scenes.jsonl"]
    assert not list(tmp_path.glob("val_*"))
    assert hashlib.sha256((tmp_path / "valid_questions.jsonl").read_bytes()).hexdigest() == OLD_VAL_QUESTIONS


def test_old_val_data_and_old_configs_still_read(tmp_path):
    make_vqa_dataset(tmp_path, {"val": 6}, seed=4, image_size=24)  # the old name generates the valid split
    new = load_vqa_split(tmp_path, "val")  # a config written before the rename
    for name in ("imgs.tsv", "questions.jsonl"):  # data written before the rename
        (tmp_path / f"valid_{name}").rename(tmp_path / f"val_{name}")
    old = load_vqa_split(tmp_path, "valid")
    assert len(old) == len(new) == 6 and old.questions == new.questions
