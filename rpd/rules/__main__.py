"""``python -m rpd.rules``: print the README's rules table (generated from the registry)."""
from rpd.rules.registry import markdown_table

print(markdown_table())
