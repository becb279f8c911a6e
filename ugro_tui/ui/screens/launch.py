"""The launch form (n anywhere, e on a job): compose a job from the keyboard, see the exact command per node.

Validation runs as you type (core/jobs/form.py holds the rules); ctrl+s queues the job, or one job per sweep
combination; esc leaves, asking first if anything was edited. Templates save and load the whole form."""

from __future__ import annotations

import asyncio
import dataclasses

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Footer, Input, Label, OptionList, Select, SelectionList, Static, TextArea
from textual.widgets.selection_list import Selection

from ugro_tui.core.jobs import templates
from ugro_tui.core.jobs.form import (
    KINDS,
    FormResult,
    FormValues,
    check,
    from_spec,
    preview,
    search_words,
)
from ugro_tui.core.jobs.model import Job, JobSpec
from ugro_tui.core.jobs.placement import capacity
from ugro_tui.core.jobs.sweep import Search
from ugro_tui.errors import UgroError
from ugro_tui.ui.read_only import ReadOnlyAware
from ugro_tui.ui.shown import when_shown
from ugro_tui.ui.widgets.dialogs import Field, leave_asking
from ugro_tui.ui.workers import ReportsWorkerFailures

TEXT_FIELDS = (  # (field, label, placeholder)
    ("name", "name", "default: the script's name"),
    ("script", "script", "train.py (kind command: the program)"),
    ("args", "args", "--lr {lr} --epochs 3"),
    ("nnodes", "nodes", "1 (2:3: elastic, on 2 to 3 nodes)"),
    ("nproc_per_node", "procs/node", "1"),
    ("gpus_per_node", "GPUs/node", "default: one per proc"),
    ("min_gpu_mem_gb", "min GPU mem GB", "0"),
    ("gpu_mem", "GPU mem/rank GB", "3 (shares a card; `3 enforce` stops over-use)"),
    ("workdir", "workdir", "default: the node's workdir"),
    ("sync", "sync folder", ". (copied to the nodes first; .ugroignore)"),
    ("data", "data", "~/datasets/wikitext (checked on each node)"),
    ("priority", "priority", "0 (higher runs first; `0 preemptible` may be stopped)"),
    ("after", "after jobs", "3,4 (start when they succeed)"),
    ("max_retries", "max retries", "0"),
    ("checkpoint_dir", "checkpoint dir", "resume from here on a retry"),
    ("keep", "keep", "last=2 best=1 (checkpoints; default: all)"),
    ("sweep", "sweep", "lr=1e-4,2e-4 or lr=loguniform:1e-5:1e-2"),
    ("search", "search", "trials=8 max_concurrent=2 early_stop=median"),
    ("service", "service", "port=8000 health=/health restart=on-failure (kind service)"),
)
ORDER = ("name", "kind", "script", "args", "nnodes", "nproc_per_node", "gpus_per_node", "min_gpu_mem_gb", "gpu_mem",
         "nodes", "env", "workdir", "sync", "data", "priority", "after", "max_retries", "checkpoint_dir", "keep",
         "sweep", "search", "service")
LABELS = {key: label for key, label, _ in TEXT_FIELDS} | {"kind": "kind", "nodes": "run on", "env": "env"}


class NameScreen(ReportsWorkerFailures, ModalScreen[str | None]):
    """Asks for a template name."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel", id="template.cancel")]
    DEFAULT_CSS = """
    NameScreen { align: center middle; }
    NameScreen > Vertical { width: 60; height: auto; border: round $primary; background: $surface; padding: 0 1; }
    NameScreen #template-error { color: $error; }
    """

    def __init__(self, suggestion: str) -> None:
        super().__init__()
        self.suggestion = suggestion

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("save the form as template (enter saves, esc cancels):")
            yield Input(self.suggestion, id="template-name", compact=True)
            yield Static("", id="template-error")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        name = event.value.strip()
        if not templates.NAME_RE.match(name):
            self.query_one("#template-error", Static).update("use letters, digits, . _ - (up to 63)")
            return
        self.dismiss(name)


class PickTemplateScreen(ReportsWorkerFailures, ModalScreen[str | None]):
    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel", id="template.cancel")]
    DEFAULT_CSS = """
    PickTemplateScreen { align: center middle; }
    PickTemplateScreen > Vertical { width: 60; height: auto; max-height: 80%; border: round $primary;
        background: $surface; padding: 0 1; }
    """

    def compose(self) -> ComposeResult:
        names = templates.names()
        with Vertical():
            yield Label("load a template (enter loads, esc cancels):" if names else
                        "no templates yet: ctrl+t in the form saves one")
            yield OptionList(*names, id="template-list", compact=True)

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(str(event.option.prompt))


class LaunchScreen(ReadOnlyAware, ReportsWorkerFailures, Screen[None]):
    AUTO_FOCUS = "#f-script"
    DEFAULT_CSS = """
    LaunchScreen #title { height: 1; padding: 0 1; background: $panel; }
    LaunchScreen #body { height: 1fr; layout: vertical; }
    LaunchScreen #form { height: 1fr; padding: 0 1; }
    LaunchScreen .error { color: $error; padding: 0 0 0 16; height: auto; }
    LaunchScreen #f-env { height: 3; }
    LaunchScreen #f-nodes { height: auto; max-height: 6; }
    LaunchScreen #preview-box { height: 9; border-top: solid $primary 50%; padding: 0 1; }
    LaunchScreen.wide #body { layout: horizontal; }
    LaunchScreen.wide #form { width: 1fr; }
    LaunchScreen.wide #preview-box { height: 1fr; width: 1fr; border-top: none; border-left: solid $primary 50%; }
    """
    BINDINGS = [
        Binding("ctrl+s", "submit", "Submit", id="launch.submit", priority=True),
        Binding("escape", "leave", "Cancel", id="launch.cancel"),
        Binding("ctrl+t", "save_template", "Save template", id="launch.save"),
        Binding("ctrl+o", "load_template", "Load template", id="launch.load"),
    ]

    def __init__(self, values: FormValues | None = None, title: str = "new job") -> None:
        super().__init__()
        self.initial = values or FormValues()
        self.title_text = title
        self.result = FormResult(None)
        self._prompts: dict[str, str] = {}
        self.tried = False  # a submit was attempted: every problem shows, touched or not

    # --- layout ---------------------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        v = self.initial
        yield Static("", id="title")
        with Horizontal(id="body"):
            yield from self._fields(v)
            yield VerticalScroll(Static("", id="preview"), id="preview-box")
        yield Footer(compact=True)

    def _fields(self, v: FormValues) -> ComposeResult:
        with VerticalScroll(id="form"):
            for key in ORDER:
                with Field():
                    yield Label(LABELS[key])
                    if key == "kind":
                        yield Select([(k, k) for k in KINDS], value=v.kind, allow_blank=False, id="f-kind",
                                     compact=True)
                    elif key == "nodes":
                        yield SelectionList[str](*self._node_choices(v.nodes), id="f-nodes", compact=True)
                    elif key == "env":
                        yield TextArea(v.env, id="f-env", compact=True, show_line_numbers=False,
                                       placeholder="NAME=VALUE, one per line")
                    else:
                        placeholder = next(p for k, _, p in TEXT_FIELDS if k == key)
                        yield Input(str(getattr(v, key)), placeholder=placeholder, id=f"f-{key}", compact=True)
                yield Static("", id=f"err-{key}", classes="error")
            yield Static("", id="err-form", classes="error")

    def _node_choices(self, chosen: tuple[str, ...]) -> list[Selection[str]]:
        """Each node with its free GPUs now (as placement counts them), then each label with its nodes."""
        prompts = self._prompts = self._node_prompts()
        out = [Selection(prompt, name, name in chosen, id=f"pick-{name}") for name, prompt in prompts.items()]
        labels: dict[str, list[str]] = {}
        for node in self.app.cluster.nodes:
            for label in node.labels:
                labels.setdefault(label, []).append(node.name)
        out += [Selection(f"label {label}: any of {', '.join(names)}", label, label in chosen)
                for label, names in labels.items() if label not in prompts]
        return out

    def _node_prompts(self) -> dict[str, str]:
        app = self.app
        free = {c.name: c for c in capacity(app.cluster, app.monitor_state, app.session.jobs_snapshot or [])}
        out = {}
        for node in app.cluster.nodes:
            cap = free[node.name]
            status = app.monitor_state.nodes.get(node.name)
            state = status.state.value if status is not None else "unknown"
            out[node.name] = f"{node.name}  " + (f"{len(cap.free)}/{cap.gpu_count} GPUs free" if state == "online"
                                                 else state)
        return out

    @when_shown
    def node_updated(self) -> None:
        """Telemetry changed: the picker's free GPU counts and the GPU-count checks follow it.
        Samples arrive every interval from every node; only a change in what the picker says costs a redraw."""
        prompts = self._node_prompts()
        if prompts == self._prompts:
            return
        picker = self.query_one("#f-nodes", SelectionList)
        for name, prompt in prompts.items():
            if prompt != self._prompts.get(name):
                picker.replace_option_prompt(f"pick-{name}", prompt)
        self._prompts = prompts
        self.validate()

    def on_mount(self) -> None:
        self.query_one("#preview-box").border_title = "command on each node"
        for error in self.query(".error"):
            error.display = False
        if self.app.cluster.backend == "slurm":  # Slurm picks the nodes ([slurm] partition, extra)
            self.query_one("#f-nodes").parent.display = False
            self.query_one("#f-gpu_mem").parent.display = False  # Slurm places jobs itself: no sharing by memory
            self.query_one("#preview-box").border_title = "sbatch, and the command on each node"
        self.validate()

    def on_resize(self) -> None:
        self.set_class(self.size.width >= 150, "wide")  # side by side: the whole command fits beside the form

    # --- values and validation ------------------------------------------------------------------------------

    def values(self) -> FormValues:
        data = {key: self.query_one(f"#f-{key}", Input).value for key, _, _ in TEXT_FIELDS}
        kind = self.query_one("#f-kind", Select).value
        return FormValues(**data, kind=str(kind), nodes=tuple(self.query_one("#f-nodes", SelectionList).selected),
                          env=self.query_one("#f-env", TextArea).text, template=self.initial.template)

    @property
    def edited(self) -> bool:
        return self.values() != self.initial

    @on(Input.Changed)
    @on(Select.Changed)
    @on(TextArea.Changed)
    @on(SelectionList.SelectedChanged)
    def validate(self) -> None:
        cluster = self.app.cluster
        caps = capacity(cluster, self.app.monitor_state, self.app.session.jobs_snapshot or [])
        values = self.values()
        self.result = check(values, cluster, caps)
        # A field says what is wrong once it was changed (or a submit was tried), not while still untouched.
        shown = {k: v for k, v in self.result.errors.items()
                 if self.tried or k == "form" or getattr(values, k) != getattr(self.initial, k)}
        for key in (*ORDER, "form"):
            error = self.query_one(f"#err-{key}", Static)
            text = shown.get(key, "")
            error.update(text)
            error.display = bool(text)
        theme = self.app.theme_variables
        title = Text.assemble((self.title_text, "bold"), "  ")
        if self.result.spec is not None:
            count = self.result.count
            title.append(f"→ {count} job{'s' if count != 1 else ''}" + (" (sweep)" if self.result.search else ""),
                         style=theme.get("success", ""))
        elif shown:
            title.append(f"{len(shown)} field{'s' if len(shown) != 1 else ''} to fix", style=theme.get("error", ""))
        else:
            title.append("fill in: " + ", ".join(LABELS.get(k, k) for k in self.result.errors), style="italic")
        if self.initial.template:
            title.append(f"  template {self.initial.template}", style="italic")
        self.query_one("#title", Static).update(title)
        self.query_one("#preview", Static).update(self._preview_text())

    def _preview_text(self) -> Text:
        if self.result.spec is None:
            return Text("the exact command shows here once every field is valid", style="italic")
        text = Text()
        for node, command in preview(self.result.spec, self.app.cluster, self.result.search):
            text.append(f"{node}\n", style="bold")
            text.append(f"  {command}\n")
        text.append("job id, GPUs and port are chosen at launch" + (
            "; the sweep's first values are shown" if self.result.search else ""), style="italic")
        return text

    async def _sync(self, spec: JobSpec) -> tuple[JobSpec, tuple[tuple[str, int, int], ...]]:
        """Keep the tree as it is now and have the daemon copy it to the nodes the job may run on (its warm
        connections), with progress in the preview. Without a daemon, the launch copies it when placed."""
        from ugro_tui.core.daemon import ask
        from ugro_tui.core.jobs.placement import NodeCapacity, allowed
        from ugro_tui.core.sync.service import synced_spec
        from ugro_tui.core.sync.tree import human

        box = self.query_one("#preview", Static)
        self.query_one("#preview-box").border_title = "copying the code"
        synced, tree, _ = await asyncio.to_thread(synced_spec, spec, self.app.cluster)
        rows: dict[str, str] = {}

        def show(node: str, files: int, done: int, files_total: int, total: int) -> None:
            rows[node] = (f"{files}/{files_total} files, {human(done)}/{human(total)}" if files_total
                          else "up to date, nothing sent")
            box.update(Text(tree.summary() + "\n\n" + "\n".join(f"{n}: {r}" for n, r in rows.items())))

        nodes = [n.name for n in self.app.cluster.nodes if allowed(Job(0, synced), NodeCapacity(n.name, n.labels))]
        results: dict[str, dict] = {}
        if self.app.daemon is not None:
            try:
                results = await asyncio.to_thread(ask.push, self.app.daemon, tree.hash, nodes,
                                                  lambda *a: self.app.call_from_thread(show, *a))
            except UgroError as exc:  # the launch copies it to the nodes it places the job on
                self.notify(f"the code goes with the launch: {exc}", severity="warning", timeout=6)
        self.query_one("#preview-box").border_title = "command on each node"
        spec = dataclasses.replace(spec, sync=synced.sync, sync_hash=synced.sync_hash)
        return spec, tuple((n, int(r["files_sent"]), int(r["bytes_sent"])) for n, r in sorted(results.items())
                            if "error" not in r)

    # --- actions --------------------------------------------------------------------------------------------

    def action_submit(self) -> None:
        self.tried = True
        self.validate()
        if self.result.spec is None:
            first = next(k for k in (*ORDER, "form") if k in self.result.errors)
            self.notify(self.result.errors[first], severity="error", timeout=5)
            if first != "form":
                self.query_one(f"#f-{first}").focus()
            return
        self._submit(self.result.spec, self.result.search)

    @work(group="submit", exclusive=True, exit_on_error=False, description="queue the job")
    async def _submit(self, spec: JobSpec, search: Search) -> None:
        from ugro_tui.core.jobs.request import queue  # on submit only: the app's start does not need it

        sent: tuple[tuple[str, int, int], ...] = ()
        try:  # in a thread: another process may hold the store's lock for a while
            if spec.sync:
                spec, sent = await self._sync(spec)
            # The CLI's rule: a sweep gets its id, and a random search a seed drawn and said, in one write.
            jobs, sweep_id, search = await asyncio.to_thread(queue, self.app.store, spec, search, sync_sent=sent)
        except UgroError as exc:
            self.notify(str(exc), severity="error", timeout=8)
            self.validate()  # the preview shows the command again
            return
        self.app.kick_daemon()
        ids = f"job {jobs[0].id}" if len(jobs) == 1 else f"{len(jobs)} jobs ({jobs[0].id}-{jobs[-1].id})"
        seed = f", seed {search.seed}" if sweep_id and search.seed is not None else ""
        self.notify(f"queued {ids}" + (f" · sweep {sweep_id}{seed}" if sweep_id else ""), timeout=4)
        self.app.session.jobs_snapshot = None
        if not self.app.is_running:  # quitting while the job was queued: a new mode now would race its closing
            return
        self.dismiss()
        self.app.switch_mode("jobs")

    def action_leave(self) -> None:
        leave_asking(self, self.edited, "Discard this job? What you typed is lost.")

    def action_save_template(self) -> None:
        if self.result.spec is None:
            self.notify("fix the form first: a template is saved from a valid job", severity="warning", timeout=4)
            return
        spec, search = self.result.spec, self.result.search

        def save(name: str | None) -> None:
            if name:
                try:
                    path = templates.save(name, spec, search)
                except UgroError as exc:
                    self.notify(str(exc), severity="error", timeout=6)
                    return
                self.initial.template = name
                self.notify(f"saved template {name} ({path})", timeout=4)
                self.validate()

        self.app.push_screen(NameScreen(self.initial.template or spec.name.split("[")[0]), save)

    def action_load_template(self) -> None:
        def load(name: str | None) -> None:
            if not name:
                return
            try:
                data, search = templates.load(name)
                data = {"name": name, "command": [], **data}
                data.setdefault("gpus_per_node", data.get("nproc_per_node", 1))
                spec = JobSpec.from_json(data)
            except (UgroError, TypeError, ValueError) as exc:
                self.notify(f"template {name}: {exc}", severity="error", timeout=6)
                return
            values = from_spec(spec)
            values.sweep = search.text
            values.search = search_words(spec, search)
            values.template = name
            self.fill(values)

        self.app.push_screen(PickTemplateScreen(), load)

    def fill(self, values: FormValues) -> None:
        for key, _, _ in TEXT_FIELDS:
            self.query_one(f"#f-{key}", Input).value = str(getattr(values, key))
        self.query_one("#f-kind", Select).value = values.kind
        self.query_one("#f-env", TextArea).text = values.env
        picker = self.query_one("#f-nodes", SelectionList)
        picker.deselect_all()
        for name in values.nodes:
            picker.select(name)
        self.initial.template = values.template
        self.validate()
