"""Sample git repository of weather-station data, with two commits on `main`.

Commits use a fixed author, committer and dates, and git reads no system or
personal configuration, so the commit hashes are the same on every machine.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path, PurePosixPath

AUTHOR_NAME = "Ada Lovelace"
AUTHOR_EMAIL = "ada@example.com"
BRANCH = "main"

FIRST_COMMIT_DATE = "2024-03-04T09:15:00+00:00"
SECOND_COMMIT_DATE = "2024-03-05T14:40:00+00:00"

# add_commit dates a commit this long after its parent unless the caller passes a date.
COMMIT_INTERVAL = timedelta(hours=1)

FIRST_COMMIT_MESSAGE = "Add station list and quality-control pipeline"
SECOND_COMMIT_MESSAGE = "Add first day of hourly readings and alert thresholds"


class GitCommandError(RuntimeError):
    """A git command exited with a non-zero code."""


@dataclass(frozen=True)
class SampleRepository:
    """The repository that build_sample_repository created."""

    path: Path
    head_commit: str
    previous_commit: str
    branch: str
    author_name: str
    author_email: str
    # Tracked files at each commit, sorted.
    previous_files: tuple[str, ...]
    head_files: tuple[str, ...]


def build_sample_repository(path: str | os.PathLike[str]) -> SampleRepository:
    """Create a normal (non-bare) repository at `path` with two commits on `main`."""
    path = Path(path)
    if path.exists() and any(path.iterdir()):
        raise FileExistsError(f"Folder {path} is not empty: pass a new or empty folder for the sample repository")
    path.mkdir(parents=True, exist_ok=True)

    run_git(path, "-c", f"init.defaultBranch={BRANCH}", "init", "--quiet")

    previous_commit = add_commit(path, _first_commit_files(), FIRST_COMMIT_MESSAGE, date=FIRST_COMMIT_DATE)
    head_commit = add_commit(path, _second_commit_files(), SECOND_COMMIT_MESSAGE, date=SECOND_COMMIT_DATE)

    return SampleRepository(
        path=path,
        head_commit=head_commit,
        previous_commit=previous_commit,
        branch=BRANCH,
        author_name=AUTHOR_NAME,
        author_email=AUTHOR_EMAIL,
        previous_files=list_files(path, previous_commit),
        head_files=list_files(path, head_commit),
    )


def add_commit(
    path: str | os.PathLike[str],
    files: dict[str, bytes | str | None],
    message: str,
    *,
    date: str | None = None,
) -> str:
    """Write `files` into the work tree at `path`, commit them and return the new commit hash.

    Keys are POSIX paths relative to the repository root. A str value is
    written as UTF-8, and None deletes a tracked file. Files that match the
    parent commit still make a new (empty) commit. Without `date` (ISO 8601)
    the commit is dated one hour after its parent.
    """
    path = Path(path)
    if not files:
        raise ValueError("No files given: pass at least one path to write or delete")

    for relative_path, content in files.items():
        target = path / _checked_relative_path(relative_path)
        if content is None:
            if not target.is_file():
                raise FileNotFoundError(f"Cannot delete {relative_path!r}: no such file in {path}")
            target.unlink()
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)

    run_git(path, "add", "--all", "--", *files)

    commit_date = date or _next_commit_date(path)
    run_git(path, "commit", "--quiet", "--allow-empty", "--no-verify", "-m", message, date=commit_date)
    return run_git(path, "rev-parse", "HEAD")


def list_files(path: str | os.PathLike[str], commit: str) -> tuple[str, ...]:
    """Return the paths of all files in `commit`, sorted."""
    output = run_git(path, "ls-tree", "-r", "--name-only", commit)
    return tuple(sorted(output.splitlines()))


def run_git(path: str | os.PathLike[str], *args: str, date: str | None = None) -> str:
    """Run git in `path` with the fixed identity and return its stripped stdout."""
    result = subprocess.run(
        ["git", *args],
        cwd=path,
        env=git_environment(date),
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise GitCommandError(
            f"git {' '.join(args)} failed in {path} with exit code {result.returncode}: {result.stderr.strip()}"
        )
    return result.stdout.strip()


def git_environment(date: str | None = None) -> dict[str, str]:
    """Return this process's environment set up for reproducible commits."""
    # Variables such as GIT_DIR or GIT_INDEX_FILE, set when running inside a
    # git hook, would point git at another repository.
    environment = {name: value for name, value in os.environ.items() if not name.startswith("GIT_")}
    environment.update(
        {
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_AUTHOR_NAME": AUTHOR_NAME,
            "GIT_AUTHOR_EMAIL": AUTHOR_EMAIL,
            "GIT_COMMITTER_NAME": AUTHOR_NAME,
            "GIT_COMMITTER_EMAIL": AUTHOR_EMAIL,
        }
    )
    if date is not None:
        environment["GIT_AUTHOR_DATE"] = date
        environment["GIT_COMMITTER_DATE"] = date
    return environment


def _checked_relative_path(relative_path: str) -> PurePosixPath:
    candidate = PurePosixPath(relative_path)
    if (
        not relative_path
        or candidate.is_absolute()
        or ".." in candidate.parts
        or candidate.parts[0] == ".git"
        or "\\" in relative_path
    ):
        raise ValueError(f"Invalid file path {relative_path!r}: expected a relative POSIX path inside the work tree")
    return candidate


def _next_commit_date(path: Path) -> str:
    head = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", "HEAD"],
        cwd=path,
        env=git_environment(),
        capture_output=True,
        check=False,
    )
    if head.returncode != 0:
        return FIRST_COMMIT_DATE

    parent_date = datetime.fromisoformat(run_git(path, "log", "-1", "--format=%cI"))
    return (parent_date + COMMIT_INTERVAL).isoformat()


# Sample content

# Stations of a made-up network in the Scottish Highlands, with approximate
# coordinates of the places they are named after.
STATIONS = [
    ("HGL001", "Fort William", 56.8198, -5.1052, 20, True),
    ("HGL002", "Cairn Gorm Summit", 57.1164, -3.6431, 1237, True),
    ("HGL003", "Aviemore", 57.1950, -3.8240, 228, True),
    ("HGL004", "Braemar", 57.0060, -3.3960, 339, True),
    ("HGL005", "Kinlochewe", 57.6060, -5.3040, 25, True),
    ("HGL006", "Tulloch Bridge", 56.8680, -4.7070, 249, True),
    ("HGL007", "Glencoe Village", 56.6812, -5.1024, 12, False),
    ("HGL008", "Inverness Harbour", 57.4860, -4.2240, 4, True),
    ("HGL009", "Ullapool", 57.8950, -5.1600, 10, True),
    ("HGL010", "Dalwhinnie", 56.9360, -4.2420, 358, True),
    ("HGL011", "Loch Glascarnoch", 57.7250, -4.8940, 265, False),
    ("HGL012", "Tyndrum", 56.4350, -4.7110, 165, True),
]

# Stations in readings.tsv: (id, daily mean °C, half the daily range °C,
# mean relative humidity %). Early March values.
READING_STATIONS = [
    ("HGL001", 6.5, 3.0, 84),
    ("HGL002", -3.0, 1.5, 96),
    ("HGL003", 3.5, 4.5, 80),
    ("HGL004", 2.5, 5.0, 78),
    ("HGL008", 6.0, 3.0, 81),
    ("HGL010", 1.5, 4.0, 85),
]
READINGS_DAY = datetime(2024, 3, 4)

# Gaps in the readings, as a sensor outage leaves them: (station, hour, column).
MISSING_READINGS = {
    ("HGL002", 3, "temperature_c"),
    ("HGL002", 3, "humidity_pct"),
    ("HGL004", 13, "humidity_pct"),
    ("HGL010", 22, "temperature_c"),
}

PIPELINE_YAML = """\
# Hourly quality control for the Highland station network.
pipeline:
  name: highland-station-qc
  schedule: hourly
  timezone: UTC

inputs:
  stations: data/stations.csv
  readings: data/readings.tsv

checks:
  - name: range
    columns: [temperature_c, humidity_pct]
  - name: missing_values
    max_missing_pct: 10
  - name: stuck_sensor
    window_hours: 6
    min_change: 0.1

outputs:
  report: reports/qc-summary.json
  flagged: reports/flagged-readings.csv

notify:
  on_failure: true
  recipients:
    - ops@example.com
"""

FIRST_README = """\
# Highland weather stations

Station metadata and quality-control settings for a small network of
automatic weather stations in the Scottish Highlands.

- `data/stations.csv`: one row per station, with WGS 84 coordinates and
  elevation in metres. Inactive stations stay in the list.
- `config/pipeline.yaml`: the checks that run on every push.
"""

SECOND_README = """\
# Highland weather stations

Station metadata, hourly readings and quality-control settings for a small
network of automatic weather stations in the Scottish Highlands.

- `data/stations.csv`: one row per station, with WGS 84 coordinates and
  elevation in metres. Inactive stations stay in the list.
- `data/readings.tsv`: hourly readings in UTC, tab-separated. An empty field
  means the sensor sent no value for that hour.
- `data/thresholds.json`: limits that flag a reading, with per-station
  overrides for the summit site.
- `config/pipeline.yaml`: the checks that run on every push.
"""


def _first_commit_files() -> dict[str, bytes | str | None]:
    return {
        "data/stations.csv": _stations_csv(),
        "config/pipeline.yaml": PIPELINE_YAML,
        "README.md": FIRST_README,
    }


def _second_commit_files() -> dict[str, bytes | str | None]:
    return {
        "data/readings.tsv": _readings_tsv(),
        "data/thresholds.json": _thresholds_json(),
        "README.md": SECOND_README,
    }


def _stations_csv() -> str:
    lines = ["id,name,latitude,longitude,elevation_m,active"]
    for station_id, name, latitude, longitude, elevation_m, active in STATIONS:
        lines.append(f"{station_id},{name},{latitude:.4f},{longitude:.4f},{elevation_m},{str(active).lower()}")
    return "\n".join(lines) + "\n"


def _readings_tsv() -> str:
    lines = ["station_id\ttime\ttemperature_c\thumidity_pct"]
    for station_index, (station_id, mean_c, half_range_c, mean_humidity) in enumerate(READING_STATIONS):
        for hour in range(24):
            # The daily cycle peaks at 15:00 UTC. `wobble` is a fixed
            # pseudo-random offset within ±0.4 °C, so the file is the same on every run.
            cycle = math.sin(2 * math.pi * (hour - 9) / 24)
            wobble = ((station_index * 37 + hour * 11) % 9 - 4) / 10
            temperature_c = mean_c + half_range_c * cycle + wobble
            humidity_pct = min(100.0, max(35.0, mean_humidity - 3.0 * half_range_c * cycle - 2 * wobble))

            time = (READINGS_DAY + timedelta(hours=hour)).strftime("%Y-%m-%dT%H:%M:%SZ")
            temperature_text = f"{temperature_c:.1f}"
            humidity_text = f"{humidity_pct:.0f}"
            if (station_id, hour, "temperature_c") in MISSING_READINGS:
                temperature_text = ""
            if (station_id, hour, "humidity_pct") in MISSING_READINGS:
                humidity_text = ""
            lines.append(f"{station_id}\t{time}\t{temperature_text}\t{humidity_text}")
    return "\n".join(lines) + "\n"


def _thresholds_json() -> str:
    thresholds = {
        "version": 1,
        "units": {"temperature_c": "degree Celsius", "humidity_pct": "percent"},
        "defaults": {
            "temperature_c": {"min": -25.0, "max": 30.0, "max_change_per_hour": 6.0},
            "humidity_pct": {"min": 5, "max": 100},
        },
        "stations": {
            "HGL002": {
                "temperature_c": {"min": -35.0, "max": 20.0, "max_change_per_hour": 8.0},
                "note": "Summit site: strong wind and rime ice",
            }
        },
        "alerts": {"frost_c": 0.0, "hard_frost_c": -5.0, "fog_humidity_pct": 98},
    }
    return json.dumps(thresholds, indent=2) + "\n"
