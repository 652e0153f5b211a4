"""The start/resume banner shared by fit, the custom loop, the GAN trainer and the tuner."""

from tfkit.training.banner import continued_epoch, epoch_position, kimg_position, start_line


def test_positions_count_the_epoch_the_run_continues_with_from_one():
    assert continued_epoch(0, 10) == 1
    assert continued_epoch(9, 10) == 1  # mid-epoch: the same epoch goes on
    assert continued_epoch(10, 10) == 2  # an epoch end: the next one
    assert continued_epoch(7, None, saved_epoch=3) == 4  # unknown length: the saved epochs
    assert epoch_position(25, 10) == "epoch 3, step 25"
    assert kimg_position(8) == "kimg 0.008" and kimg_position(16000) == "kimg 16"


def test_start_line_names_the_run_then_the_details_then_where_it_resumes():
    line = start_line("tfkit train", "mnist", "runs/mnist/00003", ["OneDeviceStrategy (1 replica)"])
    assert line == "tfkit train: mnist -> runs/mnist/00003 (OneDeviceStrategy (1 replica))"
    line = start_line(
        "tfkit train",
        "mnist",
        "runs/mnist/00003",
        ["MultiWorkerMirroredStrategy (2 replicas)", None, "custom loop"],
        chief=False,
        resuming_at=epoch_position(250, 100),
    )
    assert line == (
        "tfkit train: mnist -> runs/mnist/00003 (MultiWorkerMirroredStrategy (2 replicas), "
        "custom loop, this worker writes to a temporary directory, resuming at epoch 3, "
        "step 250)"
    )
