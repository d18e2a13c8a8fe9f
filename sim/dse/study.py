"""The DSE's Optuna studies: storage, the trial loop, resuming, workers and the final choice.

A study lives in an Optuna RDB storage (by default a SQLite file), so a search can be stopped
and resumed; its *signature* (the settings that define the objective) is stored with it and
must match when it is loaded (:func:`open_study`). The sampler is TPE (multivariate, constant
liar) with a fixed seed and the compute budget as a constraint (``Trial.set_constraint``).

:func:`search` asks and tells trials by hand: each is first screened
(:meth:`sim.dse.evaluate.Evaluator.screen_saved`) and one that clearly misses the budget is
told at once with a penalty (constrained TPE ranks infeasible trials by their violation only);
the others are evaluated ``runner.jobs`` at a time and told in trial order, so that a run with
a given seed and number of local processes is reproducible. Other processes (``--worker``, on
this or other machines with a shared database) may work on the same study; heartbeats fail
the trials of a worker that died. :func:`choose` re-evaluates the best trials on all texts.
"""

import json
import os
import socket
import sys
import time
import warnings
from pathlib import Path

from spec.config import ConfigError
from sim.dse.evaluate import aggregate, entry, objective_value
from sim.dse.space import pct, plan_from_params


__all__ = ["HEARTBEAT", "GRACE", "SCREEN_MARGIN", "quiet_optuna", "open_storage", "open_study",
           "delete_study", "counts", "worker_id", "search", "progress_bar", "best_trials",
           "trial_rows", "choose"]

HEARTBEAT = 20            # seconds between a running trial's heartbeats
GRACE = 90                # a running trial without a heartbeat for this long has died
#: A trial whose screened compute saved misses the budget by more than this is not run in
#: full (its objective is a penalty; TPE ranks infeasible trials by violation alone).
SCREEN_MARGIN = 0.003


def quiet_optuna():
    """Optuna's log and the warnings of a hand-driven study off."""
    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    # Trials are asked and told by hand (not Study.optimize); search() runs their heartbeats.
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")


def _first_line(exc):
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def open_storage(url):
    """An Optuna RDB storage with heartbeats (a dead worker's trials are failed after
    :data:`GRACE` seconds); a SQLite file's directory is created and its lock timeout raised.
    A storage that cannot be opened is a :class:`spec.config.ConfigError` naming ``--storage``."""
    import optuna
    kw = {}
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///"):]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        kw["engine_kwargs"] = {"connect_args": {"timeout": 300}}
    for attempt in range(8):
        try:
            storage = optuna.storages.RDBStorage(url, heartbeat_interval=HEARTBEAT,
                                                 grace_period=GRACE, **kw)
            break
        except Exception as e:                               # noqa: BLE001 (one-line error)
            msg = _first_line(e)
            # Workers that start together on a new database race to create its tables.
            if attempt < 7 and any(m in msg for m in ("UNIQUE constraint", "already exists",
                                                       "database is locked", "Duplicate")):
                time.sleep(0.25 * (attempt + 1))
                continue
            raise ConfigError(f"--storage {url!r}: {msg}") from None
    if url.startswith("sqlite:"):
        _sqlite_wal(storage.engine)
    return storage


def _sqlite_wal(engine):
    """Write-ahead log and ``synchronous = NORMAL`` on every SQLite connection: Optuna commits
    once per parameter, and with the default rollback journal each commit is an fsync (a
    quarter of the trial time here). Safe for several processes on one machine; a power cut
    may lose the last trials, never the file."""
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn, _record):
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    engine.dispose()                       # connections made so far lack the pragmas


def delete_study(storage, name):
    """Delete study ``name`` if it exists."""
    import optuna
    try:
        optuna.delete_study(study_name=name, storage=storage)
    except KeyError:
        pass


def open_study(storage, name, signature, seed, n_startup, fresh=False, warm=()):
    """Create or load study ``name``; its ``signature`` (the settings that define the
    objective) must match a loaded study's (else a :class:`spec.config.ConfigError`). ``warm``
    parameter sets are enqueued when this call creates the study. Returns
    ``(study, created)``."""
    import optuna
    if fresh:
        delete_study(storage, name)
    sampler = optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True,
                                         n_startup_trials=n_startup)
    created = True
    try:
        study = optuna.create_study(study_name=name, storage=storage, sampler=sampler,
                                    direction="minimize")
    except optuna.exceptions.DuplicatedStudyError:
        created = False
        study = optuna.load_study(study_name=name, storage=storage, sampler=sampler)
        if study.direction != optuna.study.StudyDirection.MINIMIZE:
            raise ConfigError(f"study {name!r} exists and is not a minimisation; choose "
                              f"another --study-name") from None
    sig = json.loads(json.dumps(signature))
    old = study.user_attrs.get("signature")
    if old is None:
        study.set_user_attr("signature", sig)
    elif old != sig:
        key = next(k for k in sorted(set(old) | set(sig)) if old.get(k) != sig.get(k))
        raise ConfigError(f"study {name!r} was made with {key} = {old.get(key)!r}, not "
                          f"{sig.get(key)!r}; use the same settings, another --study-name, or "
                          f"--fresh")
    if created:
        for params in warm:
            study.enqueue_trial(params)
    return study, created


def counts(study):
    """``(complete, running)`` trials of ``study``."""
    from optuna.trial import TrialState
    trials = study.get_trials(deepcopy=False)
    done = sum(t.state == TrialState.COMPLETE for t in trials)
    running = sum(t.state == TrialState.RUNNING for t in trials)
    return done, running


def _surplus(study, trial, n_trials):
    """True if ``n_trials`` trials numbered below ``trial`` are complete or running (another
    worker got there first)."""
    from optuna.trial import TrialState
    ahead = sum(t.number < trial.number and t.state in (TrialState.COMPLETE, TrialState.RUNNING)
                for t in study.get_trials(deepcopy=False))
    return ahead >= n_trials


def worker_id():
    """``host:pid``, recorded with every trial this process tells."""
    return f"{socket.gethostname()}:{os.getpid()}"


def progress_bar(total, desc, progress, unit="run", initial=0):
    """A tqdm bar on stderr (disabled without ``progress``), without tqdm's monitor thread
    (the pool forks)."""
    from tqdm import tqdm
    tqdm.monitor_interval = 0
    return tqdm(total=total, initial=initial, desc=desc, unit=unit, disable=not progress,
                file=sys.stderr, dynamic_ncols=True)


def _slim(m):
    return {k: v for k, v in m.items() if k != "cos_per_text"}


def search(study, runner, suggest, text_idx, n_trials, weights, budget, *, own_limit=None,
           wait=True, progress=True, desc="search"):
    """Run trials until ``study`` holds ``n_trials`` complete ones.

    Each trial is first screened (:meth:`Evaluator.screen_saved`): one that clearly misses
    the budget is told at once with a penalty. Trials that pass are evaluated ``runner.jobs``
    at a time and told in trial order (so a single process with a fixed seed is
    reproducible). Other processes may work on the same study: a trial asked after the
    budget was taken is failed unevaluated. With ``wait`` the call returns only when no trial
    is running any more (a dead worker's trials are failed by the heartbeat check);
    ``own_limit`` stops after that many trials of this process. Returns the number of trials
    this process completed."""
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.storages import fail_stale_trials
    from optuna.storages._heartbeat import get_heartbeat_thread
    from optuna.trial import TrialState

    done, _ = counts(study)
    bar = progress_bar(n_trials, desc, progress, unit="trial", initial=min(done, n_trials))
    mine = 0
    me = worker_id()
    try:
        while True:
            fail_stale_trials(study)
            done, running = counts(study)
            bar.n = min(done, n_trials)
            bar.refresh()
            room = n_trials - done - running
            if own_limit is not None:
                room = min(room, own_limit - mine)
            if room <= 0:
                if wait and running and (own_limit is None or mine < own_limit):
                    time.sleep(1.0)
                    continue
                break
            batch = []
            while len(batch) < min(runner.jobs, room):
                t = study.ask()
                if _surplus(study, t, n_trials):
                    t.set_user_attr("surplus", True)
                    study.tell(t, state=TrialState.FAIL)
                    break
                try:
                    plan = suggest(t)
                except UpdateFinishedTrialError:
                    # Another worker popped the same enqueued trial (SQLite has no row locks)
                    # and finished it: it counts once, as that worker's.
                    break
                est = runner.ev.screen_saved(plan, text_idx)
                if est < budget - SCREEN_MARGIN:
                    t.set_user_attr("metrics", {"saved": est, "screened": True})
                    t.set_user_attr("violation", budget - est)
                    t.set_user_attr("worker", me)
                    t.set_constraint("budget", budget - est)
                    study.tell(t, 1.0 + (budget - est))
                    mine += 1
                    room -= 1
                    bar.update(1)
                    continue
                batch.append((t, plan))
            if not batch:
                continue
            plans = [p for _, p in batch]
            batch = [t for t, _ in batch]
            # Optuna's heartbeat thread is not public API; Study.optimize would run it.
            beats = [get_heartbeat_thread(t._trial_id, study._storage) for t in batch]
            for b in beats:
                b.start()
            try:
                results = runner.evaluate(plans, text_idx)
            except BaseException:
                for t in batch:
                    try:
                        study.tell(t, state=TrialState.FAIL)
                    except Exception:                        # noqa: BLE001 (already failing)
                        pass
                raise
            finally:
                for b in beats:
                    b.join()
            for t, res in zip(batch, results):
                m = aggregate(res)
                t.set_user_attr("metrics", _slim(m))
                t.set_user_attr("violation", budget - m["saved"])
                t.set_constraint("budget", budget - m["saved"])
                t.set_user_attr("worker", me)
                study.tell(t, objective_value(m, weights))
                mine += 1
            best = best_trials(study, budget)
            if best:
                bm = best[0].user_attrs["metrics"]
                bar.set_postfix_str(f"best cos {bm['cos_mean']:.4f} saved {pct(bm['saved'])}",
                                    refresh=False)
    finally:
        done, _ = counts(study)
        bar.n = min(done, n_trials)
        bar.close()
    return mine


def best_trials(study, budget):
    """Complete feasible trials, best (lowest objective) first; ties by trial number."""
    from optuna.trial import TrialState
    ok = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
          if t.user_attrs.get("metrics", {}).get("saved", -1) >= budget]
    return sorted(ok, key=lambda t: (t.value, t.number))


def trial_rows(study):
    """Every complete trial as a JSON-ready row (number, value, params, metrics, feasible,
    worker)."""
    from optuna.trial import TrialState
    rows = []
    for t in study.get_trials(deepcopy=False):
        if t.state != TrialState.COMPLETE:
            continue
        rows.append({"number": t.number, "value": t.value, "params": dict(t.params),
                     "metrics": t.user_attrs.get("metrics"),
                     "feasible": t.user_attrs.get("violation", 1.0) <= 0,
                     "worker": t.user_attrs.get("worker")})
    return rows


def choose(runner, study, budget, all_idx, search_idx, held_idx, finalists, n_layers,
           n_heads, radius_bc=None, adaptive=None):
    """The best feasible trial (by the objective on the search texts) that also meets the
    budget on all texts, evaluated on all texts with registers and exact cycles (none under
    the adaptive budget, ``adaptive`` its rule). Returns an entry
    (:func:`sim.dse.evaluate.entry`) or None."""
    cands = best_trials(study, budget)[:finalists]
    first = None
    for t in cands:
        plan = plan_from_params(t.params, n_layers, n_heads, radius_bc=radius_bc,
                                adaptive=adaptive)
        res = runner.evaluate([plan], all_idx, registers=True, exact=True)[0]
        e = entry(f"trial {t.number}", plan, res, search_idx, held_idx, trial=t.number,
                  value=t.value, params=dict(t.params))
        if e["all"]["saved"] >= budget:
            return e
        first = first or e
    if first is not None:
        first["below_budget_on_all_texts"] = True
    return first
