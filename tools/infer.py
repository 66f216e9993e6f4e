"""Search with a trained model: text -> top-k images and image -> top-k captions.

    python tools/infer.py -c configs/quickstart.yml -o Global.pretrained_model=output/<run>/best_model \
        -o Infer.queries="['左上角有一个红色的圆形']" -o Infer.query_images="['a.png']"
    # the same search on an export (tools/export_model.py), on Paddle Inference or ONNX Runtime:
    python tools/infer.py -c configs/quickstart.yml -o Infer.model_dir=./inference -o Infer.backend=auto
    # or on a signed package of one, verified before anything is loaded (docs/model_package.md):
    python tools/infer.py -c configs/quickstart.yml -o Infer.package=/opt/models/cn-clip \
        -o Infer.trust="['/etc/paddle_mm/signer.pub']" -o Infer.package_model=cn-clip-vit-b-16

The gallery is ``Infer.root`` / ``Infer.split`` (Chinese-CLIP TSV/JSONL or the folder format); results are
printed and written to ``<output_dir>/<Arch.name>/infer_results.json``, and the text queries' top-k images
drawn in ``infer_grid.png`` beside it. A query image that cannot be read is skipped and counted, as training
skips bad images; other errors are one line with an exit code (docs/export.md, "Exit codes").
"""

import json
import sys
from pathlib import Path

from _common import ConfigError, exit_on_config_error, parse_config
from _errors import EXIT_DATA, EXIT_MODEL, exit_on, exit_on_predictor_error, fail, writable_output

from paddle_mm.inference.search import EmptyGalleryError, draw_grid, result_lines, search_gallery  # numpy only


def check_config(g: dict, inf: dict) -> None:
    given = {"Global.pretrained_model": g["pretrained_model"], "Infer.model_dir": inf["model_dir"]}
    sources = [key for key, value in {**given, "Infer.package": inf["package"]}.items() if value]
    if len(sources) != 1:
        raise ConfigError(
            f"{' and '.join(sources) or 'model'}: pass exactly one of -o Global.pretrained_model=output/<run>/"
            "best_model (checkpoint), -o Infer.model_dir=<export dir> or -o Infer.package=<signed export>"
        )
    if inf["package"] and not (inf["trust"] and inf["package_model"]):
        raise ConfigError(
            "Infer.package: needs -o Infer.trust=\"['signer.pub']\" (the anchors you trust) and "
            "-o Infer.package_model=<name it was signed for>"
        )


def build_encoders(g: dict, inf: dict):
    """The encoders of the configured model; a refused package exits with its code (10-14), a missing or corrupt
    model with 6, an unusable device with 2 (tools/_errors.exit_on_predictor_error)."""
    given = {"Global.pretrained_model": g["pretrained_model"], "Infer.model_dir": inf["model_dir"]}
    given["Infer.package"] = inf["package"]
    source = next(f"{key} {value}" for key, value in given.items() if value)  # check_config: exactly one
    with exit_on_predictor_error(source, "Global.device"):
        if g["pretrained_model"]:
            import hardware
            from paddle_mm.engine.checkpoint import resolve_checkpoint
            from paddle_mm.inference.search import eager_encoders

            hardware.resolve_device(g["device"])
            return eager_encoders(resolve_checkpoint(g["pretrained_model"]), inf["batch_size"], g["progress_bar"])
        from paddle_mm.inference.search import predictor_encoders
        from paddle_mm.inference.source import ModelSource, open_predictor, verified_line

        keys = ("model_dir", "package", "trust", "package_model", "package_state", "decrypt_key")
        options = {"backend": inf["backend"], "precision": inf["precision"], "device": g["device"]}
        source = ModelSource(*(inf[k] for k in keys), inf["decrypt_passphrase_env"])
        predictor = open_predictor(source, **options, threads=inf["threads"], batch_size=inf["batch_size"])
        if verified_line(predictor):
            print(verified_line(predictor))
        return predictor_encoders(predictor)


def built_in_scenes(root: str, split: str) -> dict | None:
    """The scene records of built-in data (every search result can then be checked), else None."""
    from paddle_mm.demo.shape_queries import load_scenes, scenes_file

    path = scenes_file(root, split)
    return load_scenes(path) if path else None


def main() -> None:
    cfg, _ = parse_config(__doc__)
    g, inf = cfg["Global"], cfg["Infer"]
    eval_section = cfg["DataLoader"]["Eval"]
    with exit_on_config_error():
        check_config(g, inf)
        root = inf["root"] or (eval_section["dataset"]["root"] if eval_section else None)
        if not root:
            raise ConfigError("Infer.root: missing; set the gallery directory with -o Infer.root=...")
    out = writable_output(Path(g["output_dir"]) / cfg["Arch"]["name"] / "infer_results.json", "Global.output_dir:")
    from paddle_mm.data.datasets import load_corpus
    from paddle_mm.inference import ExportDirError

    with exit_on(EXIT_DATA, FileNotFoundError, ValueError):
        corpus = load_corpus(root, inf["split"])
    encoders = build_encoders(g, inf)
    with exit_on(EXIT_MODEL, ExportDirError):  # a model file is checked (digest) when first used
        try:
            results = search_gallery(
                corpus, encoders, inf["queries"], inf["query_images"], inf["topk"], built_in_scenes(root, inf["split"])
            )
        except EmptyGalleryError as err:
            fail(EXIT_DATA, f"gallery {root} {inf['split']}: {err}; check Infer.root and Infer.split")
    print("\n".join(result_lines(results)))
    skipped = results["skipped_query_images"]
    for line in skipped:
        print(f"skipped query: {line}", file=sys.stderr)
    if skipped:
        print(f"skipped {len(skipped)} of {len(inf['query_images'])} query images (unreadable; listed above)")
    if results["text_to_image"]:
        grid, line = draw_grid(out.with_name("infer_grid.png"), corpus, results["text_to_image"])
        results["grid"] = grid["path"]
        print(line)
    out.write_text(json.dumps(results, ensure_ascii=False, indent=1), encoding="utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
