#!/usr/bin/env python3
"""Scores what a listener heard against the looped source: PESQ (wide band) per 4 s window,
the share of speech frames lost, and how much the delay moved.

usage: score.py SOURCE.wav HEARD.wav [--sent-at-us T --heard-at-us T]

Each 4 s window of what was heard is aligned on its own (the playout's delay moves: it
stretches after stalls), by cross-correlation against the source looped, then scored.

Mouth-to-ear, with the two wall-clock times (from the sender's `timestamp 0 sent` and the
listener's `output started` log lines): every 1 s of what was heard is aligned the same
way, and its delay is when it left the playback ring minus when the sender sent it.
"""
import sys

import numpy as np
from pesq import pesq
from scipy.io import wavfile
from scipy.signal import correlate, resample_poly

RATE = 16_000
WINDOW_S = 4
FRAME = RATE // 50  # 20 ms
# How far a second's alignment may stray from its window's (the playout moves the delay by
# a stall's length at most).
SEARCH = RATE * 6 // 10


def load(path):
    rate, data = wavfile.read(path)
    if data.ndim > 1:
        data = data[:, 0]
    if data.dtype.kind == "i":
        data = data.astype(np.float64) / np.iinfo(data.dtype).max
    else:
        data = data.astype(np.float64)
    return resample_poly(data, RATE, rate) if rate != RATE else data


def db(x):
    return 10 * np.log10(np.mean(x * x) + 1e-12)


def flag(name):
    if name in sys.argv:
        return int(sys.argv[sys.argv.index(name) + 1])
    return None


def mouth_to_ear(source, heard, offset, sent_at_us, heard_at_us):
    """Delays (ms) of each 1 s of `heard` (which starts `offset` samples into the output):
    when its first sample left the playback ring, minus when the sender sent the frame
    that carries it."""
    chunk = RATE
    loop = len(source)
    loop_ms = loop / RATE * 1000
    looped = np.tile(source, int(np.ceil(len(heard) / loop)) + 3)
    delays = []
    for start in range(0, len(heard) - chunk + 1, chunk):
        part = heard[start:start + chunk]
        if db(part) < -40:
            continue
        corr = correlate(looped[: start + chunk + 2 * loop], part, mode="valid", method="fft")
        # Keep only clear matches: speech aligns with a sharp peak.
        lag = int(np.argmax(corr))
        if corr[lag] < 0.5 * np.sqrt(np.sum(part * part) * np.sum(looped[lag:lag + chunk] ** 2)):
            continue
        left_ring_ms = (heard_at_us + (offset + start) / RATE * 1e6) / 1000
        # Sample `lag` of the loop goes out in frame lag // FRAME; which pass of the loop
        # it was is known from the delay being in [0, loop).
        sent_ms = sent_at_us / 1000 + (lag % loop) // FRAME * 20
        delays.append((left_ring_ms - sent_ms) % loop_ms)
    return np.array(delays)


def main():
    source, heard = load(sys.argv[1]), load(sys.argv[2])
    # `hallway play` sends whole 20 ms frames: each pass of its loop is the source cut to
    # whole frames.
    source = source[: len(source) // FRAME * FRAME]
    sent_at_us, heard_at_us = flag("--sent-at-us"), flag("--heard-at-us")
    # Skip the join: from the first sound on.
    loud = np.flatnonzero(np.abs(heard) > 0.01)
    if len(loud) == 0:
        print("no sound heard")
        return 1
    offset = int(loud[0])
    heard = heard[offset:]
    looped = np.tile(source, int(np.ceil(len(heard) / len(source))) + 2)
    window = WINDOW_S * RATE
    scores, lags, lost, speech, lost_fine = [], [], 0, 0, 0
    for start in range(0, len(heard) - window + 1, window):
        part = heard[start:start + window]
        if db(part) < -45:
            continue
        corr = correlate(looped[: start + window + 2 * len(source)], part, mode="valid", method="fft")
        lag = int(np.argmax(corr))
        ref = looped[lag:lag + window]
        lags.append((lag - start) / RATE * 1000)
        try:
            scores.append(pesq(RATE, ref, part, "wb"))
        except Exception as e:  # a window PESQ cannot align (all silence)
            print(f"window at {start / RATE:.0f} s: {e}", file=sys.stderr)
        for f in range(0, window - FRAME + 1, FRAME):
            r, h = db(ref[f:f + FRAME]), db(part[f:f + FRAME])
            if r > -35:
                speech += 1
                if h < r - 20:
                    lost += 1
        # The same count with each second aligned on its own (near the window's lag): a
        # window has one lag, so while playout catches up after a stall, speech that was
        # only delayed reads as lost above. This counts the holes.
        for sub in range(0, window, RATE):
            piece = part[sub:sub + RATE]
            near = lag + sub
            lo = max(near - SEARCH, 0)
            region = looped[lo:near + RATE + SEARCH]
            c = correlate(region, piece, mode="valid", method="fft")
            best = lo + int(np.argmax(c)) if len(c) else near
            match = looped[best:best + RATE]
            strong = np.dot(match, piece) >= 0.5 * np.sqrt(np.sum(match * match) * np.sum(piece * piece))
            fine_ref = match if strong else looped[near:near + RATE]
            for f in range(0, RATE - FRAME + 1, FRAME):
                r, h = db(fine_ref[f:f + FRAME]), db(piece[f:f + FRAME])
                if r > -35 and h < r - 20:
                    lost_fine += 1
    if not scores:
        print("nothing scored")
        return 1
    # The delay's swing: how far apart the windows' alignments are, modulo the loop (the
    # first window's alignment is the reference).
    loop_ms = len(source) / RATE * 1000
    lags = np.array(lags)
    lags = (lags - lags[0] + loop_ms / 2) % loop_ms - loop_ms / 2
    swing = float(np.ptp(lags)) if len(lags) > 1 else 0.0
    m2e = ""
    if sent_at_us is not None and heard_at_us is not None:
        d = mouth_to_ear(source, heard, offset, sent_at_us, heard_at_us)
        if len(d):
            m2e = (f" | mouth-to-ear mean {np.mean(d):.0f} p95 {np.percentile(d, 95):.0f} "
                   f"max {np.max(d):.0f} ms ({len(d)} s)")
    print(
        f"PESQ-WB median {np.median(scores):.2f} worst {min(scores):.2f} | "
        f"speech frames lost {100 * lost / max(speech, 1):.2f} % ({lost}/{speech}), "
        f"aligned per second {100 * lost_fine / max(speech, 1):.2f} % | "
        f"delay swing {swing:.0f} ms | windows {len(scores)}{m2e}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
