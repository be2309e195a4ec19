"""The kinds of a failed attempt: one vocabulary for the handler, the store, traffic control and the dashboard."""

HTTP_429 = "http_429"
HTTP_5XX = "http_5xx"
HTTP_4XX = "http_4xx"
TIMEOUT = "timeout"
CONNECTION = "connection"
BAD_RESPONSE = "bad_response"
HANDLER_EXCEPTION = "handler_exception"
# of a request, not of an attempt: the engine ended it at its max_attempts (so not in the charts' list)
TOO_MANY_ATTEMPTS = "too_many_attempts"
# of a request whose custom handler said, through its payload, that it failed
HANDLER_FAILED = "handler_failed"
# a streamed answer that stopped before its end (idle timeout, reset, deadline): its error keeps the partial text
CUT_OFF = "cut_off"
# an answer that came whole but failed one of the job's [checks] (its error says which check and why)
CHECK_FAILED = "check_failed"
# the [checks] a check_failed error names, in the order an answer is checked (a cut answer is reported as
# cut, not as bad JSON)
CHECK_NAMES = ("finish_reason", "min_chars", "max_chars", "json", "json_schema", "regex")

# in the order the dashboard lists them
ERROR_KINDS = (
    HTTP_429,
    HTTP_5XX,
    HTTP_4XX,
    TIMEOUT,
    CONNECTION,
    BAD_RESPONSE,
    HANDLER_EXCEPTION,
    CUT_OFF,
    CHECK_FAILED,
)
