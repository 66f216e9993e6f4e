"""Train a model: ``python tools/train.py -c configs/quickstart.yml [-o Global.epochs=3 ...]``.

Multi-process (CPU gloo or GPUs): ``python -m paddle.distributed.launch --nproc_per_node 2 tools/train.py -c ...``.
"""

from _common import exit_on_config_error, parse_config


def main() -> None:
    cfg, _ = parse_config(__doc__)
    from paddle_mm.engine.train import train

    with exit_on_config_error():  # config and device errors: one line, exit 2
        train(cfg)


if __name__ == "__main__":
    main()
