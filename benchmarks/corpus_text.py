"""Seeded text generators for the token benchmark corpus: English, Chinese, code, JSON, logs.

Every sentence and word list here was written for this benchmark. Chinese comes from slot
templates plus whole everyday and developer sentences; the mixed category adds a few sentences of
Japanese, Russian, Spanish, German, Korean and French.
"""

# ruff: noqa: E501  (the sentence lists: ruff counts each CJK character as two columns)

from __future__ import annotations

import random
import uuid
from typing import Any

# ---------------------------------------------------------------------------- word lists
# fmt: off

EN_NOUNS = (
    "server", "database", "deadline", "report", "garden", "recipe", "budget", "invoice", "meeting",
    "library", "protocol", "camera", "journey", "museum", "contract", "dashboard", "spreadsheet",
    "kitchen", "migration", "newsletter", "algorithm", "bicycle", "forecast", "pipeline",
    "cluster", "workshop", "manuscript", "warehouse", "playlist", "vaccine", "telescope",
    "mortgage", "prototype", "interview", "checklist", "thermostat", "harbor",
)
EN_ADJS = (
    "reliable", "slow", "unexpected", "careful", "noisy", "elegant", "expensive", "fragile",
    "temporary", "detailed", "quiet", "ambitious", "outdated", "seasonal", "robust", "tiny",
    "confusing", "practical", "generous", "hidden", "consistent", "remote", "brittle",
)
EN_VERBS = (
    "review", "schedule", "optimize", "rewrite", "document", "monitor", "compare", "cancel",
    "translate", "measure", "deploy", "summarize", "refactor", "estimate", "archive", "validate",
    "simplify", "negotiate", "prepare", "investigate", "rebuild", "publish",
)
EN_PEOPLE = (
    "my manager", "the new intern", "our landlord", "the support team", "my sister", "the auditor",
    "a colleague from Berlin", "the product owner", "my neighbour", "the on-call engineer",
    "our accountant", "the hiring committee",
)
EN_PLACES = (
    "Lisbon", "the office", "Kyoto", "a small village near Oslo", "the data center", "Toronto",
    "the farmers market", "Buenos Aires", "the train station", "Nairobi",
)
EN_SENTENCES = (
    "I need to {verb} the {noun} before {day}, but {person} says it is too {adj}.",
    "Could you explain why the {noun} became so {adj} after we moved it to {place}?",
    "Last {day} we tried to {verb} the {noun}, and the result was {adj} at best.",
    "The {adj} {noun} costs about ${price} per month, which is {pct}% more than last year.",
    "{Person} asked me to {verb} the {noun} and send a short summary by {time}.",
    "There is a {adj} problem with the {noun}: it fails roughly {n} times a week.",
    "What is the best way to {verb} a {adj} {noun} without breaking anything else?",
    "We have {n} people on the team and only {m} of them know how to {verb} the {noun}.",
    "In {place}, the {noun} is usually {adj}, so plan an extra {m} hours for it.",
    "I would rather {verb} the {noun} now than deal with a {adj} mess in {month}.",
    "The documentation says the {noun} should be {adj}, yet ours clearly is not.",
    "Please keep the tone {adj} and avoid jargon; the audience is {person}.",
    "After version {ver} the {noun} started to behave in a {adj} way.",
    "Is it normal for a {noun} to take {n} seconds to respond on a {adj} network?",
    "My plan is to {verb} the {noun} first, then {verb2} the {noun2} on {day}.",
    "Honestly, the {noun} is fine; the {adj} part is how we {verb} it.",
    "Between {month} and {month2}, we spent ${price} on the {noun} alone.",
    "Give me three options to {verb} the {noun}, ranked by effort.",
    "Why does {person} keep saying that the {noun} is {adj}?",
    "The {noun} in {place} opens at {time} and closes around {time2}.",
)
EN_DAYS = (
    "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "the weekend", "tomorrow",
)
EN_MONTHS = (
    "January", "March", "April", "June", "August", "October", "December",
)
EN_OPENERS = (
    "Sure, here is how I would approach it.",
    "Good question. There are a few things to keep in mind.",
    "Here is a short plan you can follow.",
    "It depends on a couple of factors, so let me break it down.",
    "Let's go through this step by step.",
)
ZH_NOUNS = (
    "服务器", "数据库", "项目", "报告", "会议", "预算", "合同", "客户", "接口", "系统", "文档", "需求", "团队", "用户", "模型",
    "网站", "手机", "订单", "产品", "计划", "工作", "学习", "考试", "医院", "公司", "老师", "学生", "天气", "城市", "火车票",
    "周末", "家人", "朋友", "餐厅", "咖啡", "电影", "旅行", "房子", "工资", "孩子", "日志", "缓存", "配置文件", "测试用例", "代码仓库",
    "前端页面", "登录流程", "支付功能", "健身计划", "英语口语", "论文", "简历", "面试", "租房合同", "体检报告", "年终总结",
)
ZH_VERBS = (
    "优化", "检查", "修改", "部署", "测试", "讨论", "整理", "分析", "准备", "完成", "提交", "更新", "解决", "学习", "安排", "处理",
    "设计", "了解", "推荐", "比较", "重构", "排查", "迁移", "评估", "复盘", "梳理", "压缩", "监控", "翻译", "审核",
)
ZH_ADJS = (
    "复杂", "简单", "重要", "稳定", "方便", "麻烦", "便宜", "贵", "快", "慢", "清楚", "有趣", "安全", "灵活", "紧张", "顺利",
    "合理", "明显", "困难", "及时", "靠谱", "混乱", "臃肿", "脆弱", "陈旧", "直观", "细致", "吃力",
)
ZH_PEOPLE = (
    "我的经理", "同事小王", "我们老板", "产品经理", "我妈妈", "客户那边", "新来的实习生", "隔壁组的李工", "我的室友", "班主任", "财务部的同事",
    "房东",
)
ZH_PLACES = (
    "北京", "上海", "深圳", "杭州", "成都", "广州", "南京", "武汉", "西安", "厦门", "青岛",
)
ZH_SENTENCES = (
    "我想在{day}之前把{noun}{verb}一下，但是{person}觉得这样太{adj}了。", "请问为什么{noun}最近变得这么{adj}？我们已经{verb}过好几次了。",
    "{person}让我明天上午{verb}{noun}，然后写一份简单的总结。", "这个{noun}每个月大概要花{n}元，比去年多了百分之{pct}。",
    "我们团队一共有{m}个人，但是只有两个人会{verb}{noun}。", "在{place}，{noun}一般比较{adj}，所以最好提前{m}天准备。",
    "你能不能帮我{verb}一下这个{noun}？我觉得有些地方不太{adj}。", "上周我们尝试{verb}{noun}，结果还是不太{adj}，大家都很着急。",
    "如果要{verb}一个{adj}的{noun}，应该从哪里开始比较好？", "说实话，{noun}本身没什么问题，主要是我们{verb}的方式不够{adj}。",
    "从技术角度来看，{noun}的设计非常{adj}，但是维护起来有点麻烦。", "我打算先{verb}{noun}，然后再{verb2}{noun2}，你觉得这个顺序合理吗？",
    "最近{place}的{noun}越来越{adj}了，很多人都在讨论这件事。", "请给我三个{verb}{noun}的方案，并且按照难度从低到高排列。",
    "为什么{person}总是说{noun}太{adj}？我其实不太理解。", "这个问题的原因可能有很多，比如网络不稳定、配置错误或者{noun}本身有缺陷。",
    "另外，记得在{day}之前和{person}确认一下具体的时间安排。", "如果预算有限，可以考虑先{verb}最关键的部分，其他的以后再说。",
    "我们需要保证{noun}在高峰期也能正常运行，不能影响用户体验。", "这本书讲的是一个年轻人离开家乡去{place}打拼的故事，内容很感人。",
    "他在这家公司工作了{m}年，对业务非常熟悉，大家都很信任他。", "他们在{place}开了第二家分店，生意比想象中还要好。",
    "按照目前的进度，{noun}大概还需要{m}周才能上线。",
)
# Whole sentences with no slots: everyday and developer Chinese, as users write it.
ZH_FIXED = (
    "总的来说，我建议先从小范围开始试点，等效果稳定以后再逐步推广。", "首先要明确目标，其次要分析现状，最后才是制定具体的执行计划。",
    "周末天气不错的话，我们可以带孩子去公园散步，顺便吃个午饭。", "昨天晚上加班到十一点多，回家的路上差点在地铁上睡着。",
    "我刚换了一份新工作，通勤时间从一个小时缩短到了二十分钟，幸福感提升了不少。", "老实讲，这个需求改来改去已经第五版了，开发同学都快崩溃了。",
    "她说话总是慢条斯理的，但每次提出的意见都切中要害。", "别着急，先喝口水，把事情从头到尾慢慢说清楚。", "这家小馆子的红烧肉做得特别地道，肥而不腻，米饭都多吃了一碗。",
    "孩子最近迷上了恐龙，每天睡觉前都要让我讲一遍霸王龙的故事。", "我爸妈年纪大了，不太会用智能手机，每次视频通话都要我远程指导半天。",
    "如果你只是偶尔用一下，没必要买最贵的型号，够用就好。", "线上环境出问题的时候，第一件事不是找人背锅，而是尽快止血。",
    "日志里反复出现连接超时的报错，初步判断是数据库连接池被占满了。", "这段代码的可读性很差，变量名全是缩写，注释也几乎没有。",
    "我们可以把耗时的计算挪到后台任务里，接口只负责返回任务编号。", "单元测试覆盖率不等于质量，关键是要测到真正容易出错的边界情况。",
    "换句话说，与其追求一步到位，不如先做出一个能用的版本，再根据反馈迭代。", "春节前后火车票特别难买，最好提前一个月就开始关注。",
    "这次体检发现血脂有点偏高，医生建议少吃油炸食品，多运动。", "读研究生的时候，导师常说：做研究要耐得住寂寞，也要敢于质疑权威。",
    "关于这件事，我的看法可能和大家不太一样，但还是想说出来供参考。", "由于历史原因，这个模块和其他好几个系统耦合得很紧，轻易动不得。",
    "说到底，技术选型没有绝对的对错，只有是否适合当前的团队和业务阶段。", "窗外下着小雨，我泡了一壶茶，终于有时间把那本搁置很久的小说读完。",
    "请帮我修改这个函数，让它支持分页查询，每页默认返回二十条记录。", "运行测试的时候报错了，提示找不到模块，我已经确认依赖都安装好了。",
    "把这段代码重构一下，拆成几个小函数，顺便加上类型注解和单元测试。", "为什么这个接口在本地正常，部署到服务器上就超时？日志里没有明显的异常。",
    "帮我写一个脚本，定时备份数据库，并且只保留最近七天的备份文件。", "这个组件渲染得太慢了，列表里有几千条数据，滚动的时候明显卡顿。",
    "能不能解释一下这段正则表达式的含义？我看不太懂。", "我想把项目从旧版本迁移到新版本，需要注意哪些不兼容的改动？", "请检查一下这个提交，看看有没有潜在的并发问题或者内存泄漏。",
    "登录以后页面一直转圈，浏览器控制台显示跨域请求被拦截了。", "先别改代码，先分析一下问题的原因，然后给我几个可选的方案。", "把配置项都移到环境变量里，不要在代码里硬编码密钥。",
    "测试全部通过了，但是覆盖率还不够，帮我补充一些边界情况的用例。", "这个报错信息是什么意思？是权限不够还是路径写错了？", "好的，就按照第二个方案来做，改完以后记得更新文档。",
    "我已经按照你说的修改了配置，重启服务以后问题依旧存在。", "请用中文总结一下这次改动的主要内容，方便我写提交说明。",
    "这个函数的时间复杂度太高了，数据量一大就跑不动，有没有更高效的写法？", "缓存失效以后大量请求直接打到数据库上，导致响应时间飙升。",
    "建议给这个字段加上索引，并且把模糊查询改成前缀匹配。", "这里的异常被吞掉了，出了问题根本看不到任何提示，排查起来非常痛苦。",
    "新同事第一次搭建开发环境花了整整两天，说明我们的文档需要好好整理一下。", "接下来我会逐个检查这些文件，确认改动不会影响现有的功能。",
    "这次发布之前，请务必在预发环境完整地回归一遍核心流程。", "我们的目标是在不增加机器的前提下，把吞吐量提高一倍。", "你说得对，这个边界条件我之前确实没有考虑到，谢谢提醒。",
    "从监控图上看，内存占用每天都在缓慢上涨，很可能存在泄漏。", "如果用户没有登录，就直接跳转到首页，不要弹出错误提示。", "这几个依赖包的版本有冲突，升级其中一个就会导致另一个报错。",
    "我看了一下你的实现思路，整体没问题，只是有几处命名可以再斟酌一下。",
)
ZH_DAYS = (
    "周一", "周三", "周五", "下周", "月底", "明天", "这个周末",
)
ZH_OPENERS = (
    "好的，下面是我的建议。", "这是一个很好的问题。", "可以按照下面的步骤来处理：",
)
JA_SENTENCES = (
    "この{x}は思ったより時間がかかりますので、少し待ってください。", "明日の会議までに資料を準備しておいてもらえますか。", "東京の天気は今週ずっと雨の予報です。",
    "新しいシステムの導入について、もう一度説明していただけますか。", "エラーの原因はおそらく設定ファイルの書き間違いだと思います。",
)
RU_SENTENCES = (
    "Пожалуйста, проверьте конфигурацию сервера перед обновлением.",
    "Мы планируем перенести базу данных в новый кластер в следующем месяце.",
    "Спасибо за подробный ответ, теперь всё стало намного понятнее.",
    "Ошибка возникает только при большой нагрузке на систему.",
    "Можно ли ускорить сборку проекта без покупки нового оборудования?",
)
ES_SENTENCES = (
    "¿Podrías revisar el informe antes de enviarlo al cliente?",
    "El servidor se reinició dos veces durante la noche sin ningún aviso.",
    "Necesitamos una solución más económica para el almacenamiento de datos.",
    "La reunión se trasladó al jueves por la mañana.",
)
DE_SENTENCES = (
    "Könnten Sie mir bitte erklären, warum die Anwendung so langsam läuft?",
    "Die Datenbank muss vor der Migration vollständig gesichert werden.",
    "Wir haben die Änderungen bereits gestern Abend übernommen.",
    "Für nächste Woche ist eine größere Wartung geplant.",
)
KO_SENTENCES = (
    "이 문제는 설정 파일을 수정하면 해결될 것 같습니다.", "다음 주 회의 전에 보고서를 다시 확인해 주세요.", "서버가 갑자기 느려져서 원인을 찾고 있습니다.",
)
FR_SENTENCES = (
    "Pouvez-vous vérifier les journaux du serveur avant la mise à jour ?",
    "Le déploiement a échoué à cause d'une dépendance manquante.",
    "Merci pour votre réponse rapide et très détaillée.",
)
OTHER_LANGS = (JA_SENTENCES, RU_SENTENCES, ES_SENTENCES, DE_SENTENCES, KO_SENTENCES, FR_SENTENCES)
IDENT_PARTS = (
    "user", "order", "item", "cache", "config", "request", "result", "buffer", "token", "session",
    "price", "count", "index", "path", "record", "batch", "event", "queue", "client", "payload",
    "total", "limit", "offset", "retry", "status", "handler",
)
FILE_DIRS = (
    "src", "app", "lib", "services", "internal", "pkg", "tests", "scripts", "api",
)
LOG_LEVELS = (
    "INFO", "INFO", "INFO", "DEBUG", "WARN", "ERROR",
)

# fmt: on


# ---------------------------------------------------------------------------- text generators


class TextGen:
    """Seeded generators of English, Chinese, code, JSON and log text."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    # --- small pieces
    def pick(self, items: tuple[Any, ...]) -> Any:
        return self.rng.choice(items)

    def ident(self, parts: int = 2) -> str:
        return "_".join(self.pick(IDENT_PARTS) for _ in range(parts))

    def camel(self) -> str:
        first, second = self.pick(IDENT_PARTS), self.pick(IDENT_PARTS)
        return first + second.capitalize()

    def path(self, ext: str = "py") -> str:
        depth = self.rng.randint(1, 3)
        dirs = "/".join(self.pick(FILE_DIRS) for _ in range(depth))
        return f"{dirs}/{self.ident()}.{ext}"

    def number(self) -> int:
        return self.rng.choice(
            (
                self.rng.randint(0, 99),
                self.rng.randint(100, 9999),
                self.rng.randint(10_000, 10_000_000),
            )
        )

    def timestamp(self) -> str:
        r = self.rng
        return (
            f"2025-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}T{r.randint(0, 23):02d}:"
            f"{r.randint(0, 59):02d}:{r.randint(0, 59):02d}.{r.randint(0, 999):03d}Z"
        )

    def uid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def hexid(self, n: int = 12) -> str:
        return "".join(self.rng.choice("0123456789abcdef") for _ in range(n))

    # --- English
    def en_sentence(self) -> str:
        r = self.rng
        slots = {
            "noun": self.pick(EN_NOUNS),
            "noun2": self.pick(EN_NOUNS),
            "adj": self.pick(EN_ADJS),
            "verb": self.pick(EN_VERBS),
            "verb2": self.pick(EN_VERBS),
            "person": self.pick(EN_PEOPLE),
            "place": self.pick(EN_PLACES),
            "day": self.pick(EN_DAYS),
            "month": self.pick(EN_MONTHS),
            "month2": self.pick(EN_MONTHS),
            "n": r.randint(2, 60),
            "m": r.randint(1, 9),
            "pct": r.randint(3, 95),
            "price": f"{r.randint(10, 99999):,}",
            "time": f"{r.randint(7, 11)}:{r.choice(('00', '15', '30', '45'))} am",
            "time2": f"{r.randint(4, 10)} pm",
            "ver": f"{r.randint(1, 9)}.{r.randint(0, 20)}",
        }
        slots["Person"] = slots["person"][0].upper() + slots["person"][1:]
        return self.pick(EN_SENTENCES).format(**slots)

    def en_paragraph(self, sentences: tuple[int, int] = (3, 7)) -> str:
        return " ".join(self.en_sentence() for _ in range(self.rng.randint(*sentences)))

    def en_answer(self) -> str:
        r = self.rng
        parts = [self.pick(EN_OPENERS), ""]
        for i in range(r.randint(2, 5)):
            if r.random() < 0.3:
                parts.append(f"## {self.pick(EN_VERBS).capitalize()} the {self.pick(EN_NOUNS)}")
            parts.append(
                f"{i + 1}. **{self.pick(EN_ADJS).capitalize()} first.** {self.en_sentence()}"
            )
        parts += ["", self.en_paragraph((2, 4))]
        return "\n".join(parts)

    # --- Chinese
    def zh_sentence(self) -> str:
        r = self.rng
        slots = {
            "noun": self.pick(ZH_NOUNS),
            "noun2": self.pick(ZH_NOUNS),
            "adj": self.pick(ZH_ADJS),
            "verb": self.pick(ZH_VERBS),
            "verb2": self.pick(ZH_VERBS),
            "person": self.pick(ZH_PEOPLE),
            "place": self.pick(ZH_PLACES),
            "day": self.pick(ZH_DAYS),
            "n": r.randint(2, 5000),
            "m": r.randint(1, 9),
            "pct": r.randint(3, 60),
        }
        if r.random() < 0.6:
            return self.pick(ZH_FIXED)
        return self.pick(ZH_SENTENCES).format(**slots)

    def zh_paragraph(self, sentences: tuple[int, int] = (3, 8)) -> str:
        return "".join(self.zh_sentence() for _ in range(self.rng.randint(*sentences)))

    def zh_answer(self) -> str:
        r = self.rng
        parts = [self.pick(ZH_OPENERS), ""]
        for i in range(r.randint(2, 5)):
            parts.append(
                f"{i + 1}. **{self.pick(ZH_VERBS)}{self.pick(ZH_NOUNS)}**：{self.zh_sentence()}"
            )
        parts += ["", self.zh_paragraph((2, 4))]
        return "\n".join(parts)

    # --- other languages, for the mixed category
    def foreign_sentence(self) -> str:
        return self.pick(self.pick(OTHER_LANGS)).format(x=self.pick(("作業", "処理", "設定")))

    # --- code
    def python_code(self) -> str:
        r = self.rng
        name, arg, other = self.ident(), self.ident(1), self.ident(1)
        lines = [
            f"def {name}({arg}: list[dict], limit: int = {r.randint(1, 500)}) -> dict:",
            f'    """{self.en_sentence()}"""',
            f"    {other} = {{}}",
        ]
        for _ in range(r.randint(2, 6)):
            key = self.ident(1)
            lines += [
                f"    for row in {arg}[:limit]:",
                f'        if row.get("{key}") is None:',
                "            continue",
                f'        {other}[row["{key}"]] = {other}.get(row["{key}"], 0) + {r.randint(1, 9)}',
            ]
        lines += [f"    return {other}", ""]
        if r.random() < 0.5:
            cls = self.camel().capitalize()
            lines += [
                f"class {cls}:",
                f"    def __init__(self, {arg}: str) -> None:",
                f"        self.{arg} = {arg}",
                f"        self.retries = {r.randint(0, 5)}",
                "",
            ]
        return "\n".join(lines)

    def js_code(self) -> str:
        r = self.rng
        fn, arg = self.camel(), self.camel()
        body = [
            f"export async function {fn}({arg}, options = {{}}) {{",
            f"  const url = `/api/v{r.randint(1, 3)}/{self.ident(1)}/${{{arg}.id}}`;",
            "  const response = await fetch(url, "
            "{ method: 'POST', body: JSON.stringify(options) });",
            "  if (!response.ok) {",
            f"    throw new Error(`request failed: ${{response.status}} ({r.randint(400, 599)})`);",
            "  }",
            "  const data = await response.json();",
            f"  return data.items.filter((x) => x.{self.camel()} > {r.randint(0, 1000)});",
            "}",
            "",
        ]
        return "\n".join(body)

    def go_code(self) -> str:
        r = self.rng
        fn = self.camel().capitalize()
        return "\n".join(
            [
                f"func {fn}(ctx context.Context, db *sql.DB, id int64) (*{fn}Result, error) {{",
                f'\trow := db.QueryRowContext(ctx, "SELECT {self.ident(1)}, {self.ident(1)} '
                f'FROM {self.ident(1)} WHERE id = $1", id)',
                f"\tvar out {fn}Result",
                "\tif err := row.Scan(&out.Name, &out.Count); err != nil {",
                f'\t\treturn nil, fmt.Errorf("scan {self.ident(1)}: %w", err)',
                "\t}",
                f"\tout.Count += {r.randint(1, 100)}",
                "\treturn &out, nil",
                "}",
                "",
            ]
        )

    def sql_code(self) -> str:
        r = self.rng
        return (
            f"SELECT u.id, u.{self.ident(1)}, COUNT(o.id) AS orders\nFROM users u\n"
            "LEFT JOIN orders o ON o.user_id = u.id AND o.created_at > "
            f"'2024-{r.randint(1, 12):02d}-01'\n"
            f"WHERE u.{self.ident(1)} IN "
            f"({', '.join(str(r.randint(1, 99999)) for _ in range(r.randint(2, 8)))})\n"
            f"GROUP BY u.id\nHAVING COUNT(o.id) > {r.randint(1, 50)}\n"
            f"ORDER BY orders DESC\nLIMIT {r.randint(10, 500)};\n"
        )

    def code(self) -> str:
        return self.pick((self.python_code, self.js_code, self.go_code, self.sql_code))()

    def code_file(self, blocks: tuple[int, int] = (2, 6)) -> str:
        return "\n".join(self.code() for _ in range(self.rng.randint(*blocks)))

    # --- JSON and logs
    def json_value(self, depth: int = 0) -> Any:
        r = self.rng
        kind = r.random()
        if depth > 2 or kind < 0.45:
            return self.pick(
                (
                    lambda: r.randint(0, 100000),
                    lambda: round(r.uniform(-180, 180), 6),
                    lambda: self.timestamp(),
                    lambda: self.uid(),
                    lambda: self.en_sentence(),
                    lambda: r.random() < 0.5,
                    lambda: self.hexid(),
                    lambda: self.ident(1),
                    lambda: f"{r.randint(1, 999)}.{r.randint(0, 99):02d}",
                )
            )()
        if kind < 0.75:
            return {self.ident(1): self.json_value(depth + 1) for _ in range(r.randint(2, 6))}
        return [self.json_value(depth + 1) for _ in range(r.randint(1, 5))]

    def json_payload(self, items: tuple[int, int] = (3, 20)) -> dict[str, Any]:
        r = self.rng
        rows = []
        for _ in range(r.randint(*items)):
            rows.append(
                {
                    "id": self.uid(),
                    "created_at": self.timestamp(),
                    "amount": round(r.uniform(0, 5000), 2),
                    "quantity": r.randint(1, 40),
                    self.ident(1): self.json_value(),
                    self.ident(1): self.json_value(),
                }
            )
        return {
            "status": "ok",
            "total": r.randint(len(rows), 99999),
            "page": r.randint(1, 30),
            "items": rows,
        }

    def log_lines(self, count: tuple[int, int] = (10, 60)) -> str:
        r = self.rng
        lines = []
        for _ in range(r.randint(*count)):
            lines.append(
                f"{self.timestamp()} {self.pick(LOG_LEVELS):5} [worker-{r.randint(1, 16)}] "
                f"{self.pick(EN_VERBS)} {self.ident()} id={self.hexid(8)} "
                f"latency_ms={r.randint(1, 4000)} bytes={r.randint(100, 9_999_999)}"
            )
        return "\n".join(lines)

    def grep_output(self) -> str:
        r = self.rng
        return "\n".join(
            f"{self.path()}:{r.randint(1, 2000)}:    "
            f"{self.ident()} = {self.ident(1)}({r.randint(0, 99)})"
            for _ in range(r.randint(3, 30))
        )

    def test_output(self) -> str:
        r = self.rng
        passed, failed = r.randint(10, 900), r.randint(0, 5)
        lines = [f"{self.path()}::test_{self.ident()} PASSED" for _ in range(r.randint(3, 15))]
        for _ in range(failed):
            lines += [
                f"{self.path()}::test_{self.ident()} FAILED",
                f"E   AssertionError: assert {r.randint(0, 999)} == {r.randint(0, 999)}",
            ]
        lines.append(f"==== {failed} failed, {passed} passed in {r.uniform(0.5, 90):.2f}s ====")
        return "\n".join(lines)
