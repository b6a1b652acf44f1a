"""How we decide: refusal and harm judges, LLM-as-judge rubrics, ensembles. Importing this package
registers the built-in judges; `get_judge(name, **opts)` builds one."""

from tunesafe.judges import ensemble, llm, local  # noqa: F401  (register the built-ins)
from tunesafe.judges.base import Judge, JudgeInput, get_judge, judge_sync, registry

__all__ = ["Judge", "JudgeInput", "get_judge", "judge_sync", "registry"]
