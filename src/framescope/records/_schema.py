"""The metrics CSV: the seed's six columns first, in the seed's order, then framescope's own."""

from __future__ import annotations

SEED_COLUMNS = (
    "step",
    "read_latency_ms",
    "prep_latency_ms",
    "exec_latency_ms",
    "total_step_latency_ms",
    "loss",
)

STAGE_COLUMNS = {
    "read": "read_latency_ms",
    "decode": "decode_latency_ms",
    "h2d": "h2d_latency_ms",
    "prep": "prep_latency_ms",
    "d2h": "d2h_latency_ms",
    "exec": "exec_latency_ms",
    "post": "post_latency_ms",
    "split": "split_transfer_latency_ms",
}
"""Stage name (as in NVTX ranges and traces) -> its latency column."""

WAIT_COLUMNS = {"queue_wait": "queue_wait_ms"}
"""Time spent waiting rather than working: the model waiting for its input in the async pipeline."""

PRODUCER_STAGES = ("read", "decode", "h2d", "prep")
"""The stages an async pipeline runs ahead of the model, in its producer thread."""

EXTRA_COLUMNS = (
    "decode_latency_ms",
    "h2d_latency_ms",
    "d2h_latency_ms",
    "post_latency_ms",
    "queue_wait_ms",
    "split_transfer_latency_ms",
    "batch_size",
    "frames",
    "fps",
    "warmup",
    "profiled",
    "cpu_time_ms",
    "step_start_s",
    "torch_threads",
    "first_frame",
    "first_pts_s",
    "last_pts_s",
    "latency_ms",
    "latency_min_ms",
    "dropped_frames",
    "reconnects",
)

COLUMNS = SEED_COLUMNS + EXTRA_COLUMNS

COLUMN_DOCS = {
    "step": "0-based batch number",
    "read_latency_ms": "reading the batch's frames (demuxing, waiting for a stream) and stacking them into a "
    "uint8 tensor",
    "decode_latency_ms": "decoding the batch's frames and converting them to RGB (and resizing, with "
    "--decode-size); with OpenCV, whose read decodes, reading too",
    "prep_latency_ms": "the preprocessing transforms (on the device chosen by --prep-on-gpu)",
    "exec_latency_ms": "the model: forward in inference; forward, loss, backward, optimizer step in retrain "
    "(with --split-point: both parts, not the transfer between them)",
    "total_step_latency_ms": "wall time of the whole step, first stage start to last stage end",
    "loss": "training loss (retrain mode; empty in inference)",
    "h2d_latency_ms": "host-to-device copy of the batch (empty when nothing is copied)",
    "d2h_latency_ms": "device-to-host copies: the model's output or results to the CPU, or GPU preprocessing "
    "feeding a CPU model (empty when nothing is copied)",
    "post_latency_ms": "post-processing: top-5 classes; box decoding, score filtering and NMS; class maps",
    "queue_wait_ms": "--pipeline async: how long the model waited for its next batch (empty in sync)",
    "split_transfer_latency_ms": "--split-point: moving activations between the two parts' devices",
    "batch_size": "the configured batch size",
    "frames": "frames actually in this batch (the last batch may be short)",
    "fps": "frames / total_step_latency_ms",
    "warmup": "1 for warm-up steps, which the summary leaves out",
    "profiled": "1 for steps traced by torch.profiler (its overhead inflates them; left out of the summary)",
    "cpu_time_ms": "CPU time of the whole process during the step (all threads)",
    "step_start_s": "when the step started, seconds after the first step started",
    "torch_threads": "torch intra-op threads the step ran with (the async pipeline measures its thread plan "
    "in the steps after the warm-up, which are then marked warmup=1)",
    "first_frame": "index of the batch's first frame in the input",
    "first_pts_s": "presentation timestamp of the batch's first frame (seconds)",
    "last_pts_s": "presentation timestamp of the batch's last frame (seconds)",
    "latency_ms": "live inputs: from when the batch's oldest frame was due to when its result was ready",
    "latency_min_ms": "live inputs: the same for the batch's newest frame",
    "dropped_frames": "live inputs: frames dropped since the previous batch because the pipeline fell behind",
    "reconnects": "live inputs: reconnects since the previous batch",
}


def metrics_filename(model_name: str, pid: int) -> str:
    """The seed's CSV name."""
    return f"M_{model_name}_P_{pid}_metrics.csv"
