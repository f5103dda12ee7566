"""A worker refuses Faust and aiokafka versions whose internals agents/faust_internals/ was not written for."""

from __future__ import annotations

import pytest

from concord.agents.faust_internals import KNOWN_VERSIONS, UnsupportedVersion, check_versions, version_tuple
from concord.app.factory import create_faust_app
from concord.core.settings import Settings


def installed_with(name: str, version: str):  # type: ignore[no-untyped-def]
    """What `importlib.metadata.version` would say with `name` at `version` and the rest as known."""
    known = {"faust-streaming": "0.15.3", "aiokafka": "0.14.0", name: version}
    return known.__getitem__


def test_the_versions_this_machine_runs_are_known() -> None:
    check_versions()  # the installed ones: `make test` would not start a worker otherwise


@pytest.mark.parametrize("name, version", [
    ("faust-streaming", "0.16.0"), ("faust-streaming", "0.15.2"), ("faust-streaming", "1.0"),
    ("aiokafka", "0.15.0"), ("aiokafka", "0.11.0"), ("faust-streaming", "0.16.0rc1"),
])
def test_an_unknown_version_is_refused_with_what_to_install(name: str, version: str) -> None:
    with pytest.raises(UnsupportedVersion) as refused:
        check_versions(installed_with(name, version))
    message = str(refused.value)
    low, high = KNOWN_VERSIONS[name]
    assert f"{name} {version} is installed" in message
    assert f"pip install '{name}>={'.'.join(map(str, low))},<{'.'.join(map(str, high))}'" in message


@pytest.mark.parametrize("version", ["0.15.3", "0.15.9", "0.15.3.post1"])
def test_known_faust_versions_pass(version: str) -> None:
    check_versions(installed_with("faust-streaming", version))


def test_version_text_is_read_up_to_its_suffix() -> None:
    assert version_tuple("0.16.0rc1") == (0, 16, 0)
    assert version_tuple(" 1.2 ") == (1, 2)
    with pytest.raises(ValueError):
        version_tuple("dev")


def test_the_factory_checks_before_it_builds_an_app(monkeypatch: pytest.MonkeyPatch) -> None:
    from concord.app import factory

    def refuse() -> None:
        raise UnsupportedVersion("faust-streaming 9.9 is installed")

    monkeypatch.setattr(factory, "check_versions", refuse)
    with pytest.raises(UnsupportedVersion, match="9.9"):
        create_faust_app(Settings())
