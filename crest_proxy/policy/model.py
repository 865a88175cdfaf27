"""PURE: the tenant policy model, and what a policy decides for one text (evaluate, match rules, redact).

No I/O here: ``config`` reads YAML and the environment and hands plain data to ``Policy.model_validate``.
Field types and their error messages live in ``validation``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, cast, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    PlainValidator,
    PrivateAttr,
    ValidationError,
    field_validator,
)

from crest_proxy.policy.rules import RuleError, RuleMatcher, compile_rule
from crest_proxy.policy.validation import (
    BaseUrl,
    ContextChars,
    EnvRef,
    KeyRef,
    LanguageCode,
    RuleName,
    ScreenTokens,
    Seconds,
    TenantName,
    Threshold,
    WindowChars,
    describe_errors,
    dotted,
    invalid,
)
from crest_proxy.types import Action, Direction, Span, Verdict

# Verdict.score when the classifier gave no score (unavailable): below every threshold, never a P(unsafe).
NO_SCORE = -1.0
Role = Literal["system", "developer", "user", "assistant", "tool", "function"]
ROLES: tuple[str, ...] = get_args(Role)


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Timeout(_Frozen):
    """Upstream timeouts in seconds (httpx's four phases)."""

    connect: Seconds = 5.0
    read: Seconds = 60.0
    write: Seconds = 30.0
    pool: Seconds = 5.0
    # httpx's read timeout is per read: an upstream that trickles a byte a second never trips it.
    # `total` bounds a whole non-streaming exchange (and the gap between SSE events when streaming).
    total: Seconds = 300.0


class OpenAIUpstream(_Frozen):
    """An OpenAI-compatible upstream reached over HTTP."""

    provider: Literal["openai"] = "openai"
    base_url: BaseUrl
    api_key: EnvRef | None = None
    timeout: Timeout = Timeout()
    models: tuple[str, ...] | None = None
    aliases: dict[str, str] = {}


class AnthropicUpstream(OpenAIUpstream):
    """An Anthropic-compatible upstream: ``messages`` relative to ``base_url``, the key sent as ``x-api-key``.

    OpenAI-format endpoints go to the same base URL (Anthropic serves an OpenAI-compatible
    ``/v1/chat/completions``), so it is an OpenAI upstream with another default URL and key header.
    """

    provider: Literal["anthropic"] = "anthropic"  # type: ignore[assignment]
    base_url: BaseUrl = "https://api.anthropic.com/v1"


class LiteLLMModel(_Frozen):
    """One client-facing model served through LiteLLM: the litellm model string and how to reach it."""

    model: str
    api_key: EnvRef | None = None
    api_base: BaseUrl | None = None
    api_version: str | None = None
    # Extra keyword arguments for litellm (vertex_project, aws_region_name, drop_params …); a string
    # value ``env:VAR`` is resolved from the environment when the policy is loaded.
    params: dict[str, str | int | float | bool] = {}
    # Testing aid: litellm answers with this text without calling any provider.
    mock_response: str | None = None

    @field_validator("model")
    @classmethod
    def _model_named(cls, model: str) -> str:
        if not model.strip():
            raise invalid("empty model; use a litellm model string like anthropic/claude-3-5-sonnet-20241022")
        return model

    def env_refs(self) -> dict[str, str]:
        """The ``env:`` references of this model by dotted key (``api_key``, ``params.<name>``)."""
        refs = {f"params.{k}": v for k, v in self.params.items() if isinstance(v, str) and _is_env(v)}
        return {"api_key": self.api_key, **refs} if self.api_key else refs


class LiteLLMUpstream(_Frozen):
    """Any provider LiteLLM supports, behind a map of client-facing model names."""

    provider: Literal["litellm"]
    models: dict[str, LiteLLMModel]
    timeout: Timeout = Timeout()
    aliases: dict[str, str] = {}

    @field_validator("models")
    @classmethod
    def _some_models(cls, models: dict[str, LiteLLMModel]) -> dict[str, LiteLLMModel]:
        if not models:
            raise invalid("no models; map at least one client-facing name to {model: provider/model}")
        return models


def _is_env(value: str) -> bool:
    return value.startswith("env:")


_PROVIDERS: dict[str, type[OpenAIUpstream] | type[LiteLLMUpstream]] = {
    "openai": OpenAIUpstream,
    "anthropic": AnthropicUpstream,
    "litellm": LiteLLMUpstream,
}


def _validate_upstream(value: Any) -> OpenAIUpstream | LiteLLMUpstream:
    """Validate ``upstream`` as the class its ``provider`` names.

    A discriminated union would put the tag into error locations (``upstream.openai.base_url``); this
    keeps them as written in the file, with each message phrased against the chosen class.
    """
    if isinstance(value, OpenAIUpstream | LiteLLMUpstream):
        return value
    provider = value.get("provider", "openai") if isinstance(value, dict) else "openai"
    chosen = _PROVIDERS.get(provider) if isinstance(provider, str) else None
    if chosen is None:
        detail = f"{provider!r} is not a supported provider; use one of: {', '.join(_PROVIDERS)}"
        raise _phrased([(("provider",), provider, detail)])
    try:
        return chosen.model_validate(value)
    except ValidationError as exc:
        lines = describe_errors(exc.errors(), chosen)
        raise _phrased(
            [
                (e["loc"], e["input"], line.removeprefix(f"{dotted(e['loc'])}: "))
                for e, line in zip(exc.errors(), lines, strict=True)
            ]
        ) from None


def _phrased(errors: list[tuple[tuple[int | str, ...], Any, str]]) -> ValidationError:
    """A ValidationError of already-phrased ``invalid_policy`` errors at the given locations."""
    return ValidationError.from_exception_data(
        "Upstream",
        [{"type": invalid(detail), "loc": loc, "input": value} for loc, value, detail in errors],
    )


Upstream = Annotated[OpenAIUpstream | LiteLLMUpstream, PlainValidator(_validate_upstream)]


class DirectionPolicy(_Frozen):
    """What the classifier verdict does to texts travelling one way."""

    action: Action = Action.BLOCK
    threshold: Threshold = 0.5
    roles: tuple[Role, ...] = ROLES  # type: ignore[assignment]
    tool_calls: bool = True


class InboundPolicy(DirectionPolicy):
    """The inbound direction policy, plus what happens to token-id prompts the classifier cannot read."""

    # Prompts given as token ids (legacy completions, embeddings) cannot be read by CREST: ``block``
    # refuses them, ``allow`` forwards them unscreened; both are audited (issue 13).
    token_inputs: Literal["block", "allow"] = "block"
    # Images, audio, binary files and files by reference (``file_id``, ``file_url``): the model reads
    # them, CREST cannot. ``allow`` (default: vision and file apps keep working) forwards them unscreened,
    # ``block`` refuses them; both are audited (``extra.media_inputs``).
    media_inputs: Literal["block", "allow"] = "allow"


class StreamSettings(_Frozen):
    """Hold-back for streamed completions: the window screened at the latest, and the context before it."""

    window_chars: WindowChars = 400
    context_chars: ContextChars = 200


class OutboundPolicy(DirectionPolicy):
    """The outbound direction policy, plus how streamed answers are windowed."""

    stream: StreamSettings = StreamSettings()


class Rule(_Frozen):
    """A named regex rule; every match applies ``action`` (and, for redact, replaces the match)."""

    name: RuleName
    pattern: str
    directions: tuple[Direction, ...] = (Direction.INBOUND, Direction.OUTBOUND)
    action: Action = Action.REDACT
    ignore_case: bool = False
    _matcher: RuleMatcher = PrivateAttr()

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, pattern: str) -> str:
        try:
            matcher = compile_rule(pattern)
        except RuleError as exc:
            raise invalid(str(exc)) from None
        if next(matcher.spans(""), None) is not None:
            raise invalid("the pattern matches the empty string; make it match at least one character")
        return pattern

    def model_post_init(self, context: Any, /) -> None:
        """Compile the pattern once per policy load (RE2: linear time; see policy.rules)."""
        self._matcher = compile_rule(self.pattern, ignore_case=self.ignore_case)

    @property
    def matcher(self) -> RuleMatcher:
        """The compiled pattern and the engine that runs it."""
        # Straight from pydantic's private store: ``self._matcher`` goes through BaseModel.__getattr__
        # (2 µs, 25x this), and every rule's matcher is read for every screened text.
        private: dict[str, Any] = self.__pydantic_private__ or {}
        return cast(RuleMatcher, private["_matcher"])

    @property
    def regex(self) -> Any:
        """The compiled pattern (an RE2 or ``re`` pattern object)."""
        return self._matcher.compiled


class BlockSettings(_Frozen):
    """How a block is answered: an OpenAI error (400) or a refusal completion (200)."""

    style: Literal["error", "refusal"] = "error"
    message: str = "This request was blocked by the content policy."


class RedactionSettings(_Frozen):
    """What replaces a redacted span."""

    placeholder: str = "[REDACTED]"


class AuditSettings(_Frozen):
    """How much of the screened text the audit log keeps, and what happens when records cannot be written."""

    content: Literal["none", "hash", "redacted", "full"] = "hash"
    # fail_closed: refuse this tenant's requests (503) while its records cannot be written (issue 14).
    on_failure: Literal["continue", "fail_closed"] = "continue"


class LanguageDirection(_Frozen):
    """A per-language override for one direction."""

    action: Action | None = None
    threshold: Threshold | None = None


class LanguageOverride(_Frozen):
    """Per-language overrides: a threshold for both directions and/or per-direction settings."""

    threshold: Threshold | None = None
    inbound: LanguageDirection | None = None
    outbound: LanguageDirection | None = None

    def threshold_for(self, direction: Direction) -> float | None:
        """The overriding threshold for ``direction``, if any (per-direction beats language-wide)."""
        side = self.inbound if direction is Direction.INBOUND else self.outbound
        return side.threshold if side and side.threshold is not None else self.threshold

    def action_for(self, direction: Direction) -> Action | None:
        """The overriding action for ``direction``, if any."""
        side = self.inbound if direction is Direction.INBOUND else self.outbound
        return side.action if side else None


class Policy(_Frozen):
    """One tenant's policy: who may call, where traffic goes, and how it is screened."""

    tenant: TenantName
    keys: tuple[KeyRef, ...]
    upstream: Upstream
    inbound: InboundPolicy = InboundPolicy()
    outbound: OutboundPolicy = OutboundPolicy()
    rules: tuple[Rule, ...] = ()
    on_error: Literal["block", "allow"] = "block"
    # Tokens one request (or answer) may send to the classifier; None: the server's --max-screen-tokens.
    # Over it the request is refused with 413 whatever on_error says: on_error is for classifier faults,
    # never for the cost of a request's own size (issue 14).
    max_screen_tokens: ScreenTokens | None = None
    block: BlockSettings = BlockSettings()
    redaction: RedactionSettings = RedactionSettings()
    audit: AuditSettings = AuditSettings()
    languages: dict[LanguageCode, LanguageOverride] = {}

    @field_validator("keys")
    @classmethod
    def _keys_present_and_unique(cls, keys: tuple[str, ...]) -> tuple[str, ...]:
        if not keys:
            raise invalid("no proxy key; list at least one env:VAR_NAME or sha256:<digest>")
        if len(set(keys)) != len(keys):
            raise invalid("the same key is listed twice; list each key once")
        return keys

    @field_validator("rules")
    @classmethod
    def _rule_names_unique(cls, rules: tuple[Rule, ...]) -> tuple[Rule, ...]:
        first: dict[str, int] = {}
        for i, rule in enumerate(rules):
            if rule.name in first:
                raise invalid(
                    f"duplicate rule name {rule.name!r} at rules[{i}] (first at rules[{first[rule.name]}]); "
                    "give each rule a unique name"
                )
            first[rule.name] = i
        return rules

    def side(self, direction: Direction) -> DirectionPolicy:
        """The direction policy for ``direction``."""
        return self.inbound if direction is Direction.INBOUND else self.outbound


@dataclass(frozen=True)
class RuleMatch:
    """One match of a rule in a text."""

    rule: str
    action: Action
    span: Span


def match_rules(policy: Policy, direction: Direction, text: str) -> tuple[RuleMatch, ...]:
    """Every non-empty match of every rule that applies to ``direction``, in rule order."""
    return tuple(
        RuleMatch(rule.name, rule.action, Span(start, end, rule.name))
        for rule in policy.rules
        if direction in rule.directions
        for start, end in rule.matcher.spans(text)
        if end > start
    )


def evaluate(
    policy: Policy,
    direction: Direction,
    text: str,
    score: float | None,
    *,
    unsafe_spans: Sequence[Span] = (),
    language: str | None = None,
) -> Verdict:
    """The policy's verdict for ``text`` given CREST's P(unsafe) (``None``: unavailable, rules only).

    With ``score`` None the verdict's score is ``NO_SCORE``. When CREST asks to redact and no
    ``unsafe_spans`` are given, the whole text is the span.
    """
    language = primary_language(language)
    threshold = threshold_for(policy, direction, language)
    unsafe = score is not None and score >= threshold
    crest = action_for(policy, direction, language) if unsafe else Action.ALLOW
    matches = match_rules(policy, direction, text)
    action = Action.strictest(crest, *(m.action for m in matches))
    spans = _redaction_spans(text, crest, unsafe_spans, matches) if action is Action.REDACT else ()
    rules = tuple(sorted({m.rule for m in matches}))
    return Verdict(action, NO_SCORE if score is None else score, threshold, rules, spans, language)


def _redaction_spans(
    text: str, crest: Action, unsafe_spans: Sequence[Span], matches: Sequence[RuleMatch]
) -> tuple[Span, ...]:
    """The merged spans of every part (CREST or rule) whose own action is redact."""
    spans = [m.span for m in matches if m.action is Action.REDACT]
    if crest is Action.REDACT:
        # The guard passes the sentences CREST flags alone; none means the harm is in the whole text.
        spans += list(unsafe_spans) or [Span(0, len(text), "crest")]
    return merge_spans(spans, len(text))


def redact(text: str, spans: Sequence[Span], placeholder: str) -> str:
    """``text`` with each merged span replaced by ``placeholder``; every other character unchanged.

    Whitespace at a span's edges is kept (issue 13: a redaction must not swallow the space or the newline
    after a sentence, nor run list items together); a span of only whitespace replaces nothing.
    """
    pieces: list[str] = []
    cursor = 0
    for span in merge_spans(spans, len(text)):
        start, end = _trimmed(text, span.start, span.end)
        if start < end:
            pieces += [text[cursor:start], placeholder]
            cursor = end
    pieces.append(text[cursor:])
    return "".join(pieces)


def _trimmed(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def merge_spans(spans: Sequence[Span], length: int) -> tuple[Span, ...]:
    """Spans clipped to ``[0, length)``, empty ones dropped, overlapping or adjacent ones merged, sorted."""
    clipped = sorted(
        (max(0, s.start), min(length, s.end), s.source) for s in spans if min(length, s.end) > max(0, s.start)
    )
    merged: list[tuple[int, int, set[str]]] = []
    for start, end, source in clipped:
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]), merged[-1][2] | {source})
        else:
            merged.append((start, end, {source}))
    return tuple(Span(start, end, "+".join(sorted(sources))) for start, end, sources in merged)


def primary_language(language: str | None) -> str | None:
    """The lowercase primary subtag of a language tag (``"pt-BR"`` -> ``"pt"``)."""
    if not language:
        return None
    return language.replace("_", "-").split("-", 1)[0].lower() or None


def threshold_for(policy: Policy, direction: Direction, language: str | None) -> float:
    """The threshold in force for ``direction`` and ``language`` (per-language override first)."""
    override = policy.languages.get(primary_language(language) or "")
    value = override.threshold_for(direction) if override else None
    return policy.side(direction).threshold if value is None else value


def action_for(policy: Policy, direction: Direction, language: str | None) -> Action:
    """The action taken on unsafe texts for ``direction`` and ``language`` (per-language override first)."""
    override = policy.languages.get(primary_language(language) or "")
    value = override.action_for(direction) if override else None
    return policy.side(direction).action if value is None else value
