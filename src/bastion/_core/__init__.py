"""The kernel every layer stands on: errors, outbound HTTP, host facts, throttled logging."""
