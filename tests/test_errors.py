"""One error vocabulary: our errors keep their stable codes under one base, `describe` words any error the
same way for the MCP server, the worklist runner and the command line, and an unexpected error never
carries its text out."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from auditor.backends import BackendError
from auditor.batch.runner import ImageKeeper, audit_study
from auditor.batch.worklist import Study
from auditor.cli_common import EXIT_MODEL, CliError, backend_failure
from auditor.config import ConfigError
from auditor.dicomweb import DicomWebError
from auditor.errors import AuditorError, Failure, describe
from auditor.eval.runstore import RunError
from auditor.images import ImageError
from auditor.runfolder import FolderBusy

OURS: list[tuple[AuditorError, str, str]] = [
    (ImageError("not_found", "no such file: x.png"), "not_found", "image (not_found): no such file: x.png"),
    (
        DicomWebError("dicomweb_timeout", "the archive did not answer"),
        "dicomweb_timeout",
        "image (dicomweb_timeout): ",
    ),
    (
        BackendError("load_failed", "weights missing"),
        "load_failed",
        "model backend (load_failed): weights missing",
    ),
    (ConfigError("grounder must be one of hf, http, replay"), "invalid_config", "grounder must be one of"),
    (CliError("x.csv: no such file"), "bad_input", "x.csv: no such file"),
    (CliError("engine down", EXIT_MODEL), "model_unavailable", "engine down"),
    (RunError("another run is writing out"), "invalid_run_folder", "another run is writing out"),
    (FolderBusy("another run is writing out"), "folder_busy", "another run is writing out"),
]


@pytest.mark.parametrize(("error", "code", "line"), OURS, ids=lambda v: type(v).__name__)
def test_our_errors_keep_their_codes_and_text(error: AuditorError, code: str, line: str) -> None:
    described = describe(error)
    assert (described.code, described.ours) == (code, True) and described.line.startswith(line)
    assert described.message == str(error)
    again = pickle.loads(pickle.dumps(error))  # worker processes and threads hand errors back
    assert type(again) is type(error) and (again.code, again.message) == (error.code, error.message)


def test_the_old_base_classes_still_catch_them() -> None:
    assert isinstance(ImageError("c", "m"), ValueError) and isinstance(ConfigError("m"), ValueError)
    assert isinstance(BackendError("c", "m"), RuntimeError) and isinstance(
        DicomWebError("c", "m"), ImageError
    )
    assert CliError("m", EXIT_MODEL).exit_status == EXIT_MODEL


def test_an_unexpected_error_is_named_by_its_type_only() -> None:
    described = describe(KeyError("Doe^Jane"))
    assert described == describe(KeyError("other")) and "Doe" not in described.line
    assert (described.code, described.line, described.ours) == (
        "internal_error",
        "internal error (KeyError)",
        False,
    )
    plain = describe(ValueError("age must be a number\nwith a second line"))
    assert (plain.code, plain.message) == ("invalid_input", "age must be a number")


def test_the_server_and_the_worklist_word_a_failure_the_same_way(tmp_path: Path) -> None:
    from mcp_server.app import _error_message

    class Failing:
        def __init__(self, error: Exception) -> None:
            self.error = error

        def audit(self, *args: object) -> None:
            raise self.error

    for error in (
        ImageError("not_found", "no such file"),
        BackendError("engine_down", "refused"),
        OSError("x"),
    ):
        line = audit_study(Failing(error), ImageKeeper(None), Study("s", 1, "a.png"), tmp_path, "b")  # type: ignore[arg-type]
        described = describe(error)
        assert line.error == Failure(described.code, described.message)
        assert _error_message(error).startswith(described.line)
    assert _error_message(OSError("secret path")) == "internal error (OSError); the server is still serving"


def test_the_command_line_keeps_exit_status_3_for_model_failures() -> None:
    assert backend_failure(BackendError("load_failed", "gone"), "ground").exit_status == EXIT_MODEL
    image = backend_failure(ImageError("not_found", "no such file"), "ground")
    assert (image.exit_status, str(image)) == (2, "ground: image (not_found): no such file")
