"""Streaming stop strings: piece by piece, the filter emits exactly what cutting the whole
text so far would allow, however the pieces fall, and a long output costs linear time."""

from __future__ import annotations

import random

from whetstone.models.tokenized import StopFilter


class WholeText:
    """The reference: after each piece, the whole text so far is cut at its earliest stop
    string and what is neither emitted nor a possible stop's beginning is emitted."""

    def __init__(self, stop: list[str]) -> None:
        self.stop, self.text, self.emitted, self.stopped = stop, "", 0, False

    def cut(self) -> str:
        found = [i for i in (self.text.find(s) for s in self.stop) if i >= 0]
        self.stopped = bool(found)
        return self.text[: min(found)] if found else self.text

    def push(self, piece: str) -> str:
        self.text += piece
        cut = self.cut()
        held = (
            0
            if self.stopped
            else max(
                (k for s in self.stop for k in range(1, len(s)) if cut.endswith(s[:k])), default=0
            )
        )
        out = cut[self.emitted : len(cut) - held]
        self.emitted = max(self.emitted, len(cut) - held)
        return out

    def flush(self) -> str:
        cut = self.cut()
        out, self.emitted = cut[self.emitted :], len(cut)
        return out


def test_streamed_text_equals_the_whole_text_cut_at_its_first_stop() -> None:
    rng = random.Random(0)
    for _ in range(3000):
        text = "".join(rng.choice("ab\nc") for _ in range(rng.randint(0, 40)))
        stop = ["".join(rng.choice("ab\n") for _ in range(rng.randint(1, 4))) for _ in range(2)]
        cuts = []
        while True:
            cuts.append(rng.randint(1, 5))
            if sum(cuts) >= len(text):
                break
        streams = []
        for f in (StopFilter(stop), WholeText(stop)):
            out, i = [], 0
            for size in cuts:
                if f.stopped:
                    break
                out.append(f.push(text[i : i + size]))
                i += size
            streams.append([*out, f.flush()])
        assert streams[0] == streams[1], (text, stop)


def test_a_long_output_is_pushed_in_linear_time() -> None:
    import time

    def run(n: int) -> float:
        f = StopFilter(["\nuser:", "###"])
        start = time.perf_counter()
        for _ in range(n):
            f.push("word ")
        return time.perf_counter() - start

    small, large = run(20_000), run(80_000)
    assert large < 12 * small  # quadratic would be about 16 times
