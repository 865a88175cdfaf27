"""I/O edge: read tenant policy files (YAML) and their secrets (environment) into a validated ``PolicySet``.

Every problem is reported, across every file, as ``<file>: <dotted.key>: <what is wrong>; <the fix>``.
Proxy keys are kept in memory only as SHA-256 digests.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml
from pydantic import ValidationError

from crest_proxy.errors import ConfigError
from crest_proxy.policy.model import LiteLLMUpstream, OpenAIUpstream, Policy
from crest_proxy.policy.validation import describe_errors

_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class _Secrets:
    """What a policy's env/sha256 references resolve to: key digests and the upstream API key."""

    key_digests: tuple[bytes, ...]
    api_key: str | None
    model_secrets: Mapping[str, Mapping[str, str]] = field(default_factory=dict)


@dataclass(frozen=True)
class _Loaded:
    """One validated policy, the file it came from and its resolved secrets."""

    policy: Policy
    source: Path
    secrets: _Secrets


@dataclass(frozen=True)
class PolicySet:
    """Every tenant's policy, with key digests for authentication and resolved upstream API keys."""

    policies: Mapping[str, Policy]
    sources: Mapping[str, Path] = field(default_factory=dict)
    key_digests: tuple[tuple[bytes, str], ...] = field(default=(), repr=False)
    api_keys: Mapping[str, str | None] = field(default_factory=dict, repr=False)
    model_secrets: Mapping[str, Mapping[str, Mapping[str, str]]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        for name in ("policies", "sources", "api_keys", "model_secrets"):
            object.__setattr__(self, name, MappingProxyType(dict(getattr(self, name))))

    @classmethod
    def from_policies(
        cls, policies: Iterable[Policy], *, environ: Mapping[str, str] | None = None
    ) -> PolicySet:
        """A set built from in-memory policies (tests, embedding); env references resolve from ``environ``."""
        sources = [(p, Path(f"<{p.tenant}>")) for p in policies]
        return _assemble([_Loaded(p, src, _resolve(str(src), p, environ)) for p, src in sources])

    def tenant_for_key(self, presented_key: str) -> Policy | None:
        """The policy whose proxy key is ``presented_key``, or None.

        Every digest is compared (no early exit), in constant time, so timing does not tell which
        tenant's key was close or how many tenants exist before the matching one.
        """
        presented = hashlib.sha256(presented_key.encode("utf-8", "surrogatepass")).digest()
        found: str | None = None
        for digest, tenant in self.key_digests:
            if hmac.compare_digest(digest, presented):
                found = tenant
        return None if found is None else self.policies[found]

    def upstream_api_key(self, tenant: str) -> str | None:
        """The upstream API key resolved for ``tenant`` at load time (None when it sends none)."""
        return self.api_keys.get(tenant)

    def upstream_model_secrets(self, tenant: str) -> Mapping[str, Mapping[str, str]]:
        """Resolved ``env:`` values of a LiteLLM upstream: model name -> dotted key -> value."""
        return self.model_secrets.get(tenant, {})

    def source_of(self, tenant: str) -> Path:
        """The file ``tenant``'s policy was loaded from."""
        return self.sources[tenant]


def hash_key(key: str) -> str:
    """``sha256:<hex>`` of a proxy key, the form policy files hold instead of the key itself."""
    return "sha256:" + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def load_policy(path: Path, *, environ: Mapping[str, str] | None = None) -> Policy:
    """Read and validate one policy file, resolving its env references; raises ``ConfigError``."""
    return _load_entry(Path(path), environ).policy


def load_policies(directory: Path, *, environ: Mapping[str, str] | None = None) -> PolicySet:
    """Load every ``*.yaml``/``*.yml`` policy of ``directory``; ``ConfigError`` lists every problem."""
    entries: list[_Loaded] = []
    problems: list[str] = []
    for path in _policy_files(Path(directory)):
        try:
            entries.append(_load_entry(path, environ))
        except ConfigError as exc:
            problems += exc.problems
    try:
        policy_set = _assemble(entries)
    except ConfigError as exc:
        problems += exc.problems
    if problems:
        raise ConfigError(_summary(problems), problems=problems)
    return policy_set


def _policy_files(directory: Path) -> list[Path]:
    """The policy files of ``directory`` in name order; a missing or empty directory is an error."""
    if not directory.is_dir():
        what = "is not a directory" if directory.exists() else "does not exist"
        raise ConfigError(f"{directory}: (directory): {what}; pass the directory that holds the policy files")
    files = sorted(
        p for p in directory.iterdir() if p.suffix in _SUFFIXES and p.is_file() and not p.name.startswith(".")
    )
    if not files:
        raise ConfigError(
            f"{directory}: (directory): no policy files (*.yaml, *.yml); add one per tenant, "
            "e.g. a copy of policies/default.yaml"
        )
    return files


def read_policy(path: Path) -> Policy:
    """Read and validate one policy file without resolving its ``env:`` references; raises ``ConfigError``.

    For the LiteLLM guardrail, which uses a policy's screening settings only (LiteLLM owns keys and
    upstreams), so their environment variables need not be set there.
    """
    path = Path(path)
    data = _read_yaml(path)
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        problems = [f"{path}: {line}" for line in describe_errors(exc.errors(), Policy)]
        raise ConfigError(_summary(problems), problems=problems) from None


def _load_entry(path: Path, environ: Mapping[str, str] | None) -> _Loaded:
    """One file read, validated and its secrets resolved."""
    policy = read_policy(path)
    return _Loaded(policy, path, _resolve(str(path), policy, environ))


def _read_yaml(path: Path) -> dict[str, Any]:
    """The top-level mapping of a YAML file; syntax errors name the line and column."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        problem = f"{path}: (file): cannot be read ({exc.strerror}); check the path and permissions"
        raise ConfigError(problem) from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: (file): is not UTF-8 text; save it as UTF-8") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass: no arbitrary objects
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: {_yaml_problem(exc)}") from None
    if data is None:
        raise ConfigError(f"{path}: (file): is empty; write a policy (see policies/default.yaml)")
    if not isinstance(data, dict):
        kind = type(data).__name__
        raise ConfigError(f"{path}: (top level): expected a mapping of keys, got {kind}; start with tenant:")
    return data


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """``line N, column M: <problem>; <fix>`` for a YAML error."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(yaml)"
    problem = getattr(exc, "problem", None) or str(exc)
    fix = "write each key once" if problem.startswith("duplicate key") else "fix the YAML syntax"
    return f"{where}: {problem}; {fix}"


class _UniqueKeyLoader(yaml.SafeLoader):
    """A SafeLoader that rejects duplicate mapping keys (PyYAML silently keeps the last one)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        """Build a mapping, failing on a key seen twice."""
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, str | int | float | bool):
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r}", key_node.start_mark
                    )
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _resolve(source: str, policy: Policy, environ: Mapping[str, str] | None) -> _Secrets:
    """Digests of the proxy keys and the upstream API key, from the environment; raises ``ConfigError``."""
    env = os.environ if environ is None else environ
    problems: list[str] = []
    digests: list[bytes] = []
    for i, ref in enumerate(policy.keys):
        if ref.startswith("sha256:"):
            digests.append(bytes.fromhex(ref.removeprefix("sha256:")))
            continue
        value = _env_value(env, ref, f"{source}: keys[{i}]", "or use sha256:<digest>", problems)
        if value is not None:
            digests.append(hashlib.sha256(value.encode("utf-8", "surrogatepass")).digest())
    api_ref = policy.upstream.api_key if isinstance(policy.upstream, OpenAIUpstream) else None
    api_key = _env_value(env, api_ref, f"{source}: upstream.api_key", "or remove upstream.api_key", problems)
    model_secrets = _resolve_models(env, source, policy, problems)
    if problems:
        raise ConfigError(_summary(problems), problems=problems)
    return _Secrets(tuple(digests), api_key, model_secrets)


def _resolve_models(
    env: Mapping[str, str], source: str, policy: Policy, problems: list[str]
) -> dict[str, dict[str, str]]:
    """The ``env:`` values of every model of a LiteLLM upstream (empty for other upstreams)."""
    if not isinstance(policy.upstream, LiteLLMUpstream):
        return {}
    resolved: dict[str, dict[str, str]] = {}
    for name, model in policy.upstream.models.items():
        for key, ref in model.env_refs().items():
            where = f"{source}: upstream.models.{name}.{key}"
            value = _env_value(env, ref, where, f"or remove upstream.models.{name}.{key}", problems)
            if value is not None:
                resolved.setdefault(name, {})[key] = value
    return resolved


def _env_value(
    env: Mapping[str, str], ref: str | None, where: str, alternative: str, problems: list[str]
) -> str | None:
    """The value of an ``env:VAR`` reference; a missing or empty variable is appended to ``problems``."""
    if ref is None:
        return None
    var = ref.removeprefix("env:")
    value = env.get(var)
    if not value:
        state = "is not set" if value is None else "is empty"
        problems.append(f"{where}: environment variable {var} {state}; set {var} {alternative}")
        return None
    return value


def _assemble(entries: Iterable[_Loaded]) -> PolicySet:
    """The set of ``entries``; duplicate tenants and keys shared between tenants are errors."""
    policies: dict[str, Policy] = {}
    sources: dict[str, Path] = {}
    api_keys: dict[str, str | None] = {}
    model_secrets: dict[str, Mapping[str, Mapping[str, str]]] = {}
    owners: dict[bytes, str] = {}
    problems: list[str] = []
    for entry in entries:
        policy, source = entry.policy, entry.source
        if policy.tenant in policies:
            problems.append(
                f"{source}: tenant: {policy.tenant!r} is already defined in {sources[policy.tenant]}; "
                "tenant names must be unique"
            )
            continue
        policies[policy.tenant], sources[policy.tenant] = policy, source
        api_keys[policy.tenant] = entry.secrets.api_key
        model_secrets[policy.tenant] = entry.secrets.model_secrets
        problems += _claim_keys(entry, owners, sources)
    if problems:
        raise ConfigError(_summary(problems), problems=problems)
    return PolicySet(policies, sources, tuple(owners.items()), api_keys, model_secrets)


def _claim_keys(entry: _Loaded, owners: dict[bytes, str], sources: Mapping[str, Path]) -> list[str]:
    """Record the entry's key digests in ``owners``; a digest another tenant holds is a problem."""
    problems = []
    for i, digest in enumerate(entry.secrets.key_digests):
        owner = owners.setdefault(digest, entry.policy.tenant)
        if owner != entry.policy.tenant:
            problems.append(
                f"{entry.source}: keys[{i}]: this proxy key is also used by tenant {owner!r} "
                f"({sources[owner]}); give every tenant its own key"
            )
    return problems


def _summary(problems: list[str]) -> str:
    """The ``ConfigError`` message: the problem itself, or a count and one problem per line."""
    if len(problems) == 1:
        return problems[0]
    return f"{len(problems)} configuration problems:\n" + "\n".join(problems)


# --- file by file, for reloading (policy.reload keeps a file's previous policy when it breaks) ----

PolicyEntry = _Loaded


def policy_files(directory: Path) -> list[Path]:
    """The policy files of ``directory`` in name order; ``ConfigError`` when it is missing or has none."""
    return _policy_files(Path(directory))


def load_policy_entry(path: Path, *, environ: Mapping[str, str] | None = None) -> PolicyEntry:
    """One policy file, validated, with its secrets resolved; raises ``ConfigError``."""
    return _load_entry(Path(path), environ)


def policy_entries(policies: PolicySet) -> list[PolicyEntry]:
    """The entries ``policies`` was assembled from, secrets included, in tenant order."""
    return [
        _Loaded(
            policy,
            policies.sources[tenant],
            _Secrets(
                tuple(digest for digest, owner in policies.key_digests if owner == tenant),
                policies.api_keys.get(tenant),
                policies.model_secrets.get(tenant, {}),
            ),
        )
        for tenant, policy in policies.policies.items()
    ]


def assemble_policies(entries: Iterable[PolicyEntry]) -> PolicySet:
    """The set of ``entries``; ``ConfigError`` for a tenant defined twice or a key two tenants share."""
    return _assemble(entries)
