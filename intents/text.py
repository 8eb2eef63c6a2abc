"""Text normalisation, tokenisation and language guessing shared by the model and the extractors.

Everything here is pure Python and cheap: it runs on every message, at training
and at inference time, and must give the same answer for the same input on any
machine. It must never import scikit-learn, numpy or anything outside the
standard library, so that the hot path and the CLI's start-up stay fast.
"""

from __future__ import annotations

import re
import unicodedata

_REPEATS = re.compile(r"(.)\1{2,}")
_DIGITS = re.compile(r"\d+")
_URL = re.compile(r"https?://\S+|www\.\S+", re.I)
_EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+\.[\w.]+\b")
# Words, plus any single non-space symbol that is not plain punctuation (emojis).
_TOKEN = re.compile(r"[^\W_]+|[^\w\s.,;:!?¿¡'\"()\[\]{}<>/\\|@&*+=~`^%$-]")


def strip_accents(text: str) -> str:
    """'sábado' -> 'sabado'; keeps emojis and other symbols."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def contains_word(text: str, word: str) -> bool:
    """Whether `word` occurs in `text` as a whole word: `re.search(r"(?<!\w)word(?!\w)", text)` with `word`
    escaped, without compiling a pattern per word (an order id or item name differs per customer, so
    each would miss `re`'s cache and be compiled again). An empty `word` occurs nowhere."""
    if not word:
        return False
    start = text.find(word)
    while start != -1:
        end = start + len(word)
        if (start == 0 or not _word_char(text[start - 1])) and (end == len(text) or not _word_char(text[end])):
            return True
        start = text.find(word, start + 1)
    return False


def _word_char(char: str) -> bool:
    """`re`'s `\w` for one character of a str pattern: a letter, a digit or a number of any script, or `_`."""
    return char.isalnum() or char == "_"


def normalize(text: str) -> str:
    """The canonical form the model sees.

    Lower case, no accents, URLs/emails/digit runs replaced by placeholders so
    that "order 732201" and "order 99" look alike, letters repeated three or
    more times squeezed to two ("pleeeease" -> "pleease").
    """
    text = unicodedata.normalize("NFKC", text)
    text = _URL.sub(" url ", text)
    text = _EMAIL.sub(" email ", text)
    text = strip_accents(text.lower())
    text = _DIGITS.sub("0", text)
    text = _REPEATS.sub(r"\1\1", text)
    return " ".join(text.split())


def tokens(normalized: str) -> list[str]:
    """Word tokens (and emojis) of an already normalised text."""
    return _TOKEN.findall(normalized)


# Function words that give a language away in short chat messages. Only
# unambiguous words are listed: "no", "me", "de" are shared and left out.
_HINGLISH = frozenset(
    [
        "mila",
        "mili",
        "hai",
        "hain",
        "hoga",
        "hogi",
        "hua",
        "hui",
        "kya",
        "kyu",
        "kyun",
        "kab",
        "kaha",
        "kahan",
        "kaise",
        "kaisa",
        "kitna",
        "kitne",
        "mera",
        "meri",
        "mere",
        "mujhe",
        "mujhko",
        "humko",
        "hume",
        "hamara",
        "apna",
        "apni",
        "aap",
        "aapka",
        "aapki",
        "tum",
        "tumhara",
        "nahi",
        "nahin",
        "nai",
        "nhi",
        "na",
        "haan",
        "haa",
        "han",
        "hanji",
        "ji",
        "bhai",
        "bhaiya",
        "yaar",
        "karo",
        "karna",
        "kardo",
        "kar",
        "dena",
        "dedo",
        "de",
        "diya",
        "diye",
        "gaya",
        "gayi",
        "gaye",
        "aaya",
        "aayi",
        "aaye",
        "abhi",
        "kal",
        "parso",
        "aaj",
        "raha",
        "rahi",
        "rahe",
        "tha",
        "thi",
        "wala",
        "wali",
        "wale",
        "chahiye",
        "chaiye",
        "ko",
        "ka",
        "ki",
        "ke",
        "pe",
        "mein",
        "bhi",
        "sirf",
        "bas",
        "jaldi",
        "ghar",
        "paisa",
        "paise",
        "wapas",
        "wapis",
        "lena",
        "lelo",
        "bhejo",
        "bhej",
        "samaan",
        "saman",
        "dukan",
        "accha",
        "acha",
        "theek",
        "thik",
        "thoda",
        "bahut",
        "bohot",
        "sab",
        "koi",
        "kuch",
        "kisi",
        "baat",
        "baad",
        "pehle",
        "pahle",
        "subah",
        "shaam",
        "sham",
        "dopahar",
        "raat",
        "lekin",
        "magar",
        "aur",
        "toh",
        "batao",
        "bataye",
        "bolo",
        "suno",
        "dhanyavad",
        "dhanyawad",
        "shukriya",
        "namaste",
        "namaskar",
        "pata",
        "rukna",
        "ruko",
        "band",
        "bilkul",
        "zaroor",
        "jarur",
        "haanji",
        "pakka",
        "karta",
        "karti",
        "karte",
        "hu",
        "hoon",
        "hun",
        "dunga",
        "dungi",
        "lunga",
    ]
)
_SPANISH = frozenset(
    [
        "el",
        "la",
        "los",
        "las",
        "un",
        "una",
        "unos",
        "unas",
        "mi",
        "mis",
        "su",
        "que",
        "qué",
        "por",
        "para",
        "con",
        "sin",
        "pero",
        "donde",
        "dónde",
        "cuando",
        "cuándo",
        "como",
        "cómo",
        "esta",
        "está",
        "estan",
        "están",
        "es",
        "pedido",
        "pedidos",
        "paquete",
        "envio",
        "envío",
        "entrega",
        "entregar",
        "quiero",
        "quisiera",
        "puedo",
        "puede",
        "pueden",
        "gracias",
        "hola",
        "buenos",
        "buenas",
        "dias",
        "días",
        "tardes",
        "noches",
        "favor",
        "mañana",
        "manana",
        "hoy",
        "ayer",
        "sí",
        "si",
        "claro",
        "vale",
        "dirección",
        "direccion",
        "cambiar",
        "cancelar",
        "devolver",
        "devolución",
        "reembolso",
        "dinero",
        "persona",
        "hablar",
        "agente",
        "ya",
        "todavía",
        "todavia",
        "aún",
        "aun",
        "llega",
        "llegó",
        "llego",
        "mandar",
        "mandan",
        "enviar",
        "nada",
        "muy",
        "bien",
        "mal",
        "también",
        "tambien",
        "sabado",
        "sábado",
        "domingo",
        "lunes",
        "martes",
        "miercoles",
        "miércoles",
        "jueves",
        "viernes",
        "semana",
        "casa",
        "piso",
        "calle",
        "numero",
        "número",
        "cerca",
        "frente",
        "tengo",
        "tiene",
        "necesito",
        "ayuda",
        "porfa",
        "porfavor",
        "oye",
        "vez",
        "del",
        "al",
        "le",
        "les",
        "nos",
        "pagar",
        "pago",
        "efectivo",
        "contra",
        "reembolso",
        "confirmo",
        "confirmar",
        "mejor",
        "dejar",
    ]
)


def marker_words(text: str, language: str) -> int:
    """How many words of `text` are marker words of `language` ('es' or 'hi-Latn'; 0 for others)."""
    markers = {"es": _SPANISH, "hi-Latn": _HINGLISH}.get(language)
    if markers is None:
        return 0
    return sum(1 for w in re.findall(r"[^\W\d_]+", text.lower()) if w in markers or strip_accents(w) in markers)


def guess_language(text: str) -> str:
    """'en', 'es' or 'hi-Latn' (Hindi written in Latin letters, usually mixed with English).

    A vote of marker words; ties and unknowns are English, the shop default.
    """
    lowered = text.lower()
    spanish_bonus = 1.5 if any(ch in lowered for ch in "ñ¿¡") or re.search(r"[áéíóú]", lowered) else 0.0
    if re.search(r"[\u0900-\u097f]", text):
        return "hi-Latn"  # Devanagari: close enough for the reply templates
    words = re.findall(r"[^\W\d_]+", lowered)
    hi = sum(1 for w in words if w in _HINGLISH)
    es = sum(1 for w in words if w in _SPANISH or strip_accents(w) in _SPANISH) + spanish_bonus
    # Short English words that collide with the lists ("to", "the", "a") are not in
    # them, but "me"/"no" style collisions are kept out on purpose; require a margin.
    if hi == 0 and es == 0:
        return "en"
    if es > hi and es >= 1:
        return "es"
    if hi > es and hi >= 1 and (hi >= 2 or len(words) <= 3):
        return "hi-Latn"
    return "en"
