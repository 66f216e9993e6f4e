"""Draw a run's curves: ``python tools/plot.py output/<run>/<Arch.name> [--out curves.png]``.

Loss, learning rate and logit scale per logged step; R@1/5/10 both ways and MR per evaluated epoch
(task metrics for VQA / classification / matching). Training writes the same ``training_curves.png``
when it finishes; this tool redraws it, also for a run that is still going or was interrupted.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a source checkout without installing


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("run_dir", help="the run folder: Global.output_dir/<Arch.name>, holding train_metrics.jsonl")
    p.add_argument("--out", help="PNG to write (default: <run_dir>/training_curves.png)")
    args = p.parse_args()
    from paddle_mm.engine.plot import plot_run

    try:
        print(plot_run(args.run_dir, args.out))
    except FileNotFoundError as err:
        raise SystemExit(f"error: {err}") from None


if __name__ == "__main__":
    main()
