"""Gitignore-like path globs, used by transform rules, `accepts` and trigger path filters.

A glob is matched against a file's POSIX path relative to the repository root:

- `*` matches any characters within one path segment. `?` matches one
  character, and `[abc]` or `[!abc]` one character of a class. None of
  them matches `/`.
- `**` as a whole segment matches any number of segments, including none.
- A glob without `/` matches the file name in any folder, so `*.csv`
  matches `data/a.csv`. A glob with `/` matches from the repository root,
  and a leading `/` only anchors it there.
- Matching is case-sensitive, and `*` also matches names that start with a dot.
- A backslash makes the next character literal, so `\\*` matches a `*`.

Unlike in .gitignore, a glob never matches the files below a matched folder:
`data` does not match `data/a.csv`, so write `data/**`. There is no negation
with `!` either.
"""

from __future__ import annotations

from functools import lru_cache

from wcmatch import glob

# MATCHBASE gives a glob without "/" the match-in-any-folder rule, DOTGLOB lets
# "*" match dot files as Git does, and FORCEUNIX and CASE fix the separator and
# case rules whatever the operating system. Braces, extended globs and "|"
# stay literal because their flags are left out.
_FLAGS = glob.GLOBSTAR | glob.MATCHBASE | glob.DOTGLOB | glob.FORCEUNIX | glob.CASE
_ANCHORED_FLAGS = _FLAGS & ~glob.MATCHBASE


def check_glob(pattern: str) -> None:
    """Raise ValueError if pattern is not a glob that path_matches accepts."""
    _compile(pattern)


def path_matches(path: str, pattern: str) -> bool:
    """Return whether the repository file path matches the glob pattern.

    A path that ends with "/" names a folder, so no glob matches it.
    Raises ValueError for an invalid pattern, or for a path that is not
    relative to the repository root in normal form.
    """
    matcher = _compile(pattern)
    if path.endswith("/"):
        return False
    _check_path(path)
    return bool(matcher.match(path))


def _check_path(path: str) -> None:
    segments = path.split("/")
    if not path or path.startswith("/") or any(segment in ("", ".", "..") for segment in segments):
        raise ValueError(
            f"path {path!r} is not a file path relative to the repository root; "
            "write it like data/stations.csv, without a leading /, empty segments, . or .."
        )


@lru_cache(maxsize=1024)
def _compile(pattern: str):
    if not isinstance(pattern, str) or not pattern:
        raise ValueError(f"glob {pattern!r} is empty or not a string; write a glob such as *.csv or data/**/*.csv")
    if pattern.startswith("!"):
        raise ValueError(
            f"glob {pattern!r} starts with '!', but negated globs are not supported; "
            "write \\! to match a name that starts with !"
        )
    if pattern == "/":
        raise ValueError("glob '/' matches no file; write ** to match every file")
    if pattern.endswith("/"):
        raise ValueError(
            f"glob {pattern!r} ends with '/', so it would match only folders; write {pattern}** to match the files in them"
        )

    if pattern.startswith("/"):
        return glob.compile(pattern[1:], flags=_ANCHORED_FLAGS)
    return glob.compile(pattern, flags=_FLAGS)
