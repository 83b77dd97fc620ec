"""A fixed-seed multilingual rerank workload: queries of 2-8 words, 100 product texts each.

Product lengths follow a long-tailed distribution (most 8-60 tokens, a few up to ~256),
built from per-language product vocabulary so that every script (Latin, Cyrillic, CJK,
Arabic) is tokenized as real text would be.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

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


@dataclass(frozen=True)
class RerankRequest:
    language: str
    query: str
    products: tuple[str, ...]


def product_words(rng: random.Random) -> int:
    """Words per product: median about 10, long tail (about 8-60 tokens, rarely ~256)."""
    return max(2, min(120, int(rng.lognormvariate(2.35, 0.6))))


def _join(language: str, words: list[str]) -> str:
    return ("" if language in NO_SPACES else " ").join(words)


def make_workload(queries: int = 40, candidates: int = 100, seed: int = 0) -> list[RerankRequest]:
    rng = random.Random(seed)
    requests = []
    for number in range(queries):
        language = LANGUAGES[number % len(LANGUAGES)]
        words = WORDS[language]
        query = _join(language, rng.sample(words, rng.randint(2, 8)))
        products = []
        for _ in range(candidates):
            text = [rng.choice(BRANDS)] + [rng.choice(words) for _ in range(product_words(rng))]
            if rng.random() < 0.5:
                text.append(f"{rng.randint(1, 999)}{rng.choice(['ml', 'W', 'cm', 'GB', ''])}")
            products.append(_join(language, text))
        requests.append(RerankRequest(language, query, tuple(products)))
    return requests
