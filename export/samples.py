"""A small built-in multilingual product sample: parity checks, the demo and the quality gate
use it; and the per-language product vocabulary the benchmark workload is built from."""

from __future__ import annotations

import random
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
    for product in long_products():
        queries.append(SAMPLE_QUERIES[0].query)
        products.append(product)
    return queries, products


def long_products() -> list[str]:
    return [" ".join([LONG_PRODUCT] * repeat) for repeat in (2, 4, 8)]


# Product vocabulary per language (the sample's eight), for synthetic product titles.
LANGUAGES = ("en", "de", "fr", "es", "ru", "zh", "ja", "ar")
NO_SPACES = ("zh", "ja")

WORDS = {
    "en": "wireless headphones running shoes men women coffee machine grinder stainless steel bottle phone case "
    "transparent charger cable keyboard mechanical watch waterproof smart kettle glass rice cooker backpack laptop "
    "black white size pack set cotton leather portable bluetooth noise cancelling fast charging battery hours".split(),
    "de": "kabellose Kopfhörer Laufschuhe Herren Damen Kaffeemaschine Mahlwerk Edelstahl Trinkflasche Handyhülle "
    "durchsichtig Ladegerät Kabel Tastatur mechanisch Uhr wasserdicht Wasserkocher Glas Reiskocher Rucksack "
    "schwarz weiß Größe Packung Baumwolle Leder tragbar Geräuschunterdrückung Akku Stunden".split(),
    "fr": "casque sans fil chaussures de course homme femme machine à café broyeur acier inoxydable gourde coque "
    "transparente chargeur câble clavier mécanique montre étanche bouilloire verre cuiseur riz sac à dos noir "
    "blanc taille lot coton cuir portable réduction de bruit batterie heures".split(),
    "es": "auriculares inalámbricos zapatillas running hombre mujer cafetera molinillo acero inoxidable botella "
    "funda transparente cargador cable teclado mecánico reloj resistente al agua hervidor vidrio arrocera mochila "
    "negro blanco talla paquete algodón cuero portátil cancelación de ruido batería horas".split(),
    "ru": "беспроводные наушники кроссовки мужские женские кофемашина кофемолка нержавеющая сталь бутылка чехол "
    "прозрачный зарядное устройство кабель клавиатура механическая часы водонепроницаемые чайник стекло "
    "рисоварка рюкзак черный белый размер набор хлопок кожа шумоподавление аккумулятор часов".split(),
    "zh": "无线 耳机 跑步鞋 男款 女款 咖啡机 磨豆 不锈钢 水杯 手机壳 透明 充电器 数据线 键盘 机械 手表 防水 智能 "
    "电水壶 玻璃 电饭煲 背包 笔记本 黑色 白色 尺码 套装 纯棉 真皮 便携 蓝牙 降噪 快充 电池 小时".split(),
    "ja": "ワイヤレス イヤホン ランニングシューズ メンズ レディース コーヒーメーカー ミル ステンレス ボトル "
    "スマホケース 透明 充電器 ケーブル キーボード メカニカル 腕時計 防水 電気ケトル ガラス 炊飯器 リュック "
    "ブラック ホワイト サイズ セット 綿 本革 ノイズキャンセリング バッテリー 時間".split(),
    "ar": "سماعات لاسلكية أحذية جري رجالي نسائي ماكينة قهوة مطحنة فولاذ مقاوم للصدأ زجاجة جراب شفاف شاحن كابل "
    "لوحة مفاتيح ميكانيكية ساعة مقاومة للماء غلاية زجاج طباخ أرز حقيبة ظهر أسود أبيض مقاس مجموعة قطن جلد".split(),
}
BRANDS = "Sony Bose Nike Adidas Philips Bosch Logitech Samsung Apple Xiaomi Zojirushi Tiger DeLonghi Anker".split()


def product_words(rng: random.Random) -> int:
    """Words per product: median about 10, long tail (about 8-60 tokens, rarely ~256)."""
    return max(2, min(120, int(rng.lognormvariate(2.35, 0.6))))


def join_words(language: str, words: list[str]) -> str:
    return ("" if language in NO_SPACES else " ").join(words)


def synthetic_product(language: str, rng: random.Random) -> str:
    """A product title of the language's vocabulary: a brand, some words, maybe a size."""
    words = WORDS[language]
    text = [rng.choice(BRANDS)] + [rng.choice(words) for _ in range(product_words(rng))]
    if rng.random() < 0.5:
        text.append(f"{rng.randint(1, 999)}{rng.choice(['ml', 'W', 'cm', 'GB', ''])}")
    return join_words(language, text)


def gate_lists(candidates: int = 100, seed: int = 0) -> list[tuple[str, tuple[str, ...]]]:
    """The quality gate's built-in lists: each sample query with `candidates` products, as a
    first-stage retriever would hand them over: its own five, the other queries' products,
    then synthetic titles in its language (the vocabulary overlaps the query: hard cases)."""
    rng = random.Random(seed)
    everything = [p for s in SAMPLE_QUERIES for p in s.products]
    lists = []
    for sample in SAMPLE_QUERIES:
        products = list(dict.fromkeys([*sample.products, *everything]))[:candidates]
        while len(products) < candidates:
            products.append(synthetic_product(sample.language, rng))
        lists.append((sample.query, tuple(products)))
    return lists


def calibration_lists(candidates: int = 50, seed: int = 1) -> list[tuple[str, tuple[str, ...]]]:
    """Built-in int8 calibration lists: each sample query with its own products, synthetic
    titles in its language (another seed than the gate's lists, which judge the result) and,
    for the first, the long products that cross a local attention window."""
    rng = random.Random(seed)
    lists = []
    for sample in SAMPLE_QUERIES:
        products = list(sample.products)
        while len(products) < candidates:
            products.append(synthetic_product(sample.language, rng))
        lists.append((sample.query, tuple(products)))
    lists[0] = (lists[0][0], lists[0][1] + tuple(long_products()))
    return lists
