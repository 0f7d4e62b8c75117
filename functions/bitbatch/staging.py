"""Stage a run's input: fetch the pushed commit, read bitbatch.yml, transform the
selected files, store them as artifacts with a manifest, and queue the job."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from urllib.parse import quote

from dulwich.object_store import tree_lookup_path

from bitbatch import checkout, repo_config, transforms
from bitbatch.artifacts import CONTENT_TYPES, MANIFEST_NAME, ArtifactStore, ManifestEntry, build_manifest, describe_artifact
from bitbatch.model import Run, RunStatus, input_prefix, output_prefix
from bitbatch.observability import logger, metrics
from bitbatch.runs import RunStore, TransitionRejected

# Characters S3 documents as safe in keys; others in a path are percent-encoded.
SAFE_KEY_CHARACTERS = "/-_.!*'()"


class RunInputError(ValueError):
    """The pushed content or its bitbatch.yml cannot run; retrying will not help."""


@dataclass(frozen=True)
class Limits:
    max_file_bytes: int
    max_files: int
    max_checkout_bytes: int


@dataclass(frozen=True)
class StagingResult:
    status: RunStatus
    files: int
    reason: str | None = None


@dataclass
class Selection:
    entries: list[ManifestEntry] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)
    total_bytes: int = 0


class SubmitQueue:
    """The SQS queue the submitter function reads."""

    def __init__(self, sqs_client, queue_url: str):
        self._sqs = sqs_client
        self._queue_url = queue_url

    def send(self, run: Run) -> None:
        message = {"run_id": run.run_id, "input_prefix": run.input_prefix, "output_prefix": run.output_prefix}
        self._sqs.send_message(QueueUrl=self._queue_url, MessageBody=json.dumps(message))


def artifact_key(path: str, suffix: str) -> str:
    """Return the key of a file's artifact below the input prefix; the manifest keeps the real path."""
    return "files/" + quote(path + suffix, safe=SAFE_KEY_CHARACTERS)


class CommitReader:
    """Read-only access to other files of the fetched commit, for transforms such as json-validate."""

    def __init__(self, repo, commit: str):
        self._repo = repo
        self._tree = repo[commit.encode()].tree

    def read(self, path: str) -> bytes:
        try:
            mode, blob_id = tree_lookup_path(self._repo.object_store.__getitem__, self._tree, path.encode())
        except KeyError:
            raise KeyError(path) from None
        if mode is None or not (mode & 0o170000 == 0o100000):
            raise KeyError(path)
        return self._repo.object_store[blob_id].data


def stage_run(
    run: Run,
    clone_url: str,
    credentials: checkout.Credentials | None,
    store: RunStore,
    artifacts: ArtifactStore,
    queue: SubmitQueue,
    limits: Limits,
    default_branches: tuple[str, ...] = (),
) -> StagingResult:
    """Fetch, configure, transform, upload and queue one run.

    Raises RunInputError when the content cannot run (invalid bitbatch.yml,
    a file a transform rejects, a limit passed), CheckoutError when the fetch
    failed. A retried event for a queued run sends its message again (the
    submitter starts one job per run whatever it receives) and does nothing else.
    """
    if run.status == RunStatus.QUEUED and not run.job_id:
        queue.send(run)
        logger.info("run already staged; submit message sent again")
        return StagingResult(status=RunStatus.QUEUED, files=0, reason="already staged")
    if run.status not in (RunStatus.RECEIVED, RunStatus.CHECKED_OUT):
        logger.info("run already past staging; ignoring repeated event", extra={"status": run.status})
        return StagingResult(status=RunStatus(run.status), files=0, reason="already staged")

    run.input_prefix = input_prefix(run.run_id)
    run.output_prefix = output_prefix(run.run_id)

    logger.info("fetching commit", extra={"previous_commit": run.previous_commit})
    try:
        fetch = checkout.fetched_commits(
            clone_url, run.ref, run.commit, credentials, run.previous_commit, limits.max_checkout_bytes
        )
        with fetch as fetched:
            _advance(store, run, RunStatus.CHECKED_OUT, (RunStatus.RECEIVED, RunStatus.CHECKED_OUT))
            return _stage_fetched(run, fetched, store, artifacts, queue, limits, default_branches)
    except checkout.CheckoutTooLarge as error:
        raise RunInputError(str(error)) from error


def _stage_fetched(run, fetched, store, artifacts, queue, limits, default_branches) -> StagingResult:
    repo = fetched.repo
    listing = checkout.list_commit_files(repo, run.commit)
    if len(listing.files) > limits.max_files:
        raise RunInputError(
            f"the commit has {len(listing.files)} files; the limit is {limits.max_files} (MAX_FILES). "
            "Raise the stack's MaxFiles or keep fewer files in the repository"
        )

    config = _read_config(repo, listing, default_branches)
    logger.info("configuration read", extra={"config_source": config.source})

    changes = None
    if fetched.previous_commit:
        changes = checkout.changed_files(repo, fetched.previous_commit, run.commit)
    skip_reason = _trigger_mismatch(run, config, changes)
    if skip_reason:
        return _skip(store, run, skip_reason)

    selection = _transform_files(run, repo, listing, config, changes, artifacts, limits)
    if not selection.entries:
        return _skip(store, run, "no file in the commit matches a transform rule")

    manifest = build_manifest(
        run,
        selection.entries,
        base_commit=fetched.previous_commit,
        changes=changes,
        skipped=selection.skipped,
        config_source=config.source,
    )
    artifacts.put(run.input_prefix, MANIFEST_NAME, manifest, "application/json")
    logger.info("artifacts stored", extra={"files": len(selection.entries), "bytes": selection.total_bytes})
    metrics.add_metric(name="ArtifactsStored", unit="Count", value=len(selection.entries))

    _advance(
        store,
        run,
        RunStatus.QUEUED,
        (RunStatus.CHECKED_OUT,),
        input_prefix=run.input_prefix,
        output_prefix=run.output_prefix,
        config=config.to_summary(),
    )
    queue.send(run)
    logger.info("run queued for submission")
    return StagingResult(status=RunStatus.QUEUED, files=len(selection.entries))


def _read_config(repo, listing: checkout.CommitFiles, default_branches) -> repo_config.PipelineConfig:
    source = next((item for item in listing.files if item.path == repo_config.CONFIG_PATH), None)
    if source is None:
        return repo_config.default_config(default_branches)
    try:
        return repo_config.parse_config(checkout.read_file(repo, source))
    except repo_config.ConfigError as error:
        raise RunInputError(str(error)) from error


def _trigger_mismatch(run: Run, config: repo_config.PipelineConfig, changes) -> str | None:
    """Return why the push does not trigger a job, or None when it does."""
    globs = config.branches if run.ref_type == "branch" else config.tags
    if not repo_config.ref_matches(run.ref_name, globs):
        return f"{run.ref_type} {run.ref_name} is not selected by triggers.{run.ref_type}es in {config.source}"

    paths = config.paths
    if changes is None or not (paths.include or paths.exclude):
        # NOTE: a new ref, or one whose previous commit is gone, has no base to
        # compare with, so every file counts as changed and path filters pass.
        return None
    changed = [path for change in changes for path in (change.path, change.old_path) if path]
    if not any(_path_selected(path, paths) for path in changed):
        return f"none of the {len(changes)} changed files matches triggers.paths in {config.source}"
    return None


def _path_selected(path: str, globs: repo_config.GlobFilter) -> bool:
    included = not globs.include or any(transforms.path_matches(path, pattern) for pattern in globs.include)
    return included and not any(transforms.path_matches(path, pattern) for pattern in globs.exclude)


def _transform_files(run, repo, listing, config, changes, artifacts: ArtifactStore, limits: Limits) -> Selection:
    selection = Selection(skipped=[{"path": item.path, "reason": item.reason} for item in listing.skipped])
    changed_paths = None
    if config.input == "changed" and changes is not None:
        changed_paths = {change.path for change in changes if change.change != "delete"}
    reader = CommitReader(repo, run.commit)

    for source in listing.files:
        rule = transforms.select_rule(source.path, config.rules)
        if rule is None or (changed_paths is not None and source.path not in changed_paths):
            continue

        data = checkout.read_file(repo, source)
        _check_limits(source.path, data, selection, limits)
        if checkout.is_lfs_pointer(data):
            raise RunInputError(
                f"{source.path} is a Git LFS pointer, and bitbatch does not download LFS objects; "
                "commit the file itself, or exclude it with a transform rule or triggers.paths"
            )
        try:
            result = transforms.apply_transform(
                rule.transform, transforms.SourceFile(path=source.path, data=data), rule.options, reader
            )
        except transforms.TransformError as error:
            raise RunInputError(str(error)) from error

        entry = describe_artifact(source.path, artifact_key(source.path, result.suffix), rule.transform, result)
        artifacts.put(run.input_prefix, entry.artifact, result.data, CONTENT_TYPES[entry.format])
        selection.entries.append(entry)
    return selection


def _check_limits(path: str, data: bytes, selection: Selection, limits: Limits) -> None:
    if len(data) > limits.max_file_bytes:
        raise RunInputError(
            f"{path} is {len(data)} bytes; the limit for one file is {limits.max_file_bytes} bytes (MAX_FILE_BYTES). "
            "Raise the stack's MaxFileBytes or exclude the file"
        )
    selection.total_bytes += len(data)
    if selection.total_bytes > limits.max_checkout_bytes:
        raise RunInputError(
            f"the selected files pass {limits.max_checkout_bytes} bytes (MAX_CHECKOUT_BYTES) at {path}. "
            "Raise the stack's MaxCheckoutBytes or select fewer files"
        )


def _skip(store: RunStore, run: Run, reason: str) -> StagingResult:
    _advance(store, run, RunStatus.SKIPPED, (RunStatus.CHECKED_OUT,), failure_reason=reason)
    logger.info("run skipped", extra={"reason": reason})
    metrics.add_metric(name="RunsSkipped", unit="Count", value=1)
    return StagingResult(status=RunStatus.SKIPPED, files=0, reason=reason)


def _advance(store: RunStore, run: Run, status: RunStatus, allowed_from, **attributes) -> None:
    try:
        store.advance(run.run_id, status, allowed_from, **attributes)
    except TransitionRejected:
        logger.warning("run status changed elsewhere; not moving it", extra={"to": str(status)})
        raise
    run.status = status
