"""lifetime: learning rules that adapt a born network in its lifetime, and the few-shot protocol."""
