"""``schema-warden secrets [FILES...]``: credentials never reach git.

Blocks, with file:line and the URL with its password masked (the password itself is never
printed):

- ``.env`` and ``.env.*`` files (``.env.example``, ``.env.sample``, ``.env.template`` are
  meant to be committed and are scanned like any text file instead);
- ``sqlalchemy.url`` in an ``.ini`` file (alembic.ini) that holds a password;
- ``postgres://`` / ``postgresql(+driver)://user:password@host`` URLs with a real password
  in any text file.

Placeholders pass: an empty password, ``password``, ``PASSWORD``, ``<password>``, ``${VAR}``,
``%(var)s``, ``changeme``, ``xxx``, ``***``, ``secret``, ``pass``, ... and so do hosts that can
never resolve (``*.invalid``, ``*.example``, ``*.test``, ``example.com``). With no FILES the
git-tracked files are checked; pre-commit passes the staged ones. Binary files are skipped.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import unquote

from schema_warden.errors import EXIT_OK, EXIT_PROBLEMS, EnvironmentProblem, ProjectError, guarded

ENV_EXAMPLES = frozenset({".env.example", ".env.sample", ".env.template", ".env.dist"})

# scheme://user:password@host -- the password stops at "@", whitespace or a quote
POSTGRES_URL = re.compile(
    r"(?P<scheme>postgres(?:ql)?(?:\+[A-Za-z0-9_]+)?)://"
    r"(?P<user>[^\s:/@'\"`<>]*):(?P<password>[^\s@'\"`]*)@"
    r"(?P<rest>[^\s'\"`]*)"
)
# postgresql://user@host/db?sslmode=require&password=... (libpq accepts the password as a parameter)
POSTGRES_QUERY_PASSWORD = re.compile(
    r"(?P<prefix>postgres(?:ql)?(?:\+[A-Za-z0-9_]+)?://(?P<netloc>[^\s'\"`/?]*)[^\s'\"`?]*\?"
    r"(?:[^\s'\"`]*?&)?password=)(?P<password>[^&\s'\"`#]*)(?P<suffix>[^\s'\"`]*)"
)
ANY_URL = re.compile(
    r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://"
    r"(?P<user>[^\s:/@'\"`<>]*):(?P<password>[^\s@'\"`]*)@"
    r"(?P<rest>[^\s'\"`]*)"
)
INI_URL_KEY = re.compile(r"^\s*sqlalchemy\.url\s*[=:]\s*(?P<value>.*\S)\s*$")

# A password is a placeholder when every word of it (split at punctuation, leetspeak undone:
# "S3cret", "p@ss", "Passw0rd", "wr0ng-secret") is one of these.
PLACEHOLDER_WORDS = frozenset(
    {
        "password",
        "passwd",
        "pass",
        "pwd",
        "pw",
        "secret",
        "supersecret",
        "topsecret",
        "changeme",
        "change",
        "me",
        "your",
        "yourpassword",
        "my",
        "mypassword",
        "example",
        "placeholder",
        "redacted",
        "dummy",
        "fake",
        "wrong",
        "bad",
        "invalid",
        "sample",
        "test",
        "xxx",
    }
)
LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s"})
PRAGMAS = ("schema-warden: allow secret", "pragma: allowlist secret")
# well-known local defaults (docker images, CI services): not secrets on a local host
LOCAL_DEFAULTS = frozenset({"postgres", "test", "testing", "dev", "development", "local"})
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "[::1]", "db", "postgres", ""})
RESERVED_SUFFIXES = (".invalid", ".example", ".test", ".localhost", ".local")
RESERVED_DOMAINS = ("example.com", "example.org", "example.net")

BINARY_SNIFF = 8192
# "u:p@h", "app:a&b@/db": passwords this short are examples in docs and tests, not credentials
MAX_EXAMPLE_LENGTH = 4


@dataclass(frozen=True)
class Problem:
    file: str
    line: int | None
    kind: str  # "env-file" | "url-password" | "ini-url-password"
    masked: str  # the offending value with its password masked ("" for env files)
    message: str


# --- the pure part -------------------------------------------------------------------------------


def is_env_file(path: str) -> bool:
    """``.env``, ``.env.*`` (not the examples) and libpq password files."""
    name = Path(path).name
    if name in (".pgpass", "pgpass.conf"):
        return True
    return (name == ".env" or name.startswith(".env.")) and name not in ENV_EXAMPLES


def is_placeholder(password: str, host: str = "") -> bool:
    """True for passwords that only stand for one (and for hosts that can never resolve)."""
    value = unquote(password).strip()
    lowered = value.lower()
    if (
        len(value) <= MAX_EXAMPLE_LENGTH
        or set(lowered) <= {"*"}
        or set(lowered) <= {"x"}
        or set(lowered) <= {".", "…"}
    ):
        return True
    if value.startswith(("${", "$(", "{", "%(", "<", "[")) or (
        value.startswith("$") and value[1:].isidentifier()
    ):
        return True
    words = [w for w in re.split(r"[^a-z0-9@$]+", lowered) if w]
    if words and all(_placeholder_word(word) for word in words):
        return True
    host = host.lower()
    if host.endswith(RESERVED_SUFFIXES) or host.endswith(RESERVED_DOMAINS) or host in RESERVED_DOMAINS:
        return True
    return host in LOCAL_HOSTS and lowered in LOCAL_DEFAULTS


def _placeholder_word(word: str) -> bool:
    # "p@ss" is leetspeak for "pass"; "sec@ret" is "secret" with a symbol inserted
    return (
        word.translate(LEET) in PLACEHOLDER_WORDS
        or re.sub(r"[@$]", "", word).translate(LEET) in PLACEHOLDER_WORDS
    )


def _host(rest: str) -> str:
    netloc = re.split(r"[/?#]", rest, maxsplit=1)[0]
    if netloc.startswith("["):
        return netloc.split("]")[0] + "]"
    return netloc.split(":")[0].split(",")[0]


def mask(match: re.Match[str]) -> str:
    return f"{match['scheme']}://{match['user']}:***@{match['rest']}"


def url_problems(file: str, text: str) -> Iterator[Problem]:
    """postgres(ql):// URLs with a real password, and sqlalchemy.url of .ini files with any password."""
    ini = file.endswith(".ini")
    for number, line in enumerate(text.splitlines(), 1):
        if any(pragma in line for pragma in PRAGMAS):
            continue
        found = False
        for match in POSTGRES_URL.finditer(line):
            if not is_placeholder(match["password"], _host(match["rest"])):
                found = True
                yield Problem(
                    file,
                    number,
                    "url-password",
                    mask(match),
                    f"{file}:{number}: database URL with a password: {mask(match)} — move it to .env "
                    "(git-ignored) or a CI secret, and rotate the password if it was ever committed",
                )
        for match in POSTGRES_QUERY_PASSWORD.finditer(line):
            if not is_placeholder(match["password"], _host(match["netloc"].rpartition("@")[2])):
                found = True
                masked = f"{match['prefix']}***{match['suffix']}"
                yield Problem(
                    file,
                    number,
                    "url-password",
                    masked,
                    f"{file}:{number}: database URL with a password: {masked} — move it to .env "
                    "(git-ignored) or a CI secret, and rotate the password if it was ever committed",
                )
        if ini and not found:
            key = INI_URL_KEY.match(line)
            match = ANY_URL.search(key["value"]) if key else None
            if match and not is_placeholder(match["password"], _host(match["rest"])):
                yield Problem(
                    file,
                    number,
                    "ini-url-password",
                    mask(match),
                    f"{file}:{number}: sqlalchemy.url holds a password: {mask(match)} — remove it from "
                    f"{Path(file).name} and let env.py read DATABASE_URL from the environment or .env",
                )


def env_file_problem(file: str) -> Problem:
    return Problem(
        file,
        None,
        "env-file",
        "",
        f"{file}: .env files hold real credentials and are never committed — "
        f"`git rm --cached {file}`, list it in .gitignore, commit a .env.example with placeholders",
    )


# --- files -------------------------------------------------------------------------------------


def tracked_files(cwd: Path) -> list[str]:
    try:
        done = subprocess.run(["git", "ls-files", "-z"], cwd=cwd, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise EnvironmentProblem("git is not installed: install git, or pass the FILES to check") from None
    if done.returncode != 0:
        raise ProjectError(f"{cwd} is not in a git work tree: pass the FILES to check")
    return [name for name in done.stdout.split("\0") if name]


def read_text(path: Path) -> str | None:
    """The file's text, or None for a binary or unreadable file."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    if b"\0" in data[:BINARY_SNIFF]:
        return None
    return data.decode("utf-8", errors="replace")


def check_files(files: Iterable[str], *, cwd: Path | None = None) -> list[Problem]:
    cwd = cwd or Path.cwd()
    problems: list[Problem] = []
    for file in files:
        if is_env_file(file):
            problems.append(env_file_problem(file))
            continue
        path = Path(file) if Path(file).is_absolute() else cwd / file
        if not path.is_file():
            continue
        text = read_text(path)
        if text is not None:
            problems.extend(url_problems(file, text))
    return problems


# --- command line ----------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="schema-warden secrets",
        description=".env files, and database URLs with real passwords, never reach git. "
        "With no FILES the git-tracked files are checked.",
    )
    parser.add_argument(
        "files", nargs="*", metavar="FILES", help="files to check (pre-commit passes the staged)"
    )
    parser.add_argument("--format", choices=("text", "json"), default="text")
    return parser


def _require_files(files: Sequence[str]) -> None:
    """A FILE that is not there is a usage error: checking nothing must not pass.

    A symlink is a file to git (pre-commit passes it, dangling or not): it is not an error.
    """
    hint = "pass files, or no FILES to check the git-tracked ones"
    for file in files:
        path = Path(file)
        if path.is_symlink():
            continue
        if path.is_dir():
            raise ProjectError(f"{file}: is a directory, not a file: {hint}")
        if not path.exists():
            raise ProjectError(f"{file}: no such file: {hint}")


@guarded
def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _require_files(args.files)
    files = args.files or tracked_files(Path.cwd())
    problems = check_files(files)
    if args.format == "json":
        data = {
            "command": "secrets",
            "ok": not problems,
            "files": len(files),
            "problems": [asdict(p) for p in problems],
        }
        print(json.dumps(data, indent=2))
    else:
        for problem in problems:
            print(problem.message)
        if problems:
            print(f"schema-warden secrets: {len(problems)} problem(s) in {len(files)} file(s)")
    return EXIT_PROBLEMS if problems else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
