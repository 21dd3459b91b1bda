"""json_query: read a JSON file in the workspace and return the part a dotted path selects.

An example third-party tool plugin for the `agent` host, written in Python and built into a
WASI preview-2 component with componentize-py:

    componentize-py -d ../../wit -w plugin componentize app -o json-query.wasm

The component targets the world `plugin` in `wit/tool.wit`: it exports the interface
`agent:tool/tool` (`describe` and `call`) and imports `agent:tool/host` (`log`). componentize-py
generates the Python side of that world as the package `wit_world` while it builds; run
`componentize-py -d ../../wit -w plugin bindings bindings/` to look at the generated code.

The host runs every call in a fresh instance, so nothing here needs to outlive one call.
This plugin needs the workspace, read-only: see `json-query.toml` beside this file.
"""

import json
import os

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import host
from wit_world.imports.types import (
    CallContext,
    ToolError,
    ToolError_InvalidInput,
    ToolError_Io,
    ToolError_NotFound,
    ToolError_PermissionDenied,
    ToolHints,
    ToolSpec,
)

# The most text one call returns. Past it the answer is cut and ends with a note.
MAX_OUTPUT_CHARS = 20_000

# How many keys a "key not found" message lists, so a huge object does not flood the model.
MAX_KEYS_LISTED = 50

# The JSON Schema of the input. The host checks every input against it before `call` runs,
# and passes the descriptions on to the model.
INPUT_SCHEMA = {
    "type": "object",
    "properties": {
        "path": {
            "type": "string",
            "description": "JSON file, relative to the workspace or absolute inside it",
        },
        "query": {
            "type": "string",
            "description": (
                "Dotted path to the value to return, e.g. `dependencies.serde.version` or "
                "`items.0.name` (array items by index); empty for the whole document"
            ),
        },
    },
    "required": ["path", "query"],
    "additionalProperties": False,
}


class ToolFailure(Exception):
    """A failure to report to the model as a `tool-error`; `call` turns it into `Err`."""

    def __init__(self, error: ToolError):
        super().__init__(error.value)
        self.error = error


class Tool(exports.Tool):
    """The export `agent:tool/tool`: componentize-py looks for a class of this name in `app`."""

    def describe(self) -> list[ToolSpec]:
        return [
            ToolSpec(
                name="json_query",
                description=(
                    "Read a JSON file in the workspace and return the value at a dotted path, "
                    "pretty-printed. Use it to look up one setting, dependency or record in a "
                    "large JSON file without reading the whole file. Keys that contain dots "
                    "cannot be addressed; query their parent instead."
                ),
                input_schema=json.dumps(INPUT_SCHEMA),
                hints=ToolHints.READ_ONLY | ToolHints.IDEMPOTENT,
            )
        ]

    def call(self, name: str, input: str, context: CallContext) -> str:
        # A result's error case is raised as `Err(...)` holding one of the `ToolError_*`
        # cases; whatever is returned is the `ok` case. Any other exception traps the
        # instance, which the host reports as a crash of the plugin, so expected failures are
        # all turned into `Err` here.
        try:
            if name != "json_query":
                raise ToolFailure(ToolError_InvalidInput(f"unknown tool `{name}`"))
            return json_query(json.loads(input), context)
        except ToolFailure as failure:
            raise Err(failure.error) from None


def json_query(args: dict, context: CallContext) -> str:
    path, query = args["path"], args["query"]
    host.log(host.LogLevel.DEBUG, f"json_query path={path!r} query={query!r}")

    document = load_json(resolve_path(path, context.workspace))
    value = select(document, query)
    return cap(json.dumps(value, indent=2, ensure_ascii=False))


def resolve_path(path: str, workspace: str) -> str:
    """Return the path to open, refusing any that lies outside the workspace.

    The workspace is mounted both at `.` and at its absolute path. wasi-libc resolves an
    absolute path that lies under no mount against `.`, so `/etc/passwd` would quietly read
    `<workspace>/etc/passwd`: refuse absolute paths outside the workspace before opening.
    """
    if not workspace:
        raise ToolFailure(
            ToolError_PermissionDenied(
                "this plugin was not granted the workspace (see json-query.toml)"
            )
        )
    if not path:
        raise ToolFailure(ToolError_InvalidInput("`path` is empty"))
    if os.path.isabs(path):
        absolute, root = os.path.normpath(path), os.path.normpath(workspace)
        if os.path.commonpath([absolute, root]) != root:
            raise ToolFailure(
                ToolError_PermissionDenied(f"{path} is outside the workspace {workspace}")
            )
        return absolute
    relative = os.path.normpath(path)
    if relative == ".." or relative.startswith("../"):
        raise ToolFailure(
            ToolError_PermissionDenied(f"{path} is outside the workspace {workspace}")
        )
    return relative


def load_json(path: str):
    """Read and parse the file, mapping each way it can fail to a `tool-error` case."""
    try:
        with open(path, "rb") as file:
            data = file.read()
    except FileNotFoundError:
        raise ToolFailure(ToolError_NotFound(f"{path}: no such file"))
    except IsADirectoryError:
        raise ToolFailure(ToolError_InvalidInput(f"{path} is a directory, not a JSON file"))
    except PermissionError:
        raise ToolFailure(ToolError_PermissionDenied(f"{path}: access denied by the sandbox"))
    except OSError as error:
        raise ToolFailure(ToolError_Io(f"{path}: {error.strerror or error}"))

    try:
        # Some editors start a file with a byte order mark, which json.loads refuses.
        return json.loads(data.decode("utf-8").removeprefix("\ufeff"))
    except UnicodeDecodeError as error:
        raise ToolFailure(
            ToolError_InvalidInput(f"{path} is not UTF-8 text (byte {error.start})")
        )
    except json.JSONDecodeError as error:
        raise ToolFailure(
            ToolError_InvalidInput(
                f"{path} is not valid JSON: {error.msg} at line {error.lineno}, "
                f"column {error.colno}"
            )
        )


def select(document, query: str):
    """Follow the dotted `query` from the top of `document`; empty selects it all."""
    value = document
    walked = []  # the segments followed so far, to say where a lookup failed
    for segment in query.split(".") if query else []:
        where = ".".join(walked) or "the top level"
        if isinstance(value, dict):
            if segment not in value:
                raise ToolFailure(ToolError_NotFound(missing_key(segment, where, value)))
            value = value[segment]
        elif isinstance(value, list):
            if not segment.isdigit():
                raise ToolFailure(
                    ToolError_InvalidInput(
                        f"{where} is an array of {len(value)} items: use an index, "
                        f"not `{segment}`"
                    )
                )
            index = int(segment)
            if index >= len(value):
                raise ToolFailure(
                    ToolError_NotFound(
                        f"index {index} is out of range: {where} has {len(value)} items"
                    )
                )
            value = value[index]
        else:
            raise ToolFailure(
                ToolError_NotFound(
                    f"{where} is {json_type(value)}, which has no `{segment}`"
                )
            )
        walked.append(segment)
    return value


def missing_key(key: str, where: str, obj: dict) -> str:
    keys = list(obj)
    if not keys:
        return f"key `{key}` not found: {where} is an empty object"
    listed = ", ".join(keys[:MAX_KEYS_LISTED])
    more = f" and {len(keys) - MAX_KEYS_LISTED} more" if len(keys) > MAX_KEYS_LISTED else ""
    return f"key `{key}` not found in {where}; available keys: {listed}{more}"


def json_type(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    return "a string"


def cap(text: str) -> str:
    if len(text) <= MAX_OUTPUT_CHARS:
        return text
    return (
        text[:MAX_OUTPUT_CHARS]
        + f"\n... (truncated: {len(text)} characters in all; query a narrower path)"
    )
