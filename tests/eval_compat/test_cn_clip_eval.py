"""tools/eval.py against Chinese-CLIP's own three-step evaluation on the same model and data.

Steps transcribed from cn_clip 1.6.0 (cn_clip/eval/): extract_features.py (texts: ``_preprocess_text`` then
``tokenize(..., 52)``, features L2-normalized, one JSON line each; images: in LMDB key order), then
make_topk_predictions.py / make_topk_predictions_tr.py (float32 inner products, ``sorted(..., reverse=True)[:10]``),
transform_ir_annotation_to_tr.py and evaluation.py / evaluation_tr.py (``read_submission`` checks, ``compute_score``,
``report_score``). Only torch calls are replaced by numpy in float32; the files they pass between steps are
written and read as they write and read them.
"""

from __future__ import annotations

import json
import os

import numpy as np
import paddle
import pytest

from paddle_mm.data.datasets import load_corpus
from paddle_mm.engine.data import build_tokenizer
from paddle_mm.models import load_model
from paddle_mm.text.tokenizer import tokenize
from paddle_mm.vision.transforms import ImageTransform
from tests.cn_clip_reference import cn_clip_compute_score
from tests.conftest import run_tool, tiny_args

RUN = "CN-CLIP-Tiny"


def _preprocess_text(text):
    # cn_clip/eval/data.py
    text = text.lower().replace("“", '"').replace("”", '"')
    return text


# ----------------------------------------------------------------------------- step 1: extract_features.py


@paddle.no_grad()
def extract_features(model, corpus, out_dir) -> tuple[str, str]:
    text_path, image_path = (
        os.path.join(out_dir, "valid_texts.txt_feat.jsonl"),
        os.path.join(out_dir, "valid_imgs.img_feat.jsonl"),
    )
    with open(text_path, "w") as fout:
        for record in corpus.texts:  # EvalTxtDataset: tokenize([_preprocess_text(str(text))], context_length)[0]
            text = paddle.to_tensor(tokenize([_preprocess_text(str(record.text))], context_length=52))
            text_features = model.encode_text(text)
            text_features /= text_features.norm(axis=-1, keepdim=True)
            for text_id, text_feature in zip([record.text_id], text_features.tolist()):
                fout.write("{}\n".format(json.dumps({"text_id": text_id, "feature": text_feature})))
    transform = ImageTransform(model.config.image_resolution)  # equals cn_clip's PIL transform (tests/vision)
    lmdb_order = sorted(corpus.images, key=lambda i: f"{i}".encode("utf-8"))  # EvalImgDataset walks LMDB keys
    with open(image_path, "w") as fout:
        for img_id in lmdb_order:
            image = paddle.to_tensor(transform(corpus.read_image_bytes(img_id))[None])
            image_features = model.encode_image(image)
            image_features /= image_features.norm(axis=-1, keepdim=True)
            for image_id, image_feature in zip([img_id], image_features.tolist()):
                fout.write("{}\n".format(json.dumps({"image_id": image_id, "feature": image_feature})))
    return text_path, image_path


# ----------------------------------------------------------------------------- step 2: make_topk_predictions(_tr).py


def make_topk_predictions(image_feats_path, text_feats_path, output, top_k=10, eval_batch_size=32768):
    image_ids = []
    image_feats = []
    with open(image_feats_path, "r") as fin:
        for line in fin:
            obj = json.loads(line.strip())
            image_ids.append(obj["image_id"])
            image_feats.append(obj["feature"])
    image_feats_array = np.array(image_feats, dtype=np.float32)
    with open(output, "w") as fout:
        with open(text_feats_path, "r") as fin:
            for line in fin:
                obj = json.loads(line.strip())
                text_id = obj["text_id"]
                text_feat = obj["feature"]
                score_tuples = []
                text_feat_tensor = np.array([text_feat], dtype=np.float32)  # [1, feature_dim]
                idx = 0
                while idx < len(image_ids):
                    img_feats_tensor = image_feats_array[idx : min(idx + eval_batch_size, len(image_ids))]
                    batch_scores = text_feat_tensor @ img_feats_tensor.T  # [1, batch_size]
                    for image_id, score in zip(
                        image_ids[idx : min(idx + eval_batch_size, len(image_ids))], batch_scores.squeeze(0).tolist()
                    ):
                        score_tuples.append((image_id, score))
                    idx += eval_batch_size
                top_k_predictions = sorted(score_tuples, key=lambda x: x[1], reverse=True)[:top_k]
                fout.write(
                    "{}\n".format(
                        json.dumps({"text_id": text_id, "image_ids": [entry[0] for entry in top_k_predictions]})
                    )
                )


def make_topk_predictions_tr(image_feats_path, text_feats_path, output, top_k=10, eval_batch_size=32768):
    text_ids = []
    text_feats = []
    with open(text_feats_path, "r") as fin:
        for line in fin:
            obj = json.loads(line.strip())
            text_ids.append(obj["text_id"])
            text_feats.append(obj["feature"])
    text_feats_array = np.array(text_feats, dtype=np.float32)
    with open(output, "w") as fout:
        with open(image_feats_path, "r") as fin:
            for line in fin:
                obj = json.loads(line.strip())
                image_id = obj["image_id"]
                image_feat = obj["feature"]
                score_tuples = []
                image_feat_tensor = np.array([image_feat], dtype=np.float32)  # [1, feature_dim]
                idx = 0
                while idx < len(text_ids):
                    text_feats_tensor = text_feats_array[idx : min(idx + eval_batch_size, len(text_ids))]
                    batch_scores = image_feat_tensor @ text_feats_tensor.T  # [1, batch_size]
                    for text_id, score in zip(
                        text_ids[idx : min(idx + eval_batch_size, len(text_ids))], batch_scores.squeeze(0).tolist()
                    ):
                        score_tuples.append((text_id, score))
                    idx += eval_batch_size
                top_k_predictions = sorted(score_tuples, key=lambda x: x[1], reverse=True)[:top_k]
                fout.write(
                    "{}\n".format(
                        json.dumps({"image_id": image_id, "text_ids": [entry[0] for entry in top_k_predictions]})
                    )
                )


# ----------------------------------------------------------------------------- step 3: evaluation(_tr).py


def transform_ir_annotation_to_tr(input_path):
    t2i_record = dict()
    with open(input_path, "r", encoding="utf-8") as fin:
        for line in fin:
            obj = json.loads(line.strip())
            text_id = obj["text_id"]
            image_ids = obj["image_ids"]
            for image_id in image_ids:
                if image_id not in t2i_record:
                    t2i_record[image_id] = []
                t2i_record[image_id].append(text_id)
    with open(input_path.replace(".jsonl", "") + ".tr.jsonl", "w", encoding="utf-8") as fout:
        for image_id, text_ids in t2i_record.items():
            out_obj = {"image_id": image_id, "text_ids": text_ids}
            fout.write("{}\n".format(json.dumps(out_obj)))
    return input_path.replace(".jsonl", "") + ".tr.jsonl"


def read_submission(submit_path, reference, k, query_key, pred_key):
    """evaluation.py (text_id / image_ids) and evaluation_tr.py (image_id / text_ids) read_submission."""
    if not os.path.exists(submit_path):
        raise Exception("The submission file is not found!")
    submission_dict = {}
    ref_qids = set(reference.keys())
    with open(submit_path, encoding="utf-8") as fin:
        for line in fin:
            line = line.strip()
            pred_obj = json.loads(line)
            if query_key not in pred_obj:
                raise Exception("There exists one line not containing {}: {}".format(query_key, line))
            if not isinstance(pred_obj[query_key], int):
                raise Exception("Found an invalid {} {}".format(query_key, pred_obj[query_key]))
            qid = pred_obj[query_key]
            if pred_key not in pred_obj:
                raise Exception("There exists one line not containing the predicted {}: {}".format(pred_key, line))
            preds = pred_obj[pred_key]
            if not isinstance(preds, list):
                raise Exception("The {} field of {} {} is not a list".format(pred_key, query_key, qid))
            if len(preds) != k:
                raise Exception(
                    "{} {} has wrong number of predictions! Require {}, but {} founded.".format(
                        query_key, qid, k, len(preds)
                    )
                )
            for rank, pred in enumerate(preds):
                if not isinstance(pred, int):
                    raise Exception(
                        "{} {} has an invalid prediction {} at rank {}".format(query_key, qid, pred, rank + 1)
                    )
            if len(set(preds)) != k:
                raise Exception("{} {} has duplicate topk predictions".format(query_key, qid))
            submission_dict[qid] = preds
    pred_qids = set(submission_dict.keys())
    nopred_qids = ref_qids - pred_qids
    if len(nopred_qids) != 0:
        raise Exception("The following ids have no prediction: {}".format(", ".join([str(idx) for idx in nopred_qids])))
    return submission_dict


def read_reference(path, query_key, gt_key):
    fin = open(path, encoding="utf-8")
    reference = dict()
    for line in fin:
        line = line.strip()
        obj = json.loads(line)
        reference[obj[query_key]] = obj[gt_key]
    fin.close()
    return reference


def evaluation(standard_path, submit_path, query_key, pred_key):
    """The __main__ of evaluation.py / evaluation_tr.py: the report_score dict."""
    reference = read_reference(standard_path, query_key, pred_key)
    k = 10
    predictions = read_submission(submit_path, reference, k, query_key, pred_key)
    mean_recall, r1, r5, r10 = cn_clip_compute_score(predictions, reference)  # evaluation.py's compute_score
    return {
        "success": True,
        "score": mean_recall,
        "scoreJson": {"score": mean_recall, "mean_recall": mean_recall, "r1": r1, "r5": r5, "r10": r10},
    }


# ----------------------------------------------------------------------------- the comparison


def chinese_clip_pipeline(model, data_root, work_dir) -> dict:
    corpus = load_corpus(data_root, "valid", "tsv")
    text_feats, image_feats = extract_features(model, corpus, work_dir)
    t2i_pred, i2t_pred = (
        os.path.join(work_dir, "valid_predictions.jsonl"),
        os.path.join(work_dir, "valid_tr_predictions.jsonl"),
    )
    make_topk_predictions(image_feats, text_feats, t2i_pred)
    make_topk_predictions_tr(image_feats, text_feats, i2t_pred)
    gt = _copy(str(data_root / "valid_texts.jsonl"), work_dir)  # the .tr.jsonl is written beside it
    tr_gt = transform_ir_annotation_to_tr(gt)
    return {
        "text_to_image": evaluation(gt, t2i_pred, "text_id", "image_ids"),
        "image_to_text": evaluation(tr_gt, i2t_pred, "image_id", "text_ids"),
    }


def _copy(path, work_dir) -> str:
    dst = os.path.join(work_dir, os.path.basename(path))
    with open(path, encoding="utf-8") as src, open(dst, "w", encoding="utf-8") as out:
        out.write(src.read())
    return dst


@pytest.mark.parametrize("checkpoint", ["epoch_1", "epoch_2"])
def test_tools_eval_equals_chinese_clip_three_step_evaluation(tiny_run, tiny_data, tmp_path, checkpoint):
    ckpt = tiny_run / RUN / checkpoint
    out = tmp_path / "eval"
    proc = run_tool("eval.py", *tiny_args(tiny_data, out, "-o", f"Global.pretrained_model={ckpt}"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    ours = json.loads((out / RUN / "eval_valid.json").read_text(encoding="utf-8"))
    theirs = chinese_clip_pipeline(load_model(ckpt), tiny_data, str(tmp_path))
    for direction in ("text_to_image", "image_to_text"):
        assert ours[direction]["success"] is True
        assert ours[direction]["score"] == pytest.approx(theirs[direction]["score"], abs=1e-9), direction
        assert ours[direction]["scoreJson"] == pytest.approx(theirs[direction]["scoreJson"], abs=1e-9), direction
    # not a vacuous agreement: the model is neither perfect nor hopeless at R@1, in both directions
    assert 0 < theirs["text_to_image"]["scoreJson"]["r1"] < 100 and 0 < theirs["image_to_text"]["scoreJson"]["r1"] < 100


def test_cn_clip_preprocesses_curly_quotes_before_tokenizing():
    """cn_clip's eval and training datasets turn “ ” into '"' before tokenize; our tokenizer (like cn_clip's
    tokenize itself) maps them to [UNK], so a caption with curly quotes must be preprocessed the same way."""
    caption = "他说“你好”"
    assert tokenize([_preprocess_text(caption)])[0].tolist() != tokenize([caption])[0].tolist()


def test_training_and_eval_tokenizer_preprocesses_like_cn_clip():
    caption = "他说“你好”"
    ours = build_tokenizer(52)([caption])
    assert ours.tolist() == tokenize([_preprocess_text(caption)], context_length=52).tolist()
