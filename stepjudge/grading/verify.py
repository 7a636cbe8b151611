"""Answer equivalence with math-verify, under a wall-clock limit that also works off the main thread.

math-verify enforces its own timeouts with ``signal.alarm``, which raises ValueError outside the main
thread (Math-Verify issues #50/#55) and cannot interrupt a sympy call stuck in C code anyway. So we call
``parse``/``verify`` with their timeouts disabled inside one persistent *worker process* and enforce the
limit from the parent: when an item overruns, the worker is killed and restarted. The worker is started
with the "spawn" method because the parent may hold torch/OpenMP threads, which make fork unsafe.

Cheap work stays in the caller: answer extraction, normalization and an exact-string fast path, so
most matching answers never cross the pipe.

Normalization rules (applied to prediction and gold alike, see :func:`normalize_answer`):

* dropped: ``$``, ``\\$`` (currency), ``\\left``/``\\right``, ``\\!``, ``\\displaystyle``, a final period,
  thousands commas in plain numbers (``1,234``), ``%``/``\\%``, degrees (``^\\circ``, ``°``);
* ``\\dfrac``/``\\tfrac`` become ``\\frac``;
* trailing units are removed: a final ``\\text{..}``/``\\mbox{..}``/``\\mathrm{..}`` group after an
  expression (``5\\text{ cm}^2``) and plain words after a plain number (``5 dollars``, ``12 square feet``),
  unless a word is a connective or a math name (``and``, ``or``, ``to``, ``pi``, ``x`` ...).

Because ``%`` is removed, ``5%`` equals ``5``, and ``50%`` does *not* equal ``0.5``. (math-verify on its
own drops ``\\text{..}`` units but reads ``5 dollars`` as a product of symbols, hence our stripping.)

Statuses: no extractable answer, or a prediction from which math-verify builds no math object at all
(``\\boxed{@@@}``), is "unparseable"; a gold answer math-verify cannot parse falls back to the
normalized-string comparison. Gold may also be a full reference solution: its last ``\\boxed{}`` or
``####`` answer is used.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import os
import re
import signal
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from stepjudge.errors import StepJudgeError
from stepjudge.grading.extract import (
    ANSWER_FORMATS,
    check_formats,
    extract_answer,
    extract_boxed,
    extract_gsm8k,
)

__all__ = ["GradeResult", "Grader", "grade", "normalize_answer"]

Status = Literal["correct", "incorrect", "unparseable"]

# Reasons a GradeResult can carry (None for an ordinary correct/incorrect decision).
REASON_NO_ANSWER = "no final answer found"
REASON_EMPTY = "empty answer after normalization"
REASON_TIMEOUT = "timeout"
REASON_PRED_UNPARSEABLE = "math-verify could not parse the prediction"
REASON_GOLD_UNPARSEABLE = "gold not parseable by math-verify; compared as normalized strings"
REASON_CRASH = "grading worker crashed"


@dataclass(frozen=True)
class GradeResult:
    """Outcome of grading one response.

    ``predicted`` is the answer extracted from the response (None when none was found). ``reason`` is
    None for a plain decision, otherwise one of the ``REASON_*`` strings of this module (e.g.
    ``"timeout"``) or ``"error: <ExceptionType>"`` when math-verify raised.
    """

    status: Status
    predicted: str | None
    reason: str | None = None

    @property
    def correct(self) -> bool:
        """True only for status "correct"; unparseable answers count as wrong in accuracy."""
        return self.status == "correct"


# ----------------------------------------------------------------------------------------------------
# Normalization (parent side, pure string work)

_TEXT_UNIT_RE = re.compile(
    r"\\(?:text|mbox|mathrm|textrm|textnormal)\s*\{\s*[A-Za-z][A-Za-z\s./^\d]*\}"
    r"\s*(?:\^\s*(?:\{\s*\d\s*\}|\d))?\s*$"
)
_WORD_UNITS_RE = re.compile(
    r"^(?P<num>[-+]?(?:\d[\d,]*(?:\.\d+)?|\.\d+)(?:/\d+)?)\s+"
    r"(?P<words>[A-Za-z][A-Za-z.]*(?:\s+[A-Za-z][A-Za-z.]*)*)(?:\^\d)?$"
)
# Words after a number that mean it is not a unit: "3 or 4", "2 pi", "5 x".
_NOT_UNITS = {"and", "or", "to", "through", "plus", "minus", "times", "over", "divided", "by", "pi",
              "sqrt", "i", "e", "x", "y", "z", "n", "k", "a", "b", "c"}
_WHOLE_TEXT_RE = re.compile(r"^\\(?:text|textbf|mathrm|mbox|textrm)\s*\{([^{}]*)\}$")
_PLAIN_THOUSANDS_RE = re.compile(r"[-+]?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_DEGREE_RE = re.compile(r"\^\s*(?:\{\s*\\circ\s*\}|\\circ)|°")
_LEFT_RIGHT_RE = re.compile(r"\\(?:left|right)(?![A-Za-z])")
_SMALL_FRAC_RE = re.compile(r"\\[dt]frac(?![A-Za-z])")
_SPACE_CMD_RE = re.compile(r"(?<!\\)\\[,;: ]|\\q?quad(?![A-Za-z])")


def _strip_units(s: str) -> str:
    """Remove one or more trailing unit annotations (``5\\text{ cm}``, ``5 dollars``)."""
    for _ in range(3):
        m = _TEXT_UNIT_RE.search(s)
        if m and s[:m.start()].strip():
            s = s[:m.start()].rstrip()
            continue
        w = _WORD_UNITS_RE.match(s)
        if w and not any(word.lower().rstrip(".") in _NOT_UNITS for word in w.group("words").split()):
            s = w.group("num")
            continue
        break
    return s


def _clean(s: str) -> str:
    """Light normalization that keeps valid LaTeX (spaces preserved): this is what math-verify sees."""
    s = str(s).strip()
    s = s.replace("\\$", "").replace("$", "")
    s = re.sub(r"(?<=\d)\\,(?=\d{3}(?!\d))", "", s)  # 1\,000 thin-space thousands separator
    s = _SPACE_CMD_RE.sub(" ", s)
    s = _LEFT_RIGHT_RE.sub("", s)
    s = _SMALL_FRAC_RE.sub(r"\\frac", s)
    s = s.replace("\\!", "").replace("\\displaystyle", " ")
    s = s.replace("\\%", "").replace("%", "")
    s = _DEGREE_RE.sub("", s)
    s = s.strip().rstrip(".").strip()
    s = _strip_units(s)
    s = s.strip().rstrip(".").strip()
    m = _WHOLE_TEXT_RE.match(s)
    if m:
        s = m.group(1).strip()
    if _PLAIN_THOUSANDS_RE.fullmatch(s):
        s = s.replace(",", "")
    return s


def _squash(cleaned: str) -> str:
    """Drop whitespace except between two word characters, so ``\\pi r`` is never glued into ``\\pir``."""
    s = re.sub(r"\s+", " ", cleaned).strip()
    return re.sub(r"(?<!\w) | (?!\w)", "", s)


def normalize_answer(s: str) -> str:
    """Canonical string form used for the exact-match fast path (``( 1,234 )$.`` -> ``(1,234)``)."""
    return _squash(_clean(s))


def _gold_answer(gold: str) -> str:
    """Accept a full reference solution as gold: use its ``\\boxed{}`` or ``####`` answer if present."""
    gold = str(gold)
    if "\\boxed" in gold or "\\fbox" in gold:
        got = extract_boxed(gold)
        if got is not None:
            return got
    if "####" in gold:
        got = extract_gsm8k(gold)
        if got is not None:
            return got
    return gold


# ----------------------------------------------------------------------------------------------------
# Worker process (runs math-verify; never touched by the parent's threads or signals)

def _has_math(parsed: list[Any]) -> bool:
    """math-verify returns raw strings as a fallback when it could not build a sympy object."""
    return any(not isinstance(x, str) for x in parsed)


def _check_pair(gold: str, pred: str) -> tuple[Status, str | None]:
    """Compare two cleaned answers with math-verify, gold first (verify is not symmetric)."""
    from math_verify import parse, verify

    # `$...$` makes math-verify's LaTeX extractor take the whole string; the plain-expression
    # extractor alone misreads LaTeX (e.g. `\sqrt{8}` or `(1,2)` give nothing).
    gold_parsed = parse(f"${gold}$", parsing_timeout=None)
    if not _has_math(gold_parsed):
        return "incorrect", REASON_GOLD_UNPARSEABLE
    pred_parsed = parse(f"${pred}$", parsing_timeout=None)
    if not _has_math(pred_parsed):
        return "unparseable", REASON_PRED_UNPARSEABLE
    ok = verify(gold_parsed, pred_parsed, timeout_seconds=None)
    return ("correct", None) if ok else ("incorrect", None)


def _die_with_parent(parent_pid: int, use_pdeathsig: bool) -> None:
    """Make sure an orphaned worker (parent SIGKILLed) does not spin forever on a stuck sympy call.

    A stuck call may hold the GIL inside C code, so a Python watchdog thread alone cannot stop it;
    on Linux the kernel's parent-death signal can. That signal is tied to the *thread* that started
    the worker, so it is only requested when that thread was the main thread.
    """
    import time

    if use_pdeathsig and sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass

    def watch() -> None:
        while True:
            if os.getppid() != parent_pid:
                os._exit(0)
            time.sleep(1.0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _worker_main(conn: Any, parent_pid: int, use_pdeathsig: bool) -> None:
    """Worker loop: receive a batch of (gold, pred), send back (index, status, reason) per item."""
    try:
        logging.getLogger("math_verify").setLevel(logging.ERROR)  # silence "Timeout is disabled"
        _die_with_parent(parent_pid, use_pdeathsig)
        _check_pair("0.5", "\\frac{1}{2}")  # warm up imports and the LaTeX parser before timing starts
    except BaseException as e:  # report any start-up failure to the parent instead of hanging it
        conn.send(("error", f"{type(e).__name__}: {e}"))
        return
    conn.send(("ready", None))
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        for k, (gold, pred) in enumerate(msg):
            try:
                status, reason = _check_pair(gold, pred)
            except Exception as e:  # one bad item must not take the worker down
                # Only the type: printing sympy objects from an exception can itself hang.
                status, reason = "incorrect", f"error: {type(e).__name__}"
            conn.send((k, status, reason))


# ----------------------------------------------------------------------------------------------------
# Parent side

class Grader:
    """Grades responses against gold answers; safe to share between threads.

    The Grader owns its math-verify worker process: it starts lazily on first need, is reused, and is
    stopped by :meth:`close` (use the Grader as a context manager so that happens). ``timeout_s``
    bounds each item's math-verify time (worker start-up is not counted; it has ``startup_timeout_s``).
    Scripts that create a Grader at import time need the usual ``if __name__ == "__main__":`` guard
    required by "spawn".
    """

    def __init__(self, timeout_s: float = 5.0, formats: Sequence[str] = ANSWER_FORMATS, *,
                 startup_timeout_s: float = 120.0):
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s!r}")
        self.timeout_s = float(timeout_s)
        self.formats = check_formats(formats)
        self.startup_timeout_s = float(startup_timeout_s)
        self._lock = threading.Lock()
        self._proc: Any = None
        self._conn: Any = None
        self._owner_pid: int | None = None
        self._closed = False

    # -- public API ----------------------------------------------------------------------------------

    def grade(self, response: str, gold: str) -> GradeResult:
        """Grade one response; see :meth:`grade_many`."""
        return self.grade_many([(response, gold)])[0]

    def grade_many(self, pairs: Sequence[tuple[str, str]]) -> list[GradeResult]:
        """Grade (response, gold) pairs, in order.

        Items the fast path cannot settle go to the worker in one message; each still gets its own
        ``timeout_s``: an overrunning item is marked incorrect with reason "timeout", the worker is
        restarted and the remaining items continue.
        """
        results: list[GradeResult | None] = [None] * len(pairs)
        preds: list[str | None] = [None] * len(pairs)
        jobs: list[int] = []
        payload: list[tuple[str, str]] = []
        for i, (response, gold) in enumerate(pairs):
            pred = extract_answer(str(response), self.formats)
            preds[i] = pred
            if pred is None:
                results[i] = GradeResult("unparseable", None, REASON_NO_ANSWER)
                continue
            pred_c, gold_c = _clean(pred), _clean(_gold_answer(gold))
            pred_n = _squash(pred_c)
            if not pred_n:
                results[i] = GradeResult("unparseable", pred, REASON_EMPTY)
            elif pred_n == _squash(gold_c):
                results[i] = GradeResult("correct", pred)
            else:
                jobs.append(i)
                payload.append((gold_c, pred_c))
        if payload:
            for i, (status, reason) in zip(jobs, self._run(payload), strict=True):
                results[i] = GradeResult(status, preds[i], reason)
        return [r for r in results if r is not None]

    def close(self) -> None:
        """Stop the worker; later grading raises. Safe to call twice."""
        with self._lock:
            self._closed = True
            self._stop_worker(graceful=True)

    def __enter__(self) -> Grader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- worker management (call with self._lock held) --------------------------------------------

    def _run(self, items: list[tuple[str, str]]) -> list[tuple[Status, str | None]]:
        """Ship ``items`` to the worker and collect one outcome per item under the per-item limit."""
        out: list[tuple[Status, str | None]] = []
        with self._lock:
            if self._closed:
                raise StepJudgeError("this Grader is closed; create a new one")
            pending = items
            while pending:
                try:
                    got = self._converse(pending)
                except BaseException:
                    # e.g. KeyboardInterrupt mid-batch: the worker may still send stale answers that a
                    # later batch would mistake for its own, so it must go.
                    self._stop_worker(graceful=False)
                    raise
                out.extend(got)
                pending = pending[len(got):]
        return out

    def _converse(self, pending: list[tuple[str, str]]) -> list[tuple[Status, str | None]]:
        """Send one batch; return outcomes up to and including the first timeout/crash (if any)."""
        conn = self._ensure_worker()
        try:
            conn.send(pending)
        except (BrokenPipeError, OSError):  # the worker died while idle: start a fresh one once
            self._stop_worker(graceful=False)
            conn = self._ensure_worker()
            conn.send(pending)
        got: list[tuple[Status, str | None]] = []
        for k in range(len(pending)):
            if not conn.poll(self.timeout_s):
                got.append(("incorrect", REASON_TIMEOUT))
            else:
                try:
                    idx, status, reason = conn.recv()
                except (EOFError, OSError):
                    got.append(("incorrect", REASON_CRASH))
                else:
                    if idx != k:  # cannot happen unless the protocol is broken: fail loudly
                        raise StepJudgeError(f"grading worker answered item {idx}, expected {k}")
                    got.append((status, reason))
                    continue
            # Timed out or crashed: drop this worker; the caller resends the rest to a new one.
            self._stop_worker(graceful=False)
            break
        return got

    def _ensure_worker(self) -> Any:
        if self._proc is not None and self._owner_pid == os.getpid() and self._proc.is_alive():
            return self._conn
        if self._proc is not None and self._owner_pid != os.getpid():
            # Inherited through fork: the pipe belongs to the parent process; leave it alone.
            self._proc = self._conn = None
        self._stop_worker(graceful=False)
        ctx = mp.get_context("spawn")
        parent_conn, child_conn = ctx.Pipe(duplex=True)
        from_main = threading.current_thread() is threading.main_thread()
        proc = ctx.Process(target=_worker_main, args=(child_conn, os.getpid(), from_main),
                           name="stepjudge-grader", daemon=True)
        proc.start()
        child_conn.close()
        self._proc, self._conn, self._owner_pid = proc, parent_conn, os.getpid()
        try:
            ready = parent_conn.poll(self.startup_timeout_s)
            msg = parent_conn.recv() if ready else ("error", f"no answer in {self.startup_timeout_s:g} s")
        except (EOFError, OSError):
            proc.join(5.0)
            msg = ("error", f"worker exited with code {proc.exitcode} (the worker is started with spawn, "
                            "so a script that grades at import time needs an "
                            "`if __name__ == \"__main__\":` guard)")
        if msg[0] != "ready":
            self._stop_worker(graceful=False)
            raise StepJudgeError(f"could not start the math-verify grading worker: {msg[1]}")
        return parent_conn

    def _stop_worker(self, graceful: bool) -> None:
        proc, conn = self._proc, self._conn
        self._proc = self._conn = None
        if proc is None:
            return
        if graceful:
            with contextlib.suppress(BrokenPipeError, OSError):
                conn.send(None)
            proc.join(1.0)
        if proc.is_alive():
            proc.kill()
        proc.join(5.0)
        conn.close()


# ----------------------------------------------------------------------------------------------------
# One-off convenience


def grade(response: str, gold: str, timeout_s: float = 5.0) -> GradeResult:
    """Grade one response with a Grader that lives for this call only.

    Nothing outlives the call (no shared worker, no exit hook). An answer the exact-string fast path
    settles costs nothing; any other starts a math-verify worker (about a second), so code that grades
    many answers holds one :class:`Grader` (``with Grader() as g:``) whose worker lives as long as it.
    """
    with Grader(timeout_s=timeout_s) as g:
        return g.grade(response, gold)
