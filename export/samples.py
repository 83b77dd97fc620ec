"""A small built-in multilingual product sample: parity checks and the demo use it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SampleQuery:
    language: str
    query: str
    products: tuple[str, ...]


SAMPLE_QUERIES = (
    SampleQuery(
        "en",
        "wireless noise cancelling headphones",
        (
            "Sony WH-1000XM5 Wireless Noise Cancelling Over-Ear Headphones, Black",
            "USB-C charging cable 2 m, braided nylon",
            "Bose QuietComfort Ultra Bluetooth headphones with active noise cancellation",
            "Wired earbuds with microphone, 3.5 mm jack",
            "Stainless steel water bottle 750 ml",
        ),
    ),
    SampleQuery(
        "de",
        "Laufschuhe Herren Größe 44",
        (
            "Nike Air Zoom Pegasus 40 Herren Laufschuh, Gr. 44, schwarz/weiß",
            "Damen Winterstiefel gefüttert, Größe 38",
            "Adidas Ultraboost Light Running Schuhe für Männer, EU 44",
            "Kaffeemaschine mit Mahlwerk, 1,5 l Wassertank",
            "Sportsocken 6er Pack, Größe 43-46",
        ),
    ),
    SampleQuery(
        "fr",
        "cafetière à grain automatique",
        (
            "Machine à café automatique avec broyeur à grains, 15 bar, écran tactile",
            "Tasse à expresso en porcelaine, lot de 6",
            "De'Longhi Magnifica S ECAM 22.110.B, machine expresso broyeur",
            "Aspirateur robot connecté avec station de vidange",
            "Café en grains 100 % arabica, 1 kg",
        ),
    ),
    SampleQuery(
        "es",
        "funda para iPhone 15 transparente",
        (
            "Funda transparente de silicona para iPhone 15, antigolpes",
            "Protector de pantalla de cristal templado para iPhone 15",
            "Cargador inalámbrico MagSafe 15 W",
            "Funda de cuero negra para Samsung Galaxy S24",
            "Zapatillas de deporte para mujer, talla 39",
        ),
    ),
    SampleQuery(
        "ru",
        "электрический чайник стеклянный",
        (
            "Электрический чайник из боросиликатного стекла с подсветкой, 1,7 л",
            "Кастрюля из нержавеющей стали с крышкой, 3 л",
            "Чайник Bosch TWK 7090 стеклянный, 2200 Вт",
            "Набор зимних шин 205/55 R16",
            "Фильтр-кувшин для воды Брита",
        ),
    ),
    SampleQuery(
        "zh",
        "机械键盘 青轴 无线",
        (
            "罗技 G915 无线机械键盘 青轴 RGB背光",
            "有线光学鼠标 办公家用",
            "樱桃 MX Board 3.0S 机械键盘 有线 红轴",
            "笔记本电脑支架 铝合金 可调节",
            "双模无线蓝牙机械键盘 青轴 87键",
        ),
    ),
    SampleQuery(
        "ja",
        "炊飯器 5合 IH",
        (
            "象印 IH炊飯器 5.5合 極め炊き NW-VD10",
            "電気ケトル 1.0L ステンレス",
            "パナソニック 圧力IH炊飯器 5合炊き おどり炊き",
            "米びつ 10kg 計量機能付き",
            "タイガー マイコン炊飯器 3合",
        ),
    ),
    SampleQuery(
        "ar",
        "ساعة ذكية مقاومة للماء",
        (
            "ساعة ذكية مقاومة للماء مع مراقبة معدل ضربات القلب ونظام تحديد المواقع",
            "حقيبة ظهر للحاسوب المحمول 15.6 بوصة",
            "ساعة آبل الإصدار 9، مقاومة للماء حتى 50 مترًا",
            "سماعات أذن لاسلكية بخاصية إلغاء الضوضاء",
            "ساعة يد كلاسيكية بسوار جلدي",
        ),
    ),
)


def sample_pairs() -> tuple[list[str], list[str]]:
    """All (query, product) pairs of the sample as two parallel lists."""
    queries, products = [], []
    for sample in SAMPLE_QUERIES:
        queries.extend([sample.query] * len(sample.products))
        products.extend(sample.products)
    return queries, products


LONG_PRODUCT = (
    "Wireless Bluetooth over-ear headphones with hybrid active noise cancelling, 40 mm drivers, "
    "transparency mode, multipoint pairing, USB-C fast charging and 60 hours of battery life. "
    "Kabellose Bluetooth-Kopfhörer mit aktiver Geräuschunterdrückung und 60 Stunden Akkulaufzeit. "
    "Casque sans fil à réduction de bruit active, autonomie de 60 heures. "
    "无线蓝牙头戴式耳机，主动降噪，续航60小时。ワイヤレス ノイズキャンセリング ヘッドホン。"
)


def parity_pairs() -> tuple[list[str], list[str]]:
    """The sample pairs plus long products that reach past a local attention window."""
    queries, products = sample_pairs()
    for repeat in (2, 4, 8):
        queries.append(SAMPLE_QUERIES[0].query)
        products.append(" ".join([LONG_PRODUCT] * repeat))
    return queries, products
