"""What a wheel and an sdist carry besides the code: the licence and the data's notices."""

from __future__ import annotations

import hashlib
import subprocess
import tomllib
from importlib.resources import files
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# sha256 of https://www.apache.org/licenses/LICENSE-2.0.txt, unchanged
APACHE_2_SHA256 = "cfc7749b96f63bd31c3c42b5c471bf756814053e847c10f3eb003417bc523d30"


def _project() -> dict[str, object]:
    with (ROOT / "pyproject.toml").open("rb") as f:
        project: dict[str, object] = tomllib.load(f)["project"]
    return project


def test_the_licence_is_the_apache_2_text_and_is_shipped() -> None:
    licence = ROOT / "LICENSE"
    assert hashlib.sha256(licence.read_bytes()).hexdigest() == APACHE_2_SHA256
    project = _project()
    # the code's licence, and the demo workload's (Banking77-derived data, CC BY 4.0)
    assert project["license"] == "Apache-2.0 AND CC-BY-4.0"
    # hatchling puts license-files in the wheel's .dist-info/licenses and in the sdist
    shipped = project["license-files"]
    assert isinstance(shipped, list) and "LICENSE" in shipped
    for path in shipped:
        assert (ROOT / path).is_file(), path


def test_the_demo_workload_has_its_dataset_s_notice_beside_it() -> None:
    data = files("deja") / "data"
    assert (data / "demo_workload.jsonl").is_file()
    notice = (data / "NOTICE").read_text(encoding="utf-8")
    for attribution in (
        "demo_workload.jsonl",
        "BANKING77",
        "Casanueva",
        "2020",
        "https://github.com/PolyAI-LDN/task-specific-datasets",
        "CC BY 4.0",
        "https://creativecommons.org/licenses/by/4.0/",
        "Changes made",
    ):
        assert attribution in notice, attribution
    assert "src/deja/data/NOTICE" in _project()["license-files"]  # type: ignore[operator]


def test_the_notices_are_files_of_the_package() -> None:
    """The wheel packages src/deja as git sees it: a notice must be neither ignored nor
    outside it."""
    notices = ["src/deja/data/NOTICE", "src/deja/semantic/data/NOTICE"]
    assert all((ROOT / notice).is_file() for notice in notices)
    ignored = subprocess.run(
        ["git", "check-ignore", *notices], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert ignored.stdout == ""
