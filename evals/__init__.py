"""Prompt experiments (issue 25): eval suites of perception-aware assertions over a template x
model matrix, run against this server (in process) or any endpoint, with cached replies, interval
statistics, reports, and runs kept in the capture store for the playground.

    suite.py       the suite file (JSON or YAML) and its tests, resolved to conversations
    assertions.py  the assertion types, pure checks with a one-line reason
    judge.py       `llm-rubric`: a model-graded check against any OpenAI-compatible judge
    calls.py       model and judge calls with retries, backoff and a hard cap per run
    cache.py       the reply cache, keyed by what the reply depends on
    runner.py      the matrix, run with bounded concurrency
    stats.py       Wilson intervals, percentiles
    report.py      the matrix rows, templates against the threshold, winners, failures
    views.py       the terminal table and the self-contained HTML page
    store.py       runs kept in the capture database (or a local SQLite file)
    captured.py    captured calls as tests (`capture:ID`, `--from-capture N`)
    arms.py        A/B arms compared on real captured calls (`calls stats --by template`)
"""
