"""Example graphs and their node implementations (deterministic: no LLM, no keys)."""
