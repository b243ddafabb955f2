"""Settings: environment variables ``CXR_AUDITOR_*``, an optional TOML file with the same keys, and
command-line flags, in rising order of precedence. A bad value fails at start with one line naming it.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Final, Literal

from auditor.errors import AuditorError

GrounderKind = Literal["hf", "http", "replay"]
ReaderKind = Literal["auto", "rules", "hf", "http"]
DeviceKind = Literal["auto", "cpu", "cuda"]

GROUNDERS: Final = ("hf", "http", "replay")
READERS: Final = ("auto", "rules", "hf", "http")
DEVICES: Final = ("auto", "cpu", "cuda")
DTYPES: Final = ("auto", "bfloat16", "float16", "float32")
ENV_PREFIX: Final = "CXR_AUDITOR_"
DEFAULT_GROUNDER_MODEL: Final = "alex-feeel/medgemma-cxr-auditor-v2"
DEFAULT_READER_MODEL: Final = "nvidia/NVIDIA-Nemotron-3-Nano-4B-BF16"


class ConfigError(AuditorError, ValueError):
    """A configuration value that cannot work; the message names the key and the value."""

    code = "invalid_config"


@dataclass(frozen=True)
class Settings:
    """Every knob in one place. Field names are the TOML keys and, upper-cased, the env suffixes."""

    grounder: GrounderKind = "hf"
    grounder_model: str = DEFAULT_GROUNDER_MODEL
    grounder_revision: str | None = None
    grounder_url: str | None = None
    replay: Path | None = None
    box_order: Literal["yxyx", "xyxy"] = "yxyx"
    box_scale: float = 1.0
    reader: ReaderKind = "auto"
    reader_model: str = DEFAULT_READER_MODEL
    reader_url: str | None = None
    reader_revision: str | None = None
    device: DeviceKind = "auto"
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    grounder_dtype: Literal["auto", "bfloat16", "float16", "float32"] | None = None
    reader_dtype: Literal["auto", "bfloat16", "float16", "float32"] | None = None
    allow_download: bool = False
    load_retry_s: float = 300.0
    attention: Literal["auto", "sdpa", "eager"] = "sdpa"
    static_cache: bool = False
    compile: bool = False
    overlap_stages: bool = True
    grounding_stop_at_end: bool = True
    grounding_batch_size: int = 4
    grounder_prompt: Path | None = None
    reader_prompt: Path | None = None
    grounder_max_new_tokens: int = 512
    reader_max_new_tokens: int = 512
    reader_reasoning: bool = True
    reader_reasoning_budget: int = 256
    grounder_api_model: str | None = None
    reader_api_model: str | None = None
    api_key: str | None = field(default=None, repr=False)
    engine_timeout_s: float = 50.0
    engine_deadline_s: float = 55.0
    engine_retries: int = 3
    engine_max_in_flight: int = 4
    image_roots: tuple[Path, ...] = ()
    allow_private_urls: bool = False
    http_token: str | None = field(default=None, repr=False)
    dicomweb_url: str | None = None
    dicomweb_token: str | None = field(default=None, repr=False)
    dicomweb_username: str | None = field(default=None, repr=False)
    dicomweb_password: str | None = field(default=None, repr=False)
    dicomweb_timeout_s: float = 30.0

    def validate(self) -> Settings:
        """Check the combination, so that `serve` fails before the transport opens."""
        _choice("grounder", self.grounder, GROUNDERS)
        _choice("reader", self.reader, READERS)
        _choice("device", self.device, DEVICES)
        _choice("box_order", self.box_order, ("yxyx", "xyxy"))
        _choice("dtype", self.dtype, DTYPES)
        for key in ("grounder_dtype", "reader_dtype"):
            if getattr(self, key) is not None:
                _choice(key, getattr(self, key), DTYPES)
        if not self.load_retry_s >= 0:
            raise ConfigError(f"load_retry_s must not be negative, got {self.load_retry_s!r}")
        _choice("attention", self.attention, ("auto", "sdpa", "eager"))
        for key in (
            "grounder_max_new_tokens",
            "reader_max_new_tokens",
            "engine_max_in_flight",
            "grounding_batch_size",
        ):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key} must be at least 1, got {getattr(self, key)!r}")
        for key in ("reader_reasoning_budget", "engine_retries"):
            if getattr(self, key) < 0:
                raise ConfigError(f"{key} must not be negative, got {getattr(self, key)!r}")
        for key in ("engine_timeout_s", "engine_deadline_s"):
            if not getattr(self, key) > 0:
                raise ConfigError(f"{key} must be positive, got {getattr(self, key)!r}")
        for key in ("grounder_prompt", "reader_prompt"):
            path = getattr(self, key)
            if path is not None and not path.is_file():
                raise ConfigError(f"{key} file not found: {path}")
        if not self.box_scale > 0:
            raise ConfigError(f"box_scale must be positive, got {self.box_scale!r}")
        if self.grounder == "replay":
            if self.replay is None:
                raise ConfigError(
                    "grounder 'replay' needs a replay file (--replay FILE or CXR_AUDITOR_REPLAY)"
                )
            if not self.replay.is_file():
                raise ConfigError(f"replay file not found: {self.replay}")
        if self.grounder == "http" and not self.grounder_url:
            raise ConfigError("grounder 'http' needs a base URL (CXR_AUDITOR_GROUNDER_URL)")
        if self.reader == "http" and not self.reader_url:
            raise ConfigError("reader 'http' needs a base URL (CXR_AUDITOR_READER_URL)")
        for root in self.image_roots:
            if not root.is_dir():
                raise ConfigError(f"image root is not a folder: {root}")
        _check_dicomweb(self)
        return self


def _check_dicomweb(settings: Settings) -> None:
    """The archive's base URL and credentials (a URL with credentials in it would be shown and logged)."""
    url = settings.dicomweb_url
    if url is not None:
        from urllib.parse import urlsplit

        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018  (raises on a malformed port)
        except ValueError:
            raise ConfigError("dicomweb_url is not a valid URL") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(
                "dicomweb_url must be an http(s) URL with a host, e.g. http://127.0.0.1:8042/dicom-web"
            )
        if parts.username or parts.password:
            raise ConfigError(
                "dicomweb_url must not hold credentials: set CXR_AUDITOR_DICOMWEB_USERNAME and "
                "CXR_AUDITOR_DICOMWEB_PASSWORD (or CXR_AUDITOR_DICOMWEB_TOKEN) instead"
            )
        if parts.query or parts.fragment:
            raise ConfigError("dicomweb_url must be the archive's base URL, without a query or fragment")
    if settings.dicomweb_token and (settings.dicomweb_username or settings.dicomweb_password):
        raise ConfigError("set either dicomweb_token or dicomweb_username and dicomweb_password, not both")
    if (settings.dicomweb_username is None) != (settings.dicomweb_password is None):
        raise ConfigError("dicomweb_username and dicomweb_password go together: set both or neither")
    if not settings.dicomweb_timeout_s > 0:
        raise ConfigError(f"dicomweb_timeout_s must be positive, got {settings.dicomweb_timeout_s!r}")


def _choice(key: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{key} must be one of {', '.join(allowed)}; got {value!r}")


_BOOL_TRUE: Final = {"1", "true", "yes", "on"}
_BOOL_FALSE: Final = {"0", "false", "no", "off", ""}


_PATHS: Final = frozenset({"replay", "grounder_prompt", "reader_prompt"})
_INTS: Final = frozenset(
    {
        "grounder_max_new_tokens",
        "reader_max_new_tokens",
        "reader_reasoning_budget",
        "engine_retries",
        "engine_max_in_flight",
        "grounding_batch_size",
    }
)
_FLOATS: Final = frozenset(
    {"box_scale", "engine_timeout_s", "engine_deadline_s", "load_retry_s", "dicomweb_timeout_s"}
)
_BOOLS: Final = frozenset(
    {
        "allow_private_urls",
        "allow_download",
        "reader_reasoning",
        "static_cache",
        "compile",
        "overlap_stages",
        "grounding_stop_at_end",
    }
)


def _coerce(key: str, raw: object) -> Any:
    """Turn a string (env) or TOML value into the field's type, naming the key when it cannot."""
    if key in _PATHS:
        return Path(str(raw)).expanduser() if raw not in (None, "") else None
    if key == "image_roots":
        items = raw.split(os.pathsep) if isinstance(raw, str) else raw
        if not isinstance(items, list | tuple):
            raise ConfigError(f"image_roots must be a list of folders, got {raw!r}")
        return tuple(Path(str(p)).expanduser().resolve() for p in items if str(p))
    if key in _INTS | _FLOATS:
        try:
            return (int if key in _INTS else float)(str(raw))
        except (TypeError, ValueError):
            raise ConfigError(f"{key} must be a number, got {raw!r}") from None
    if key in _BOOLS:
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in _BOOL_TRUE | _BOOL_FALSE:
            return text in _BOOL_TRUE
        raise ConfigError(f"{key} must be true or false, got {raw!r}")
    if raw is not None and not isinstance(raw, str):
        raise ConfigError(f"{key} must be a string, got {raw!r}")
    if key.endswith(
        ("_url", "_revision", "_token", "_api_model", "api_key", "_dtype", "_username", "_password")
    ):
        return raw or None
    return raw


_KEYS: Final = tuple(f.name for f in fields(Settings))


def _apply(settings: Settings, values: Mapping[str, object], source: str) -> Settings:
    unknown = sorted(set(values) - set(_KEYS))
    if unknown:
        raise ConfigError(f"{source}: unknown setting(s) {', '.join(unknown)}")
    return replace(settings, **{k: _coerce(k, v) for k, v in values.items()})


def from_env(env: Mapping[str, str]) -> dict[str, str]:
    """The ``CXR_AUDITOR_*`` variables that name a setting (``CXR_AUDITOR_CONFIG`` names the file)."""
    known = {ENV_PREFIX + key.upper(): key for key in _KEYS}
    unknown = sorted(
        n for n in env if n.startswith(ENV_PREFIX) and n not in known and n != ENV_PREFIX + "CONFIG"
    )
    if unknown:  # a typo such as CXR_AUDITOR_IMAGE_ROOT would otherwise switch a guard off in silence
        raise ConfigError(f"unknown environment variable(s) {', '.join(unknown)}")
    return {key: env[name] for name, key in known.items() if name in env}


def load_settings(
    overrides: Mapping[str, object] | None = None,
    *,
    config_file: str | Path | None = None,
    env: Mapping[str, str] | None = None,
) -> Settings:
    """Defaults < TOML file (``--config`` or ``CXR_AUDITOR_CONFIG``) < environment < overrides."""
    env = os.environ if env is None else env
    settings = Settings()
    path = config_file or env.get(ENV_PREFIX + "CONFIG")
    if path:
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"config file {path} is unreadable: {exc}") from None
        settings = _apply(settings, data.get("cxr_auditor", data), f"config file {path}")
    settings = _apply(settings, from_env(env), "environment")
    clean = {k: v for k, v in (overrides or {}).items() if v is not None}
    return _apply(settings, clean, "command line").validate()
