"""Pure domain logic: validation, hashing, event decoding, summaries. No I/O, no Faust app."""
