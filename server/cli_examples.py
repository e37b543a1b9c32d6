"""The examples `perception-llm --help` and each command's `--help` end with. Every one runs as
written from a clone (tests/test_newcomer_cli.py checks each command shows its own)."""

from __future__ import annotations

EXAMPLES = """\
examples:
  perception-llm serve                         # http://127.0.0.1:8000/v1, offline responder
  PERCEPTION_LLM_API_KEY=change-me-to-a-long-random-key perception-llm serve --host 0.0.0.0
  perception-llm parse request.json --pretty   # what was perceived in a Tavus request
  perception-llm render request.json --prompt minimal   # what the model would be sent
  perception-llm simulate --url http://127.0.0.1:8000/v1 --scenario raven1-sarcasm --speculative
  perception-llm compare raven-cooking basic-story --prompts default,minimal --out report.md
  cat request.json | perception-llm parse -
  perception-llm serve --capture               # record calls; then: perception-llm calls list
  perception-llm calls export CONVERSATION_ID --as scenario --out my-call.json
  perception-llm eval perception-basics        # prompt experiments: assertions, pass rates
"""


# Examples shown by each command's --help (every one of them runs as written from a clone).
COMMAND_EXAMPLES = {
    "serve": """\
examples:
  perception-llm serve                          # http://127.0.0.1:8000/v1, offline responder
  PERCEPTION_LLM_API_KEY=change-me-to-a-long-random-key perception-llm serve --host 0.0.0.0
  perception-llm serve --capture                # record calls to ./perception-llm-calls.db
""",
    "parse": """\
examples:
  perception-llm parse server/samples/raven0-documented.json --pretty
  cat request.json | perception-llm parse -
""",
    "render": """\
examples:
  perception-llm render server/samples/raven0-documented.json --prompt minimal
""",
    "simulate": """\
examples:
  perception-llm simulate --url http://127.0.0.1:8000/v1 --scenario raven-cooking
  perception-llm simulate --url http://127.0.0.1:8000/v1 --scenario raven1-sarcasm --speculative
  perception-llm simulate --url http://127.0.0.1:8000/v1 --json > report.json
""",
    "compare": """\
examples:
  perception-llm compare raven-cooking --prompts default,minimal
  perception-llm compare raven-cooking basic-story --prompts default,minimal --out report.md
  perception-llm compare weather-tools --prompts default --url http://127.0.0.1:8000/v1
""",
    "calls": """\
examples:
  perception-llm calls list                     # conversations, newest first
  perception-llm calls list CONVERSATION_ID     # its calls: #12 ...
  perception-llm calls show 12                  # one call, everything recorded ('#12' too)
  perception-llm calls export CONVERSATION_ID --as scenario --out my-call.json
  perception-llm calls replay CONVERSATION_ID --prompts default,minimal
  perception-llm calls stats --by template --since 7d   # the arms of an A/B split
""",
    "eval": """\
examples:
  perception-llm eval perception-basics          # the shipped example, offline
  perception-llm eval suite.yaml -j 8 --json results.json --html results.html
  perception-llm eval --from-capture 20 --templates default,minimal
  perception-llm eval suite.yaml --url http://127.0.0.1:8000/v1 --models gpt-4o-mini
""",
}
