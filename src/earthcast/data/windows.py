"""Sliding windows over a time series: the one place where window counts are computed.

A *window* is ``seq_len`` consecutive frames (``seq_len = in_len + out_len``); windows start every
``stride`` frames and only complete windows are kept, so a series of ``length`` frames holds
``1 + (length - seq_len) // stride`` windows (none when ``length < seq_len``).  Example: a SEVIR
event of 49 frames with ``seq_len=25, stride=12`` gives the starts ``[0, 12, 24]`` (SPEC §3.1).

Datasets build a flat index over ``(item, window start)`` pairs from these helpers, so that
shuffling is left to the ``DataLoader``.
"""

from __future__ import annotations

__all__ = ["num_windows", "valid_window_starts", "window_starts"]


def _check(length: int, seq_len: int, stride: int) -> None:
    if length < 0:
        raise ValueError(f"length must be >= 0, got {length}")
    if seq_len < 1:
        raise ValueError(f"seq_len must be >= 1, got {seq_len}")
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")


def num_windows(length: int, seq_len: int, stride: int) -> int:
    """Number of complete windows of ``seq_len`` frames, stepping by ``stride``, in ``length`` frames."""
    _check(length, seq_len, stride)
    if length < seq_len:
        return 0
    return 1 + (length - seq_len) // stride


def window_starts(length: int, seq_len: int, stride: int) -> list[int]:
    """Start index of every complete window, in increasing order.

    Args:
        length: frames in the series.
        seq_len: frames per window (``in_len + out_len``).
        stride: frames between two consecutive window starts.

    Returns:
        ``[0, stride, 2·stride, ...]``, the last start being ``<= length - seq_len``; empty when the
        series is shorter than one window (callers decide whether that is an error).
    """
    return [i * stride for i in range(num_windows(length, seq_len, stride))]


def valid_window_starts(breaks: list[bool], seq_len: int, stride: int) -> list[int]:
    """Window starts of a series that may contain gaps, skipping windows that straddle one.

    Args:
        breaks: one flag per frame; ``breaks[i]`` is True when frame ``i`` does not directly
            follow frame ``i - 1`` (``breaks[0]`` is ignored).
        seq_len: frames per window.
        stride: frames between two consecutive candidate starts.

    Returns:
        The subset of ``window_starts(len(breaks), seq_len, stride)`` whose frames
        ``start + 1 .. start + seq_len - 1`` carry no break.
    """
    # prefix[i] = number of breaks among frames 1..i-1, so a window [s, s+L) is clean
    # iff prefix[s+L] - prefix[s+1] == 0.
    prefix = [0]
    for i, flag in enumerate(breaks):
        prefix.append(prefix[-1] + int(bool(flag) and i > 0))
    return [
        s for s in window_starts(len(breaks), seq_len, stride) if prefix[s + seq_len] - prefix[s + 1] == 0
    ]
