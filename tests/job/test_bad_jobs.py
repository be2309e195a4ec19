"""A corpus of wrong job files and input lines, each with the exact lines a user sees (DESIGN §2.1)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tokenflow_tui.job.handler_loader import load_handler
from tokenflow_tui.job.inputs import scan_input
from tokenflow_tui.job.problems import JobError
from tokenflow_tui.job.reader import load_job

JOB = "jobs/job.toml"
GOOD_LINE = '{"prompt": "hi"}\n'
ENV = {"OPENAI_API_KEY": "sk-test"}
SIM = '[job]\nname = "t"\ninput = "prompts.jsonl"\n\n[endpoint]\nsimulate = true\n'
REMOTE = (
    '[job]\nname = "t"\ninput = "prompts.jsonl"\n\n[endpoint]\nbase_url = "https://api.example.com/v1"\n'
    'model = "m"\napi_key_env = "OPENAI_API_KEY"\n'
)
HANDLER = '[job]\nname = "t"\ninput = "prompts.jsonl"\n\n[handler]\npath = "h.py:handler"\n'


@dataclass(frozen=True)
class Case:
    name: str
    job: str | bytes | None  # None: no job file at all
    expected: list[str]
    input: str | bytes | None = GOOD_LINE
    env: dict[str, str] = field(default_factory=lambda: dict(ENV))
    files: dict[str, str] = field(default_factory=dict)  # more files beside the job file


CASES = [
    # ----- the job file as a file, and TOML syntax
    Case("no job file", None, ["jobs/job.toml: cannot read the job file: no such file or directory"]),
    Case("toml: missing value", "[job]\nname = \n", ["jobs/job.toml:2:8: Invalid value"]),
    Case("toml: unterminated string", '[job]\nname = "abc', ["jobs/job.toml:2:12: Unterminated string"]),
    Case("toml: key twice", '[job]\nname = "a"\nname = "b"\n', ["jobs/job.toml:3:11: Cannot overwrite a value"]),
    Case("job file not UTF-8", b'[job]\nname = "\xff"\n', ["jobs/job.toml:2:9: not valid UTF-8 (byte 0xff)"]),
    # ----- tables
    Case("no [job]", "[endpoint]\nsimulate = true\n", ["jobs/job.toml: missing table [job] (with name and input)"]),
    Case(
        "no [endpoint] nor [handler]",
        '[job]\nname = "t"\ninput = "prompts.jsonl"\n',
        ["jobs/job.toml: missing table [endpoint] (with base_url or simulate = true), [[endpoints]], or a [handler]"],
    ),
    Case(
        "misspelt table",
        SIM + "[worker]\ncount = 2\n",
        ["jobs/job.toml:7:1: unknown table [worker]; did you mean [workers]?"],
    ),
    Case(
        "misspelt key",
        SIM.replace("name =", 'nme = "t"\nname ='),
        ['jobs/job.toml:2:1: unknown key "nme" in [job]; did you mean "name"?'],
    ),
    Case(
        "key outside any table",
        "count = 3\n" + SIM,
        ['jobs/job.toml:1:1: key "count" is outside any table; it belongs in [workers]'],
    ),
    Case(
        "unknown top-level key",
        'colour = "red"\n' + SIM,
        ['jobs/job.toml:1:1: unknown key "colour" outside any table'],
    ),
    Case(
        "section is not a table",
        'job = "t"\n[endpoint]\nsimulate = true\n',
        ["jobs/job.toml:1:1: job must be a table, found a string"],
    ),
    Case(
        "unknown sub-table",
        SIM + "[workers.extra]\nx = 1\n",
        ["jobs/job.toml:7:1: unknown table [workers.extra]"],
    ),
    # ----- [job]
    Case(
        "name missing",
        SIM.replace('name = "t"\n', ""),
        ['jobs/job.toml:1:1: job.name is required: a name such as "demo"'],
    ),
    Case(
        "name with a space",
        SIM.replace('"t"', '"my job"'),
        ['jobs/job.toml:2:1: job.name may contain only letters, digits, ".", "_" and "-"'],
    ),
    Case(
        "name only dots",
        SIM.replace('"t"', '".."'),
        ["jobs/job.toml:2:1: job.name cannot be only dots: it names the folder runs/<name>"],
    ),
    Case(
        "name not a string",
        SIM.replace('"t"', "7"),
        ["jobs/job.toml:2:1: job.name must be a string, found an integer"],
    ),
    Case(
        "input missing",
        SIM.replace('input = "prompts.jsonl"\n', ""),
        ["jobs/job.toml:1:1: job.input is required: the file of requests (JSONL, Parquet, CSV) or a dataset folder"],
    ),
    Case(
        "input not found",
        SIM.replace("prompts.jsonl", "nope.jsonl"),
        ["jobs/job.toml:3:1: input file not found: jobs/nope.jsonl"],
    ),
    Case(
        "input is a folder",
        SIM.replace("prompts.jsonl", "."),
        ["jobs/job.toml:3:1: the input jobs is a folder, and not a dataset saved by save_to_disk"],
    ),
    Case(
        "output is a file",
        SIM.replace('input = "prompts.jsonl"\n', 'input = "prompts.jsonl"\noutput = "prompts.jsonl"\n'),
        ["jobs/job.toml:4:1: the output jobs/prompts.jsonl exists and is not a folder"],
    ),
    # ----- [endpoint]
    Case(
        "base_url and simulate",
        REMOTE + "simulate = true\n",
        ["jobs/job.toml:9:1: endpoint: give base_url or simulate = true, not both"],
    ),
    Case(
        "neither base_url nor simulate",
        SIM.replace("simulate = true", "simulate = false"),
        ["jobs/job.toml:5:1: endpoint needs base_url (an OpenAI-compatible API root) or simulate = true"],
    ),
    Case(
        "base_url not http",
        REMOTE.replace("https://api.example.com/v1", "api.example.com/v1"),
        [
            'jobs/job.toml:6:1: endpoint.base_url must be an http:// or https:// URL, such as "https://api.openai.com/v1"'
        ],
    ),
    Case(
        "base_url with a password",
        REMOTE.replace("https://", "https://me:hunter2@"),
        [
            "jobs/job.toml:6:1: endpoint.base_url must not hold a user or password; name the key's variable in api_key_env"
        ],
    ),
    Case(
        "base_url with the route",
        REMOTE.replace("/v1", "/v1/chat/completions"),
        [
            "jobs/job.toml:6:1: endpoint.base_url is the API root (such as …/v1); the handler adds /chat/completions itself"
        ],
    ),
    Case(
        "api misspelt",
        SIM + 'api = "chatt"\n',
        ['jobs/job.toml:7:1: endpoint.api must be "chat" or "completions", found "chatt"; did you mean "chat"?'],
    ),
    Case(
        "model missing",
        REMOTE.replace('model = "m"\n', ""),
        ['jobs/job.toml:5:1: endpoint.model is required: the model to ask, such as "gpt-4o-mini"'],
    ),
    Case(
        "api_key_env missing for a remote API",
        REMOTE.replace('api_key_env = "OPENAI_API_KEY"\n', ""),
        [
            "jobs/job.toml:5:1: endpoint.api_key_env is required: the name of the environment variable that holds the API key"
        ],
    ),
    Case(
        "key variable not set",
        REMOTE,
        ["jobs/job.toml:8:1: the environment variable OPENAI_API_KEY is not set (endpoint.api_key_env)"],
        env={},
    ),
    Case(
        "key variable empty",
        REMOTE,
        ["jobs/job.toml:8:1: the environment variable OPENAI_API_KEY is empty (endpoint.api_key_env)"],
        env={"OPENAI_API_KEY": ""},
    ),
    Case(
        "key pasted in api_key_env is not repeated",
        REMOTE.replace('"OPENAI_API_KEY"', '"sk-proj-abc123"'),
        [
            "jobs/job.toml:8:1: endpoint.api_key_env must be the name of an environment variable "
            "(letters, digits and _); the key itself never goes in the job file"
        ],
    ),
    Case(
        "timeout zero",
        SIM + "timeout_s = 0\n",
        ["jobs/job.toml:7:1: endpoint.timeout_s must be a number > 0, found 0"],
    ),
    Case(
        "timeout a string",
        SIM + 'timeout_s = "120"\n',
        ["jobs/job.toml:7:1: endpoint.timeout_s must be a number > 0, found a string"],
    ),
    Case(
        "transport unknown",
        SIM + 'transport = "requests"\n',
        ['jobs/job.toml:7:1: endpoint.transport must be "asyncio" or "aiohttp" or "httpx", found "requests"'],
    ),
    Case(
        "simulate not a boolean",
        SIM.replace("simulate = true", 'simulate = "yes"'),
        ["jobs/job.toml:6:1: endpoint.simulate must be true or false, found a string"],
    ),
    # ----- [endpoint.simulator]
    Case(
        "simulator without simulate",
        REMOTE + "\n[endpoint.simulator]\nlatency_ms = 5\n",
        ["jobs/job.toml:10:1: [endpoint.simulator] is only used with simulate = true"],
    ),
    Case(
        "simulator latency negative",
        SIM + "\n[endpoint.simulator]\nlatency_ms = -1\n",
        ["jobs/job.toml:9:1: endpoint.simulator.latency_ms must be a number >= 0, found -1"],
    ),
    Case(
        "simulator key misspelt",
        SIM + "\n[endpoint.simulator]\nlatency = 5\n",
        ['jobs/job.toml:9:1: unknown key "latency" in [endpoint.simulator]; did you mean "latency_ms"?'],
    ),
    Case(
        "fail kind unknown, in an inline table",
        SIM + '\n[endpoint.simulator]\nfail = { "429" = 0.05, "4299" = 0.1 }\n',
        [
            "jobs/job.toml:9:24: endpoint.simulator.fail: unknown fault kind '4299'; valid kinds: "
            '429, 500, 503, reset, stall, malformed, truncated, drip, huge, ctype, no_done, length, non_json; did you mean "429"?'
        ],
    ),
    Case(
        "fail probability above 1",
        SIM + "\n[endpoint.simulator]\nfail = { reset = 1.5 }\n",
        ["jobs/job.toml:9:10: endpoint.simulator.fail: the probability of reset must be from 0 to 1, not 1.5"],
    ),
    Case(
        "fail probabilities add up above 1",
        SIM + '\n[endpoint.simulator]\nfail = { "429" = 0.6, "500" = 0.6 }\n',
        ["jobs/job.toml:9:1: endpoint.simulator.fail: the fault probabilities add up to 1.2, more than 1"],
    ),
    Case(
        "fail not a table, dotted key form",
        SIM + "simulator.fail = 0.1\n",
        [
            "jobs/job.toml:7:11: endpoint.simulator.fail must be a table of failure kind = probability, "
            'such as { "429" = 0.05 }, found a float'
        ],
    ),
    Case(
        "seed not an integer",
        SIM + "\n[endpoint.simulator]\nseed = 1.5\n",
        ["jobs/job.toml:9:1: endpoint.simulator.seed must be an integer, found a float"],
    ),
    # ----- [request]
    Case(
        "params set the model",
        SIM + '\n[request]\nparams = { temperature = 0.7, model = "x" }\n',
        ['jobs/job.toml:9:31: request.params must not contain "model": the model is set by endpoint.model'],
    ),
    Case(
        "params turn on streaming",
        SIM + "\n[request.params]\nstream = true\n",
        ['jobs/job.toml:9:1: request.params must not contain "stream": streaming is set by endpoint.stream'],
    ),
    Case(
        "stream not a boolean",
        SIM + 'stream = "yes"\n',
        ["jobs/job.toml:7:1: endpoint.stream must be true or false, found a string"],
    ),
    Case(
        "idle timeout without stream",
        SIM + "idle_timeout_s = 30\n",
        ["jobs/job.toml:7:1: endpoint.idle_timeout_s is the wait between chunks of a stream: it needs stream = true"],
    ),
    Case(
        "stream with a handler",
        HANDLER + '\n[endpoint]\nbase_url = "http://127.0.0.1:9/v1"\nstream = true\n',
        ["jobs/job.toml:10:1: endpoint.stream is for the built-in handler; a [handler] makes its own requests"],
        files={"h.py": "async def handler(trajectory):\n    return None\n"},
    ),
    Case(
        "idle timeout zero",
        SIM + "stream = true\nidle_timeout_s = 0\n",
        ["jobs/job.toml:8:1: endpoint.idle_timeout_s must be a number > 0, found 0"],
    ),
    Case(
        "params not a table",
        SIM + "\n[request]\nparams = 3\n",
        ["jobs/job.toml:9:1: request.params must be a table, found an integer"],
    ),
    # ----- [cluster] (run --ray)
    Case(
        "cluster: zero shards",
        SIM + "\n[cluster]\nshards = 0\n",
        ["jobs/job.toml:9:1: cluster.shards must be an integer from 1 to 1024, found 0"],
    ),
    Case(
        "cluster: unknown key",
        SIM + "\n[cluster]\nshard = 2\n",
        ['jobs/job.toml:9:1: unknown key "shard" in [cluster]; did you mean "shards"?'],
    ),
    # ----- [workers], [retry], [limits]
    Case(
        "workers zero",
        SIM + "\n[workers]\ncount = 0\n",
        ["jobs/job.toml:9:1: workers.count must be an integer from 1 to 100000, found 0"],
    ),
    Case(
        "workers a boolean",
        SIM + "\n[workers]\ncount = true\n",
        ["jobs/job.toml:9:1: workers.count must be an integer from 1 to 100000, found a boolean"],
    ),
    Case(
        "workers a string",
        SIM + '\n[workers]\ncount = "64"\n',
        ["jobs/job.toml:9:1: workers.count must be an integer from 1 to 100000, found a string"],
    ),
    Case(
        "workers min above count",
        SIM + "\n[workers]\ncount = 4\nmin = 8\n",
        ["jobs/job.toml:10:1: workers.min (8) must not be above workers.count (4)"],
    ),
    Case(
        "workers max below count",
        SIM + "\n[workers]\ncount = 4\nmax = 2\n",
        ["jobs/job.toml:10:1: workers.max (2) must not be below workers.count (4)"],
    ),
    Case(
        "attempts too many",
        SIM + "\n[retry]\nmax_attempts = 101\n",
        ["jobs/job.toml:9:1: retry.max_attempts must be an integer from 1 to 100, found 101"],
    ),
    Case(
        "backoff cap below base",
        SIM + "\n[retry]\nbackoff_base_s = 2\nbackoff_max_s = 1\n",
        ["jobs/job.toml:10:1: retry.backoff_max_s (1) must not be below retry.backoff_base_s (2)"],
    ),
    Case(
        "rate negative",
        SIM + "\n[limits]\nrequests_per_minute = -5\n",
        ["jobs/job.toml:9:1: limits.requests_per_minute must be a number >= 0, found -5"],
    ),
    Case(
        "tokens a float",
        SIM + "\n[limits]\ntokens_per_minute = 1.5\n",
        ["jobs/job.toml:9:1: limits.tokens_per_minute must be an integer >= 0, found a float"],
    ),
    Case(
        "rate infinite",
        SIM + "\n[limits]\nrequests_per_minute = inf\n",
        ["jobs/job.toml:9:1: limits.requests_per_minute must be a number >= 0, found inf"],
    ),
    Case(
        "pace not a boolean",
        SIM + '\n[limits]\npace = "off"\n',
        ["jobs/job.toml:9:1: limits.pace must be true or false, found a string"],
    ),
    Case(
        "pace misspelt",
        SIM + "\n[limits]\npaced = false\n",
        ['jobs/job.toml:9:1: unknown key "paced" in [limits]; did you mean "pace"?'],
    ),
    Case(
        "cost cap without prices",
        SIM + "\n[limits]\nmax_cost_usd = 5\nprice_input_per_million_usd = 0.15\n",
        ["jobs/job.toml:9:1: limits.max_cost_usd needs limits.price_output_per_million_usd to count the cost"],
    ),
    # ----- [handler]
    Case(
        "handler path without function",
        HANDLER.replace("h.py:handler", "h.py"),
        ['jobs/job.toml:6:1: handler.path must look like "file.py:function", found "h.py"'],
    ),
    Case("handler file missing", HANDLER, ["jobs/job.toml:6:1: handler file not found: jobs/h.py"]),
    Case(
        "handler function missing",
        HANDLER,
        ['jobs/job.toml:6:1: jobs/h.py has no "handler"; did you mean "handle"?'],
        files={"h.py": "async def handle(trajectory):\n    return None\n"},
    ),
    Case(
        "handler timeout not above zero",
        HANDLER + "timeout_s = 0\n",
        ["jobs/job.toml:7:1: handler.timeout_s must be a number > 0, found 0"],
        files={"h.py": "async def handler(trajectory):\n    return None\n"},
    ),
    Case(
        "handler not async",
        HANDLER,
        ['jobs/job.toml:6:1: "h.py:handler" is a plain function (def); a handler is an async function (async def)'],
        files={"h.py": "def handler(trajectory):\n    return None\n"},
    ),
    Case(
        "handler file fails on import",
        HANDLER,
        ["jobs/h.py:2:1: cannot import the handler: ModuleNotFoundError: No module named 'no_such_module_xyz'"],
        files={"h.py": "import os\nimport no_such_module_xyz\n"},
    ),
    Case(
        "handler file has a syntax error",
        HANDLER,
        ["jobs/h.py:1:21: cannot import the handler: SyntaxError: expected ':'"],
        files={"h.py": "async def handler(t)\n    return 1\n"},
    ),
    # ----- several problems at once, in reading order
    Case(
        "problems of several tables",
        SIM + "\n[workers]\ncount = 0\n\n[retry]\nmax_attempts = 0\n[endpoint.simulator]\njitter_ms = -2\n",
        [
            "jobs/job.toml:9:1: workers.count must be an integer from 1 to 100000, found 0",
            "jobs/job.toml:12:1: retry.max_attempts must be an integer from 1 to 100, found 0",
            "jobs/job.toml:14:1: endpoint.simulator.jitter_ms must be a number >= 0, found -2",
        ],
    ),
    # ----- input lines (positions are physical lines of the input)
    Case(
        "input: trailing comma",
        SIM,
        ["jobs/prompts.jsonl:1:15: invalid JSON: trailing comma is not allowed"],
        input='{"prompt": "a",}\n',
    ),
    Case(
        "input: not an object",
        SIM,
        ["jobs/prompts.jsonl:2:1: expected a JSON object, found an array"],
        input=GOOD_LINE + '["a"]\n',
    ),
    Case(
        "input: neither messages nor prompt",
        SIM,
        ['jobs/prompts.jsonl:1:1: a line needs "messages" (a list of chat messages) or "prompt" (a string)'],
        input='{"text": "a"}\n',
    ),
    Case(
        "input: both messages and prompt",
        SIM,
        ['jobs/prompts.jsonl:1:1: a line has "messages" or "prompt", not both'],
        input='{"prompt": "a", "messages": []}\n',
    ),
    Case(
        "input: empty messages",
        SIM,
        ['jobs/prompts.jsonl:1:1: "messages" must not be empty'],
        input='{"messages": []}\n',
    ),
    Case(
        "input: message without role",
        SIM,
        ['jobs/prompts.jsonl:1:1: "messages"[1] has no "role"'],
        input='{"messages": [{"role": "user", "content": "a"}, {"content": "b"}]}\n',
    ),
    Case(
        "input: content a number",
        SIM,
        ['jobs/prompts.jsonl:1:1: "messages"[0].content must be a string or a list of content parts, found an integer'],
        input='{"messages": [{"role": "user", "content": 5}]}\n',
    ),
    Case(
        "input: message not an object",
        SIM,
        ['jobs/prompts.jsonl:1:1: "messages"[0] must be an object with "role" and "content", found a string'],
        input='{"messages": ["hi"]}\n',
    ),
    Case(
        "input: prompt a number",
        SIM,
        ['jobs/prompts.jsonl:1:1: "prompt" must be a string, found an integer'],
        input='{"prompt": 5}\n',
    ),
    Case(
        "input: id a float",
        SIM,
        ['jobs/prompts.jsonl:1:1: "id" must be a string or an integer, found a number'],
        input='{"prompt": "a", "id": 1.5}\n',
    ),
    Case(
        "input: id twice, past blank lines",
        SIM,
        ['jobs/prompts.jsonl:4:1: duplicate id "x": first used on line 1'],
        input='{"prompt": "a", "id": "x"}\n\n{"prompt": "b", "id": "y"}\n{"prompt": "c", "id": "x"}\n',
    ),
    Case(
        "input: id equal to another line's index",
        SIM,
        ['jobs/prompts.jsonl:3:1: duplicate id 1 (its index, as it has no "id"): first used on line 1'],
        input='{"prompt": "a", "id": 1}\n\n{"prompt": "b"}\n',
    ),
    Case(
        "input: params set the model",
        SIM,
        ['jobs/prompts.jsonl:1:1: "params" must not contain "model": the model is set by endpoint.model'],
        input='{"prompt": "a", "params": {"model": "x"}}\n',
    ),
    Case(
        "input: params not an object",
        SIM,
        ['jobs/prompts.jsonl:1:1: "params" must be an object, found an array'],
        input='{"prompt": "a", "params": [1]}\n',
    ),
    Case(
        "input: messages for the completions api",
        SIM + 'api = "completions"\n',
        ['jobs/prompts.jsonl:1:1: "messages" needs api = "chat"; with api = "completions" a line gives a "prompt"'],
        input='{"messages": [{"role": "user", "content": "a"}]}\n',
    ),
    Case(
        "input: not UTF-8",
        SIM,
        ["jobs/prompts.jsonl:1:13: not valid UTF-8 (byte 0xff)"],
        input=b'{"prompt": "\xff"}\n',
    ),
    Case("input: no requests", SIM, ["jobs/prompts.jsonl: the input has no requests"], input="\n  \n"),
    Case(
        "input with a handler: still an object",
        HANDLER,
        ["jobs/prompts.jsonl:1:1: expected a JSON object, found a string"],
        input='"just text"\n',
        files={"h.py": "async def handler(trajectory):\n    return None\n"},
    ),
    Case(
        "input with a handler: ids still unique",
        HANDLER,
        ["jobs/prompts.jsonl:2:1: duplicate id 7: first used on line 1"],
        input='{"id": 7}\n{"id": 7}\n',
        files={"h.py": "async def handler(trajectory):\n    return None\n"},
    ),
    Case(
        "input: 25 bad lines show 20 and a count",
        SIM,
        [f"jobs/prompts.jsonl:{n}:1: expected a JSON object, found an integer" for n in range(1, 21)]
        + ["… and 5 more problems"],
        input="".join(f"{n}\n" for n in range(25)),
    ),
    Case(
        "input: 21 bad lines",
        SIM,
        [f"jobs/prompts.jsonl:{n}:1: expected a JSON object, found null" for n in range(1, 21)]
        + ["… and 1 more problem"],
        input="null\n" * 21,
    ),
    # ----- issue 18: almost right
    Case(
        "toml: nested thousands deep",
        SIM + "[request]\nparams = { deep = " + "[" * 5000 + "]" * 5000 + " }\n",
        ["jobs/job.toml:8:118: arrays or tables nested more than 100 levels deep; a job file needs a few at most"],
    ),
    Case(
        "job file larger than 1 MB",
        SIM + "# " + "x" * (1 << 20) + "\n",
        ["jobs/job.toml: the job file is larger than 1,024 KB; the requests go in the input file"],
    ),
    Case(
        "job name too long",
        SIM.replace('name = "t"', f'name = "{"n" * 101}"'),
        ["jobs/job.toml:2:1: job.name is 101 characters long; at most 100: it names the folder runs/<name>"],
    ),
    Case(
        "output inside a file",
        SIM.replace('input = "prompts.jsonl"', 'input = "prompts.jsonl"\noutput = "prompts.jsonl/sub"'),
        [
            "jobs/job.toml:4:1: the output jobs/prompts.jsonl/sub is inside jobs/prompts.jsonl, which is a file, not a folder"
        ],
    ),
    Case(
        "output empty",
        SIM.replace('input = "prompts.jsonl"', 'input = "prompts.jsonl"\noutput = ""'),
        ["jobs/job.toml:4:1: job.output must not be empty: it names the run's folder"],
    ),
    Case(
        "api key with a line break",
        REMOTE,
        [
            "jobs/job.toml:8:1: the environment variable OPENAI_API_KEY holds a line break at character 8, which cannot "
            "be sent in a header; set it again without it (endpoint.api_key_env; the key is not shown)"
        ],
        env={"OPENAI_API_KEY": "sk-test\n"},
    ),
    Case(
        "api key with a character that is not ASCII",
        REMOTE,
        [
            "jobs/job.toml:8:1: the environment variable OPENAI_API_KEY holds a character that is not ASCII at "
            "character 4, which cannot be sent in a header; set it again without it (endpoint.api_key_env; the key "
            "is not shown)"
        ],
        env={"OPENAI_API_KEY": "sk-\u2011test"},
    ),
    Case(
        "handler without an argument",
        HANDLER,
        ['jobs/job.toml:6:1: "h.py:handler" takes no argument; a handler is async def handler(trajectory)'],
        files={"h.py": "async def handler():\n    return None\n"},
    ),
    Case(
        "handler with two arguments",
        HANDLER,
        ['jobs/job.toml:6:1: "h.py:handler" takes (trajectory, extra); a handler is async def handler(trajectory)'],
        files={"h.py": "async def handler(trajectory, extra):\n    return None\n"},
    ),
    Case(
        "input: unknown role",
        SIM,
        [
            'jobs/prompts.jsonl:1:1: "messages"[0].role "usr" is not a chat role (system, developer, user, '
            'assistant, tool, function); did you mean "user"?'
        ],
        input='{"messages": [{"role": "usr", "content": "hi"}]}\n',
    ),
    Case(
        "input: empty role",
        SIM,
        [
            'jobs/prompts.jsonl:1:1: "messages"[0].role "" is not a chat role (system, developer, user, '
            "assistant, tool, function)"
        ],
        input='{"messages": [{"role": "", "content": "hi"}]}\n',
    ),
    Case(
        "input: content part not an object",
        SIM,
        [
            'jobs/prompts.jsonl:1:1: "messages"[0].content[0] must be a content part (an object with "type"), found a string'
        ],
        input='{"messages": [{"role": "user", "content": ["hi"]}]}\n',
    ),
    Case(
        "input: content part without type",
        SIM,
        ['jobs/prompts.jsonl:2:1: "messages"[1].content[1] needs a "type" (such as "text" or "image_url")'],
        input=GOOD_LINE
        + '{"messages": [{"role": "system", "content": "x"}, {"role": "user", "content": [{"type": "text", "text": '
        '"a"}, {"text": "b"}]}]}\n',
    ),
    Case(
        'input: ids 1 and "1"',
        SIM,
        ['jobs/prompts.jsonl:2:1: duplicate id "1": line 1 has 1; a number and a string of the same digits are one id'],
        input='{"prompt": "a", "id": 1}\n{"prompt": "b", "id": "1"}\n',
    ),
]


def problem_lines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: Case) -> list[str]:
    """What `tokenflow validate` would print for the case: load, scan the input, import a handler."""
    monkeypatch.chdir(tmp_path)
    write_case(tmp_path / "jobs", case)
    try:
        job = load_job(Path(JOB), case.env)
        scan_input(job)
        if job.handler is not None:
            load_handler(job)
    except JobError as error:
        return error.lines()
    return []


def write_case(jobs: Path, case: Case) -> None:
    """The case's job file, input and other files, in a new folder `jobs`."""
    jobs.mkdir()
    if case.job is not None:
        _write(jobs / "job.toml", case.job)
    if case.input is not None:
        _write(jobs / "prompts.jsonl", case.input)
    for name, text in case.files.items():
        _write(jobs / name, text)


def _write(path: Path, content: str | bytes) -> None:
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")


def test_the_corpus_is_large():
    assert len(CASES) >= 45
    assert len({case.name for case in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_bad_job(tmp_path, monkeypatch, case):
    assert problem_lines(tmp_path, monkeypatch, case) == case.expected


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_a_bad_job_creates_nothing(tmp_path, monkeypatch, case):
    problem_lines(tmp_path, monkeypatch, case)
    made = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    expected = sorted(
        ["jobs"]
        + [f"jobs/{name}" for name in ("job.toml",) if case.job is not None]
        + [f"jobs/{name}" for name in ("prompts.jsonl",) if case.input is not None]
        + [f"jobs/{name}" for name in case.files]
    )
    assert made == expected
