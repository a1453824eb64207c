"""``make demo``: the main job on the embedded synthetic data, end to end.

Generates the seeded synthetic event log (if needed), runs the whole local pipeline
(ExampleGen -> TFDV -> Transform -> Trainer -> Evaluator gate -> Pusher) and prints
what happened: the ExampleGen's accounting, eval and test metrics per behavior, the
blessing and the pushed model's path.

::

    python -m pipeline.demo [--config FILE] [--set section.key=value ...]
"""

import sys

from pipeline import local_runner, runtime


def main(argv=None) -> None:
    config = runtime.parse_and_start(__doc__.split("\n\n")[0], "demo", argv)
    local_runner.run(config)
    from pipeline import report  # MLMD: loaded once there is a run to report

    report.print_summary(config)


if __name__ == "__main__":
    sys.exit(runtime.main_guard(main))
