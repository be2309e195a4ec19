"""The Textual app: hosts the run on its event loop and maps keys to the run's controls."""

from __future__ import annotations

import time
from collections.abc import Callable, Coroutine
from datetime import tzinfo
from typing import Any, cast

from textual.app import App
from textual.binding import Binding
from textual.command import CommandPalette
from textual.notifications import Notification, Notify
from textual.screen import ModalScreen
from textual.worker import Worker, WorkerState

from ..engine import StatsSnapshot
from ..run.contract import RunControl, TrafficView
from .commands import PALETTE_ACTION, KeysProvider
from .context import DashboardContext
from .formatting import clock_time, plural
from .guard import GuardedControl
from .lag import LagProbe, LoopLagMonitor
from .screens.amounts import AmountsDialog, Apply
from .screens.dialogs import ConfirmQuitScreen, HelpScreen
from .screens.failed import FailedScreen
from .screens.main import MainScreen
from .screens.traffic_edits import budget_dialog, change_note, limits_dialog, resume_note, spent_budgets
from .screens.trajectory import TrajectoryScreen

_WORKERS = Binding.Group("workers", compact=True)
# what each background call is, for the one error handler of all workers
_WORKER_WHAT = {
    "run": "the run",
    "pause": "pausing",
    "resume": "resuming",
    "stop_now": "stopping",
    "save": "saving",
    "shutdown": "saving before quitting",
}
# why pausing or stopping cannot be done in these states
_NOT_YET = {"done": "the job is done", "starting": "the job is starting: try again in a moment"}
# keys that act on the run; a modal dialog on top takes the keyboard instead
_RUN_ACTIONS = {"toggle_pause", "stop_now", "scale", "limits", "budget", "reset_traffic", "save", "quit", "help"}
# ctrl+c (action "interrupt") works on every screen, dialogs included, as in a terminal
# keys that steer a running job: once the run has returned there is nothing left to steer, so they
# leave the footer, and a press of one says why it does nothing (_FINISHED)
_STEERING = {"toggle_pause", "stop_now", "scale", "limits", "budget", "reset_traffic"}
# the steering keys once the run has returned: Textual tries the next binding of a key whose action
# is refused, so this one answers them then
_FINISHED = Binding("p,x,plus,minus,right_square_bracket,left_square_bracket,l,b,t", "finished_note", show=False)
_FINISHED_NOTE = "the job is done: nothing is left to pause, stop or change (q quits)"


class TokenFlowApp(App[int]):
    """The dashboard of one run; `run()` returns the exit code of the run (or of its shutdown on quit)."""

    CSS_PATH = "tokenflow.tcss"
    TITLE = "TokenFlow"
    READ_ONLY = False  # a view that may not change the job (`tokenflow watch`)
    COMMANDS = {KeysProvider}  # the keys' actions only: Textual's own (themes, quit without saving) are left out
    COMMAND_PALETTE_BINDING = "ctrl+p"
    KEYS = [
        Binding(
            "p",
            "toggle_pause",
            "pause/resume",
            id="pause",
            tooltip="pause softly (requests in flight finish, nothing new starts) or resume",
        ),
        Binding(
            "x",
            "stop_now",
            "stop now",
            id="stop_now",
            tooltip="stop hard: requests in flight are cancelled and go back to the queue",
        ),
        Binding("plus", "scale(1)", "+1", id="workers_up", key_display="+", group=_WORKERS, tooltip="one worker more"),
        Binding(
            "minus", "scale(-1)", "-1", id="workers_down", key_display="-", group=_WORKERS, tooltip="one worker less"
        ),
        Binding(
            "right_square_bracket",
            "scale(10)",
            "+10",
            id="workers_up_10",
            key_display="]",
            group=_WORKERS,
            tooltip="ten workers more",
        ),
        Binding(
            "left_square_bracket",
            "scale(-10)",
            "-10",
            id="workers_down_10",
            key_display="[",
            group=_WORKERS,
            tooltip="ten workers less",
        ),
        Binding("s", "save", "save", id="save", tooltip="save progress now: results flushed, checkpoint written"),
        Binding("q", "quit", "quit", id="quit", tooltip="save and quit (asks first while requests are in flight)"),
        Binding("question_mark", "help", "help", id="help", key_display="?", tooltip="this list of keys"),
        Binding(
            "ctrl+p",
            PALETTE_ACTION,
            "commands",
            id="command_palette",
            show=False,
            tooltip="the command palette: every action of this screen with its key, found by typing",
        ),
        Binding(
            "ctrl+c",
            "interrupt",
            "quit",
            id="interrupt",
            show=False,
            priority=True,
            tooltip="as q; a second ctrl+c stops now (requests in flight go back to the queue), saves and quits",
        ),
    ]
    BINDINGS = [*KEYS, _FINISHED]

    def __init__(
        self,
        control: RunControl,
        *,
        clock: Callable[[], float] = time.time,
        refresh_s: float = 0.25,
        chart_refresh_s: float = 1.0,
        tz: tzinfo | None = None,
        lag_probe: LagProbe | None = None,
        note: str | None = None,
    ) -> None:
        super().__init__()
        self.note = note  # said once the dashboard is up (what an attached view is, how to resume a stopped run)
        self.control = GuardedControl(control, self._report_control_error)
        self.context = DashboardContext(
            self.control,
            clock,
            tz,
            refresh_s,
            chart_refresh_s,
            lag_probe if lag_probe is not None else LoopLagMonitor(),
            read_only=self.READ_ONLY,
        )
        self.main_screen = MainScreen(self.context)
        self.run_code: int | None = None  # set when control.run() has returned
        self._quitting = False
        self._interrupted = False
        self._workers_note: tuple[Notification, int] | None = (
            None  # the note shown and the count it began at  # ctrl+c was pressed once: the next one stops now
        )
        self._resume_wanted = False  # p was pressed again while our pause waited for requests in flight

    def _report_control_error(self, message: str) -> None:
        self.notify(message, severity="error", timeout=30)

    def get_default_screen(self) -> MainScreen:
        return self.main_screen

    def on_mount(self) -> None:
        # the lag probe starts with the run itself (MainScreen.refresh_data): the app's first layout and
        # the run's start-up each hold the loop once, and would stand for the loop's lag for a minute
        self._call("run", self.control.run())
        if self.note:
            self.notify(self.note, timeout=20)

    def on_unmount(self) -> None:
        self.context.lag.stop()

    def _call(self, name: str, work: Coroutine[Any, Any, Any]) -> Worker[Any]:
        # control calls may await a long time (a soft pause waits for requests in flight); a worker
        # keeps the keyboard responsive meanwhile
        return self.run_worker(work, name=name, group=name, exit_on_error=False)

    def _busy(self, name: str) -> bool:
        return self._unfinished(name) is not None

    def _unfinished(self, name: str) -> Worker[Any] | None:
        """The unfinished worker of that name, if any."""
        return next((w for w in self.workers if w.name == name and not w.is_finished), None)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        worker = event.worker
        if worker.name == "run" and worker.is_finished and self._busy("run"):
            return  # an earlier round's end, told late: the round now running tells its own
        if event.state == WorkerState.ERROR:
            what = _WORKER_WHAT.get(worker.name, worker.name)
            self.notify(f"{what} failed: {worker.error}", severity="error", timeout=30)
            if worker.name == "run":
                self.run_code = 1
                self.main_screen.show_finished(1, str(worker.error))
            elif worker.name == "shutdown":
                self._quitting = False
        elif event.state == WorkerState.SUCCESS and worker.name == "run":
            self.run_code = int(cast(int, worker.result))  # the run worker returns the exit code
            self.main_screen.show_finished(self.run_code)
        if worker.name == "run" and worker.is_finished:
            self.refresh_bindings()  # the steering keys leave the footer

    def on_failed_screen_queued(self, _: FailedScreen.Queued) -> None:
        """Failed requests were queued again: a run still going takes them up; one that has returned runs again."""
        if self._busy("run"):
            return
        self.run_code = None
        self.main_screen.remove_class("-finished")  # the summary comes back with the new round's end
        self.refresh_bindings()
        self._call("run", self.control.run())

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # the command palette lists the keys of the screen under it as they work there
        dialog = isinstance(self.screen, ModalScreen) and not isinstance(self.screen, CommandPalette)
        if action == "finished_note":
            return self.run_code is not None and not dialog
        if action in _STEERING and self.run_code is not None:
            return False
        return not (action in _RUN_ACTIONS and dialog)

    def action_finished_note(self) -> None:
        self.notify(_FINISHED_NOTE, severity="warning")

    def _pull(self) -> tuple[str, StatsSnapshot]:
        """The run's state ("done" once run() has returned) and its numbers, as of now."""
        snapshot = self.control.snapshot()
        return ("done" if self.run_code is not None else snapshot.state), snapshot.stats

    def action_toggle_pause(self) -> None:
        state, stats = self._pull()
        if state in _NOT_YET:
            self.notify(_NOT_YET[state], severity="warning")
        elif self._quitting:
            # the pause under way is the quit's: the app exits once it is over, so p cannot resume
            self.notify("quitting once the requests in flight have finished; x stops them now", severity="warning")
        elif state == "stopping":
            self.notify("the job is stopping: p resumes it once it has stopped", severity="warning")
        elif state == "paused":
            traffic = self.control.snapshot().traffic  # before the resume grants a spent budget again
            self._call("resume", self.control.resume())
            self.notify(resume_note(traffic))
        elif state == "pausing":
            self._toggle_while_pausing()
        else:
            self._call("pause", self.control.pause())
            self.notify(f"pausing: {plural(stats.in_flight, 'request')} in flight will finish, nothing new starts")

    def _toggle_while_pausing(self) -> None:
        """p while a soft pause waits for the requests in flight: resume once it is over, or take that back.

        The run can only resume a job that has paused, so the resume waits for our pause to end; a
        pause the app did not ask for (the run paused itself, or we are quitting) is left alone.
        """
        if self._unfinished("resume") is not None:
            # a flag, not a cancel: cancelling the waiting worker would cancel the pause it awaits
            self._resume_wanted = not self._resume_wanted
            self.notify(
                "resuming once the requests in flight have finished" if self._resume_wanted else "staying paused"
            )
        elif (pause := self._unfinished("pause")) is not None:
            self._resume_wanted = True
            self._call("resume", self._resume_after(pause))
            self.notify("resuming once the requests in flight have finished")
        else:
            self.notify("the job is pausing: p resumes it once it has paused", severity="warning")

    async def _resume_after(self, pause: Worker[Any]) -> None:
        await pause.wait()
        if self._resume_wanted:
            self._resume_wanted = False
            await self.control.resume()

    def action_stop_now(self) -> None:
        state, stats = self._pull()
        if state in _NOT_YET:
            self.notify(_NOT_YET[state], severity="warning")
        elif state == "stopping":
            self.notify("the job is stopping already", severity="warning")
        elif state == "paused":
            self.notify("the job is paused: nothing is in flight", severity="warning")
        else:
            self._call("stop_now", self.control.stop_now())
            goes = "goes" if stats.in_flight == 1 else "go"
            self.notify(f"stopping now: {plural(stats.in_flight, 'request')} in flight {goes} back to the queue")

    def action_scale(self, delta: int) -> None:
        state, stats = self._pull()
        if state == "done":
            self.notify("the job is done", severity="warning")
            return
        target = stats.target_workers
        wanted = target + delta
        if wanted < 1 < target:
            wanted = 1  # ten less from 5 means down to 1; from 1 the runner says why not
        refusal = self.control.set_workers(wanted)
        if refusal:
            self.notify(refusal, severity="warning")
            return
        shown = self._workers_note
        if shown is not None and shown[0] in self._notifications:
            # the note of the last presses is still up: one note, updated, rather than a stack of them
            self._unnotify(shown[0])
            target = shown[1]
        note = Notification(f"workers: {target:,} → {wanted:,}", timeout=self.NOTIFICATION_TIMEOUT)
        self._workers_note = (note, target)
        self.post_message(Notify(note))

    def action_limits(self) -> None:
        self._edit_traffic(limits_dialog, "limits", self.control.set_limits)

    def action_budget(self) -> None:
        self._edit_traffic(budget_dialog, "budget", self.control.set_budget)

    def action_reset_traffic(self) -> None:
        state = self._pull()[0]
        if state in _NOT_YET:
            self.notify(_NOT_YET[state], severity="warning")
            return
        refusal = self.control.reset_traffic()
        if refusal:
            self.notify(refusal, severity="warning")
        else:
            self.notify("traffic control reset: the pace, the holds and the limits read from the server are forgotten")

    def _edit_traffic(self, dialog: Callable[[TrafficView, Apply], AmountsDialog], what: str, apply: Apply) -> None:
        """Ask for new amounts in `dialog`, which hands them to the run's `apply`, then say what changed."""
        state = self._pull()[0]
        if state in _NOT_YET:
            self.notify(_NOT_YET[state], severity="warning")
            return
        before = self.control.snapshot()
        asked = dialog(before.traffic, apply)

        def answered(values: tuple[float, ...] | None) -> None:
            if values is None:
                return  # escape: nothing changed, nothing to say
            note = change_note(what, asked.amounts, values)
            snapshot = self.control.snapshot()
            if snapshot.state == "paused" and not spent_budgets(snapshot.traffic):
                note += "; p resumes the job"
            elif before.state == "paused" and snapshot.state == "running":
                note += "; the job goes on"  # the budget that paused it is spent no more
            self.notify(note)

        self.push_screen(asked, answered)

    def action_save(self) -> None:
        if self._busy("save"):
            self.notify("saving already", severity="warning")
            return
        self._call("save", self._save())

    async def _save(self) -> None:
        report = await self.control.save()
        self.notify(
            f"saved {plural(report.results, 'result')} to {report.path} "
            f"at {clock_time(report.saved_at, self.context.tz)}"
        )

    async def action_quit(self) -> None:
        if self._quitting:
            self.notify("quitting: waiting for the save to finish", severity="warning")
        elif self.run_code is not None:
            self.exit(self.run_code)
        elif self.control.snapshot().stats.in_flight:
            in_flight = self._in_flight
            self.push_screen(ConfirmQuitScreen(in_flight, self.context.refresh_s), self._quit_answered)
        else:
            self._save_and_quit()

    def _in_flight(self) -> int:
        return self.control.snapshot().stats.in_flight

    async def action_interrupt(self) -> None:
        """Ctrl-C: what q does (as headless); pressed again, stop now, save and quit."""
        if not self._interrupted:
            self._interrupted = True
            if not isinstance(self.screen, ConfirmQuitScreen):
                await self.action_quit()
                return
        if isinstance(self.screen, ConfirmQuitScreen):
            self.screen.dismiss(False)
        if self.run_code is not None:
            self.exit(self.run_code)
            return
        if self._pull()[0] in ("running", "pausing"):
            self._call("stop_now", self.control.stop_now())
        self.notify("ctrl+c again: stopping now, requests in flight go back to the queue")
        if not self._quitting:
            self._save_and_quit()

    def _quit_answered(self, quit_: bool | None) -> None:
        if quit_:
            self._save_and_quit()

    def _save_and_quit(self) -> None:
        self._quitting = True
        in_flight = self.control.snapshot().stats.in_flight
        if in_flight:
            # a stalled request can hold a soft pause up to the endpoint's timeout: say how not to wait
            self.notify(
                f"saving and quitting once {plural(in_flight, 'request')} in flight "
                f"{'has' if in_flight == 1 else 'have'} finished; x stops them now"
            )
        else:
            self.notify("saving and quitting…")
        self._call("shutdown", self._shutdown_and_exit())

    async def _shutdown_and_exit(self) -> None:
        self.exit(await self.control.shutdown())

    def action_help(self) -> None:
        self.push_screen(
            HelpScreen(
                [
                    ("Anywhere", self.KEYS),
                    ("Dashboard", MainScreen.BINDINGS),
                    ("Failed requests", FailedScreen.BINDINGS),
                    ("Trajectory", TrajectoryScreen.BINDINGS),
                ]
            )
        )


_DETACH = Binding("q", "quit", "detach", id="quit", tooltip="leave the dashboard; the job goes on")
_LEAVE_ON_CTRL_C = Binding("ctrl+c", "quit", "detach", id="interrupt", show=False, priority=True, tooltip="as q")
_HELP = next(binding for binding in TokenFlowApp.KEYS if binding.action == "help")


class AttachedApp(TokenFlowApp, inherit_bindings=False):
    """The dashboard of a job run by another process (`tokenflow attach`): q detaches, Q ends the job."""

    KEYS = [
        *(binding for binding in TokenFlowApp.KEYS if binding.id not in ("quit", "interrupt")),
        _DETACH,
        Binding("Q", "end_job", "end job", id="end_job", tooltip="end the job: it pauses softly, saves and exits"),
        _LEAVE_ON_CTRL_C,
    ]
    BINDINGS = [*KEYS, _FINISHED]

    async def action_quit(self) -> None:
        self.exit(self.run_code if self.run_code is not None else 0)

    def action_end_job(self) -> None:
        if self.run_code is not None:
            self.notify("the job has ended already (q leaves)", severity="warning")
        elif self._quitting:
            self.notify("ending the job: waiting for it to save", severity="warning")
        else:
            self._save_and_quit()


READ_ONLY_NOTE = "watching read-only: `tokenflow attach` steers the job (q leaves, the job goes on)"
_READ_ONLY = Binding("p,x,plus,minus,right_square_bracket,left_square_bracket,l,b,t,s,Q", "read_only_note", show=False)


class WatchingApp(AttachedApp, inherit_bindings=False):
    """The dashboard of a job run by another process, read-only (`tokenflow watch`): every steering key refused."""

    READ_ONLY = True
    KEYS = [_HELP, _DETACH, _LEAVE_ON_CTRL_C]
    BINDINGS = [*KEYS, _READ_ONLY]

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in _STEERING or action in ("save", "end_job"):
            return False  # the next binding of the key, _READ_ONLY, says why
        return super().check_action(action, parameters)

    def action_read_only_note(self) -> None:
        self.notify(READ_ONLY_NOTE, severity="warning")


# what `tokenflow run` shows (the job on this loop), `attach` and `watch` (a job in another process)
MODES: dict[str, type[TokenFlowApp]] = {"run": TokenFlowApp, "attach": AttachedApp, "watch": WatchingApp}


def run_dashboard(control: RunControl, mode: str = "run", note: str | None = None) -> int:
    """Show the dashboard until the user quits; the exit code (1 if the app itself failed)."""
    code = MODES[mode](control, note=note).run()
    return 1 if code is None else code
