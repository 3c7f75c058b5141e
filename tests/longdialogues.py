"""Deterministic long hotel-reception dialogues (~200 words, English or Chinese) with three
different questions each: training data shaped like the study's, for the quality tests and
bench/quality_rules.py.

Every dialogue is drawn from its own seeded stream with many slot values and sentence
variants, so two dialogues share little text while the three samples of one dialogue share
the whole dialogue (what the near-duplicate rules must factor out).
"""

from __future__ import annotations

import random
from typing import Any

__all__ = ["dialogue", "dialogue_rows"]

_NAMES = (
    "Anna Keller", "Ben Ortiz", "Chloe Martin", "David Novak", "Elif Demir", "Farid Haddad",
    "Grace Liu", "Hugo Lambert", "Ines Costa", "Jonas Berg", "Kira Sato", "Luca Romano",
    "Maya Cohen", "Nils Olsen", "Olga Petrova", "Pablo Ruiz",
)  # fmt: skip
_ROOMS = ("single room", "double room", "twin room", "junior suite", "family room", "studio")
_VIEWS = ("the garden", "the old harbour", "the river", "the mountains", "the main square")
_REQUESTS = (
    "a quiet room away from the lift",
    "an extra bed for our daughter",
    "a late check-out on the last day",
    "a parking space for a small van",
    "a cot for our baby",
    "a room on a high floor",
    "vegetarian breakfast every morning",
    "an airport transfer on arrival",
)
_EXTRAS = (
    "Breakfast is served from seven until half past ten in the winter garden.",
    "The spa on the lower floor is open until nine in the evening.",
    "Our shuttle leaves for the station every full hour from the side entrance.",
    "The rooftop bar offers a small menu of regional dishes after six.",
    "Bicycles can be borrowed at the desk for the whole afternoon free of charge.",
    "The museum pass we sell includes the tram and two guided walks.",
    "Pets are welcome, and we put a blanket and two bowls in the room.",
    "The gym next to the pool has new rowing machines and a sauna.",
)
_WEATHER = ("rainy", "windy", "sunny", "foggy", "cold", "humid")
_MONTHS = ("January", "March", "April", "June", "August", "October", "November")

_ZH_NAMES = ("王芳", "李强", "张伟", "刘洋", "陈静", "杨磊", "赵敏", "黄涛", "周婷", "吴军")
_ZH_ROOMS = ("单人间", "双人间", "标准间", "豪华套房", "家庭房", "行政房")
_ZH_VIEWS = ("花园", "老港口", "江景", "山景", "广场")
_ZH_REQUESTS = (
    "安静一点、远离电梯的房间",
    "给女儿加一张床",
    "最后一天延迟退房",
    "一个能停小货车的车位",
    "给宝宝准备婴儿床",
    "高楼层的房间",
    "每天早上的素食早餐",
    "到达时的机场接送",
)
_ZH_EXTRAS = (
    "早餐从七点供应到十点半，在冬季花园餐厅。",
    "地下一层的水疗中心晚上九点关门。",
    "去火车站的班车每个整点从侧门出发。",
    "屋顶酒吧六点以后提供本地小吃。",
    "前台可以免费借自行车，整个下午都可以用。",
    "我们卖的博物馆通票包括电车和两次导游讲解。",
    "欢迎带宠物入住，我们会在房间里放毯子和两个碗。",
    "泳池旁边的健身房有新的划船机和桑拿。",
)


def _english(rng: random.Random, index: int) -> tuple[str, dict[str, Any]]:
    name, room, view = rng.choice(_NAMES), rng.choice(_ROOMS), rng.choice(_VIEWS)
    nights, guests, floor = rng.randint(2, 14), rng.randint(1, 5), rng.randint(2, 9)
    day, month = rng.randint(1, 28), rng.choice(_MONTHS)
    price = rng.randrange(80, 400, 5)
    request = rng.choice(_REQUESTS)
    extras = rng.sample(_EXTRAS, 3)
    turns = [
        f"Receptionist: Good {rng.choice(('morning', 'afternoon', 'evening'))}, welcome to "
        f"hotel number {index}. How can I help you today?",
        f"Guest: Hello, my name is {name}. I booked a {room} for {nights} nights from "
        f"{month} {day}, and we are {guests} people.",
        f"Receptionist: Thank you, {name.split()[0]}. I found your booking under reference "
        f"{rng.randrange(10000, 99999)}. The rate is {price} euros per night including taxes.",
        f"Guest: That sounds fine. Could we please have {request}? It was a long and "
        f"{rng.choice(_WEATHER)} journey from {rng.choice(('Porto', 'Oslo', 'Graz', 'Turin'))}.",
        f"Receptionist: Of course. Your room is on floor {floor} with a view of {view}. "
        + extras[0],
        "Guest: Wonderful. Is there anything else we should know about the area?",
        f"Receptionist: {extras[1]} {extras[2]} The old town is a "
        f"{rng.randint(5, 25)} minute walk, and the card for the door also opens the garage.",
        f"Guest: Thank you so much, we will ask again if we need anything after "
        f"{rng.randint(6, 11)} o'clock.",
        f"Receptionist: You are welcome. Here are {guests} keys; enjoy your stay, "
        f"{name.split()[0]}.",
    ]
    facts = {"name": name, "nights": nights, "request": request, "room": room}
    return "\n".join(turns), facts


def _chinese(rng: random.Random, index: int) -> tuple[str, dict[str, Any]]:
    name, room, view = rng.choice(_ZH_NAMES), rng.choice(_ZH_ROOMS), rng.choice(_ZH_VIEWS)
    nights, guests, floor = rng.randint(2, 14), rng.randint(1, 5), rng.randint(2, 9)
    month, day, price = rng.randint(1, 12), rng.randint(1, 28), rng.randrange(300, 2000, 10)
    request = rng.choice(_ZH_REQUESTS)
    extras = rng.sample(_ZH_EXTRAS, 3)
    turns = [
        f"前台：{rng.choice(('早上好', '下午好', '晚上好'))}，欢迎来到第{index}号酒店，"
        "请问有什么可以帮您？",
        f"客人：你好，我叫{name}。我订了{month}月{day}日开始的{room}，住{nights}晚，"
        f"我们一共{guests}个人。",
        f"前台：谢谢您，{name}。我查到了您的预订，编号是{rng.randrange(10000, 99999)}，"
        f"每晚{price}元，含税。",
        f"客人：好的。请问能不能安排{request}？我们从{rng.choice(('上海', '成都', '西安'))}"
        f"过来，路上很{rng.choice(('累', '堵', '冷'))}。",
        f"前台：当然可以。您的房间在{floor}楼，可以看到{view}。" + extras[0],
        "客人：太好了。附近还有什么需要注意的吗？",
        f"前台：{extras[1]}{extras[2]}走到老城大约{rng.randint(5, 25)}分钟，"
        "房卡也可以打开车库的门。",
        f"客人：非常感谢，如果{rng.randint(6, 11)}点以后还需要什么，我们再来问。",
        f"前台：不客气。这是{guests}张房卡，祝您入住愉快，{name}。",
    ]
    facts = {"name": name, "nights": nights, "request": request, "room": room}
    return "\n".join(turns), facts


def dialogue(index: int, language: str = "en", seed: int = 0) -> tuple[str, dict[str, Any]]:
    """Dialogue ``index`` (its own seeded stream) and the facts the questions ask about."""
    rng = random.Random(f"{seed}-{language}-{index}")
    return (_chinese if language == "zh" else _english)(rng, index)


def _questions(facts: dict[str, Any], language: str) -> list[tuple[str, str, str, Any]]:
    """(task_type, output_format, question, response): three different questions."""
    if language == "zh":
        return [
            ("guest_name", "span", "客人叫什么名字？", facts["name"]),
            ("nights", "number", "客人住几晚？只回答数字。", str(facts["nights"])),
            (
                "summary",
                "free_text",
                "用一句话总结客人的要求。",
                f"客人{facts['name']}预订了{facts['room']}，住{facts['nights']}晚，"
                f"并希望安排{facts['request']}。",
            ),
        ]
    return [
        ("guest_name", "span", "What is the guest's name?", facts["name"]),
        ("nights", "number", "How many nights does the guest stay? Answer with a number.",
         str(facts["nights"])),
        (
            "summary",
            "free_text",
            "Summarize the guest's requests in one sentence.",
            f"{facts['name']} booked a {facts['room']} for {facts['nights']} nights and "
            f"asks for {facts['request']}.",
        ),
    ]  # fmt: skip


def dialogue_rows(
    n_dialogues: int,
    language: str = "en",
    *,
    seed: int = 0,
    metadata: bool = False,
    layout: str = "prefix",
) -> list[dict[str, Any]]:
    """Three samples per dialogue in the training-set format.

    ``layout``: ``prefix`` puts the dialogue before the question in one prompt,
    ``passage`` puts the dialogue between the question and a repeat of it, blank lines
    around it (RAG style: only the paragraph is shared, no prefix or suffix),
    ``suffix`` puts the question first and the dialogue on the next line (one paragraph),
    ``messages`` puts the dialogue in the system message and the question in the user's.
    ``metadata`` adds ``metadata.dialogue_id``.
    """
    rows = []
    for index in range(n_dialogues):
        text, facts = dialogue(index, language, seed)
        for task, fmt, question, response in _questions(facts, language):
            row: dict[str, Any] = {
                "id": f"{language}-{index:05d}-{task}",
                "task_type": task,
                "output_format": fmt,
                "response": response,
            }
            if layout == "messages":
                row["messages"] = [
                    {"role": "system", "content": text},
                    {"role": "user", "content": question},
                ]
            elif layout == "passage":
                row["prompt"] = f"{question}\n\n{text}\n\nAnswer this: {question}"
            elif layout == "suffix":
                row["prompt"] = f"Answer about the dialogue below: {question}\n{text}"
            else:
                row["prompt"] = f"{text}\n\nQuestion: {question}\nAnswer:"
            if metadata:
                row["metadata"] = {"dialogue_id": f"d{index}"}
            rows.append(row)
    return rows
