"""``make demo``: the main job on the embedded synthetic data.

The TFX pipeline is not assembled yet; until it is, the demo only verifies the
installed stack and says so.
"""

import bvae_tf  # noqa: F401  -- Keras 2 before TensorFlow loads


def main() -> None:
    import tensorflow as tf
    import tfx

    print(f"bvae-tfx demo: stack ready (tfx {tfx.__version__}, tensorflow {tf.__version__}).")
    print("bvae-tfx demo: the pipeline is not built yet; nothing else to run.")


if __name__ == "__main__":
    main()
