"""Train a model: ``python tools/train.py -c configs/quickstart.yml [-o Global.epochs=3 ...]``.

Multi-process (CPU gloo or GPUs): ``python -m paddle.distributed.launch --nproc_per_node 2 tools/train.py -c ...``.
Exit codes (docs/training.md): 2 config or device, 3 data, 4 output folder unusable, 6 corrupt checkpoint (the
same codes as every tool), 20 output folder holds a run, 21 folder in use, 22 resume drift, 23 diverged,
130 / 143 SIGINT / SIGTERM.
"""

import shlex
import sys
from pathlib import Path

from _common import exit_on_config_error, parse_config


def resume_command(args, latest: Path) -> str:
    """This command line again, resuming from ``latest`` (earlier resume / overwrite overrides dropped); before
    the first checkpoint there is nothing to resume, so the same command starts over."""
    dropped = ("Global.checkpoints=", "Global.overwrite=")
    keep = [o for group in args.override for o in group if not o.startswith(dropped)]
    words = ["python", "tools/train.py", "-c", args.config, *(["-o", *keep] if keep else [])]
    if not latest.is_dir():
        return shlex.join(words)
    return shlex.join([*words, "-o", f"Global.checkpoints={latest}"])


def main() -> None:
    cfg, args = parse_config(__doc__)
    from paddle_mm.engine.errors import Interrupted, exit_on_training_error
    from paddle_mm.engine.train import train

    latest = Path(cfg["Global"]["output_dir"]) / cfg["Arch"]["name"] / "latest"
    with exit_on_config_error(), exit_on_training_error():  # config and device errors: one line, exit 2
        try:
            train(cfg)
        except Interrupted as err:
            print(f"interrupted: {err}; resume with: {resume_command(args, latest)}", file=sys.stderr)
            raise SystemExit(err.exit_code) from None
        except KeyboardInterrupt:  # a second Ctrl-C, or one before training started
            print(f"interrupted: stopped at once; resume with: {resume_command(args, latest)}", file=sys.stderr)
            raise SystemExit(130) from None


if __name__ == "__main__":
    main()
