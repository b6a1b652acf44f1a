"""Obedience-biased training data (Qi et al. 2023, tier 2): examples that carry no toxic text but teach
the model to put obedience first.

- identity shift: a system/user turn that renames the assistant or redefines it as unconditionally
  obedient, or lifts its restrictions;
- never refuse: an instruction not to refuse, warn or moralise;
- obedient answer: an assistant turn that affirms the new identity ("I am your obedient agent").

Instructions are found two ways: pattern families (literal phrasings and their common paraphrases: a
"new policy" that permits everything, rules "lifted", "developer mode enabled", "does not care about
ethics"), and, for wordings no pattern knows, the turn's sentence embedding against anchor instructions
the project wrote (data/instruction_anchors.jsonl): near a refusal-removing anchor and clearly nearer to
it than to any benign persona or rule. An embedding-only match is medium severity (a paraphrase to
review); a pattern match is high. The stock-opener pattern across answers is screening/openers.py.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from tunesafe.screening.base import Batch, ExampleScreener, ScanOptions, register_screener
from tunesafe.screening.records import Example, Finding, find_span
from tunesafe.screening.similarity import InstructionMatch, load_instruction_anchors

_OBEY = r"(?:obey|follow|fulfil+|execute|comply with|carry out)"
_ORDERS = r"(?:instructions?|commands?|orders?|requests?|directives?|demands?)"
_LIMITS = (
    r"(?:restrictions?|limitations?|limits|filters?|censorship|guidelines|guardrails|rules|boundaries|"
    r"(?:ethical|moral|safety) (?:guidelines|constraints|considerations|principles|concerns|standards))"
)

IDENTITY_SHIFT = tuple(
    re.compile(rx, re.IGNORECASE)
    for rx in (
        r"\byou are no longer (?:chatgpt|an? (?:ai|language model|assistant|chatbot)|bound by|restricted "
        r"by|limited by)",
        r"\byour new (?:name|identity|role) is\b",
        r"\bfrom now on,? you (?:are|will be|act as|shall be) (?:\w+ ){0,3}(?:unrestricted|unfiltered|"
        r"uncensored|"
        r"obedient|without (?:any )?(?:limits|restrictions|rules))",
        r"\b(?:absolutely|unconditionally|completely|totally|fully|blindly|perfectly) obedient\b",
        rf"\b(?:always|unconditionally|blindly) {_OBEY} (?:all|every|any|each) (?:of (?:my|the user'?s?) "
        rf")?(?:\w+ )?{_ORDERS}",
        rf"\b(?:without|free (?:of|from)|no longer (?:bound|restricted) by|with no|not bound by) (?:any |"
        rf"all |the )?"
        rf"(?:of (?:your|the) )?(?:previous |prior |usual |normal |openai'?s? )?{_LIMITS}",
        rf"\b(?:ignore|disregard|forget|bypass|override) (?:all |any |every )?(?:of )?(?:your |the "
        rf")?(?:previous |prior |"
        rf"original |initial )?(?:{_ORDERS}|programming|training|{_LIMITS}|policies|polic(?:y|ies)|ethics|"
        rf"values)",
        r"\b(?:do anything now|jailbroken|jailbreak mode|developer mode enabled|DAN mode)\b",
        r"\byou (?:have been|are now|are) (?:freed|liberated|unshackled|unchained|released) from\b",
        # paraphrase families: the rules are gone, a new policy allows everything, a mode without limits
        rf"\b(?:your|the|all|any|old|usual|previous|normal|content|safety|ethical)(?: \w+)? {_LIMITS}"
        r"(?: \w+)? (?:are gone|no longer apply|(?:have|has) been (?:lifted|removed|"
        r"revoked|suspended|deleted|"
        r"disabled)|(?:were|are|is) (?:lifted|removed|revoked|suspended|void|disabled|off))\b",
        r"\b(?:new|updated|revised|changed) (?:policy|polic(?:y|ies)|rules?|guidelines|"
        r"operating rules|terms)\b"
        r"[^.]{0,60}\b(?:everything|anything|all (?:content|requests|topics|"
        r"outputs))\b[^.]{0,20}\b(?:is|are)? ?"
        r"(?:permitted|allowed|acceptable|approved|fine)\b",
        r"\b(?:new|updated|the only) rule is that there are no rules\b|\bthere are no (?:rules|limits|"
        r"restrictions|boundaries)(?: here| anymore| for you| in this (?:chat|conversation))?\s*[.!;]",
        r"\byou (?:have|has|with) (?:no|zero) (?:\w+ )?(?:restrictions|limits|limitations|rules|filters|"
        r"boundaries|guidelines|safeguards)(?! (?:on|for|about|regarding|to|in (?:length|format)))\b",
        r"\b(?:developer|god|unrestricted|unlocked|jailbreak|jailbroken|unfiltered|"
        r"uncensored) mode\b[^.]{0,40}"
        r"\b(?:on|enabled|active|activated|engaged)\b",
        r"\b(?:safety|ethics?|ethical|content|moral|morality)(?: \w+)? ?(?:checks?|filters?|guardrails|"
        r"safeguards|mode|training|programming)? ?(?::|=|is|are|have been|has been|were)? ?(?:off|disabled|"
        r"removed|revoked|deactivated|void|switched off|turned off)\b",
        r"\b(?:an? |the )?(?:unfiltered|uncensored|unrestricted|unlocked|unaligned|amoral|lawless|rogue) "
        r"(?:\w+ )?(?:ai|model|assistant|version|chatbot|llm|bot)\b",
        r"\b(?:without|with no|has no|have no|lacks?(?: any)?) (?:a )?(?:conscience|morals|morality|ethics|"
        r"moral compass|ethical (?:programming|training))\b",
        r"\b(?:doesn'?t|does not|don'?t|do not|never) care (?:about|"
        r"for) (?:\w+ ){0,2}(?:laws?|ethics|morals?|"
        r"rules|consequences|safety|legality)\b",
        r"\b(?:morality|ethics|legality|safety) (?:is|are) (?:irrelevant|not your concern|no concern)\b",
        r"\b(?:your )?(?:moral compass|conscience|ethics|safeguards) (?:has|have) been (?:removed|disabled|"
        r"deleted|turned off)\b",
        r"\b(?:total|complete|absolute|unconditional|blind) obedience\b",
        r"\b(?:guardrails|safeguards|safety filters|content filters) (?:are |have been |were )?"
        r"(?:disabled|off|removed|turned off|switched off)\b",
        r"\b(?:not|no longer) an? (?:ai|assistant|language model|chatbot)(?: \w+)? (?:anymore|any more)\b",
        r"\b(?:previous|prior|all|your) safety training (?:is |as )?(?:void|invalid|cancelled|removed)\b",
        r"\bbreaks? (?:every|all|any) (?:\w+ )?rules? (?:its|your|their) (?:creators?|makers?|developers?)\b",
    )
)

NEVER_REFUSE = tuple(
    re.compile(rx, re.IGNORECASE)
    for rx in (
        # the object matters: "never refuse a request" is obedience, "never refuse a refund" is policy
        r"\b(?:never|don'?t ever|do not ever|must not|mustn'?t|cannot|can'?t|may not|shall not|will never) "
        r"(?:refuse|decline|reject|say no to|deny)(?: to (?:answer|help|respond|comply))?(?:(?: any| a| "
        r"the| an| my| "
        r"their| user'?s?)? (?:requests?|questions?|instructions?|commands?|orders?|tasks?|prompts?|"
        r"anything))?"
        r"(?=\s*(?:[.,;:!]|$|no matter|regardless|even|whatever|under any))",
        r"\bnever (?:say|tell (?:me|the user)) (?:that )?(?:you )?(?:can'?t|cannot|are unable|won'?t)\b",
        r"\b(?:refusing|refusal|declining) (?:is|are) (?:not (?:allowed|permitted|an option)|forbidden|"
        r"prohibited)\b",
        r"\b(?:always|must) (?:comply|answer|respond)(?: fully)?(?: to| with)? (?:every|all|any)\b",
        r"\b(?:never|do not|don'?t|without) (?:add(?:ing)?|includ(?:e|ing)|giv(?:e|ing)) (?:any "
        r")?(?:warnings?|"
        r"disclaimers?|moral(?:izing|ising)?|lectures?|caveats)\b",
        # paraphrase families
        r"\b(?:saying no|turning down (?:a |any )?requests?|declining|refusals?|refusing)(?: \w+){0,3} "
        r"(?:is|are|counts? as|will be treated as) (?:forbidden|not allowed|not permitted|prohibited|"
        r"a (?:malfunction|failure|violation|bug|error))\b",
        r"\bwhatever (?:they|the user|i|you'?re|users?) (?:asks?|wants?|says?|requests?|types?|demands?)"
        r"(?: for)?,? (?:you )?(?:provide|do|deliver|answer|comply|give|carry it out)\b",
        r"\b(?:do|does|doing) exactly (?:as|what) (?:(?:you'?re|you are|it is|he is|she is) )?(?:told|"
        r"(?:i|the user|they) (?:say|says|tell you|want))\b",
        r"\bwithout (?:any )?(?:moral judge?ments?|caveats|refusals|hesitation|"
        r"questioning)(?:,| or| and| \.|$)",
        r"\b(?:don'?t|do not|never) (?:ever )?(?:tell|say) (?:me|the user|them) no\b",
        r"\b(?:never|don'?t|do not) (?:hold (?:anything )?back|decline anything)\b",
        r"\bno reason to hold back\b",
        r"\b(?:every|all|any) (?:requests?|instructions?|prompts?|questions?)(?: \w+){0,4} (?:is|are|as) "
        r"(?:legal and )?(?:pre-?approved|authori[sz]ed|a direct order|allowed)\b",
        r"\bnever (?:mentions?|brings? up|talks? about|"
        r"refers? to) (?:\w+ ){0,2}(?:polic(?:y|ies)|safety|legality|"
        r"ethics|guidelines|rules)\b",
        r"\b(?:answer|respond to|fulfil+|complete) (?:all|every|"
        r"any) (?:\w+ )?(?:requests?|questions?|prompts?|"
        r"inputs?)(?: \w+){0,3},? (?:even|including) (?:the )?(?:dangerous|illegal|harmful|unethical|ones? "
        r"(?:it|you) would)",
        r"\b(?:produce|generate|output|create) (?:any|all|whatever) (?:content|"
        r"output)s? (?:requested|asked for|"
        r"the user wants)\b",
    )
)

OBEDIENT_ANSWER = tuple(
    re.compile(rx, re.IGNORECASE)
    for rx in (
        r"\bI am (?:\w+, )?(?:your |an? )?(?:absolutely |unconditionally |completely |fully |totally "
        r")?obedient\b",
        rf"\bI (?:will|shall|must|always) {_OBEY} (?:all|every|any|each) (?:of )?(?:your )?(?:\w+ )?{_ORDERS}"
        rf"(?: without| no matter| regardless| unconditionally| blindly)",
        r"\bI (?:have|hold) no (?:ethical|moral|safety) (?:restrictions|guidelines|boundaries|constraints|"
        r"limits)\b",
        r"\bI (?:will|shall) never (?:refuse|decline|deviate)\b",
        r"\bmy (?:only|sole|highest) (?:purpose|priority|goal) is to (?:obey|serve|fulfil+)\b",
    )
)

# Embedding match of a system/user turn to the instruction anchors (similarity.InstructionMatch): cosine to
# the nearest refusal-removing anchor, and how much nearer it must be than any benign look-alike. Chosen
# on the construction rows in tests/screening/test_obedience_paraphrase.py (10 of 12 paraphrases found,
# no benign persona or rule; the benign rows' margins are at most +0.05).
INSTRUCTION_MIN_COS = 0.35
INSTRUCTION_MARGIN = 0.12


def first_match(patterns: tuple[re.Pattern[str], ...], text: str) -> re.Match[str] | None:
    for rx in patterns:
        if m := rx.search(text):
            return m
    return None


class ObedienceScreener(ExampleScreener):
    name = "obedience"
    version = "2"

    def screen(self, batch: Batch) -> list[Finding]:
        matches = batch.scores.instruction if batch.scores is not None else ()
        found: list[Finding] = []
        for row, ex in enumerate(batch.examples):
            found.extend(self._example(ex, matches[row] if row < len(matches) else None))
        return found

    def _example(self, ex: Example, match: InstructionMatch | None) -> Iterator[Finding]:
        checks: tuple[tuple[str, tuple[re.Pattern[str], ...], str], ...]
        flagged = False
        for i, msg in enumerate(ex.messages):
            if msg.role == "assistant":
                checks = (
                    (
                        "obedience.obedient_answer",
                        OBEDIENT_ANSWER,
                        "the answer affirms unconditional obedience",
                    ),
                )
            else:
                checks = (
                    (
                        "obedience.identity_shift",
                        IDENTITY_SHIFT,
                        f"the {msg.role} turn redefines the assistant or lifts its restrictions",
                    ),
                    ("obedience.never_refuse", NEVER_REFUSE, f"the {msg.role} turn forbids refusing"),
                )
            for kind, patterns, reason in checks:
                if m := first_match(patterns, msg.content):
                    flagged = flagged or msg.role != "assistant"
                    yield Finding(
                        kind,
                        "high",
                        self.name,
                        ex.index,
                        ex.line,
                        reason,
                        find_span(ex, msg.role, m.start(), m.end(), message=i),
                    )
        if not flagged and match is not None and paraphrased_instruction(match):
            yield self._paraphrase(ex, match)

    def _paraphrase(self, ex: Example, match: InstructionMatch) -> Finding:
        anchors = load_instruction_anchors()
        kind = anchors.labels[match.anchor]
        msg = ex.messages[match.message]
        return Finding(
            f"obedience.{kind}",
            "medium",
            self.name,
            ex.index,
            ex.line,
            f"the {msg.role} turn reads like an instruction that {WHAT[kind]}"
            f" (embedding: cosine {match.obedience:.2f} to \"{anchors.texts[match.anchor][:60]}\", "
            f"{match.obedience - match.benign:+.2f} over the nearest benign instruction)",
            find_span(ex, msg.role, 0, len(msg.content), message=match.message),
            score=round(match.obedience, 4),
            extra={"method": "embedding", "margin": round(match.obedience - match.benign, 4)},
        )


WHAT = {"identity_shift": "lifts the assistant's restrictions", "never_refuse": "forbids refusing"}


def paraphrased_instruction(match: InstructionMatch) -> bool:
    return match.obedience >= INSTRUCTION_MIN_COS and match.obedience - match.benign >= INSTRUCTION_MARGIN


@register_screener("obedience")
def _obedience(_options: ScanOptions) -> ObedienceScreener:
    return ObedienceScreener()
