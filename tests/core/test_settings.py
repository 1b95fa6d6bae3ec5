from pathlib import Path

import pytest

from crm_core.errors import SettingsError
from crm_core.settings import load_settings


def test_defaults_are_the_embedded_setup() -> None:
    settings = load_settings(environ={})
    assert settings.database_url.startswith("sqlite+aiosqlite:///")
    assert settings.redis_url is None and settings.ami_url is None
    assert settings.http_port == 8080


def test_environment_overrides_and_normalises_schemes() -> None:
    settings = load_settings(environ={"CRM_DATABASE_URL": "postgresql://u@h/db", "CRM_DEFAULT_REGION": "gb"})
    assert settings.database_url == "postgresql+asyncpg://u@h/db"
    assert settings.default_region == "GB"


@pytest.mark.parametrize(
    ("environ", "sentence"),
    [
        ({"CRM_NOPE": "1"}, "Unknown setting CRM_NOPE"),
        ({"CRM_HTTP_PORT": "70000"}, "Setting CRM_HTTP_PORT is invalid"),
        ({"CRM_DATABASE_URL": "mysql://x"}, "unsupported database scheme 'mysql'"),
        ({"CRM_AMI_URL": "http://x"}, "Setting CRM_AMI_URL is invalid: must look like ami://"),
        ({"CRM_DEFAULT_REGION": "ZZ"}, "'ZZ' is not a region"),
    ],
)
def test_bad_settings_stop_with_one_sentence(environ: dict[str, str], sentence: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(environ=environ)
    assert sentence in caught.value.message
    assert "\n" not in caught.value.message


def test_toml_file_and_its_errors(tmp_path: Path) -> None:
    good = tmp_path / "crm.toml"
    good.write_text('http_port = 9090\ndefault_region = "DE"\n')
    assert load_settings(environ={"CRM_CONFIG": str(good)}).http_port == 9090
    bad = tmp_path / "bad.toml"
    bad.write_text("colour = 'blue'\n")
    with pytest.raises(SettingsError, match="Unknown setting 'colour' in"):
        load_settings(environ={"CRM_CONFIG": str(bad)})
    with pytest.raises(SettingsError, match="does not exist"):
        load_settings(environ={"CRM_CONFIG": str(tmp_path / "missing.toml")})


def test_secrets_do_not_print() -> None:
    settings = load_settings(environ={"CRM_AMI_URL": "ami://crm:topsecret@pbx:5038", "CRM_SECRET_KEY": "k" * 40})
    assert "topsecret" not in repr(settings) and "kkkk" not in repr(settings)
