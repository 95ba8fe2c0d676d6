"""One rank of a torchrun training test (tests/engine/learn/test_train_distributed.py).

Usage: ``torchrun --nproc-per-node K ddp_worker.py CONFIG_JSON REPORT_DIR``.
Ranks other than 0 fail loudly if they try to write anything into the run
folder; every rank writes its parameters' digest to ``REPORT_DIR/rank-<r>.json``.
"""

from __future__ import annotations

import json
import pathlib
import sys


def main() -> None:
    config_json, report_dir = sys.argv[1], pathlib.Path(sys.argv[2])
    from engine.distributed import discover, end_group, init_group, pin_local_gpu

    ranks = discover()
    pin_local_gpu(ranks)  # before torch starts CUDA
    import engine.learn.checkpoint as checkpoint
    import engine.learn.train as train_module

    fields = json.loads(config_json)
    out = pathlib.Path(fields["out"]).resolve()
    if not ranks.leader:
        def refuse(*args, **kwargs):
            raise AssertionError(f"rank {ranks.rank} wrote into the run folder")

        checkpoint.save_checkpoint = refuse
        train_module._write_log = refuse
        for name in ("write_text", "write_bytes", "mkdir", "unlink", "touch"):
            original = getattr(pathlib.Path, name)

            def guarded(self, *args, _original=original, **kwargs):
                if self.resolve() == out or out in self.resolve().parents:
                    refuse()
                return _original(self, *args, **kwargs)

            setattr(pathlib.Path, name, guarded)
    init_group(ranks, fields.get("_backend", "gloo"))
    try:
        config = train_module.TrainConfig(**{k: v for k, v in fields.items() if not k.startswith("_")})
        report = train_module.train(config, resume=bool(fields.get("_resume", False)), ranks=ranks)
    finally:
        end_group()
    (report_dir / f"rank-{ranks.rank}.json").write_text(json.dumps({
        "digest": report.parameters_digest, "steps": report.steps_run, "rates": list(report.rank_images_per_second),
        "metrics": sorted(report.metrics),
    }))


if __name__ == "__main__":
    main()
