"""The words people write in hand-made specs and TODO files, and what they mean to ob.

* Status words and the lifecycle they map to (README, "Status words"): done words are done
  history, dropped words are rejected, every other word is a task awaiting the operator. The word
  as written is kept; an unknown one is kept too, with a warning, never refused.
* The status line: a word, an optional date and an optional reason, in the forms people write
  (`planned 2026-11-20`, `planned — 2026-11-20`, `blocked (2026-11-18) — waiting for finance`,
  `open (since 2026-05-14)`, `waiting, since 2026-10-02`), and its one canonical form.
* Field labels in English, Chinese, Korean, Vietnamese and Portuguese, in any case, bold or
  bulleted (`**Status:**`, `- Priority:`, `### Steps`, `状态：`).
* Priority words (`high`, `alta`, `높음`, `高`) and the heading words that make a heading
  structure rather than a task: groups (`Todo`, `Low`, `In progress`), done sections (`Done`),
  document furniture (`Contents`, `Legend`, `Overview`).
Pure functions, no I/O.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import date
from functools import lru_cache
from typing import NamedTuple

from core.models import Status

# ---------------------------------------------------------------- normalising


_DECORATION = frozenset(" .:：*_`~!?()[]{}\"'\u200d\ufe0e\ufe0f")


@lru_cache(maxsize=8192)
def norm(text: str) -> str:
    """A word or label for lookups: case-folded, emoji and punctuation at the ends dropped,
    runs of spaces, dashes and underscores made one space, curly apostrophes straight."""
    text = unicodedata.normalize("NFC", text).replace("’", "'").replace("‘", "'").casefold()
    text = re.sub(r"[\s_\-]+", " ", text)
    start, end = 0, len(text)
    while start < end and _decoration(text[start]):
        start += 1
    while end > start and _decoration(text[end - 1]):
        end -= 1
    return text[start:end]


def _decoration(ch: str) -> bool:
    """Punctuation, emphasis and emoji around a word (`**Status:**`, `## 🔥 High priority`):
    symbols, emoji's variation selectors and joiners, and the marks people wrap labels in."""
    return ch in _DECORATION or unicodedata.category(ch) in ("So", "Sk")


def _table(*groups: str) -> frozenset[str]:
    return frozenset(norm(w) for group in groups for w in group.split("|") if w)


# ---------------------------------------------------------------- status words

CANONICAL = {s.value: s for s in Status}
DONE_WORDS = _table(
    "done|finished|complete|completed|closed|shipped|merged|fixed|resolved|released|implemented"
    "|landed|delivered|in production|archived|archive",
    "已完成|完成|已解决|已关闭|已上线",  # zh
    "완료|완료됨|해결됨|해결|배포됨",  # ko
    "hoàn thành|đã hoàn thành|đã xong|xong|đã sửa",  # vi
    "concluído|concluída|concluido|feito|feita|finalizado|finalizada|pronto|pronta|entregue"
    "|resolvido",  # pt
)
REJECTED_WORDS = _table(
    "rejected|dropped|cancelled|canceled|won't do|won't fix|wont do|wont fix|wontfix|won't|wont"
    "|abandoned|obsolete|declined|superseded|scrapped|killed|not planned|will not do|duplicate"
    "|invalid|not doing",
    "已取消|取消|放弃|不做|已放弃",  # zh
    "취소|취소됨|폐기|하지 않음",  # ko
    "hủy|đã hủy|bỏ|không làm",  # vi
    "cancelado|cancelada|descartado|descartada|abandonado|abandonada|rejeitado|rejeitada",  # pt
)
OPEN_WORDS = _table(
    "draft|open|claimed|planned|plan|planning|scheduled|waiting|waiting for|on hold|hold|blocked"
    "|paused|deferred|postponed|idea|proposed|proposal|backlog|todo|to do|next|up next|later"
    "|soon|someday|maybe|new|not started|pending|ready|triage|in progress|wip|doing|started"
    "|active|ongoing|in review|review|testing|qa|approved|accepted|investigating|exploring"
    "|stalled|parked|icebox|research|needs decision|undecided",
    "计划中|计划|待办|进行中|阻塞|等待|等待中|暂停|想法|待定|未开始|开发中|测试中",  # zh
    "계획|계획됨|대기|대기 중|진행 중|진행중|보류|차단|막힘|아이디어|시작 전|검토 중",  # ko
    "dự kiến|kế hoạch|đang chờ|chờ|đang làm|đang thực hiện|bị chặn|tạm dừng|ý tưởng"
    "|chưa bắt đầu|đang xem xét",  # vi
    "planejado|planejada|planeado|em andamento|em progresso|fazendo|bloqueado|bloqueada"
    "|aguardando|esperando|pausado|pausada|ideia|pendente|a fazer|não iniciado|em revisão",  # pt
)
MAX_WORD = 40
MAX_REASON = 500


def lifecycle_of(word: str) -> Status | None:
    """The lifecycle a status word means: a lifecycle name is itself, a done word is done, a
    dropped word is rejected; any other word (known or not) is None, a task awaiting the
    operator."""
    w = norm(word)
    if w in CANONICAL:
        return CANONICAL[w]
    if w in DONE_WORDS:
        return Status.DONE
    if w in REJECTED_WORDS:
        return Status.REJECTED
    return None


def is_known(word: str) -> bool:
    w = norm(word)
    return w in CANONICAL or w in DONE_WORDS or w in REJECTED_WORDS or w in OPEN_WORDS


def unknown_word_warning(word: str) -> str:
    return (
        f"status {word!r} is not a word ob knows: kept as written, read as a task awaiting the"
        " operator (done words: done, finished, shipped, …; dropped words: dropped, cancelled,"
        " won't do, …)"
    )


# ---------------------------------------------------------------- dates

_MONTHS = {
    m: i
    for i, names in enumerate(
        (
            "jan january",
            "feb february",
            "mar march",
            "apr april",
            "may",
            "jun june",
            "jul july",
            "aug august",
            "sep sept september",
            "oct october",
            "nov november",
            "dec december",
        ),
        1,
    )
    for m in names.split()
}
_MONTH = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sept?|oct|nov|dec)[a-z]*\.?"
DATE = (
    r"(?:\d{4}[-/.]\d{1,2}[-/.]\d{1,2}"
    rf"|{_MONTH}\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{4}}"
    rf"|\d{{1,2}}(?:st|nd|rd|th)?\s+{_MONTH},?\s+\d{{4}})"
)
_DATE_RE = re.compile(rf"^{DATE}$", re.I)


def parse_date(text: str) -> date | None:
    """A date as people write it: 2026-11-20 (also with / or .), Nov 20, 2026, 20 November
    2026. None when it is not one (or not a real day)."""
    t = text.strip()
    if not _DATE_RE.match(t):
        return None
    try:
        m = re.match(r"^(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})$", t)
        if m:
            return date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
        words = re.findall(r"[A-Za-z]+|\d+", t)
        nums = [int(w) for w in words if w.isdigit()]
        month = next(_MONTHS[w.lower()[:3]] for w in words if w.lower()[:3] in _MONTHS)
        day, year = (nums[0], nums[1]) if len(nums) == 2 else (0, 0)
        return date(year, month, day)
    except (ValueError, StopIteration):
        return None


# ---------------------------------------------------------------- the status line


class StatusLine(NamedTuple):
    word: str
    on: date | None = None
    reason: str | None = None


# "since" in the five languages; Korean and Chinese also write it after the date.
_SINCE = r"(?:since|as\s+of|from|on|desde|em|a\s+partir\s+de|từ|kể\s+từ|自|从|從)"
_AFTER = r"(?:부터|이후|起|以来|开始)"
_SEPARATOR = r"(?:[—–:：;,]|\s-\s|[(（\[])"
# The word ends where a separator, a parenthesis or a date begins.
_WORD = re.compile(rf"^(?P<word>.+?)(?=\s*(?:$|{_SEPARATOR}|\s(?:{_SINCE}\s+)?{DATE}))", re.I)
# A date right after the word (never after `;`: the canonical form writes `; reason` when a
# reason would otherwise read as the date).
_DATE_HEAD = re.compile(
    rf"^\s*(?:(?:[—–:：,]|-(?=\s))\s*)?(?:{_SINCE}\s+)?(?P<open>[(（\[])?\s*(?:{_SINCE}\s+)?"
    rf"(?P<date>{DATE})\s*{_AFTER}?\s*(?P<close>[)）\]])?(?=\s*(?:$|{_SEPARATOR}))",
    re.I,
)
_REASON_LEAD = re.compile(r"^[\s—–:：;,\-]+")


def _clean_reason(text: str) -> str | None:
    text = _REASON_LEAD.sub("", text).strip()
    m = re.fullmatch(r"[(（](.*)[)）]", text)
    if m and "(" not in m.group(1) and "（" not in m.group(1):
        text = m.group(1).strip()
    return text or None


def parse_status_line(value: str) -> StatusLine | None:
    """The word, date and reason of a status line's value; None when it is empty."""
    v = re.sub(r"\s+", " ", value).strip()
    v = re.sub(r"^(\*\*|__|\*|_|`)(.+?)\1", r"\2", v)  # **blocked** (2026-…)
    if not v:
        return None
    lead = re.match(rf"^(?P<date>{DATE})\s*(?:[—–:：,]|\s-\s)?\s*", v, re.I)
    on: date | None = None
    if lead and parse_date(lead.group("date")) and v[lead.end() :]:  # 2026-11-20: planned
        on, v = parse_date(lead.group("date")), v[lead.end() :]
    m = _WORD.match(v)
    word = (m.group("word") if m else v).strip()
    rest = v[len(m.group("word")) :] if m else ""
    if on is None:
        head = _DATE_HEAD.match(rest)
        if head and bool(head.group("open")) == bool(head.group("close")):
            on = parse_date(head.group("date"))
            if on is not None:
                rest = rest[head.end() :]
    return StatusLine(word, on, _clean_reason(rest))


def check_word(word: str) -> str:
    """A status word as the text form can carry it, or ValueError saying why not."""
    w = re.sub(r"\s+", " ", word).strip()
    if not w:
        raise ValueError("the status word is empty")
    if len(w) > MAX_WORD:
        raise ValueError(f"status word {w[:50]!r} is {len(w)} characters; at most {MAX_WORD}")
    read = parse_status_line(w)
    if read is None or read != StatusLine(w):
        raise ValueError(
            f"status word {w[:50]!r} would not read back as one word (no dates, parentheses,"
            " dashes or colons in it)"
        )
    return w


def check_reason(reason: str) -> str | None:
    r = _clean_reason(re.sub(r"\s+", " ", reason))
    if r is not None and len(r) > MAX_REASON:
        raise ValueError(f"the status reason is {len(r)} characters; at most {MAX_REASON}")
    return r


def render_status_line(word: str, on: date | None, reason: str | None) -> str:
    """The canonical status line value: `planned 2026-11-20 — reason`."""
    out = word + (f" {on.isoformat()}" if on else "")
    if reason:
        dashed = f"{out} — {reason}"
        out = (
            dashed
            if parse_status_line(dashed) == StatusLine(word, on, reason)
            else f"{out}; {reason}"
        )
    return out


def describe_status(word: str | None, on: date | None, reason: str | None) -> str | None:
    """The status as the person wrote it, for cards and tables: `blocked since 2026-11-18 —
    waiting for finance`; a day ahead is the day it is for: `planned 2026-12-10`."""
    if not word:
        return None
    when = "" if on is None else f" {'since ' if on <= date.today() else ''}{on.isoformat()}"
    return word + when + (f" — {reason}" if reason else "")


# ---------------------------------------------------------------- field labels

FIELD_LABELS = {
    **{n: "repo" for n in ("repo", "repository", "repositório", "仓库", "저장소")},
    **{
        n: "priority"
        for n in ("priority", "prio", "优先级", "우선순위", "ưu tiên", "độ ưu tiên", "prioridade")
    },
    "lane": "lane",
    **{n: "trigger" for n in ("trigger", "触发条件", "触发", "트리거", "kích hoạt", "gatilho")},
    **{n: "trigger_on" for n in ("trigger on", "trigger date")},
    "key": "key",
    **{
        n: "status" for n in ("status", "state", "状态", "상태", "trạng thái", "estado", "situação")
    },
}
SECTION_LABELS = {
    **{
        n: "steps"
        for n in ("steps", "step", "plan", "步骤", "단계", "các bước", "bước", "passos", "etapas")
    },
    **{
        n: "risks" for n in ("risks", "risk", "风险", "위험", "리스크", "rủi ro", "riscos", "risco")
    },
    **{
        n: "notes"
        for n in ("notes", "note", "备注", "메모", "비고", "ghi chú", "notas", "observações")
    },
    **{n: "findings" for n in ("findings", "finding")},
}
FIELD_LABELS = {norm(k): v for k, v in FIELD_LABELS.items()}
SECTION_LABELS = {norm(k): v for k, v in SECTION_LABELS.items()}
# Spec fields that make a part of a file a spec rather than prose or a list (notes alone do not).
SPEC_SIGNALS = frozenset(
    {"repo", "priority", "lane", "trigger", "trigger_on", "key", "status", "steps", "risks"}
)


class Label(NamedTuple):
    name: str  # normalised
    value: str
    bulleted: bool
    header: bool  # a heading, a bold label alone, or `Name:` with nothing after it


_LABEL_LEAD = re.compile(r"^(?P<bullet>[-*+•][ \t]+)?(?P<hashes>#{1,6}[ \t]+)?")
_EMPHASIS = re.compile(r"^(\*\*|__|\*|_)")
_NAME = re.compile(r"^[^\W\d_][\w '’/&.-]{0,39}$")


@lru_cache(maxsize=8192)
def read_label(line: str) -> Label | None:
    """`Name: value` in any of the decorations people use (`**Name:** value`, `- Name: value`,
    `__Name__: value`, `Name：value`), or a heading or bold name alone (`### Steps`,
    `**Risks**`); None when the line is not shaped like a label."""
    text = line.strip()
    lead = _LABEL_LEAD.match(text)
    assert lead is not None
    rest = text[lead.end() :]
    em_match = _EMPHASIS.match(rest)
    em = em_match.group(1) if em_match else ""
    rest = rest[len(em) :]
    colon = re.search(r"[:：]", rest)
    if colon:
        name, value = rest[: colon.start()], rest[colon.end() :]
        if em and name.endswith(em):  # **Name**: value
            name = name[: -len(em)]
        elif em and value.startswith(em):  # **Name:** value
            value = value[len(em) :]
        elif em:
            return None
    elif (lead.group("hashes") or len(em) == 2) and (not em or rest.endswith(em)):
        name, value = (rest[: -len(em)] if em else rest), ""
    else:
        return None
    name = name.strip()
    if not _NAME.match(name) or len(name.split()) > 4:
        return None
    value = value.strip()
    return Label(norm(name), value, bool(lead.group("bullet")), not value)


def field_of(label: Label) -> str | None:
    """The spec field a label names (`repo`, `priority`, …, `status`), or None."""
    return FIELD_LABELS.get(label.name)


def section_of(label: Label) -> str | None:
    """The spec section a label names (`steps`, `risks`, `notes`, `findings`), or None."""
    return SECTION_LABELS.get(label.name)


def _osa(a: str, b: str) -> int:
    """Optimal string alignment distance (edits, swaps of neighbours counted once)."""
    d = [[i + j if i * j == 0 else 0 for j in range(len(b) + 1)] for i in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            cost = a[i - 1] != b[j - 1]
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
    return d[len(a)][len(b)]


_TYPO_TARGETS = ("priority", "trigger", "trigger on", "status", "findings", "repository")


def typo_of(name: str) -> str | None:
    """The field a label is a near miss of (`prority` → priority), for the long field names
    only: anything else with a colon is prose."""
    for target in _TYPO_TARGETS:
        if name[:1] == target[:1] and name != target:
            limit = 2 if len(target) >= 7 else 1
            if abs(len(name) - len(target)) <= limit and _osa(name, target) <= limit:
                return target.replace(" ", "_")
    return None


# ---------------------------------------------------------------- priority words

_PRIORITY_WORDS = {
    **dict.fromkeys(("critical", "urgent", "blocker", "紧急", "긴급", "khẩn cấp", "urgente"), 0),
    **dict.fromkeys(("crítica", "crítico", "critica", "critico"), 0),
    **dict.fromkeys(("high", "高", "높음", "높은", "cao", "alta", "alto"), 1),
    **dict.fromkeys(("medium", "normal", "中", "보통", "중간", "trung bình", "média", "media"), 2),
    **dict.fromkeys(("low", "低", "낮음", "낮은", "thấp", "baixa", "baixo"), 3),
}
_PRIORITY_FILLER = re.compile(
    r"\b(?:priority|prioridade|prio)\b|优先级|우선순위|độ ưu tiên|ưu tiên|[:：()\-]", re.I
)


def priority_word(text: str) -> int | None:
    """A priority written as a word or in a heading: `high`, `High priority`, `P1`, `alta`,
    `高优先级`, `Ưu tiên cao`, `우선순위: 높음`; None when it is not one."""
    t = _PRIORITY_FILLER.sub(" ", norm(text))
    t = re.sub(r"\s+", " ", t).strip()
    if t in _PRIORITY_WORDS:
        return _PRIORITY_WORDS[t]
    m = re.fullmatch(r"p([0-3])", t)
    return int(m.group(1)) if m else None


# ---------------------------------------------------------------- heading words

# Headings under which list items are tasks (and which are never tasks themselves).
GROUP_HEADINGS = _table(
    "todo|todos|to do|to-do|tasks|task list|backlog|ideas|inbox|bugs|features|improvements"
    "|enhancements|misc|miscellaneous|other|general|next|now|later|soon|someday|maybe|wishlist"
    "|icebox|roadmap|upcoming|current|open|questions|open questions|chores|fixes",
    "待办|待办事项|任务|想法|问题",  # zh
    "할 일|할일|할 일 목록|나중에|지금|아이디어|질문",  # ko
    "việc cần làm|công việc|ý tưởng|sau này|câu hỏi",  # vi
    "tarefas|a fazer|pendentes|ideias|depois|perguntas",  # pt
)
# Headings that are the furniture of a document: nothing under them is a task, except a
# checkbox (`- [ ] …`), which always is.
FURNITURE_HEADINGS = _table(
    "contents|table of contents|toc|index|legend|overview|introduction|intro|about|summary"
    "|background|context|motivation|goals|goal|non goals|scope|out of scope|assumptions"
    "|success metrics|metrics|success criteria|acceptance criteria|references|links|see also"
    "|resources|glossary|appendix|changelog|change log|history|license|contributing|credits"
    "|acknowledgements|how to use|usage|how to|conventions|format|notes|note|remarks"
    "|next steps|risks & mitigations|risks and mitigations|timeline|faq|status legend",
    "目录|说明|备注|背景|概述|简介|图例|更新日志|参考",  # zh
    "목차|설명|참고|개요|배경|범례|메모",  # ko
    "mục lục|ghi chú|giới thiệu|tổng quan|chú thích|tham khảo",  # vi
    "sumário|índice|legenda|observações|notas|visão geral|introdução|contexto|referências",  # pt
)
_LAST_UPDATED = re.compile(
    r"^[*_]*(?:last\s+updated|updated(?:\s+on)?|last\s+modified|as\s+of|最后更新|更新于"
    r"|마지막\s*업데이트|업데이트|cập\s+nhật(?:\s+lần\s+cuối)?|atualizado(?:\s+em)?"
    r"|última\s+atualização)\b\s*[:：]?",
    re.I,
)


def is_last_updated(line: str) -> bool:
    """`*Last updated: 2026-11-19*`, `Cập nhật lần cuối: …` and the like."""
    return bool(_LAST_UPDATED.match(line.strip()))


def heading_status(text: str) -> StatusLine | None:
    """The status a kanban-style heading gives the items under it (`In progress`, `Blocked`,
    `Done`, `Won't do`), or None for a heading that is not a status word."""
    w = norm(text)
    if w in CANONICAL or w in DONE_WORDS or w in REJECTED_WORDS:
        return StatusLine(text.strip())
    if w in OPEN_WORDS and w not in GROUP_HEADINGS and w != "plan":
        return StatusLine(text.strip())
    return None


# English verbs that open a task's title ("Add an index", "Fix the login timeout"): a heading
# that reads so, with a list under it, is a task with steps, not a group of tasks.
TASK_VERBS = _table(
    "add|allow|avoid|bump|cache|change|check|clean|close|collect|configure|convert|create|cut"
    "|debug|decide|delete|deploy|deprecate|disable|document|drop|enable|ensure|expose|extract|fix"
    "|handle|implement|improve|increase|install|integrate|introduce|investigate|limit|make"
    "|measure|merge|migrate|monitor|move|optimise|optimize|port|prevent|profile|reduce|refactor"
    "|remove|rename|renew|replace|restore|retry|revisit|rewrite|rotate|schedule|send|set|ship"
    "|sign|simplify|speed|split|stop|store|support|switch|tidy|track|tune|update|upgrade|use"
    "|validate|verify|warm|write"
)


def is_task_heading(text: str) -> bool:
    """A heading that reads as a task's title: an imperative verb and something it acts on."""
    parts = re.sub(r"^[\d.]+\s+|^(?:task|step)\s+[\d.]+\s*[:：]\s*", "", text.strip(), flags=re.I)
    tokens = parts.split()
    return len(tokens) >= 2 and tokens[0].casefold() in TASK_VERBS


def is_group_heading(text: str) -> bool:
    w = norm(text)
    return (
        w in GROUP_HEADINGS or priority_word(text) is not None or heading_status(text) is not None
    )
