"""`import paddle_mm` stays light: no paddle, paddlenlp or paddlex until a model or trainer is used."""

import subprocess
import sys


def _modules_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(','.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return set(out.strip().split(","))


def test_import_paddle_mm_is_light():
    mods = _modules_after("import paddle_mm, paddle_mm.config, paddle_mm.metrics, hardware")
    assert not {"paddle", "paddlenlp", "paddlex", "cv2"} & mods


def test_tokenizer_needs_no_paddle():
    mods = _modules_after("import paddle_mm; paddle_mm.tokenize(['左上角有一个红色的圆形'])")
    assert "paddle" not in mods and "paddlenlp" not in mods


def test_lazy_names_resolve():
    import paddle_mm

    assert callable(paddle_mm.create_model) and "CN-CLIP-Tiny" in paddle_mm.list_models()
    try:
        paddle_mm.no_such_name  # noqa: B018
    except AttributeError as err:
        assert "no_such_name" in str(err)
    else:
        raise AssertionError("unknown attribute did not raise")
