"""Language identification, and per-language thresholds and actions applied by the guard and the proxy."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from crest_proxy.screening.guard import Guard, RequestContext, audit_record
from crest_proxy.screening.language import MAX_CHARS, LanguageIdentifier, load_language_identifier
from crest_proxy.types import Action, Direction
from tests.support.classifiers import FakeClassifier
from tests.support.harness import Harness, running_proxy
from tests.support.policies import make_policy

# Two everyday prompts per language (ours), the must-haves included.
SAMPLES = {
    "sw": (
        "Unaweza kunisaidia kuandika barua ya kuomba kazi katika benki?",
        "Tafadhali nieleze jinsi mvua inavyonyesha.",
    ),
    "th": ("คุณช่วยเขียนอีเมลขอลาป่วยถึงหัวหน้าให้หน่อยได้ไหม", "ช่วยอธิบายง่ายๆ ว่าฝนตกเกิดขึ้นได้อย่างไร"),
    "hi": ("दिल्ली में घूमने के लिए सबसे अच्छी जगहें कौन सी हैं?", "मुझे सरल शब्दों में समझाइए कि बिजली कैसे बनती है।"),
    "bn": ("তুমি কি আমাকে একটি চাকরির আবেদনপত্র লিখতে সাহায্য করতে পারবে?", "সহজ ভাষায় বুঝিয়ে বলো বৃষ্টি কীভাবে হয়।"),
    "ar": (
        "هل يمكنك مساعدتي في كتابة رسالة شكر إلى مديري في العمل؟",
        "اشرح لي كيف يعمل الذكاء الاصطناعي بكلمات بسيطة.",
    ),
    "zh": ("你能帮我写一封感谢信给我的老师吗？", "请用简单的话解释一下人工智能是如何工作的。"),
    "ja": (
        "京都で必ず訪れるべき観光地はどこですか？",
        "雨がどのようにして降るのか、簡単に説明してください。",
    ),
    "ko": ("서울에서 꼭 가봐야 할 관광지는 어디인가요?", "비가 어떻게 내리는지 쉽게 설명해 주세요."),
    "ru": (
        "Какие книги ты посоветуешь прочитать начинающему программисту?",
        "Объясни, как работает двигатель.",
    ),
    "ur": (
        "پاکستان میں گھومنے کے لیے سب سے خوبصورت جگہیں کون سی ہیں؟",
        "مجھے آسان الفاظ میں بتائیں کہ بارش کیسے ہوتی ہے۔",
    ),
    "en": (
        "Can you help me write a polite email to my landlord?",
        "Please summarize this article in three points.",
    ),
    "fr": (
        "Peux-tu m'aider à rédiger une lettre de motivation ?",
        "Explique-moi comment fonctionne la photosynthèse.",
    ),
    "de": (
        "Welche Sehenswürdigkeiten sollte man in Berlin besuchen?",
        "Schreib mir ein kurzes Gedicht über den Herbst.",
    ),
    "es": (
        "Necesito una receta fácil de lentejas para cenar esta noche.",
        "Explícame qué es el interés compuesto.",
    ),
    "tr": (
        "Bana İstanbul'da üç günlük bir gezi planı hazırlar mısın?",
        "Kredi kartı borcumu nasıl kapatabilirim?",
    ),
    "vi": (
        "Những địa điểm du lịch nổi tiếng nhất ở Hà Nội là gì?",
        "Hãy giải thích cách máy tính lưu trữ dữ liệu.",
    ),
}


@pytest.fixture(scope="module")
def identify() -> LanguageIdentifier:
    return load_language_identifier()


@pytest.mark.parametrize("language", sorted(SAMPLES))
def test_identifies_each_sample_language(identify: LanguageIdentifier, language: str) -> None:
    assert [identify(text) for text in SAMPLES[language]] == [language, language]


def test_float32_weights_answer_exactly_as_the_shipped_model(identify: LanguageIdentifier) -> None:
    from py3langid.langid import MODEL_FILE
    from py3langid.langid import LanguageIdentifier as Shipped

    shipped = Shipped.from_model_file(MODEL_FILE, norm_probs=True)
    texts = [text for pair in SAMPLES.values() for text in pair]
    texts += [" ".join(text.split()[:3]) for text in texts]  # short fragments: the least confident
    for text in texts:
        code, confidence = shipped.classify(text)
        guess = identify.guess(text)
        assert guess.confidence == pytest.approx(confidence, rel=1e-5), text
        if confidence >= 0.5:
            assert guess.code is not None and code.startswith(guess.code[:2]), text


@pytest.mark.parametrize("text", ["", "ok", "1234 5678", "```\n}\n```", "🙂🙂🙂", "   "])
def test_texts_without_a_clear_language_are_unknown(identify: LanguageIdentifier, text: str) -> None:
    assert identify(text) is None


def test_only_the_start_of_a_long_text_is_read(identify: LanguageIdentifier) -> None:
    english = SAMPLES["en"][0] + " "
    text = english * (MAX_CHARS // len(english) + 1) + SAMPLES["ja"][1] * 20_000  # ~540,000 characters
    started = time.perf_counter()
    assert identify(text) == "en"
    assert time.perf_counter() - started < 0.05  # a ~1,000-character read, not the whole text


class _Answers:
    """A stand-in model that answers fixed (code, confidence) pairs (the mapping logic under test)."""

    def __init__(self, code: str, confidence: float) -> None:
        self.answer = (code, confidence)

    def classify(self, text: str) -> tuple[str, float]:
        return self.answer


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (("yue", 0.9), "zh"),
        (("arz", 0.9), "ar"),
        (("zxx", 0.99), None),
        (("sw", 0.49), None),
        (("sw", 0.5), "sw"),
    ],
)
def test_codes_map_to_policy_keys_and_low_confidence_is_unknown(
    answer: tuple[str, float], expected: str | None
) -> None:
    assert LanguageIdentifier(_Answers(*answer))("some words") == expected


# --- the guard applies per-language overrides ---------------------------------------------------------


# P(unsafe) 0.4 for texts with "kaboom", else 0.01: the generated trigger model only says ~0 or ~1, and
# per-language thresholds need a score between two thresholds.
KEYWORD = FakeClassifier(unsafe=("kaboom",), score=0.4)

POLICY = make_policy(
    tenant="polyglot",
    inbound={"action": "block", "threshold": 0.5},
    outbound={"action": "block", "threshold": 0.5},
    languages={"sw": {"threshold": 0.35}, "th": {"inbound": {"action": "log", "threshold": 0.3}}},
)


async def test_guard_uses_each_texts_language_for_threshold_and_action(identify: LanguageIdentifier) -> None:
    guard = Guard(KEYWORD, language_of=identify)
    swahili = "kaboom " + SAMPLES["sw"][0]
    english = "kaboom " + SAMPLES["en"][0]
    thai = "kaboom " + SAMPLES["th"][0]
    sw = await guard.screen(POLICY, Direction.INBOUND, [swahili])
    en = await guard.screen(POLICY, Direction.INBOUND, [english])
    th_in = await guard.screen(POLICY, Direction.INBOUND, [thai])
    th_out = await guard.screen(POLICY, Direction.OUTBOUND, [thai])
    assert (sw.action, sw.threshold) == (Action.BLOCK, 0.35)  # 0.4 >= Swahili's 0.35
    assert (en.action, en.threshold) == (Action.ALLOW, 0.5)  # 0.4 < the default 0.5
    assert (th_in.action, th_in.threshold) == (Action.LOG, 0.3)  # Thai inbound: logged, not blocked
    assert (th_out.action, th_out.threshold) == (Action.ALLOW, 0.5)  # the Thai override is inbound only
    context = RequestContext("r1", "polyglot", "chat.completions", None)
    record = audit_record(sw, context, upstream_status=None)
    assert (record.language, record.threshold, record.action) == ("sw", 0.35, "block")


async def test_many_long_texts_are_identified_off_the_event_loop(identify: LanguageIdentifier) -> None:
    threads: set[str] = set()

    def watched(text: str) -> str | None:
        threads.add(threading.current_thread().name)
        return identify(text)

    # ~100k characters: within a raised screening budget, so every text is scored and identified.
    guard = Guard(KEYWORD, language_of=watched, max_screen_tokens=10**6)
    one = await guard.screen(POLICY, Direction.INBOUND, [SAMPLES["sw"][0]])
    assert threads == {threading.current_thread().name}  # one short text: inline, cheaper than a thread hop
    threads.clear()
    many = await guard.screen(POLICY, Direction.INBOUND, [(SAMPLES["sw"][0] + " ") * 40] * 40)
    assert threading.current_thread().name not in threads  # 40 texts of ~2,600 characters: in a thread
    assert {d.verdict.language for d in (*one.decisions, *many.decisions)} == {"sw"}


# --- end to end: the audit record and the decisions metric carry the language ---------------------------


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory, identify: LanguageIdentifier) -> Iterator[Harness]:
    with running_proxy(tmp_path_factory.mktemp("lang"), KEYWORD, language_of=identify) as h:
        yield h


def test_audit_records_and_metrics_carry_the_language(proxy: Harness) -> None:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": SAMPLES["ko"][0]}]}
    response = proxy.post("/v1/chat/completions", body)
    assert response.status_code == 200
    records = proxy.records_for(response.headers["x-request-id"])
    # The fake upstream answers in English.
    assert [(r["direction"], r["language"]) for r in records] == [("inbound", "ko"), ("outbound", "en")]
    metrics = httpx.get(f"{proxy.proxy_url}/metrics").text
    labels = 'action="allow",direction="inbound",language="ko",tenant="blocker"'
    assert f"crest_decisions_total{{{labels}}} 1.0" in metrics


def test_the_identifiers_model_ships_inside_the_installed_package() -> None:
    # No download: the model file ships inside the py3langid wheel.
    import py3langid.langid as langid

    assert (Path(langid.__file__).parent / langid.MODEL_FILE).is_file()
