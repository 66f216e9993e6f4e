"""Write tests/text/golden/cn_clip_tokenize.json: cn_clip's token ids for a fixed set of hard strings.

Run with the reference environment (torch + cn_clip 1.6.0), never from the tests:

    .venv-ref/bin/python tools/dev/make_tokenizer_golden.py

Each case holds the text, cn_clip.clip.tokenize's ids with the trailing [PAD]s cut off (the test pads
them back and checks the padding too) and cn_clip's word pieces. The JSON is ASCII-escaped so control
characters and lone surrogates survive. The random strings come from a fixed seed, so reruns give the
same file.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import cn_clip
from cn_clip.clip import _tokenizer
from cn_clip.clip import tokenize as cn_tokenize
from cn_clip.eval.imagenet_zeroshot_templates import imagenet_classnames, openai_imagenet_template

OUT = Path(__file__).resolve().parents[2] / "tests" / "text" / "golden" / "cn_clip_tokenize.json"

CHINESE_CAPTIONS = [
    "一只可爱的小猫趴在沙发上睡觉",
    "夕阳下的海滩，几个孩子在堆沙堡。",
    "北京故宫的红墙和金色屋顶",
    "一碗热气腾腾的兰州拉面，上面撒着香菜和辣椒油",
    "穿着汉服的女孩站在樱花树下",
    "雨后的城市街道，霓虹灯倒映在积水中",
    "大熊猫正在吃竹子",
    "高铁穿过金黄的油菜花田",
    "一杯拿铁咖啡，拉花是心形的",
    "篮球运动员在比赛中扣篮",
    "西湖断桥残雪",
    "桂林山水甲天下",
    "春节期间，家家户户贴春联、挂灯笼",
    "一位老人在公园里打太极拳",
    "电脑屏幕上显示着代码",
    "这是一张iPhone 15 Pro的产品照片",
    "小明说：“今天天气真好！”",
    "《红楼梦》是中国古典四大名著之一",
    "价格：￥199.00（包邮）",
    "【限时特惠】夏季新款连衣裙，买一送一！！！",
    "请问去火车站怎么走？",
    "我爱北京天安门……",
    "这件衣服是100%纯棉的",
    "2023年10月1日，国庆节快乐",
    "温度是25℃，湿度60％",
    "第①章 第②节",
    "一二三四五六七八九十百千万亿",
    "繁體中文的句子：臺灣的夜市小吃很有名",
    "粵語：你食咗飯未呀？",
    "「引號」『雙引號』〈書名號〉",
    "数学公式：a²+b²=c²",
    "成语：画蛇添足、守株待兔、亡羊补牢",
    "古诗：床前明月光，疑是地上霜。举头望明月，低头思故乡。",
    "一只金毛犬在草地上奔跑，嘴里叼着飞盘",
    "无人机航拍的长城全景",
    "超市货架上摆满了各种饮料",
    "医生正在给病人做检查",
    "一辆红色的特斯拉Model 3停在路边",
    "小朋友们在教室里上课",
    "厨房里的不锈钢锅具",
]

ENGLISH_AND_MIXED = [
    "A photo of a cat.",
    "a dog running on the beach at sunset",
    "The QUICK brown fox JUMPS over the lazy dog!",
    "unaffable unbelievable antidisestablishmentarianism",
    "Hello, world! How's it going? I'm fine -- thanks...",
    "e-mail: someone@example.com, tel: +86-10-1234-5678",
    "https://www.example.com/path/to/page?query=1&lang=zh-CN#section",
    "http://t.cn/A6xyz12 点击链接查看详情",
    "C++ / C# / F# / Objective-C",
    "我今天用ChatGPT写了一篇essay",
    "iPhone15ProMax手机壳",
    "GPU型号：NVIDIA RTX 4090，显存24GB",
    "3.1415926535 2.71828 1,000,000 1e-10",
    "#hashtag @user $100 50% ^_^ ~tilde~ `code` |pipe| \\backslash\\",
    "<html><body><p>Hello</p></body></html>",
    "def f(x): return x ** 2  # square",
    "café naïve résumé coöperate façade jalapeño",
    "ÀÉÎÕÜ àéîõü Ññ Çç Åå Øø Ææ ß",
    "Ελληνικά: ΟΔΥΣΣΕΥΣ ὀδυσσεύς σοφία",
    "Русский текст: Привет, мир!",
    "العربية: مرحبا بالعالم",
    "हिन्दी: नमस्ते दुनिया",
    "ภาษาไทย สวัสดีครับ",
    "日本語：こんにちは、世界！カタカナとひらがな",
    "東京タワーの夜景がきれいです",
    "한국어: 안녕하세요 세계",
    "서울의 밤거리 풍경",
    "Tiếng Việt: Xin chào thế giới",
    "Türkçe: İstanbul ışık Iğdır",
    "Ｆｕｌｌｗｉｄｔｈ　ＡＢＣ　ａｂｃ　１２３",
    "全角标点：，。！？；：“”‘’（）【】《》、…—",
    "ﬁﬂ ligatures ﬀ ﬃ",
    "½ ¼ ¾ ① ② ⑩ Ⅻ ™ © ® ℃ ℉ № §",
    "x² y³ H₂O CO₂ 10⁻⁹",
    "→ ← ↑ ↓ ⇒ ∀ ∃ ∈ ∑ ∫ √ ∞ ≠ ≤ ≥",
    "😀😃😄 emoji 🎉🎊 猫🐱狗🐶",
    "👨‍👩‍👧‍👦 family emoji with ZWJ",
    "🇨🇳🇺🇸 flags",
    "❤️ heart with variation selector ✔️",
    "Ｈｅｌｌｏ，ｗｏｒｌｄ！",
    "mixed中English文text混合",
    "数字123和字母abc混合ABC456",
    "COVID-19疫情期间",
    "5G网络、AI人工智能、IoT物联网",
    "v1.2.3-beta+build.456",
    "2024-01-01T12:00:00Z",
    "snake_case camelCase PascalCase kebab-case",
    "it's don't won't can't y'all",
    "\"quoted\" 'single' «guillemets» „German“",
    "Ō ō Ū ū macrons; ǎ ě ǐ ǒ ǔ pinyin tones: nǐ hǎo zhōng guó",
]

WHITESPACE_AND_CONTROL = [
    "",
    " ",
    "   ",
    "\t",
    "\n",
    "\r\n",
    "\u3000",
    "\u3000\u3000中文\u3000全角空格\u3000",
    " \t\n leading and trailing \n\t ",
    "tab\tseparated\twords",
    "line1\nline2\r\nline3\rline4",
    "vertical\x0btab and form\x0cfeed",
    "file\x1cgroup\x1drecord\x1eunit\x1fseparators",
    "next\x85line",
    "bell\x07 and escape\x1b[0m",
    "null\x00char",
    "del\x7fchar",
    "c1\x80\x9fcontrols",
    "zero\u200bwidth\u200cnon\u200djoiner",
    "中\u200b文\u200b字",
    "\ufeffBOM at start",
    "soft\u00adhyphen",
    "left\u200eto\u200fright marks",
    "bidi\u202aembed\u202c",
    "word\u2060joiner",
    "replacement\ufffdchar",
    "line\u2028separator and paragraph\u2029separator",
    "nbsp\xa0space",
    "thin\u2009space and hair\u200aspace and en\u2002space",
    "narrow\u202fnbsp medium\u205fmath ogham\u1680space",
    "mongolian\u180evowel",
    "\u200b",
    "\x00\x01\x02",
    "\u3000 \t\n\u2028",
    "interlinear\ufff9annotation\ufffb",
    "tag\U000e0041chars",
]

LONG_TEXTS = [
    "一" * 49,
    "一" * 50,
    "一" * 51,
    "一" * 200,
    "这是一段非常长的中文描述，" * 10,
    " ".join(["word"] * 60),
    "a" * 199,
    "a" * 200,
    "a" * 201,
    "b" * 500,
    "x" * 200 + "中",
    "中" + "y" * 201,
    "supercalifragilisticexpialidocious" * 7,
    "hello world " * 30,
    ",".join(str(i) for i in range(100)),
    "。".join(["句子"] * 40),
    ("word " * 49).strip(),
    ("word " * 50).strip(),
    ("word " * 51).strip(),
    "ab" * 150,
    "é" * 201,
    "e\u0301" * 150,
    "🙂" * 60,
    "https://example.com/" + "a/" * 120,
]

# code point pools for the seeded random strings
POOLS = [
    range(0x20, 0x7F),
    range(0x80),
    range(0xA0, 0x250),
    range(0x300, 0x370),
    range(0x370, 0x530),
    range(0x2000, 0x2070),
    range(0x3000, 0x3100),
    range(0x4E00, 0x9FA6),
    range(0xAC00, 0xD7A4),
    range(0xF900, 0xFB00),
    range(0xFE00, 0x10000),
    range(0x1F300, 0x1FA00),
    range(0x20000, 0x2A6E0),
    range(0xE0000, 0xE0080),
]


def random_strings(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        n = rng.randint(1, 40)
        chars = []
        for _ in range(n):
            if rng.random() < 0.15:
                chars.append(rng.choice(" \t\n\u3000\u200b"))
            else:
                chars.append(chr(rng.choice(rng.choice(POOLS))))
        out.append("".join(chars))
    return out


def prompts(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [rng.choice(openai_imagenet_template)(rng.choice(imagenet_classnames)) for _ in range(count)]


def case(text: str, context_length: int) -> dict:
    ids = cn_tokenize([text], context_length=context_length)[0].tolist()
    while ids and ids[-1] == 0:
        ids.pop()
    return {"text": text, "context_length": context_length, "ids": ids, "pieces": _tokenizer.tokenize(text)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()

    texts = CHINESE_CAPTIONS + ENGLISH_AND_MIXED + WHITESPACE_AND_CONTROL + LONG_TEXTS
    texts += prompts(60, seed=0) + random_strings(150, seed=1)
    cases = [case(t, 52) for t in texts]
    # other context lengths: truncation must follow the argument
    cases += [case(t, n) for n in (2, 3, 16, 77) for t in LONG_TEXTS[:6] + CHINESE_CAPTIONS[:4] + [""]]
    header = {
        "generator": "tools/dev/make_tokenizer_golden.py",
        "reference": f"cn_clip {getattr(cn_clip, '__version__', '1.6.0')} cn_clip.clip.tokenize",
    }
    # one case per line keeps the file diffable
    body = ",\n".join(json.dumps(c, ensure_ascii=True) for c in cases)
    text = json.dumps(header, ensure_ascii=True)[:-1] + ', "cases": [\n' + body + "\n]}\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="ascii")
    print(f"wrote {len(cases)} cases ({len(texts)} distinct texts) to {args.out}")


if __name__ == "__main__":
    main()
