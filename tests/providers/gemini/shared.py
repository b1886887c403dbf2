"""What the Gemini client tests share: the key, and a long system prompt worth caching with
its breakpoint."""

MODEL = "gemini/gemini-2.5-flash"
KEY = "AIza-test-key"
HANDBOOK = "Section 4: every employee gets twenty-five days of paid leave a year. " * 120
SYSTEM_POINT = [{"location": "message", "role": "system", "ttl": "1h"}]
