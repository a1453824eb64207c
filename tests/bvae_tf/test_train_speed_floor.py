"""benchmarks/train_speed.py --floor: the decoder floor counts every decoded row once."""

import pytest

from benchmarks import train_speed
from tests.bvae_tf.conftest import NUM_ITEMS


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_the_decoder_floor_scales_one_batch_to_the_rows_an_epoch_decodes(tiny_data, dtype):
    floor = train_speed.decoder_floor_epoch_s(
        tiny_data, batch_size=4, latent_dim=3, compute_dtype=dtype
    )
    # tiny_data: user 0 has no train items, user 1 no clicks (24 users).
    assert floor["decoded_rows_per_epoch"] == {"purchase": 23, "click": 22, "favorite": 23}
    assert floor["dtype"] == dtype
    parts = floor["ms_per_batch_of_rows"]
    assert set(parts) == {"forward product", "softmax", "d_queries product", "d_table product"}
    assert all(v > 0 for v in parts.values())
    assert floor["floor_epoch_s"] == pytest.approx(sum(parts.values()) / 1000 * 68 / 4)
    products_s = (sum(parts.values()) - parts["softmax"]) / 1000
    assert floor["gflops"] == pytest.approx(3 * 2 * 4 * NUM_ITEMS * 4 / products_s / 1e9)


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--epochs", "0"], "--epochs must be >= 1, got 0"),
        (["--floor", "--batch-size", "0"], "--batch-size must be >= 1, got 0"),
        (["--eval-repeats", "0"], "--eval-repeats must be >= 1, got 0"),
        (["--json", "/nonexistent/x.json"], "its folder does not exist"),
    ],
)
def test_bad_flags_stop_before_the_data_is_read(monkeypatch, capsys, flags, message):
    monkeypatch.setattr("sys.argv", ["train_speed.py", "--data", "/nonexistent", *flags])
    with pytest.raises(SystemExit) as stop:
        train_speed.main()
    assert stop.value.code == 2 and message in capsys.readouterr().err
