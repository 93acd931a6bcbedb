"""``broker.toml`` and the ``GEMINI_TOKENS_*`` overrides: what is read, and every refusal
naming the file (or variable), the key and the rule.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from gemini_tokens import ConfigurationError
from gemini_tokens.serve._settings import (
    SettingsError,
    SettingsProblem,
    load_settings,
    parse_settings,
)

GOOD = """
[server]
host = "0.0.0.0"
port = 9000
path = "/api/token/"
allowed_origins = ["https://app.example.test"]
shutdown_timeout = 20
metrics = true
access_log = false

[upstream]
timeout = 5
max_retries = 1
allow_insecure_http = true

[limits]
per_caller = ["5/minute", "100/day"]
global = ["600/minute"]
storage = "redis://127.0.0.1:6379/0"
on_storage_error = "allow"

[audit]
sink = "jsonl"
path = "/tmp/audit.jsonl"

[auth.jwt]
issuer = "https://id.example.test/"
audience = "api"
algorithms = ["RS256"]
jwks_url = "https://id.example.test/.well-known/jwks.json"
attribute_claims = ["tier"]

[policies]
claim = "plan"
default = "free"

[policies.free]
model = "gemini-free"
uses = 1
client_may_set = { speech_config = ["Kore", "Puck"] }

[policies.pro]
model = "gemini-pro"
uses = 3
expire_minutes = 30
client_may_set = { temperature = { min = 0.0, max = 1.0 } }
"""


def parse(text: str, **env: str) -> Any:
    return parse_settings(tomllib.loads(text), source="broker.toml", environ=env)


def test_a_complete_file_is_read() -> None:
    s = parse(GOOD)
    assert (s.server.host, s.server.port, s.server.path) == ("0.0.0.0", 9000, "/api/token")
    assert s.server.allowed_origins == ("https://app.example.test",)
    assert (s.server.shutdown_timeout, s.server.metrics, s.server.access_log) == (20.0, True, False)
    assert (s.upstream.timeout, s.upstream.max_retries, s.upstream.allow_insecure_http) == (
        5,
        1,
        True,
    )
    assert s.limits.per_caller == ("5/minute", "100/day")
    assert s.limits.global_ == ("600/minute",)
    assert (s.limits.storage, s.limits.on_storage_error) == ("redis://127.0.0.1:6379/0", "allow")
    assert (s.audit.sink, s.audit.path) == ("jsonl", "/tmp/audit.jsonl")
    assert s.auth.jwt is not None
    assert s.auth.jwt.audience == ("api",)
    # The policy claim is copied from the JWT into the caller's attributes.
    assert s.auth.jwt.attribute_claims == ("tier", "plan")
    assert s.policies is not None
    assert sorted(s.policies.tables) == ["free", "pro"]
    assert (s.policies.claim, s.policies.default) == ("plan", "free")
    assert s.policies.tables["pro"].uses == 3
    assert s.policies.tables["pro"].client_may_set["temperature"].high == 1.0
    assert s.policies.tables["free"].client_may_set["speech_config"].values == ("Kore", "Puck")


def test_the_environment_overrides_the_file() -> None:
    s = parse(
        GOOD,
        GEMINI_TOKENS_SERVER_PORT="9100",
        GEMINI_TOKENS_SERVER_METRICS="false",
        GEMINI_TOKENS_SERVER_ALLOWED_ORIGINS="https://a.test, https://b.test",
        GEMINI_TOKENS_LIMITS_PER_CALLER="1/second",
        GEMINI_TOKENS_LIMITS_STORAGE="memory://",
        GEMINI_TOKENS_JWT_AUDIENCE="other-api",
        GEMINI_TOKENS_UPSTREAM_TIMEOUT="2.5",
        GEMINI_TOKENS_POLICIES_DEFAULT="pro",
        GEMINI_TOKENS_BROKER_SECRET="not ours: left alone",
        OTHER="x",
    )
    assert s.server.port == 9100
    assert s.server.metrics is False
    assert s.server.allowed_origins == ("https://a.test", "https://b.test")
    assert s.limits.per_caller == ("1/second",)
    assert s.limits.storage == "memory://"
    assert s.auth.jwt is not None
    assert s.auth.jwt.audience == ("other-api",)
    assert s.upstream.timeout == 2.5
    assert s.policies is not None
    assert s.policies.default == "pro"


def test_an_hmac_secret_from_the_environment_never_shows() -> None:
    text = GOOD.replace(
        'algorithms = ["RS256"]\njwks_url = "https://id.example.test/.well-known/jwks.json"',
        'algorithms = ["HS256"]',
    )
    secret = "an-hmac-secret-of-at-least-32-characters!"
    s = parse(text, GEMINI_TOKENS_JWT_HMAC_SECRET=secret)
    assert s.auth.jwt is not None
    assert s.auth.jwt.hmac_secret == secret
    assert secret not in repr(s)


@pytest.mark.parametrize(
    ("uri", "shown"),
    [
        ("redis://:hunter2-pw@redis.internal:6379/0", "redis://:***@redis.internal:6379/0"),
        ("rediss://app:hunter2-pw@redis.internal/1", "rediss://app:***@redis.internal/1"),
        ("redis://hunter2-pw@redis.internal", "redis://***@redis.internal"),
    ],
)
def test_a_redis_password_in_the_storage_uri_never_shows(uri: str, shown: str) -> None:
    s = parse(GOOD, GEMINI_TOKENS_LIMITS_STORAGE=uri)
    assert s.limits.storage == uri  # used as given
    assert "hunter2" not in repr(s)
    assert repr(shown) in repr(s)


def test_dev_mode_forces_loopback_and_any_origin() -> None:
    s = parse_settings(tomllib.loads(GOOD), environ={}, dev=True)
    assert (s.server.host, s.server.allowed_origins, s.dev) == ("127.0.0.1", ("*",), True)


def test_a_single_policy() -> None:
    text = GOOD[: GOOD.index("[policies]")] + '[policy]\nmodel = "m"\n'
    s = parse(text)
    assert s.policy_names() == ["default"]
    assert s.policies is None


@pytest.mark.parametrize(
    ("old", "new", "key", "rule"),
    [
        ("port = 9000", "port = 70000", "server.port", "from 0 to 65535"),
        ("port = 9000", 'port = "9000"', "server.port", "must be an integer, not str"),
        ("port = 9000", "port = true", "server.port", "not a boolean"),
        ('path = "/api/token/"', 'path = "/healthz"', "server.path", "must start with /"),
        ("metrics = true", 'metrics = "yes"', "server.metrics", "true or false"),
        ("shutdown_timeout = 20", "shutdown_timeout = 0", "server.shutdown_timeout", "seconds"),
        ('host = "0.0.0.0"', 'host = "a b"', "server.host", "an address"),
        ('["https://app.example.test"]', '["*"]', "server.allowed_origins", "--dev"),
        (
            "access_log = false",
            "access_log = false\nworkers = 4",
            "server.workers",
            "not a setting",
        ),
        ("timeout = 5", "timeout = -1", "upstream.timeout", "positive"),
        ("max_retries = 1", "max_retries = -1", "upstream.max_retries", ">= 0"),
        ('"100/day"', '"often"', "limits.per_caller", "cannot parse 'often'"),
        ('"600/minute"', "600", "limits.global", "list of strings"),
        (
            'storage = "redis://127.0.0.1:6379/0"',
            'storage = "mongo://x"',
            "limits.storage",
            "unknown",
        ),
        (
            'on_storage_error = "allow"',
            'on_storage_error = "maybe"',
            "limits.on_storage_error",
            "deny",
        ),
        ('sink = "jsonl"', 'sink = "syslog"', "audit.sink", "'log'"),
        ('path = "/tmp/audit.jsonl"', "", "audit.path", "is required"),
        ('algorithms = ["RS256"]', 'algorithms = ["none"]', "auth.jwt.algorithms", "never allowed"),
        ('algorithms = ["RS256"]', 'algorithms = ["HS256"]', "auth.jwt.algorithms", "public key"),
        ('audience = "api"', "", "auth.jwt.audience", "is required"),
        ('audience = "api"', 'audience = "api"\nkid = 1', "auth.jwt.kid", "not a setting"),
        (
            'jwks_url = "https://id.example.test/.well-known/jwks.json"',
            'jwks_url = "http://id.example.test/jwks"',
            "auth.jwt.jwks_url",
            "https://",
        ),
        (
            'jwks_url = "https://id.example.test/.well-known/jwks.json"',
            "",
            "auth.jwt",
            "exactly one of jwks_url",
        ),
        ('claim = "plan"', "", "policies.claim", "is required"),
        ('default = "free"', 'default = "gold"', "policies.default", "'gold' is not one of"),
        ("uses = 3", "uses = -3", "policies.pro.uses", ""),
        ("uses = 3", "uses = 3\ncolour = 1", "policies.pro.colour", "not a setting"),
        (
            "temperature = { min = 0.0, max = 1.0 }",
            "temperature = { low = 0.0 }",
            "policies.pro.client_may_set.temperature",
            "{ min = 0.0, max = 1.0 }",
        ),
        (
            "temperature = { min = 0.0, max = 1.0 }",
            'response_modalities = [["SMELL"]]',
            "policies.pro.client_may_set.response_modalities",
            "must be one of TEXT, AUDIO",
        ),
        ("[server]", "[servers]\n[server]", "[servers]", "is not a section"),
    ],
)
def test_a_bad_setting_names_the_file_the_key_and_the_rule(
    old: str, new: str, key: str, rule: str
) -> None:
    assert old in GOOD
    with pytest.raises(SettingsError) as info:
        parse(GOOD.replace(old, new, 1))
    error = info.value
    assert isinstance(error, ConfigurationError)
    assert error.source == "broker.toml"
    assert error.key == key, str(error)
    assert rule in error.rule
    assert str(error) == f"broker.toml: {key}: {error.rule}"


def test_auth_and_policy_must_each_be_given_once() -> None:
    no_auth = GOOD[: GOOD.index("[auth.jwt]")] + GOOD[GOOD.index("[policies]") :]
    with pytest.raises(SettingsError, match="auth: give exactly one"):
        parse(no_auth)
    both_auth = GOOD.replace("[auth.jwt]", '[auth]\nauthorizer = "m:f"\n\n[auth.jwt]')
    with pytest.raises(SettingsError, match="auth: give exactly one"):
        parse(both_auth)
    no_policy = GOOD[: GOOD.index("[policies]")]
    with pytest.raises(SettingsError, match="policy: give exactly one"):
        parse(no_policy)
    both = GOOD + '\n[policy]\nmodel = "m"\n'
    with pytest.raises(SettingsError, match="policy: give exactly one"):
        parse(both)
    no_tables = GOOD[: GOOD.index("[policies.free]")]
    with pytest.raises(SettingsError, match="define at least one"):
        parse(no_tables)


@pytest.mark.parametrize(
    ("name", "value", "key", "rule"),
    [
        ("GEMINI_TOKENS_SERVER_PORT", "many", "server.port", "must be an integer, not 'many'"),
        ("GEMINI_TOKENS_SERVER_PORT", "99999", "server.port", "must be an integer from 0 to 65535"),
        ("GEMINI_TOKENS_SERVER_METRICS", "perhaps", "server.metrics", "true or false"),
        (
            "GEMINI_TOKENS_SERVER_PROT",
            "1",
            "server.prot",
            "is not a setting; did you mean 'port'?",
        ),
        ("GEMINI_TOKENS_JWT_ISSUER", "", "auth.jwt.issuer", "issuer"),
        ("GEMINI_TOKENS_LIMITS_GLOBAL", "lots", "limits.global", "cannot parse 'lots'"),
        ("GEMINI_TOKENS_POLICIES_DEFAULT", "gold", "policies.default", "'gold' is not one of"),
        ("GEMINI_TOKENS_POLICY_CONFIG", "{}", "policy.config", "set it in the file"),
    ],
)
def test_a_bad_override_names_the_variable(name: str, value: str, key: str, rule: str) -> None:
    """Not the file: the variable, and the setting it overrides."""
    with pytest.raises(SettingsError) as info:
        parse(GOOD, **{name: value})
    error = info.value
    assert (error.source, error.key) == (name, key), str(error)
    assert rule in error.rule
    assert str(error) == f"{name} ({key}): {error.rule}"
    assert "broker.toml" not in str(error)


SINGLE = GOOD[: GOOD.index("[policies]")] + '[policy]\nmodel = "m"\n'


@pytest.mark.parametrize(
    ("text", "after", "line", "key", "rule"),
    [
        (GOOD, "[server]", "prot = 1", "server.prot", "did you mean 'port'?"),
        (GOOD, "[upstream]", "time_out = 1", "upstream.time_out", "did you mean 'timeout'?"),
        (GOOD, "[limits]", "per_caler = []", "limits.per_caler", "did you mean 'per_caller'?"),
        (GOOD, "[audit]", 'sinks = "log"', "audit.sinks", "did you mean 'sink'?"),
        (GOOD, "[audit]", "file = 1", "audit.file", "it takes 'path', 'sink'"),
        (
            GOOD.replace("[auth.jwt]", "[auth]\n\n[auth.jwt]"),
            "[auth]",
            'authoriser = "m:f"',
            "auth.authoriser",
            "did you mean 'authorizer'?",
        ),
        (GOOD, "[auth.jwt]", 'isuer = "x"', "auth.jwt.isuer", "did you mean 'issuer'?"),
        (GOOD, "[policies]", 'clam = "x"', "policies.clam", "did you mean 'claim'?"),
        (GOOD, "[policies.free]", "use = 1", "policies.free.use", "did you mean 'uses'?"),
        (
            GOOD + "\n[renewal]\nenabled = false\n",
            "[renewal]",
            'rate_limit = ["1/hour"]',
            "renewal.rate_limit",
            "did you mean 'rate_limits'?",
        ),
        (GOOD, "[policies.pro]", "max_session = 5", "policies.pro.max_session", "did you"),
        (SINGLE, "[policy]", 'modle = "m"', "policy.modle", "did you mean 'model'?"),
        (GOOD, "", "[srever]", "[srever]", "is not a section; did you mean [server]?"),
        (GOOD, "", "[metrics]", "[metrics]", "the sections are [audit], [auth], [limits]"),
    ],
)
def test_an_unknown_key_is_refused_with_its_dotted_path(
    text: str, after: str, line: str, key: str, rule: str
) -> None:
    if after:
        assert after + "\n" in text
        text = text.replace(after + "\n", f"{after}\n{line}\n", 1)
    else:
        text = f"{line}\n{text}"
    with pytest.raises(SettingsError) as info:
        parse(text)
    error = info.value
    assert (error.source, error.key) == ("broker.toml", key), str(error)
    assert rule in error.rule
    assert error.rule.startswith(("is not a setting; ", "is not a section; "))
    assert str(error) == f"broker.toml: {key}: {error.rule}"


def test_a_bad_value_in_the_file_names_the_file_and_the_dotted_path() -> None:
    with pytest.raises(SettingsError) as info:
        parse(GOOD.replace("port = 9000", "port = 99999"), GEMINI_TOKENS_SERVER_HOST="0.0.0.0")
    assert str(info.value) == "broker.toml: server.port: must be an integer from 0 to 65535"
    assert info.value.problems == (
        SettingsProblem("broker.toml", "server.port", "must be an integer from 0 to 65535"),
    )


@pytest.mark.parametrize(
    ("old", "new", "key", "rule"),
    [
        ("uses = 3", "uses = -3", "policies.pro.uses", "must be 0 (no limit) or more"),
        (
            "uses = 3",
            "uses = 3\nconfig = { temprature = 0.5 }",
            "policies.pro.config.temprature",
            "did you mean 'temperature'?",
        ),
        (
            'client_may_set = { speech_config = ["Kore", "Puck"] }',
            "client_may_set = { speech_config = [] }",
            "policies.free.client_may_set.speech_config",
            "at least one",
        ),
        (
            "temperature = { min = 0.0, max = 1.0 }",
            "temperature = { min = 1.0, max = 0.0 }",
            "policies.pro.client_may_set.temperature",
            "range low 1.0 is above high 0.0",
        ),
        (
            "expire_minutes = 30",
            'expire_minutes = "long"',
            "policies.pro.expire_minutes",
            "a number",
        ),
    ],
)
def test_a_nested_error_has_its_whole_path(old: str, new: str, key: str, rule: str) -> None:
    assert old in GOOD
    with pytest.raises(SettingsError) as info:
        parse(GOOD.replace(old, new, 1))
    assert info.value.key == key, str(info.value)
    assert rule in info.value.rule
    assert str(info.value).startswith(f"broker.toml: {key}: ")


def test_a_variable_names_itself_and_a_file_error_beside_it_names_the_file() -> None:
    with pytest.raises(SettingsError) as info:
        parse(
            GOOD.replace('sink = "jsonl"', 'sink = "syslog"'),
            GEMINI_TOKENS_SERVER_PORT="99999",
            GEMINI_TOKENS_UPSTREAM_TIMEOUT="-1",
        )
    assert str(info.value).splitlines() == [
        "GEMINI_TOKENS_SERVER_PORT (server.port): must be an integer from 0 to 65535",
        "GEMINI_TOKENS_UPSTREAM_TIMEOUT (upstream.timeout): must be a positive number of seconds",
        "broker.toml: audit.sink: must be 'log' or 'jsonl'; got 'syslog'",
    ]
    assert [p.variable for p in info.value.problems] == [True, True, False]
    # The first problem's parts are the error's own.
    assert (info.value.source, info.value.key) == ("GEMINI_TOKENS_SERVER_PORT", "server.port")


def test_a_variable_is_read_as_the_settings_type_says() -> None:
    s = parse(
        GOOD,
        GEMINI_TOKENS_SERVER_ACCESS_LOG="yes",
        GEMINI_TOKENS_SERVER_SHUTDOWN_TIMEOUT="2.5",
        GEMINI_TOKENS_UPSTREAM_MAX_RETRIES="0",
        GEMINI_TOKENS_LIMITS_GLOBAL="10/second, 100/minute",
        GEMINI_TOKENS_LIMITS_ON_STORAGE_ERROR="deny",
        GEMINI_TOKENS_JWT_LEEWAY_SECONDS="5",
        GEMINI_TOKENS_JWT_ALGORITHMS="RS256,ES256",
        GEMINI_TOKENS_POLICIES_CLAIM="tier",
    )
    assert (s.server.access_log, s.server.shutdown_timeout) == (True, 2.5)
    assert s.upstream.max_retries == 0
    assert s.limits.global_ == ("10/second", "100/minute")
    assert s.limits.on_storage_error == "deny"
    assert s.auth.jwt is not None
    assert (s.auth.jwt.leeway_seconds, s.auth.jwt.algorithms) == (5.0, ("RS256", "ES256"))
    assert s.policies is not None
    assert s.policies.claim == "tier"
    single = parse(SINGLE, GEMINI_TOKENS_POLICY_USES="2")
    assert single.policy is not None
    assert single.policy.uses == 2


@pytest.mark.parametrize(
    "uri",
    [
        "redis//:hunter2-pw@redis.internal:6379/0",
        "redis://:hunter2-pw@redis.internal:port/0",
        "mongodb://app:hunter2-pw@redis.internal/1",
    ],
)
def test_a_redis_password_never_shows_in_an_error(uri: str) -> None:
    with pytest.raises(SettingsError) as info:
        parse(GOOD, GEMINI_TOKENS_LIMITS_STORAGE=uri)
    assert info.value.key == "limits.storage"
    assert info.value.source == "GEMINI_TOKENS_LIMITS_STORAGE"
    for text in (str(info.value), repr(info.value), repr(info.value.args)):
        assert "hunter2" not in text


def test_load_settings_reads_the_file_and_names_it(tmp_path: Path) -> None:
    path = tmp_path / "broker.toml"
    path.write_text(GOOD)
    assert load_settings(str(path), environ={}).source == str(path)
    path.write_text(GOOD.replace("port = 9000", "port = [9000"))
    with pytest.raises(SettingsError) as info:
        load_settings(str(path), environ={})
    assert str(info.value).startswith(f"{path}: file: is not valid TOML")
    with pytest.raises(SettingsError, match="cannot be read"):
        load_settings(str(tmp_path / "missing.toml"), environ={})


def _toml_blocks(path: Path) -> list[str]:
    text = path.read_text()
    blocks = []
    for chunk in text.split("```toml\n")[1:]:
        blocks.append(chunk.split("```", 1)[0])
    return blocks


DOCS = Path(__file__).parent.parent / "docs" / "serve.md"


def test_the_docs_complete_broker_toml_is_valid() -> None:
    complete, *idps = _toml_blocks(DOCS)
    s = parse(complete, GEMINI_TOKENS_BROKER_SECRET="a-docs-secret-" + "d" * 32)
    assert s.policy_names() == ["free", "pro"]
    assert s.renewal.enabled is True
    assert s.policies is not None
    assert [p.max_session_minutes for p in s.policies.tables.values()] == [20, 90]
    assert s.limits.storage.startswith("redis://")
    # Each identity provider's [auth.jwt] in place of the complete file's.
    head, _, rest = complete.partition("[auth.jwt]")
    tail = rest[rest.index("[policies]") :]
    assert len(idps) == 3
    for idp in idps:
        settings = parse(head + idp + "\n" + tail, GEMINI_TOKENS_BROKER_SECRET="d" * 32)
        assert settings.auth.jwt is not None
        assert settings.auth.jwt.jwks_url is not None
        assert settings.auth.jwt.jwks_url.startswith("https://")
        assert " " not in settings.auth.jwt.jwks_url


# --- [renewal] --------------------------------------------------------------------------------

BROKER_SECRET = "renewal-secret-" + "r" * 40
RENEWAL = (
    GOOD.replace("expire_minutes = 30\n", "expire_minutes = 30\nmax_session_minutes = 45\n")
    + """
[renewal]
enabled = true
rate_limits = ["30/hour"]
"""
)


def test_renewal_is_read_with_the_secret_from_its_variable() -> None:
    s = parse(RENEWAL, GEMINI_TOKENS_BROKER_SECRET=BROKER_SECRET)
    assert s.renewal.enabled is True
    assert s.renewal.rate_limits == ("30/hour",)
    assert s.renewal.secret == BROKER_SECRET
    assert s.policies is not None
    assert s.policies.tables["pro"].max_session_minutes == 45
    assert s.policies.tables["free"].max_session_minutes == 60  # the broker's default
    assert BROKER_SECRET not in repr(s)
    assert BROKER_SECRET not in repr(s.renewal)
    # Off by default, and off needs no secret.
    assert parse(GOOD).renewal.enabled is False
    off = parse(RENEWAL.replace("enabled = true", "enabled = false"))
    assert (off.renewal.enabled, off.renewal.secret) == (False, None)
    # A variable turns it on.
    on = parse(
        GOOD, GEMINI_TOKENS_RENEWAL_ENABLED="true", GEMINI_TOKENS_BROKER_SECRET=BROKER_SECRET
    )
    assert on.renewal.enabled is True


def test_renewal_without_a_secret_names_the_variable_to_set() -> None:
    with pytest.raises(SettingsError) as info:
        parse(RENEWAL)
    assert (info.value.source, info.value.key) == ("broker.toml", "renewal.enabled")
    assert "GEMINI_TOKENS_BROKER_SECRET" in info.value.rule
    assert "at least 32" in info.value.rule
    with pytest.raises(SettingsError) as info:
        parse(GOOD, GEMINI_TOKENS_RENEWAL_ENABLED="yes")
    assert str(info.value).startswith("GEMINI_TOKENS_RENEWAL_ENABLED (renewal.enabled): needs")


def test_a_short_secret_is_refused_without_being_shown() -> None:
    with pytest.raises(SettingsError) as info:
        parse(RENEWAL, GEMINI_TOKENS_BROKER_SECRET="short-secret-9x")
    assert str(info.value) == (
        "GEMINI_TOKENS_BROKER_SECRET (renewal.secret): must be at least 32 bytes"
    )
    assert "short-secret-9x" not in repr(info.value.args)


def test_a_secret_in_the_file_is_refused_naming_the_variable_to_use() -> None:
    text = RENEWAL.replace("enabled = true", 'enabled = true\nsecret = "' + BROKER_SECRET + '"')
    with pytest.raises(SettingsError) as info:
        parse(text, GEMINI_TOKENS_BROKER_SECRET=BROKER_SECRET)
    assert (info.value.source, info.value.key) == ("broker.toml", "renewal.secret")
    assert info.value.rule == (
        "is never read from the file; set the GEMINI_TOKENS_BROKER_SECRET environment variable"
    )
    assert BROKER_SECRET not in str(info.value)
    with pytest.raises(SettingsError) as info:
        parse(RENEWAL, GEMINI_TOKENS_RENEWAL_SECRET=BROKER_SECRET)
    assert str(info.value) == (
        "GEMINI_TOKENS_RENEWAL_SECRET (renewal.secret): is read only from "
        "GEMINI_TOKENS_BROKER_SECRET, not GEMINI_TOKENS_RENEWAL_SECRET"
    )


@pytest.mark.parametrize(
    ("line", "key", "rule"),
    [
        ('rate_limits = ["30/fortnight"]', "renewal.rate_limits", "30/fortnight"),
        ('enabled = "yes"', "renewal.enabled", "must be true or false"),
    ],
)
def test_a_bad_renewal_setting_is_named(line: str, key: str, rule: str) -> None:
    field = line.split(" = ")[0]
    text = "\n".join(line if row.startswith(field + " =") else row for row in RENEWAL.splitlines())
    with pytest.raises(SettingsError) as info:
        parse(text, GEMINI_TOKENS_BROKER_SECRET=BROKER_SECRET)
    assert (info.value.source, info.value.key) == ("broker.toml", key)
    assert rule in info.value.rule


def test_a_bad_max_session_minutes_is_named() -> None:
    text = RENEWAL.replace("max_session_minutes = 45", "max_session_minutes = -1")
    with pytest.raises(SettingsError) as info:
        parse(text, GEMINI_TOKENS_BROKER_SECRET=BROKER_SECRET)
    assert info.value.key == "policies.pro.max_session_minutes", str(info.value)


def test_a_mistyped_redis_uri_never_shows_its_password() -> None:
    """#6: ``redis:/:password@host/0`` (one slash short) named, its password never shown."""
    with pytest.raises(SettingsError) as info:
        parse(GOOD.replace("redis://127.0.0.1:6379/0", "redis:/:hunter2-pw@redis.internal/0"))
    assert (info.value.source, info.value.key) == ("broker.toml", "limits.storage")
    for text in (str(info.value), repr(info.value), repr(info.value.args)):
        assert "hunter2" not in text


def test_a_mistyped_redis_uri_given_to_the_broker_never_shows_its_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """#6, through ``TokenBroker(storage_uri=...)``: named, its password in no text of the
    error, its cause or its traceback."""
    import traceback

    from gemini_tokens.broker import Caller, Policy, TokenBroker

    monkeypatch.setenv("GEMINI_API_KEY", "a-key-for-the-broker")
    with pytest.raises(ConfigurationError) as info:
        TokenBroker(
            authorize=lambda request: Caller(id="x"),
            policy=Policy(model="m"),
            storage_uri="redis:/:hunter2-pw@redis.internal/0",
        )
    assert str(info.value).startswith("storage_uri: ")
    text = "".join(traceback.format_exception(info.value))
    for shown in (text, repr(info.value), repr(info.value.args)):
        assert "hunter2" not in shown
